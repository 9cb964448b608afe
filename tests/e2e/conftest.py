"""End-to-end fixtures: a whole installation (emulator, controller, node plugins) per test module."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from csi_xloud.cluster import Cluster, mounts_below
from csi_xloud.orchestrator import Orchestrator, RetryPolicy


def loop_devices_below(root: Path) -> list[str]:
    """Loop devices whose backing file lies under root."""
    listing = subprocess.run(
        ["losetup", "--list", "--noheadings", "--output", "NAME,BACK-FILE"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    prefix = str(root.resolve())
    return [
        line.split()[0]
        for line in listing.splitlines()
        if len(line.split()) > 1 and line.split()[1].startswith(prefix)
    ]


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    data_dir = Path(tempfile.mkdtemp(prefix="csx-e2e-"))
    installation = Cluster(data_dir, op_seconds=0.05)
    try:
        with installation:
            yield installation
    finally:
        leftovers = mounts_below(data_dir), loop_devices_below(data_dir)
        shutil.rmtree(data_dir, ignore_errors=True)
        assert leftovers == ([], []), f"left behind: mounts {leftovers[0]}, loop devices {leftovers[1]}"


@pytest.fixture
async def co(cluster: Cluster) -> AsyncIterator[Orchestrator]:
    async with Orchestrator(
        cluster.controller_socket, cluster.node_handles, RetryPolicy(max_attempts=50)
    ) as orchestrator:
        await orchestrator.wait_ready()
        yield orchestrator
