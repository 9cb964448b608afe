"""Driver latency and API calls per operation against the cloud's own operation time.

For each op time the emulator runs with that --op-seconds; the controller and a node plugin run as
real processes, driven over their sockets as the sidecars and the kubelet drive them. Every
operation runs at each concurrency (all calls started at once); latency is per call, API calls
are counted at the emulator. The reference columns replay a model of cinder-csi-plugin's wait
schedule (see benchmarks/reference.py) against the same emulator, at the same concurrency.

    python -m benchmarks.overhead             # the full matrix (about 35 minutes on 2 cores)
    python -m benchmarks.overhead --quick     # one small run, a few seconds
    python -m benchmarks.overhead --only 2:1,100,500 --limit default   # some levels (first one cold)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import cast

from benchmarks.common import (
    CallCounter,
    CloudApi,
    Table,
    data_root,
    lift_quotas,
    machine,
    percentile,
    run_all,
    seconds,
    verdict,
)
from benchmarks.reference import ReferenceModel
from csi_xloud import GIB
from csi_xloud.demo.cluster import Cluster
from csi_xloud.demo.orchestrator import Orchestrator, PersistentVolume, RetryPolicy, mount_capability

POLICY = RetryPolicy(max_attempts=50, call_timeout_seconds=1800.0)


@dataclass
class Sample:
    op: str
    op_seconds: float
    rate_limit: float | None
    concurrency: int
    latencies: list[float]
    calls: int
    warm: bool
    ref_latencies: list[float] | None = None
    ref_calls: int | None = None

    def row(self) -> list[str]:
        p50, p95 = percentile(self.latencies, 50), percentile(self.latencies, 95)
        n = len(self.latencies)
        cloud_op = self.op != "NodeStageVolume"
        target = 1.3 * self.op_seconds + 0.1
        latency_cell = verdict(p95 <= target) if cloud_op else "n/a (node)"
        ref = ["-", "-", "-", "-"]
        if self.ref_latencies is not None and self.ref_calls is not None:
            ours, theirs = self.calls / n, self.ref_calls / n
            calls_cell = verdict(ours <= theirs) if self.op_seconds >= 2 else "n/a (< 2 s)"
            ref = [seconds(percentile(self.ref_latencies, 50)), seconds(percentile(self.ref_latencies, 95)),
                   f"{theirs:.1f}", calls_cell]
        rate = "default" if self.rate_limit is None else "unbound"
        return [f"{self.op_seconds:g}", rate, "warm" if self.warm else "cold", self.op, str(self.concurrency),
                seconds(p50), seconds(p95),
                seconds(target) if cloud_op else "-", latency_cell, f"{self.calls / n:.1f}", *ref]


Work = Sequence[Callable[[], Awaitable[object]]]
COLUMNS = ["op s", "client rate limit", "controller", "operation", "conc", "p50 s", "p95 s", "target s",
           "latency", "calls/op", "model p50 s", "model p95 s", "model calls/op", "calls"]


async def measure(cluster: Cluster, op: str, n: int, work: Work,
                  results: list[Sample]) -> list[object]:
    assert cluster.emulator is not None
    with CallCounter(cluster.emulator) as counter:
        _, latencies, out = await run_all(work)
    results.append(
        Sample(op, cluster.op_seconds, cluster.rate_limit, n, latencies, counter.calls, warm=False)
    )
    return out


async def reference(cluster: Cluster, sample: Sample, work: Work) -> list[object]:
    assert cluster.emulator is not None
    with CallCounter(cluster.emulator) as counter:
        _, latencies, out = await run_all(work)
    sample.ref_latencies, sample.ref_calls = latencies, counter.calls
    return out


async def one_level(cluster: Cluster, co: Orchestrator, model: ReferenceModel, n: int, attach_cap: int,
                    results: list[Sample]) -> None:
    """Every operation at concurrency n: ours, then the reference model on fresh resources.

    The snapshotter's re-calls of CreateSnapshot until ready_to_use pause 0.1 s, growing x1.25 (as our
    own waits do), so ready_to_use is seen soon after the cloud finishes.
    """
    cap = mount_capability()
    server = cluster.server_ids()[0]
    pvs = cast(list[PersistentVolume], await measure(
        cluster, "CreateVolume", n, [partial(co.provision, GIB, cap) for _ in range(n)], results))
    ref_ids = cast(list[str], await reference(
        cluster, results[-1], [partial(model.create_volume, 1) for _ in range(n)]))

    for kind in ("snapshot", "backup"):
        await measure(cluster, f"CreateSnapshot ({kind})", n,
                      [partial(co.snapshot, pv, {"type": kind}, poll_seconds=0.1, poll_factor=1.25,
                               max_poll_seconds=5.0) for pv in pvs], results)
        step = model.snapshot if kind == "snapshot" else model.backup
        await reference(cluster, results[-1], [partial(step, v) for v in ref_ids])

    await measure(cluster, "ControllerExpandVolume", n,
                  [partial(co.expand, pv, 2 * GIB, None) for pv in pvs], results)
    await reference(cluster, results[-1], [partial(model.expand, v, 2) for v in ref_ids])

    m = min(n, attach_cap)
    attached = pvs[:m]
    await measure(cluster, "ControllerPublishVolume", m,
                  [partial(co.attach, pv, server) for pv in attached], results)
    await reference(cluster, results[-1], [partial(model.attach, v, server) for v in ref_ids[:m]])
    await measure(cluster, "NodeStageVolume", m, [partial(co.stage, pv, server) for pv in attached], results)
    await asyncio.gather(*(co.unstage(pv, server) for pv in attached))
    await asyncio.gather(*(co.detach(pv, server) for pv in attached))
    await asyncio.gather(*(model.detach(v, server) for v in ref_ids[:m]))


@contextlib.asynccontextmanager
async def model_and_driver(
    name: str, op_seconds: float, rate_limit: float | None = None,
) -> AsyncIterator[tuple[Cluster, Orchestrator, ReferenceModel]]:
    """An emulator with that op time, the driver's processes driven as the sidecars do, and the model."""
    root = data_root(name)
    cluster = Cluster(
        root, servers="node-a", op_seconds=op_seconds, log_level="WARNING", rate_limit=rate_limit
    )
    try:
        with cluster:
            assert cluster.emulator is not None
            await lift_quotas(cluster.emulator)
            async with Orchestrator(cluster.controller_socket, cluster.node_handles, POLICY) as co, \
                    CloudApi(cluster.emulator, "xloud-emulator") as api:
                await co.wait_ready()
                yield cluster, co, ReferenceModel(api)
    finally:
        shutil.rmtree(root, ignore_errors=True)


