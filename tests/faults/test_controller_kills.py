"""The controller SIGKILLed in the middle of CreateVolume, CreateSnapshot and ControllerPublishVolume,
then restarted while the sidecar keeps retrying: exactly one volume, snapshot or attachment results.

tests/e2e kills CreateVolume while the controller polls a volume the cloud has made; here the kill
lands while the mutating request itself is held in the cloud (so the cloud drops it with the
connection), and, for attachments, also after the cloud attached. The census after each test finds
nothing left (the `co` fixture).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

import pytest

from csi_xloud.demo.orchestrator import mount_capability
from tests.faults.conftest import API_TIMEOUT_SECONDS
from tests.faults.lifecycle import GIB
from tests.faults.support import (
    FaultCluster,
    Sidecars,
    census,
    count,
    is_root,
    member_client,
    wait_for_request,
)

pytestmark = pytest.mark.skipif(not is_root(), reason="the fault suite attaches loop devices: run as root")

T = TypeVar("T")
CREATE_VOLUME = "POST /volume/v3/{id}/volumes"
CREATE_SNAPSHOT = "POST /volume/v3/{id}/snapshots"
ATTACH = "POST /compute/v2.1/servers/{id}/os-volume_attachments"
HOLD = 3.0


async def killed_during(
    cluster: FaultCluster, work: Awaitable[T], seen: str, rules: list[dict[str, Any]]
) -> T:
    """Start work, SIGKILL the controller once the cloud has seen `seen`, restart it, and finish the work."""
    emulator, controller = cluster.emulator, cluster.controller
    assert emulator is not None and controller is not None
    baseline = count(emulator, seen)
    emulator.set_faults(rules)
    task = asyncio.ensure_future(work)
    try:
        await wait_for_request(emulator, seen, baseline)
        await asyncio.sleep(0.1)
        controller.kill()
        await asyncio.sleep(0.3)  # the sidecar meets a dead socket meanwhile
        await asyncio.to_thread(controller.start)
        await asyncio.to_thread(controller.wait_for_socket)
        return await asyncio.wait_for(task, timeout=120)
    finally:
        emulator.clear_faults()
        if not task.done():
            task.cancel()


async def test_killed_while_the_create_request_is_held(cluster: FaultCluster, co: Sidecars) -> None:
    assert cluster.emulator is not None
    rules = [{"method": "POST", "path": r"/volumes$", "delay": HOLD, "count": 1}]
    pv = await killed_during(
        cluster, co.provision(GIB, mount_capability(), name="pvc-kill-create"), CREATE_VOLUME, rules
    )
    # The held request still lands once its hold is over, after the restarted controller made the
    # volume anew; the restarted controller looks again once its start-up window is over and removes
    # the late duplicate, keeping the volume the sidecar was given.
    named = await live_named_after_the_window("pvc-kill-create", cluster)
    assert named == [pv.volume_id]
    await co.delete(pv)


async def live_named_after_the_window(name: str, cluster: FaultCluster) -> list[str]:
    assert cluster.emulator is not None
    await asyncio.sleep(HOLD + 3 * API_TIMEOUT_SECONDS + 1.5)
    async with member_client(cluster.emulator) as cloud:
        for _ in range(50):
            named = [v.id for v in await cloud.storage.find_volume_by_name(name) if v.raw_status != "deleting"]
            if len(named) == 1:
                break
            await asyncio.sleep(0.2)
    return named


async def test_killed_while_the_snapshot_request_is_held(cluster: FaultCluster, co: Sidecars) -> None:
    assert cluster.emulator is not None
    pv = await co.provision(GIB, mount_capability())
    try:
        rules = [{"method": "POST", "path": r"/snapshots$", "delay": HOLD, "count": 1}]
        snapshot = await killed_during(cluster, co.snapshot(pv, name="snap-kill"), CREATE_SNAPSHOT, rules)
        assert snapshot.ready_to_use
        assert (await census(cluster.emulator)).snapshots == (snapshot.snapshot_id,)
        await co.delete_snapshot(snapshot.snapshot_id)
    finally:
        await co.delete(pv)


@pytest.mark.parametrize(
    "rules",
    [
        [{"method": "POST", "path": r"/os-volume_attachments$", "delay": HOLD, "count": 1}],
        [{"method": "GET", "path": r"/volumes/[0-9a-f-]{36}$", "delay": HOLD, "count": 2}],
    ],
    ids=["attach-request-held", "attached-while-polling"],
)
async def test_killed_during_controller_publish(
    cluster: FaultCluster, co: Sidecars, rules: list[dict[str, Any]]
) -> None:
    assert cluster.emulator is not None
    node_a = cluster.server_ids()[0]
    pv = await co.provision(GIB, mount_capability())
    try:
        context = await killed_during(cluster, co.attach(pv, node_a), ATTACH, rules)
        assert context
        assert (await census(cluster.emulator)).attachments == ((node_a, pv.volume_id),)
        await co.detach(pv, node_a)
    finally:
        await co.delete(pv)
