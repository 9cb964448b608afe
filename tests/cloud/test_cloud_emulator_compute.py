"""Compute calls against the emulator: servers and volume attachments (real loop devices, so root)."""

from __future__ import annotations

import os
import uuid

import pytest

from csi_xloud.cloud.client import CloudClient
from csi_xloud.cloud.errors import Conflict, NotFound
from csi_xloud.cloud.models import VolumeStatus
from csi_xloud.emulator.process import EmulatorProcess

pytestmark = pytest.mark.root

WAIT = 20.0


@pytest.fixture(autouse=True)
def needs_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("attachments make loop devices: run as root")


async def available_volume(client: CloudClient, size_gib: int = 1) -> str:
    volume = await client.storage.create_volume(f"att-{uuid.uuid4().hex[:8]}", size_gib)
    await client.storage.wait_for_volume(volume.id, VolumeStatus.AVAILABLE, timeout_seconds=WAIT)
    return volume.id


async def test_get_server(emulator: EmulatorProcess, client: CloudClient) -> None:
    node = emulator.servers[0]
    server = await client.compute.get_server(node["id"])
    assert (server.id, server.name, server.availability_zone) == (
        node["id"],
        node["name"],
        node["availability_zone"],
    )
    assert server.status == "ACTIVE"
    with pytest.raises(NotFound):
        await client.compute.get_server(str(uuid.uuid4()))


async def test_list_server_ids_follows_every_page(emulator: EmulatorProcess, client: CloudClient) -> None:
    every = {str(node["id"]) for node in emulator.servers}
    assert len(every) == 2
    assert await client.compute.list_server_ids() == every
    assert await client.compute.list_server_ids(page_size=1) == every


async def test_attach_extend_online_detach(emulator: EmulatorProcess, client: CloudClient) -> None:
    node, other = emulator.servers[0], emulator.servers[1]
    volume_id = await available_volume(client)
    attachment = await client.compute.attach_volume(node["id"], volume_id)
    assert (attachment.server_id, attachment.volume_id) == (node["id"], volume_id)

    volume = await client.storage.wait_for_volume(volume_id, VolumeStatus.IN_USE, timeout_seconds=WAIT)
    assert volume.attached_server_ids == (node["id"],)
    assert os.path.islink(os.path.join(node["device_dir"], f"virtio-{volume_id[:20]}"))
    listed = await client.compute.list_attachments(node["id"])
    assert volume_id in [a.volume_id for a in listed]
    shown = await client.compute.get_attachment(node["id"], volume_id)
    assert shown.volume_id == volume_id and shown.device

    with pytest.raises(Conflict, match="already attached"):
        await client.compute.attach_volume(other["id"], volume_id)
    with pytest.raises(NotFound):
        await client.compute.get_attachment(other["id"], volume_id)
    with pytest.raises(NotFound):
        await client.compute.detach_volume(other["id"], volume_id)

    await client.storage.extend_volume(volume_id, 2, online=True)
    grown = await client.storage.wait_for_volume(
        volume_id, VolumeStatus.IN_USE, timeout_seconds=WAIT, done=lambda v: v.size_gib == 2
    )
    assert grown.size_gib == 2

    await client.compute.detach_volume(node["id"], volume_id)
    detached = await client.storage.wait_for_volume(volume_id, VolumeStatus.AVAILABLE, timeout_seconds=WAIT)
    assert detached.attachments == ()
    assert not os.path.lexists(os.path.join(node["device_dir"], f"virtio-{volume_id[:20]}"))
    with pytest.raises(NotFound):
        await client.compute.detach_volume(node["id"], volume_id)


async def test_attach_errors(emulator: EmulatorProcess, client: CloudClient) -> None:
    node = emulator.servers[0]
    with pytest.raises(NotFound):
        await client.compute.attach_volume(node["id"], str(uuid.uuid4()))
    volume_id = await available_volume(client)
    with pytest.raises(NotFound):
        await client.compute.attach_volume(str(uuid.uuid4()), volume_id)
    with pytest.raises(NotFound):
        await client.compute.list_attachments(str(uuid.uuid4()))