async def one_op_time(
    op_seconds: float, levels: Sequence[int], rate_limit: float | None, attach_cap: int,
    results: list[Sample], *, cold_first: bool,
) -> None:
    """Each level on one controller. The controller learns how long each kind of transition takes
    from its first waits (three of a kind), so a fresh controller is "cold": with `cold_first` the
    first level runs on it as it starts, then WARM_UP operations of every kind run unmeasured and
    the other levels show the controller as it runs from then on ("warm")."""
    async with model_and_driver("overhead", op_seconds, rate_limit) as (cluster, co, model):
        plan: list[tuple[int, bool | None]] = [(levels[0], False)] if cold_first else []
        plan.append((WARM_UP, None))
        plan += [(n, True) for n in (levels[1:] if cold_first else levels)]
        for n, warm in plan:
            if warm is None:  # the warm-up: not measured
                await one_level(cluster, co, model, n, min(n, attach_cap), [])
                continue
            done = len(results)
            await one_level(cluster, co, model, n, attach_cap, results)
            for sample in results[done:]:  # progress, while the full table waits for the end
                sample.warm = warm
                print(" | ".join(sample.row()), file=sys.stderr, flush=True)


# How many operations of each kind run unmeasured before the warm levels (the waiter learns a
# transition's time from three waits).
WARM_UP = 3
# (op seconds, concurrency levels, client rate limit, first level on a cold controller): with the
# default limit (50 requests/s per service) and, to show what the driver itself adds, with a limit
# too high to bind. 500 in flight is measured for CreateVolume by benchmarks.concurrency.
UNBOUND = 100000.0
Plan = tuple[float, list[int], float | None, bool]
FULL: list[Plan] = [
    (0.3, [1, 1, 10, 100], None, True), (2.0, [1, 1, 10, 100, 500], None, True),
    (10.0, [1, 1, 10, 100, 500], None, True),
    (0.3, [10, 100], UNBOUND, False), (2.0, [10, 100], UNBOUND, False), (10.0, [10, 100], UNBOUND, False),
]
QUICK: list[Plan] = [(0.3, [1], None, False)]


def _levels(spec: str) -> tuple[float, list[int]]:
    op, _, levels = spec.partition(":")
    return float(op), [int(n) for n in levels.split(",")]


def plan_from(args: argparse.Namespace) -> list[Plan]:
    """--quick, the full matrix, or the --only op times and levels (the first level on a cold controller)."""
    if args.quick:
        return QUICK
    if not args.only:
        return FULL
    rate = None if args.limit == "default" else UNBOUND
    return [(op, levels, rate, True) for op, levels in args.only]


async def main_async(plan: list[Plan], quick: bool = False) -> None:
    attach_cap = 1 if quick else 10
    results: list[Sample] = []
    for op_seconds, levels, rate_limit, cold_first in plan:
        await one_op_time(op_seconds, levels, rate_limit, attach_cap, results, cold_first=cold_first)
    table = Table("Latency and API calls per operation (model = cinder-csi-plugin schedule, not that driver)",
                  COLUMNS)
    for sample in results:
        table.add(*sample.row())
    print(f"machine: {machine()}\n")
    table.print()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="one small run, for the smoke test")
    parser.add_argument("--only", action="append", type=_levels, metavar="OP_SECONDS:N[,N...]",
                        help="run only these op times and concurrency levels (repeatable)")
    parser.add_argument("--limit", choices=("default", "unbound"), default="default",
                        help="client rate limit of the --only runs")
    arguments = parser.parse_args()
    asyncio.run(main_async(plan_from(arguments), arguments.quick))
