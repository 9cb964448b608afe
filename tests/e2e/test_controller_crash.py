"""The controller killed with SIGKILL in the middle of CreateVolume, then restarted: exactly one volume."""

from __future__ import annotations

import asyncio
import os

import pytest

from csi_xloud import GIB
from csi_xloud.cloud.client import CloudClient
from csi_xloud.cloud.settings import load_cloud_settings
from csi_xloud.demo.cluster import Cluster
from csi_xloud.demo.orchestrator import Orchestrator, mount_capability
from csi_xloud.metrics import Metrics

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="end-to-end tests attach loop devices and mount: run as root"
)

CREATE_PATH = "POST /volume/v3/{id}/volumes"


def creates_so_far(cluster: Cluster) -> int:
    assert cluster.emulator is not None
    return int(cluster.emulator.stats()["requests"].get(CREATE_PATH, 0))


async def test_sigkill_during_create_volume_leaves_exactly_one_volume(
    cluster: Cluster, co: Orchestrator
) -> None:
    assert cluster.emulator is not None and cluster.controller is not None
    name = "pvc-crash-during-create"
    before = creates_so_far(cluster)
    # Hold the controller's status polls so it is certainly mid-wait when it dies.
    cluster.emulator.set_faults(
        [{"method": "GET", "path": r"/volumes/[0-9a-f-]{36}$", "delay": 2.0, "count": 3}]
    )
    create = asyncio.ensure_future(co.provision(GIB, mount_capability(), name=name))
    try:
        for _ in range(200):
            if creates_so_far(cluster) > before:
                break
            await asyncio.sleep(0.05)
        assert creates_so_far(cluster) == before + 1, "the cloud never saw the create"
        cluster.controller.kill()
        cluster.emulator.clear_faults()
        await asyncio.sleep(0.5)  # the sidecar keeps retrying against a dead socket meanwhile
        await asyncio.to_thread(cluster.controller.start)
        await asyncio.to_thread(cluster.controller.wait_for_socket)
        pv = await asyncio.wait_for(create, timeout=60)
    finally:
        cluster.emulator.clear_faults()
        if not create.done():
            create.cancel()
    settings = load_cloud_settings("xloud-emulator", cluster.emulator.clouds_yaml, {})
    async with CloudClient(settings, Metrics()) as cloud:
        same_name = await cloud.storage.find_volume_by_name(name)
    assert [volume.id for volume in same_name] == [pv.volume_id]
    assert creates_so_far(cluster) == before + 1, (
        "the retry found the volume by name instead of creating another"
    )
    await co.delete(pv)
