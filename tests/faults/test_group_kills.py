"""The controller SIGKILLed in the middle of CreateVolumeGroupSnapshot, then restarted while the
sidecar keeps retrying: one group snapshot results, its volumes end in no group, and deleting it
leaves no group behind."""

from __future__ import annotations

import asyncio

import pytest

from csi_xloud.demo.orchestrator import PersistentVolume, mount_capability
from csi_xloud.demo.scenario import GROUP_SNAPSHOT_PARAMETERS
from tests.faults.conftest import API_TIMEOUT_SECONDS
from tests.faults.lifecycle import GIB
from tests.faults.support import FaultCluster, Sidecars, is_root, member_client
from tests.faults.test_controller_kills import HOLD, killed_during

pytestmark = pytest.mark.skipif(not is_root(), reason="the fault suite attaches loop devices: run as root")

ADD_VOLUMES = "PUT /volume/v3/{id}/groups/{id}"
CREATE_GROUP_SNAPSHOT = "POST /volume/v3/{id}/group_snapshots"


@pytest.mark.parametrize(
    ("seen", "path", "method"),
    [(ADD_VOLUMES, r"/groups/[0-9a-f-]{36}$", "PUT"), (CREATE_GROUP_SNAPSHOT, r"/group_snapshots$", "POST")],
    ids=["adding-volumes", "group-snapshot-request-held"],
)
async def test_killed_during_a_group_snapshot(
    cluster: FaultCluster, co: Sidecars, seen: str, path: str, method: str
) -> None:
    assert cluster.emulator is not None
    pvs: list[PersistentVolume] = [await co.provision(GIB, mount_capability()) for _ in range(2)]
    name = f"groupsnapshot-kill-{method.lower()}"
    try:
        rules = [{"method": method, "path": path, "delay": HOLD, "count": 1}]
        work = co.group_snapshot(pvs, GROUP_SNAPSHOT_PARAMETERS, name=name)
        group = await killed_during(cluster, work, seen, rules)
        assert group.ready_to_use and len(group.snapshots) == 2
        # A held request lands after the restarted controller went on; once the start-up window is
        # over the restarted controller has removed any late duplicate.
        await asyncio.sleep(HOLD + 3 * API_TIMEOUT_SECONDS + 1.5)
        async with member_client(cluster.emulator) as cloud:
            gsnaps = [
                g.id
                for g in await cloud.groups.find_group_snapshots_by_name(name)
                if g.raw_status != "deleting"
            ]
            in_groups = [(await cloud.storage.get_volume(pv.volume_id)).group_id for pv in pvs]
        assert gsnaps == [group.group_snapshot_id]
        assert in_groups == [None, None]
        await co.delete_group_snapshot(group)
        async with member_client(cluster.emulator) as cloud:
            assert await cloud.groups.find_groups_by_name(name) == []
    finally:
        for pv in pvs:
            await co.delete(pv)
