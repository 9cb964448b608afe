"""Many volume lifecycles at once while a fixed share of cloud requests fails.

The emulator's fault rules have no "share": a rule fails the next `count` matching requests. The
share is made by cycling rules with counts: [pass 4, fail 1] repeated, where "pass" is a rule with
a 1 ms delay and no status. Every request takes the first live rule, so exactly one request in five
gets a 503 or a 500 (alternately), evenly spread. A feeder posts a fresh cycle before it runs out.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from csi_xloud.demo.orchestrator import RetryPolicy
from csi_xloud.emulator.process import EmulatorProcess
from tests.faults.lifecycle import LifeResult, lifecycle
from tests.faults.support import Census, FaultCluster, Sidecars, settled_census

FAILING_STATUSES = (503, 500)


def failure_cycle(every: int, cycles: int) -> list[dict[str, Any]]:
    """Rules under which one request in `every` fails, for every * cycles requests."""
    rules: list[dict[str, Any]] = []
    for index in range(cycles):
        rules.append({"path": ".*", "delay": 0.001, "count": every - 1})
        rules.append({"path": ".*", "status": FAILING_STATUSES[index % 2], "count": 1})
    return rules


@dataclass
class FailureFeeder:
    """Keeps the failure cycle posted and counts the requests that ran under it."""

    emulator: EmulatorProcess
    every: int = 5
    cycles: int = 1000
    injected: int = 0  # requests answered with an injected failure, over closed cycles
    _posted_at: int | None = None

    @property
    def capacity(self) -> int:
        return self.every * self.cycles

    def _total(self) -> int:
        return int(self.emulator.stats()["total"])

    def _close_cycle(self) -> None:
        """Count the failures of the cycle in place: one per `every` requests it served."""
        if self._posted_at is not None:
            served = min(self._total() - self._posted_at, self.capacity)
            self.injected += served // self.every

    def post(self) -> None:
        self._close_cycle()
        self.emulator.set_faults(failure_cycle(self.every, self.cycles))
        self._posted_at = self._total()

    def stop(self) -> None:
        self._close_cycle()
        self._posted_at = None
        self.emulator.clear_faults()

    @contextlib.asynccontextmanager
    async def running(self, poll_seconds: float = 0.25) -> AsyncIterator[FailureFeeder]:
        self.post()
        task = asyncio.create_task(self._feed(poll_seconds))
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            self.stop()

    async def _feed(self, poll_seconds: float) -> None:
        while True:
            await asyncio.sleep(poll_seconds)
            posted_at = self._posted_at or 0
            if await asyncio.to_thread(self._total) - posted_at > self.capacity * 0.8:
                await asyncio.to_thread(self.post)


@dataclass
class LoadReport:
    """The figures of one load run."""

    lifecycles: int
    concurrency: int
    wall_seconds: float = 0.0
    results: list[LifeResult] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    cloud_requests: int = 0
    injected_failures: int = 0
    retries: Counter[str] = field(default_factory=Counter)
    orphans: Census | None = None

    @property
    def intact(self) -> int:
        return sum(1 for r in self.results if r.intact)

    def lines(self) -> list[str]:
        share = self.injected_failures / self.cloud_requests if self.cloud_requests else 0.0
        return [
            f"lifecycles: {len(self.results)} of {self.lifecycles} completed, {self.concurrency} at a time",
            f"checksums intact: {self.intact} of {len(self.results)}",
            f"cloud requests: {self.cloud_requests}, injected failures: {self.injected_failures} ({share:.1%})",
            f"sidecar retries: {sum(self.retries.values())} "
            + ", ".join(f"{k}={v}" for k, v in sorted(self.retries.items())),
            f"orphans at the emulator: {self.orphans}",
            f"wall time: {self.wall_seconds:.1f} s",
            *(f"failed: {f}" for f in self.failures),
        ]


async def run_load(cluster: FaultCluster, lifecycles: int, concurrency: int, every: int = 5) -> LoadReport:
    """Run the lifecycles under the failure cycle; the report carries every figure and the census."""
    emulator = cluster.emulator
    assert emulator is not None
    nodes = cluster.server_ids()
    report = LoadReport(lifecycles, concurrency)
    gate = asyncio.Semaphore(concurrency)
    policy = RetryPolicy(max_attempts=60, max_delay_seconds=1.0)

    async def one(index: int, co: Sidecars) -> None:
        async with gate:
            writer, reader = nodes[index % len(nodes)], nodes[(index + 1) % len(nodes)]
            try:
                report.results.append(
                    await lifecycle(co, writer, reader, "xfs" if index % 4 == 3 else "ext4")
                )
            except Exception as exc:
                report.failures.append(f"lifecycle {index}: {type(exc).__name__}: {exc}")

    async with Sidecars(cluster.controller_socket, cluster.node_handles, policy) as co:
        await co.wait_ready()
        before = int(emulator.stats()["total"])
        started = time.monotonic()
        feeder = FailureFeeder(emulator, every=every)
        async with feeder.running():
            await asyncio.gather(*(one(i, co) for i in range(lifecycles)))
        report.wall_seconds = time.monotonic() - started
        report.cloud_requests = int(emulator.stats()["total"]) - before
        report.injected_failures = feeder.injected
        report.retries = co.retries
    report.orphans = await settled_census(emulator)
    return report
