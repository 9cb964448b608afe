"""A node's server is deleted while a pod uses its volume: the workload moves to another node, data intact.

The node plugin dies with its machine (killed, its mounts gone), its server is deleted through the
Compute API, and the orchestrator then does what Kubernetes does once the node is gone: detach the
old VolumeAttachment and attach, stage and publish on the node the pod is rescheduled to.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from csi_xloud import GIB
from csi_xloud.cloud.client import CloudClient
from csi_xloud.cloud.settings import load_cloud_settings
from csi_xloud.demo.cluster import Cluster
from csi_xloud.demo.orchestrator import Orchestrator, PersistentVolume, mount_capability
from csi_xloud.demo.scenario import verify_files, write_files
from csi_xloud.metrics import Metrics
from tests.e2e.conftest import running_cluster

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="end-to-end tests attach loop devices and mount: run as root"
)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """Three nodes: each test loses one and moves its workload to the next."""
    yield from running_cluster("csx-e2e-dead-", servers="node-a,node-b,node-c")


@pytest.fixture
async def cloud(cluster: Cluster) -> AsyncIterator[CloudClient]:
    assert cluster.emulator is not None
    client = CloudClient(load_cloud_settings("xloud-emulator", cluster.emulator.clouds_yaml, {}), Metrics())
    yield client
    await client.aclose()


async def _delete_server(cloud: CloudClient, server_id: str) -> None:
    """DELETE /servers/{id} (the driver never makes this call), then wait until Compute has no such server."""
    url = f"{(await cloud.auth.endpoint('compute')).rstrip('/')}/servers/{server_id}"
    async with httpx.AsyncClient(timeout=10) as http:
        headers = {"X-Auth-Token": await cloud.auth.token() or ""}
        assert (await http.delete(url, headers=headers)).status_code == 204
        for _ in range(500):
            if (await http.get(url, headers=headers)).status_code == 404:
                return
            await asyncio.sleep(0.02)
    raise AssertionError(f"server {server_id} was not deleted")


async def _running_pod(co: Orchestrator, pv: PersistentVolume, node_id: str) -> tuple[str, Path]:
    pod = str(uuid.uuid4())
    await co.attach(pv, node_id)
    await co.stage(pv, node_id)
    return pod, await co.publish(pv, node_id, pod)


async def _stop_pod_and_delete(co: Orchestrator, pv: PersistentVolume, node_id: str, pod: str) -> None:
    await co.unpublish(pv, node_id, pod)
    await co.unstage(pv, node_id)
    await co.detach(pv, node_id)
    await co.delete(pv)


async def _nothing_left(cloud: CloudClient) -> None:
    volumes = (await cloud.storage.list_volumes()).items
    assert volumes == (), [(v.id, v.raw_status, v.attached_server_ids) for v in volumes]


async def test_the_workload_of_a_deleted_node_moves_with_its_data(
    cluster: Cluster, co: Orchestrator, cloud: CloudClient
) -> None:
    dead, alive = cluster.server_ids()[:2]
    pv = await co.provision(GIB, mount_capability())
    _, mount = await _running_pod(co, pv, dead)
    sums = write_files(mount, 2, 1 << 20, prefix="before-the-node-died")

    cluster.lose_node(dead)
    await _delete_server(cloud, dead)
    # The node object is gone: the attach/detach controller detaches the old VolumeAttachment.
    await co.detach(pv, dead)
    pod, mount = await _running_pod(co, pv, alive)
    verify_files(mount, sums)
    sums.update(write_files(mount, 1, 1 << 20, prefix="after-the-move"))
    verify_files(mount, sums)
    await _stop_pod_and_delete(co, pv, alive, pod)
    await _nothing_left(cloud)


async def test_a_volume_left_attached_to_a_deleted_node_is_freed_for_the_next_one(
    cluster: Cluster, co: Orchestrator, cloud: CloudClient
) -> None:
    dead, alive = cluster.server_ids()[:2]
    pv = await co.provision(GIB, mount_capability("xfs"))
    _, mount = await _running_pod(co, pv, dead)
    sums = write_files(mount, 2, 1 << 20, prefix="before-the-node-died")

    cluster.lose_node(dead)
    assert cluster.emulator is not None
    # Compute's calls to the Storage API fail during the delete: the volume stays attached to nothing.
    cluster.emulator.set_faults([{"method": "DELETE", "path": f"/servers/{dead}$", "outcome": "error"}])
    try:
        await _delete_server(cloud, dead)
    finally:
        cluster.emulator.clear_faults()
    assert (await cloud.storage.get_volume(pv.volume_id)).attached_server_ids == (dead,)
    # The rescheduled pod's attach comes first; the old VolumeAttachment's detach after it.
    pod, mount = await _running_pod(co, pv, alive)
    await co.detach(pv, dead)
    verify_files(mount, sums)
    assert (await cloud.storage.get_volume(pv.volume_id)).attached_server_ids == (alive,)
    await _stop_pod_and_delete(co, pv, alive, pod)
    await _nothing_left(cloud)
