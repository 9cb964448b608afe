"""Many CreateVolume calls in flight at once: wall time against the op time, and what it costs in memory.

The controller runs as a real process against the emulator; N CreateVolume calls start at once and the
wall time until the last returns is set against the cloud's own op time. The controller's and the
emulator's peak RSS are sampled while the calls are in flight. Each run is made with the driver's
default client-side rate limit (50 requests/s per service, 10 s of it at once, as shipped), with
the same rate in bursts of 50 (the earlier default), and with the limit raised so high it never
binds, which shows what the driver itself can carry. Three creates run unmeasured first, so the
controller has learned how long a create takes, as a running controller has.

    python -m benchmarks.concurrency            # 100, 200 and 500 in flight at 2 s and 10 s
    python -m benchmarks.concurrency --quick    # 20 in flight at 0.3 s
    python -m benchmarks.concurrency --only 2:100 --only 10:500 --limit default   # some rows
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
from dataclasses import dataclass
from functools import partial

from benchmarks.common import (
    CallCounter,
    RssSampler,
    Table,
    data_root,
    lift_quotas,
    machine,
    mib,
    percentile,
    proc_kib,
    run_all,
    seconds,
    verdict,
)
from csi_xloud import GIB
from csi_xloud.demo.cluster import Cluster
from csi_xloud.demo.orchestrator import Orchestrator, RetryPolicy, mount_capability

WARM_UP = 3
# The client-side limits a run can have: clouds.yaml's (rate_limit, rate_limit_burst), None for the
# default.
LIMITS: dict[str, tuple[float | None, int | None]] = {
    "default": (None, None),
    "burst-50": (None, 50),
    "unbound": (100000.0, None),
}
LABELS = {"default": "default (50/s, 500 at once)", "burst-50": "50/s, 50 at once"}


@dataclass
class Run:
    op_seconds: float
    in_flight: int
    limit: str
    wall: float
    p50: float
    p95: float
    calls: int
    controller_kib: int
    controller_hwm_kib: int
    emulator_kib: int


async def one_run(op_seconds: float, in_flight: int, limit: str) -> Run:
    root = data_root("concurrency")
    rate, burst = LIMITS[limit]
    cluster = Cluster(root, servers="node-a", op_seconds=op_seconds, log_level="WARNING", rate_limit=rate,
                      rate_limit_burst=burst)
    try:
        with cluster:
            assert cluster.emulator is not None and cluster.controller is not None
            assert cluster.emulator.pid is not None and cluster.controller.process is not None
            await lift_quotas(cluster.emulator)
            policy = RetryPolicy(max_attempts=50, call_timeout_seconds=1800.0)
            async with Orchestrator(cluster.controller_socket, cluster.node_handles, policy) as co:
                await co.wait_ready()
                pids = {"controller": cluster.controller.process.pid, "emulator": cluster.emulator.pid}
                cap = mount_capability()
                await run_all([partial(co.provision, GIB, cap) for _ in range(WARM_UP)])
                with CallCounter(cluster.emulator) as counter:
                    async with RssSampler(pids) as rss:
                        wall, latencies, _ = await run_all(
                            [partial(co.provision, GIB, cap) for _ in range(in_flight)])
                hwm = proc_kib(cluster.controller.process.pid, "VmHWM")
                return Run(op_seconds, in_flight, limit, wall, percentile(latencies, 50),
                           percentile(latencies, 95), counter.calls, rss.peak["controller"], hwm,
                           rss.peak["emulator"])
    finally:
        shutil.rmtree(root, ignore_errors=True)


Plan = tuple[float, int, str]
FULL: list[Plan] = [(op, n, limit) for limit in LIMITS for op in (2.0, 10.0) for n in (100, 200, 500)]
QUICK: list[Plan] = [(0.3, 20, "default"), (0.3, 20, "unbound")]


def _row(spec: str) -> tuple[float, int]:
    op, _, n = spec.partition(":")
    return float(op), int(n)


def plan_from(args: argparse.Namespace) -> list[Plan]:
    """The runs the command line asks for: --quick, the full set, or the --only rows at --limit."""
    if args.quick:
        return QUICK
    if not args.only:
        return FULL
    limits = list(LIMITS) if args.limit == "all" else [args.limit]
    return [(op, n, limit) for limit in limits for op, n in args.only]


async def main_async(plan: list[Plan]) -> None:
    runs = []
    for one in plan:
        runs.append(await one_run(*one))
        r = runs[-1]
        print(f"{r.op_seconds:g} s x {r.in_flight} ({r.limit}): "
              f"wall {r.wall:.2f} s, p95 {r.p95:.2f} s, {r.calls / r.in_flight:.2f} calls each",
              file=sys.stderr, flush=True)
    table = Table("CreateVolume calls in flight at once (target: all done within 1.5x the op time; "
                  "controller <= 100 MB RSS)",
                  ["op s", "in flight", "client rate limit", "wall s", "wall / op", "target", "p50 s",
                   "p95 s", "calls/op", "controller peak MiB", "controller", "emulator peak MiB"])
    for r in runs:
        limit = LABELS.get(r.limit, r.limit)
        peak = max(r.controller_kib, r.controller_hwm_kib)
        table.add(f"{r.op_seconds:g}", r.in_flight, limit, seconds(r.wall), f"{r.wall / r.op_seconds:.2f}",
                  verdict(r.wall <= 1.5 * r.op_seconds), seconds(r.p50), seconds(r.p95),
                  f"{r.calls / r.in_flight:.1f}", mib(peak), verdict(peak * 1024 <= 100e6),
                  mib(r.emulator_kib))
    print(f"machine: {machine()}\n")
    table.print()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="one small run, for the smoke test")
    parser.add_argument("--only", action="append", type=_row, metavar="OP_SECONDS:IN_FLIGHT",
                        help="run only these rows (repeatable)")
    parser.add_argument("--limit", choices=(*LIMITS, "all"), default="all",
                        help="client rate limit of the --only rows")
    asyncio.run(main_async(plan_from(parser.parse_args())))
