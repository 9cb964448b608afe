"""The cloud misbehaves under a running installation; with the sidecars' retries every scenario ends in
the right state, and the census at the emulator finds no orphan (checked by the `co` fixture)."""

from __future__ import annotations

import asyncio
import time

import pytest

from csi_xloud.demo.orchestrator import mount_capability
from tests.faults.conftest import API_TIMEOUT_SECONDS
from tests.faults.lifecycle import GIB, lifecycle
from tests.faults.support import (
    FaultCluster,
    Sidecars,
    census,
    count,
    is_root,
    member_client,
    requests_between,
    wait_for_request,
)

pytestmark = pytest.mark.skipif(not is_root(), reason="the fault suite attaches loop devices: run as root")

CREATE_VOLUME = "POST /volume/v3/{id}/volumes"
GET_VOLUME = "GET /volume/v3/{id}/volumes/{id}"
ATTACH = "POST /compute/v2.1/servers/{id}/os-volume_attachments"
VOLUME_BY_ID = r"/volumes/[0-9a-f-]{36}$"


async def volumes_named(cluster: FaultCluster, name: str) -> list[str]:
    assert cluster.emulator is not None
    async with member_client(cluster.emulator) as cloud:
        return [v.id for v in await cloud.storage.find_volume_by_name(name)]


async def test_503_bursts_on_every_service(cluster: FaultCluster, co: Sidecars) -> None:
    """Bursts on requests that create reach the sidecar as UNAVAILABLE; reads ride theirs out; all pass."""
    assert cluster.emulator is not None
    node_a, node_b = cluster.server_ids()[:2]
    before = cluster.emulator.stats()
    cluster.emulator.set_faults(
        [
            {"method": "POST", "path": r"/volumes$", "status": 503, "count": 3},
            {"method": "GET", "path": VOLUME_BY_ID, "status": 503, "count": 8},
            {"method": "POST", "path": r"/os-volume_attachments$", "status": 503, "count": 3},
            {"method": "DELETE", "path": r"/os-volume_attachments/", "status": 503, "count": 3},
            {"method": "DELETE", "path": VOLUME_BY_ID, "status": 503, "count": 3},
        ]
    )
    result = await lifecycle(co, node_a, node_b)
    assert result.intact
    assert requests_between(before, cluster.emulator.stats(), CREATE_VOLUME) == 4  # 3 refused, 1 taken
    assert co.retries["CreateVolume UNAVAILABLE"] >= 3
    assert co.retries["ControllerPublishVolume UNAVAILABLE"] >= 3


async def test_429_with_retry_after_is_waited_out_by_the_client(cluster: FaultCluster, co: Sidecars) -> None:
    assert cluster.emulator is not None
    before = cluster.emulator.stats()
    cluster.emulator.set_faults(
        [{"method": "POST", "path": r"/volumes$", "status": 429, "retry_after": 1, "count": 2}]
    )
    started = time.monotonic()
    pv = await co.provision(GIB, mount_capability(), name="pvc-throttled")
    elapsed = time.monotonic() - started
    try:
        assert elapsed >= 1.8, "the client did not wait the Retry-After seconds"
        assert co.retry_total == 0, "a throttled request should be retried inside the controller"
        assert requests_between(before, cluster.emulator.stats(), CREATE_VOLUME) == 3
        assert await volumes_named(cluster, "pvc-throttled") == [pv.volume_id]
    finally:
        await co.delete(pv)


async def test_polls_slower_than_the_timeout_are_retried(cluster: FaultCluster, co: Sidecars) -> None:
    """GETs that answer after api_timeout are sent again by the client; the volume settles."""
    assert cluster.emulator is not None
    cluster.emulator.set_faults(
        [{"method": "GET", "path": VOLUME_BY_ID, "delay": API_TIMEOUT_SECONDS * 2, "count": 3}]
    )
    pv = await co.provision(GIB, mount_capability(), name="pvc-slow-polls")
    await co.delete(pv)


