"""Volumes on nodes whose servers were deleted, stopped or broke: published, unpublished and deleted.

Each test makes its own servers through the emulator's Compute API (the --servers nodes of the
session stay), and deletes them again; the harness then finds the cloud empty.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import httpx

from csi_xloud._proto import csi_pb2
from csi_xloud.cloud.client import CloudClient
from csi_xloud.cloud.models import Volume
from csi_xloud.emulator.process import EmulatorProcess
from tests.controller.harness import (
    TEST_TIMEOUTS,
    Harness,
    cloud_client,
    expect_code,
    mount_cap,
    running_controller,
    unique,
)

IMAGE = "8f3c6c50-0000-4000-8000-00000000beef"


class Servers:
    """Compute calls the driver never makes: create, stop, start, reset and delete servers."""

    def __init__(self, member: CloudClient, admin: CloudClient) -> None:
        self._clients = {"member": member, "admin": admin}
        self._http = httpx.AsyncClient(timeout=10)
        self.made: list[str] = []

    async def _call(self, method: str, path: str, who: str = "member", **kw: Any) -> httpx.Response:
        client = self._clients[who]
        url = f"{(await client.auth.endpoint('compute')).rstrip('/')}/{path}"
        headers = {"X-Auth-Token": await client.auth.token() or "", "OpenStack-API-Version": "compute 2.79"}
        return await self._http.request(method, url, headers=headers, **kw)

    async def boot(self, boot_volume_id: str | None = None) -> str:
        """A new ACTIVE server, booted from boot_volume_id or from an image onto a local disk."""
        server: dict[str, Any] = {"name": unique("node"), "flavorRef": "1", "networks": "none"}
        if boot_volume_id is None:
            server["imageRef"] = IMAGE
        else:
            server["block_device_mapping_v2"] = [
                {
                    "boot_index": 0,
                    "uuid": boot_volume_id,
                    "source_type": "volume",
                    "destination_type": "volume",
                }
            ]
        response = await self._call("POST", "servers", json={"server": server})
        assert response.status_code == 202, response.text
        server_id = str(response.json()["server"]["id"])
        self.made.append(server_id)
        await self.wait(server_id, "ACTIVE")
        return server_id

    async def status(self, server_id: str) -> str | None:
        response = await self._call("GET", f"servers/{server_id}")
        if response.status_code == 404:
            return None
        server = response.json()["server"]
        return None if server["OS-EXT-STS:task_state"] else str(server["status"])

    async def wait(self, server_id: str, status: str | None) -> None:
        """Until the server has status and no task in flight (None: until it is gone)."""
        for _ in range(500):
            if await self.status(server_id) == status and (status is not None or await self._gone(server_id)):
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"server {server_id} never reached {status}")

    async def _gone(self, server_id: str) -> bool:
        return (await self._call("GET", f"servers/{server_id}")).status_code == 404

    async def action(self, server_id: str, body: dict[str, Any], who: str = "member") -> None:
        response = await self._call("POST", f"servers/{server_id}/action", who, json=body)
        assert response.status_code == 202, response.text

    async def stop(self, server_id: str) -> None:
        await self.action(server_id, {"os-stop": None})
        await self.wait(server_id, "SHUTOFF")

    async def delete(self, server_id: str) -> None:
        response = await self._call("DELETE", f"servers/{server_id}")
        assert response.status_code in (204, 404), response.text
        await self.wait(server_id, None)

    async def aclose(self) -> None:
        for server_id in self.made:
            await self.delete(server_id)
        await self._http.aclose()


@asynccontextmanager
async def servers_of(emulator: EmulatorProcess, ctl: Harness) -> AsyncIterator[Servers]:
    admin = cloud_client(emulator, "xloud-emulator-admin")
    servers = Servers(ctl.cloud, admin)
    try:
        yield servers
    finally:
        await servers.aclose()
        await admin.aclose()


def _publish(volume_id: str, node_id: str) -> csi_pb2.ControllerPublishVolumeRequest:
    return csi_pb2.ControllerPublishVolumeRequest(
        volume_id=volume_id, node_id=node_id, volume_capability=mount_cap()
    )


def _unpublish(volume_id: str, node_id: str) -> csi_pb2.ControllerUnpublishVolumeRequest:
    return csi_pb2.ControllerUnpublishVolumeRequest(volume_id=volume_id, node_id=node_id)


async def _stored(ctl: Harness, volume_id: str) -> Volume:
    return await ctl.cloud.storage.get_volume(volume_id)


async def _leave_attached_to_a_deleted_server(ctl: Harness, servers: Servers, volume_id: str) -> str:
    """A volume published to a server whose deletion left the Storage attachment behind."""
    server_id = await servers.boot()
    await ctl.stub.ControllerPublishVolume(_publish(volume_id, server_id))
    ctl.emulator.set_faults([{"method": "DELETE", "path": f"/servers/{server_id}$", "outcome": "error"}])
    try:
        await servers.delete(server_id)
    finally:
        ctl.emulator.clear_faults()
    stale = await _stored(ctl, volume_id)
    assert stale.raw_status == "in-use" and stale.attached_server_ids == (server_id,)
    return server_id


async def test_unpublish_from_a_deleted_server_is_ok(emulator: EmulatorProcess, ctl: Harness) -> None:
    volume = await ctl.create_volume()
    async with servers_of(emulator, ctl) as servers:
        server_id = await servers.boot()
        await ctl.stub.ControllerPublishVolume(_publish(volume.volume_id, server_id))
        await servers.delete(server_id)  # Compute detaches its volumes as it deletes it
        await ctl.stub.ControllerUnpublishVolume(_unpublish(volume.volume_id, server_id))
    assert (await _stored(ctl, volume.volume_id)).raw_status == "available"


async def test_unpublish_removes_what_a_failed_server_delete_left_and_only_live_nodes_are_published(
    emulator: EmulatorProcess, ctl: Harness
) -> None:
    volume = await ctl.create_volume()
    async with servers_of(emulator, ctl) as servers:
        server_id = await _leave_attached_to_a_deleted_server(ctl, servers, volume.volume_id)
        got = await ctl.stub.ControllerGetVolume(
            csi_pb2.ControllerGetVolumeRequest(volume_id=volume.volume_id)
        )
        assert list(got.status.published_node_ids) == []
        listed = await ctl.stub.ListVolumes(csi_pb2.ListVolumesRequest())
        entry = next(e for e in listed.entries if e.volume.volume_id == volume.volume_id)
        assert list(entry.status.published_node_ids) == []

        await ctl.stub.ControllerUnpublishVolume(_unpublish(volume.volume_id, server_id))
        stored = await _stored(ctl, volume.volume_id)
        assert stored.raw_status == "available" and stored.attachments == ()
        await ctl.stub.ControllerUnpublishVolume(_unpublish(volume.volume_id, server_id))


async def test_a_live_attachment_stays_published(ctl: Harness) -> None:
    volume = await ctl.create_volume()
    await ctl.publish(volume.volume_id, "node-a")
    got = await ctl.stub.ControllerGetVolume(csi_pb2.ControllerGetVolumeRequest(volume_id=volume.volume_id))
    assert list(got.status.published_node_ids) == [ctl.node("node-a")]
    listed = await ctl.stub.ListVolumes(csi_pb2.ListVolumesRequest())
    entry = next(e for e in listed.entries if e.volume.volume_id == volume.volume_id)
    assert list(entry.status.published_node_ids) == [ctl.node("node-a")]


async def test_publish_elsewhere_frees_a_volume_from_a_deleted_server(
    emulator: EmulatorProcess, ctl: Harness
) -> None:
    volume = await ctl.create_volume()
    async with servers_of(emulator, ctl) as servers:
        dead = await _leave_attached_to_a_deleted_server(ctl, servers, volume.volume_id)
        await ctl.publish(volume.volume_id, "node-a")
        stored = await _stored(ctl, volume.volume_id)
        assert stored.attached_server_ids == (ctl.node("node-a"),)
        await ctl.stub.ControllerUnpublishVolume(_unpublish(volume.volume_id, dead))  # the CO's late detach
        assert (await _stored(ctl, volume.volume_id)).attached_server_ids == (ctl.node("node-a"),)


async def test_publish_elsewhere_detaches_from_a_stopped_server(
    emulator: EmulatorProcess, ctl: Harness
) -> None:
    volume = await ctl.create_volume()
    async with servers_of(emulator, ctl) as servers:
        stopped = await servers.boot()
        await ctl.stub.ControllerPublishVolume(_publish(volume.volume_id, stopped))
        await servers.stop(stopped)
        await ctl.publish(volume.volume_id, "node-b")
        assert (await _stored(ctl, volume.volume_id)).attached_server_ids == (ctl.node("node-b"),)
        await servers.action(stopped, {"os-start": None})
        await servers.wait(stopped, "ACTIVE")
        await ctl.stub.ControllerUnpublishVolume(_unpublish(volume.volume_id, stopped))
        assert (await _stored(ctl, volume.volume_id)).attached_server_ids == (ctl.node("node-b"),)


async def test_unpublish_detaches_from_a_stopped_server(emulator: EmulatorProcess, ctl: Harness) -> None:
    volume = await ctl.create_volume()
    async with servers_of(emulator, ctl) as servers:
        stopped = await servers.boot()
        await ctl.stub.ControllerPublishVolume(_publish(volume.volume_id, stopped))
        await servers.stop(stopped)
        await ctl.stub.ControllerUnpublishVolume(_unpublish(volume.volume_id, stopped))
        stored = await _stored(ctl, volume.volume_id)
        assert stored.raw_status == "available" and stored.attachments == ()


async def test_a_volume_is_never_taken_from_a_running_or_broken_server(
    emulator: EmulatorProcess, ctl: Harness
) -> None:
    volume = await ctl.create_volume()
    async with servers_of(emulator, ctl) as servers:
        owner = await servers.boot()
        await ctl.stub.ControllerPublishVolume(_publish(volume.volume_id, owner))
        await expect_code(
            ctl.publish(volume.volume_id, "node-a"), grpc.StatusCode.FAILED_PRECONDITION, owner, "ACTIVE"
        )
        await servers.action(owner, {"os-resetState": {"state": "error"}}, who="admin")
        await expect_code(
            ctl.publish(volume.volume_id, "node-a"), grpc.StatusCode.FAILED_PRECONDITION, owner, "ERROR"
        )
        await expect_code(
            ctl.stub.ControllerUnpublishVolume(_unpublish(volume.volume_id, owner)),
            grpc.StatusCode.FAILED_PRECONDITION,
            volume.volume_id,
            owner,
            "ERROR",
            "delete it",
        )
        assert (await _stored(ctl, volume.volume_id)).attached_server_ids == (owner,)
        await servers.action(owner, {"os-resetState": {"state": "active"}}, who="admin")
        await ctl.stub.ControllerUnpublishVolume(_unpublish(volume.volume_id, owner))
        assert (await _stored(ctl, volume.volume_id)).attachments == ()


async def test_delete_volume_removes_attachments_to_deleted_servers_then_deletes(
    emulator: EmulatorProcess, ctl: Harness
) -> None:
    volume = await ctl.create_volume()
    async with servers_of(emulator, ctl) as servers:
        await _leave_attached_to_a_deleted_server(ctl, servers, volume.volume_id)
        await ctl.stub.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=volume.volume_id))
    listed = (await ctl.cloud.storage.list_volumes()).items
    assert volume.volume_id not in {v.id for v in listed}


async def test_a_volume_attached_to_a_live_server_is_not_deleted(ctl: Harness) -> None:
    volume = await ctl.create_volume()
    await ctl.publish(volume.volume_id, "node-b")
    await expect_code(
        ctl.stub.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=volume.volume_id)),
        grpc.StatusCode.FAILED_PRECONDITION,
        ctl.node("node-b"),
    )


async def test_a_detach_stuck_in_detaching_is_reported_with_what_to_do(
    emulator: EmulatorProcess, short_tmp: Path
) -> None:
    timeouts = dataclasses.replace(TEST_TIMEOUTS, detach_seconds=1.0)
    async with running_controller(emulator, short_tmp, timeouts=timeouts) as ctl:
        volume = await ctl.create_volume()
        await ctl.publish(volume.volume_id, "node-a")
        request = _unpublish(volume.volume_id, ctl.node("node-a"))
        emulator.set_faults([{"method": "DELETE", "path": "/os-volume_attachments/", "outcome": "stuck"}])
        try:
            started = time.monotonic()
            message = await expect_code(
                ctl.stub.ControllerUnpublishVolume(request),
                grpc.StatusCode.FAILED_PRECONDITION,
                volume.volume_id,
                ctl.node("node-a"),
                "detaching",
                "--detached",
            )
            assert 1.0 <= time.monotonic() - started < 5, message
            # The sidecar's retry finds the same detach still under way and says so at once.
            started = time.monotonic()
            await expect_code(
                ctl.stub.ControllerUnpublishVolume(request), grpc.StatusCode.FAILED_PRECONDITION, "detaching"
            )
            assert time.monotonic() - started < 1.0
        finally:
            emulator.clear_faults()  # the hung detach goes on
        await ctl.stub.ControllerUnpublishVolume(request)
        assert (await _stored(ctl, volume.volume_id)).raw_status == "available"


async def test_the_boot_disk_does_not_count_against_the_attach_limit(
    emulator: EmulatorProcess, short_tmp: Path
) -> None:
    async with running_controller(emulator, short_tmp, max_volumes_per_node=2) as ctl:
        boot = await ctl.create_volume()
        volumes = [await ctl.create_volume() for _ in range(3)]
        async with servers_of(emulator, ctl) as servers:
            server_id = await servers.boot(boot.volume_id)
            for volume in volumes[:2]:
                await ctl.stub.ControllerPublishVolume(_publish(volume.volume_id, server_id))
            await expect_code(
                ctl.stub.ControllerPublishVolume(_publish(volumes[2].volume_id, server_id)),
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                "2 volumes attached besides its boot disk",
            )
            for volume in volumes[:2]:
                await ctl.stub.ControllerUnpublishVolume(_unpublish(volume.volume_id, server_id))
