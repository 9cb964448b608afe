"""Fixtures of the fault suite: one installation per module, an orchestrator per test, and a census
after every test that must find the cloud empty."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from csi_xloud.demo.orchestrator import RetryPolicy
from tests.controller.harness import empty_cloud
from tests.faults.support import FaultCluster, Sidecars, installation, member_client, settled_census

# The cloud client gives up on an answer after this long (clouds.yaml api_timeout).
API_TIMEOUT_SECONDS = 1.0


@pytest.fixture(scope="module")
def cluster() -> Iterator[FaultCluster]:
    # DEBUG: the node-safety tests count the node's "formatting" lines, which are debug details.
    with installation(
        "csx-faults-", op_seconds=0.05, log_level="DEBUG", cloud_extra={"api_timeout": API_TIMEOUT_SECONDS}
    ) as made:
        yield made


@pytest.fixture
async def co(cluster: FaultCluster) -> AsyncIterator[Sidecars]:
    """Sidecars that retry; after the test, no fault rule stays and the cloud holds nothing."""
    assert cluster.emulator is not None
    async with Sidecars(
        cluster.controller_socket, cluster.node_handles, RetryPolicy(max_attempts=60)
    ) as sidecars:
        await sidecars.wait_ready()
        try:
            yield sidecars
        finally:
            cluster.emulator.clear_faults()
    left = await settled_census(cluster.emulator)
    if left.total:
        # Empty the cloud so the next test starts clean, then fail this one with what it left.
        async with member_client(cluster.emulator) as cloud:
            await empty_cloud(cloud, cluster.server_ids())
    assert left.total == 0, f"orphans at the emulator: {left}: {left!r}"
