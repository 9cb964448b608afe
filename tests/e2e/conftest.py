"""End-to-end fixtures: a whole installation (emulator, controller, node plugins) per test module."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from csi_xloud.demo.cluster import Cluster, mounts_below
from csi_xloud.demo.orchestrator import Orchestrator, RetryPolicy
from csi_xloud.emulator.process import loop_devices_under


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    yield from running_cluster("csx-e2e-")


def running_cluster(prefix: str, **options: str) -> Iterator[Cluster]:
    """A cluster in a fresh folder; when it stops, the folder goes and nothing may be left mounted or attached."""
    data_dir = Path(tempfile.mkdtemp(prefix=prefix))
    installation = Cluster(data_dir, op_seconds=0.05, **options)
    try:
        with installation:
            yield installation
    finally:
        leftovers = mounts_below(data_dir), loop_devices_under(data_dir)
        shutil.rmtree(data_dir, ignore_errors=True)
        assert leftovers == ([], []), f"left behind: mounts {leftovers[0]}, loop devices {leftovers[1]}"


@pytest.fixture
async def co(cluster: Cluster) -> AsyncIterator[Orchestrator]:
    async with Orchestrator(
        cluster.controller_socket, cluster.node_handles, RetryPolicy(max_attempts=50)
    ) as orchestrator:
        await orchestrator.wait_ready()
        yield orchestrator
