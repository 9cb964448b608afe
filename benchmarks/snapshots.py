"""CreateSnapshot re-called on csi-snapshotter's own schedule, beside the model of cinder-csi-plugin.

CreateSnapshot does not wait for the cloud: it answers ready_to_use=false and the CO calls it
again. How many requests a snapshot costs and how soon it is seen ready therefore depend on the
CO's re-calls. benchmarks.overhead re-calls quickly (0.1 s growing x1.25) to show what the driver
itself adds; this script re-calls the way csi-snapshotter does (its workqueue backs an unready
snapshot off from --retry-interval-start, 1 s, doubling up to --retry-interval-max, 5 min).

    python -m benchmarks.snapshots            # op times 2 s and 10 s, 1 and 10 at once (about 3 min)
    python -m benchmarks.snapshots --quick    # op time 0.3 s, one at a time
"""

from __future__ import annotations

from functools import partial

from benchmarks.common import Table, machine, run_all, run_script
from benchmarks.overhead import COLUMNS, Sample, measure, model_and_driver, reference
from csi_xloud import GIB
from csi_xloud.demo.orchestrator import mount_capability

# csi-snapshotter's defaults: --retry-interval-start 1s, --retry-interval-max 5m, doubling.
FIRST_RECALL_SECONDS = 1.0
RECALL_FACTOR = 2.0
MAX_RECALL_SECONDS = 300.0


async def one_op_time(op_seconds: float, levels: list[int], results: list[Sample]) -> None:
    async with model_and_driver("snapshots", op_seconds) as (cluster, co, model):
        cap = mount_capability()
        for n in levels:
            _, _, pvs = await run_all([partial(co.provision, GIB, cap) for _ in range(n)])
            _, _, ref_ids = await run_all([partial(model.create_volume, 1) for _ in range(n)])
            for kind in ("snapshot", "backup"):
                recall = partial(co.snapshot, parameters={"type": kind},
                                 poll_seconds=FIRST_RECALL_SECONDS, poll_factor=RECALL_FACTOR,
                                 max_poll_seconds=MAX_RECALL_SECONDS)
                await measure(cluster, f"CreateSnapshot ({kind}), snapshotter re-calls", n,
                              [partial(recall, pv) for pv in pvs], results)
                step = model.snapshot if kind == "snapshot" else model.backup
                await reference(cluster, results[-1], [partial(step, v) for v in ref_ids])


FULL: list[tuple[float, list[int]]] = [(2.0, [1, 10]), (10.0, [1, 10])]
QUICK: list[tuple[float, list[int]]] = [(0.3, [1])]


async def main_async(quick: bool) -> None:
    results: list[Sample] = []
    for op_seconds, levels in QUICK if quick else FULL:
        await one_op_time(op_seconds, levels, results)
    # CreateSnapshot does not wait, so the controller's learned waits (its cold/warm column) play no part.
    drop = COLUMNS.index("controller")
    table = Table("CreateSnapshot re-called on csi-snapshotter's schedule (model = cinder-csi-plugin, "
                  "not that driver)", COLUMNS[:drop] + COLUMNS[drop + 1:])
    for sample in results:
        row = sample.row()
        table.add(*row[:drop], *row[drop + 1:])
    print(f"machine: {machine()}\n")
    table.print()


if __name__ == "__main__":
    run_script(__doc__, main_async)
