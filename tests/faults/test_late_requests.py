"""A create that reaches the cloud after the client gave up on it.

The controller's cloud client talks to the emulator through a proxy that delivers the first
POST /volumes late: the client times out (api_timeout 1 s), the sidecar retries, and the first
request still lands afterwards. Attachments are checked the same way."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from csi_xloud.cloud.models import VolumeStatus
from csi_xloud.demo.orchestrator import mount_capability
from csi_xloud.emulator.process import EmulatorProcess
from tests.faults.lateproxy import LateProxy, LateRule, late_proxy
from tests.faults.lifecycle import GIB
from tests.faults.support import (
    Sidecars,
    member_client,
    sidecars_through_proxy,
)

LATE_SECONDS = 2.5


@pytest.fixture(scope="module")
def cloud_behind(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    with EmulatorProcess(tmp_path_factory.mktemp("late") / "cloud", op_seconds=0.05) as emulator:
        yield emulator


@pytest.fixture
async def behind_proxy(
    cloud_behind: EmulatorProcess, short_tmp: Path
) -> AsyncIterator[tuple[Sidecars, LateProxy]]:
    async with late_proxy(cloud_behind.url) as (proxy, base), sidecars_through_proxy(cloud_behind, base, short_tmp) as co:
        yield co, proxy


async def test_a_create_that_lands_after_the_retry_leaves_no_second_volume(
    cloud_behind: EmulatorProcess, behind_proxy: tuple[Sidecars, LateProxy]
) -> None:
    co, proxy = behind_proxy
    proxy.rules.append(LateRule("POST", re.compile(r"/volumes$"), LATE_SECONDS))
    pv = await co.provision(GIB, mount_capability(), name="pvc-late")
    await proxy.drain()
    assert proxy.delivered_late == 1 and co.retries["CreateVolume UNAVAILABLE"] >= 1
    async with member_client(cloud_behind) as cloud:
        named = [v.id for v in await cloud.storage.find_volume_by_name("pvc-late")]
    await co.delete(pv)
    assert named == [pv.volume_id], f"{len(named)} volumes carry the name"


async def test_an_attach_that_lands_after_the_retry_leaves_one_attachment(
    cloud_behind: EmulatorProcess, behind_proxy: tuple[Sidecars, LateProxy]
) -> None:
    co, proxy = behind_proxy
    node = str(cloud_behind.servers[0]["id"])
    pv = await co.provision(GIB, mount_capability(), name="pvc-late-attach")
    proxy.rules.append(LateRule("POST", re.compile(r"/os-volume_attachments$"), LATE_SECONDS))
    await co.attach(pv, node)
    await proxy.drain()
    assert proxy.delivered_late == 1
    async with member_client(cloud_behind) as cloud:
        attached = [a.volume_id for a in await cloud.compute.list_attachments(node)]
        volume = await cloud.storage.get_volume(pv.volume_id)
    assert attached == [pv.volume_id] and list(volume.attached_server_ids) == [node]
    await co.detach(pv, node)
    await co.delete(pv)


async def test_a_snapshot_that_lands_after_the_retry_leaves_no_second_snapshot(
    cloud_behind: EmulatorProcess, behind_proxy: tuple[Sidecars, LateProxy]
) -> None:
    co, proxy = behind_proxy
    pv = await co.provision(GIB, mount_capability(), name="pvc-late-snap")
    try:
        proxy.rules.append(LateRule("POST", re.compile(r"/snapshots$"), LATE_SECONDS))
        snapshot = await co.snapshot(pv, name="snap-late")
        await proxy.drain()
        async with member_client(cloud_behind) as cloud:
            named = [s.id for s in await cloud.storage.find_snapshot_by_name("snap-late")]
            for extra in set(named) - {snapshot.snapshot_id}:
                await cloud.storage.wait_for_snapshot(extra, timeout_seconds=20)
                await cloud.storage.delete_snapshot(extra)
                await cloud.storage.wait_for_snapshot_deleted(extra, timeout_seconds=20)
        await co.delete_snapshot(snapshot.snapshot_id)
    finally:
        await co.delete(pv)
    assert named == [snapshot.snapshot_id], f"{len(named)} snapshots carry the name"


async def test_the_emulators_delay_rule_still_serves_a_request_whose_client_gave_up(
    cloud_behind: EmulatorProcess,
) -> None:
    async with member_client(cloud_behind) as cloud:
        base, token = await cloud.auth.endpoint("volume"), await cloud.auth.token()
        cloud_behind.set_faults([{"method": "POST", "path": r"/volumes$", "delay": 1.0}])
        try:
            async with httpx.AsyncClient(timeout=0.3) as http:
                with pytest.raises(httpx.ReadTimeout):
                    await http.post(
                        f"{base}/volumes",
                        json={"volume": {"size": 1, "name": "served-late"}},
                        headers={"X-Auth-Token": token or ""},
                    )
            await asyncio.sleep(1.5)
            named = await cloud.storage.find_volume_by_name("served-late")
        finally:
            cloud_behind.clear_faults()
        for volume in named:
            await cloud.storage.wait_for_volume(volume.id, VolumeStatus.AVAILABLE, timeout_seconds=20)
            await cloud.storage.delete_volume(volume.id)
    assert len(named) == 1
