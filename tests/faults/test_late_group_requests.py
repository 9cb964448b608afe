"""Group snapshot creates that reach the cloud after the client gave up on them.

As in test_late_requests: the controller's cloud client talks to the emulator through a proxy
that delivers the first POST /groups, POST /group_snapshots or PUT /groups/{id} (adding the
volumes) late (api_timeout 1 s); the sidecar retries, the first request still lands, one group
and one group snapshot remain, and the volumes end in no group."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from csi_xloud.demo.orchestrator import mount_capability
from csi_xloud.demo.scenario import GROUP_SNAPSHOT_PARAMETERS
from csi_xloud.emulator.process import EmulatorProcess
from tests.faults.lateproxy import LateProxy, LateRule, late_proxy
from tests.faults.lifecycle import GIB
from tests.faults.support import Sidecars, member_client, sidecars_through_proxy

LATE_SECONDS = 2.5


@pytest.fixture(scope="module")
def cloud_behind(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    with EmulatorProcess(tmp_path_factory.mktemp("late-groups") / "cloud", op_seconds=0.05) as emulator:
        yield emulator


@pytest.fixture
async def behind_proxy(
    cloud_behind: EmulatorProcess, short_tmp: Path
) -> AsyncIterator[tuple[Sidecars, LateProxy]]:
    async with (
        late_proxy(cloud_behind.url) as (proxy, base),
        sidecars_through_proxy(cloud_behind, base, short_tmp) as co,
    ):
        yield co, proxy


@pytest.mark.parametrize(
    ("method", "late_path"),
    [("POST", r"/groups$"), ("POST", r"/group_snapshots$"), ("PUT", r"/groups/[0-9a-f-]{36}$")],
    ids=["group", "group-snapshot", "adding-volumes"],
)
async def test_a_late_create_leaves_one_group_and_one_group_snapshot(
    cloud_behind: EmulatorProcess, behind_proxy: tuple[Sidecars, LateProxy], method: str, late_path: str
) -> None:
    co, proxy = behind_proxy
    pvs = [await co.provision(GIB, mount_capability(), name=f"pvc-late-group-{i}") for i in range(2)]
    name = f"groupsnapshot-late-{method.lower()}-{late_path.strip('/$').split('/')[0]}"
    try:
        proxy.rules.append(LateRule(method, re.compile(late_path), LATE_SECONDS))
        group = await co.group_snapshot(pvs, GROUP_SNAPSHOT_PARAMETERS, name=name)
        await proxy.drain()
        assert proxy.delivered_late == 1 and co.retries["CreateVolumeGroupSnapshot UNAVAILABLE"] >= 1
        async with member_client(cloud_behind) as cloud:
            gsnaps = [g.id for g in await cloud.groups.find_group_snapshots_by_name(name)]
            groups = await cloud.groups.find_groups_by_name(name)
            in_groups = [(await cloud.storage.get_volume(pv.volume_id)).group_id for pv in pvs]
        await co.delete_group_snapshot(group)
        async with member_client(cloud_behind) as cloud:
            left = await cloud.groups.find_groups_by_name(name)
    finally:
        for pv in pvs:
            await co.delete(pv)
    assert gsnaps == [group.group_snapshot_id], f"{len(gsnaps)} group snapshots carry the name"
    assert len(groups) == 1 and in_groups == [None, None]
    assert left == []
