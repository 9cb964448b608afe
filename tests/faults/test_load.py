"""Volume lifecycles while one cloud request in five fails: zero leaks, every checksum intact.

CI runs LIFECYCLES of them; `python benchmarks/faults.py --full` runs 500 with the same code.
"""

from __future__ import annotations

import pytest

from tests.faults.load import run_load
from tests.faults.support import installation, is_root

pytestmark = pytest.mark.skipif(not is_root(), reason="the load test attaches loop devices: run as root")

LIFECYCLES = 40
CONCURRENCY = 4


async def test_lifecycles_with_a_fifth_of_cloud_requests_failing() -> None:
    with installation("csx-load-", op_seconds=0.05) as cluster:
        report = await run_load(cluster, LIFECYCLES, CONCURRENCY)
    print("\n".join(report.lines()))
    assert report.failures == []
    assert len(report.results) == LIFECYCLES
    assert report.intact == LIFECYCLES
    assert report.orphans is not None and report.orphans.total == 0, report.orphans
    assert report.injected_failures >= report.cloud_requests // 5 - 1
    assert report.retries, "no failure reached the sidecars: the faults did not bite"