async def test_an_attach_answered_after_the_timeout_is_found_by_the_retry(
    cluster: FaultCluster, co: Sidecars
) -> None:
    """The cloud attaches though the client gave up waiting for the answer: one attachment, reused."""
    assert cluster.emulator is not None
    node_a = cluster.server_ids()[0]
    pv = await co.provision(GIB, mount_capability())
    try:
        before = cluster.emulator.stats()
        cluster.emulator.set_faults(
            [{"method": "POST", "path": r"/os-volume_attachments$", "delay": API_TIMEOUT_SECONDS * 2.5}]
        )
        try:
            await co.attach(pv, node_a)
            assert co.retries["ControllerPublishVolume UNAVAILABLE"] >= 1
            assert requests_between(before, cluster.emulator.stats(), ATTACH) >= 1
            assert (await census(cluster.emulator)).attachments == ((node_a, pv.volume_id),)
        finally:
            await co.detach(pv, node_a)
    finally:
        await co.delete(pv)


async def test_connection_resets_from_a_killed_emulator(cluster: FaultCluster, co: Sidecars) -> None:
    """The emulator's rules cannot reset a connection; SIGKILL cuts every connection at once instead."""
    emulator = cluster.emulator
    assert emulator is not None
    node_a = cluster.server_ids()[0]
    baseline = count(emulator, CREATE_VOLUME)
    emulator.set_faults([{"method": "GET", "path": VOLUME_BY_ID, "delay": 1.0, "count": 2}])
    create = asyncio.ensure_future(co.provision(GIB, mount_capability(), name="pvc-reset"))
    try:
        await wait_for_request(emulator, CREATE_VOLUME, baseline)
        await asyncio.sleep(0.3)  # a status poll is held open by the rule
        await asyncio.to_thread(emulator.kill)
        await asyncio.sleep(1.0)  # the controller meets refused connections meanwhile
        await asyncio.to_thread(emulator.start)
        pv = await asyncio.wait_for(create, timeout=90)
    finally:
        if not create.done():
            create.cancel()
    assert await volumes_named(cluster, "pvc-reset") == [pv.volume_id]
    baseline = count(emulator, ATTACH)
    attach = asyncio.ensure_future(co.attach(pv, node_a))
    await wait_for_request(emulator, ATTACH, baseline)
    await asyncio.to_thread(emulator.kill)
    await asyncio.sleep(0.5)
    await asyncio.to_thread(emulator.start)
    await asyncio.wait_for(attach, timeout=90)
    await co.detach(pv, node_a)
    await co.delete(pv)


async def test_emulator_restarted_while_a_volume_is_created_and_attached(
    cluster: FaultCluster, co: Sidecars
) -> None:
    emulator = cluster.emulator
    assert emulator is not None
    node_a, node_b = cluster.server_ids()[:2]
    baseline = count(emulator, CREATE_VOLUME)
    emulator.set_faults([{"method": "GET", "path": VOLUME_BY_ID, "delay": 0.5, "count": 2}])
    create = asyncio.ensure_future(co.provision(GIB, mount_capability(), name="pvc-restart"))
    await wait_for_request(emulator, CREATE_VOLUME, baseline)
    await asyncio.to_thread(emulator.restart)
    pv = await asyncio.wait_for(create, timeout=90)
    baseline = count(emulator, ATTACH)
    attach = asyncio.ensure_future(co.attach(pv, node_a))
    await wait_for_request(emulator, ATTACH, baseline)
    await asyncio.to_thread(emulator.restart)
    await asyncio.wait_for(attach, timeout=90)
    await co.detach(pv, node_a)
    # The volume still carries data end to end after both restarts.
    await co.delete(pv)
    result = await lifecycle(co, node_a, node_b)
    assert result.intact


async def test_a_long_outage_reaches_the_sidecar_as_unavailable_only(
    cluster: FaultCluster, co: Sidecars
) -> None:
    """A long 503 outage: the controller answers UNAVAILABLE (never INTERNAL), the sidecar keeps going."""
    assert cluster.emulator is not None
    cluster.emulator.set_faults([{"path": ".*", "status": 503, "count": 14}])
    pv = await co.provision(GIB, mount_capability(), name="pvc-outage")
    assert set(co.retries) <= {"CreateVolume UNAVAILABLE"}, co.retries
    await co.delete(pv)


async def test_a_500_to_a_create_is_not_a_final_error(cluster: FaultCluster, co: Sidecars) -> None:
    assert cluster.emulator is not None
    cluster.emulator.set_faults([{"method": "POST", "path": r"/volumes$", "status": 500, "count": 1}])
    pv = await co.provision(GIB, mount_capability(), name="pvc-500")
    await co.delete(pv)
    assert "CreateVolume INTERNAL" not in co.retries, dict(co.retries)
