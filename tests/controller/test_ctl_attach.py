"""ControllerPublishVolume / ControllerUnpublishVolume on the emulator's Compute API and loop devices."""

from __future__ import annotations

import os
from pathlib import Path

import grpc

from csi_xloud._proto import csi_pb2
from csi_xloud.emulator.process import EmulatorProcess
from tests.controller.harness import (
    AccessMode,
    Harness,
    block_cap,
    expect_code,
    gib_range,
    mount_cap,
    running_controller,
    unique,
)

MISSING_ID = "5b0c7b43-0000-4000-8000-0000000000aa"


def _disk(ctl: Harness, node: str, volume_id: str) -> Path:
    """The by-id link the emulator makes on a node for an attached volume (virtio serials keep 20 chars)."""
    return Path(ctl.nodes[node]["device_dir"]) / f"virtio-{volume_id[:20]}"


def _unpublish(volume_id: str, node_id: str = "") -> csi_pb2.ControllerUnpublishVolumeRequest:
    return csi_pb2.ControllerUnpublishVolumeRequest(volume_id=volume_id, node_id=node_id)


async def test_publish_attaches_waits_and_answers_the_same_again(ctl: Harness) -> None:
    volume = await ctl.create_volume()
    context = await ctl.publish(volume.volume_id, "node-a")
    assert context["size_gib"] == "1"
    assert context["device_path"].startswith("/dev/")
    stored = await ctl.cloud.storage.get_volume(volume.volume_id)
    assert stored.raw_status == "in-use"
    assert stored.attached_server_ids == (ctl.node("node-a"),)
    disk = _disk(ctl, "node-a", volume.volume_id)
    assert disk.is_symlink() and os.path.realpath(disk).startswith("/dev/loop")
    assert await ctl.publish(volume.volume_id, "node-a") == context


def _requests(ctl: Harness) -> dict[str, int]:
    return dict(ctl.emulator.stats()["requests"])


def _made(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: n - before.get(k, 0) for k, n in after.items() if n != before.get(k, 0)}


async def test_publish_reads_the_device_from_the_volume_and_a_repeat_costs_one_request(ctl: Harness) -> None:
    volume = await ctl.create_volume()
    before = _requests(ctl)
    context = await ctl.publish(volume.volume_id, "node-a")
    made = _made(before, _requests(ctl))
    attach = [k for k in made if k.startswith("POST ") and k.endswith("/os-volume_attachments")]
    assert len(attach) == 1 and made[attach[0]] == 1, made
    # The server's view lists its volumes and the in-use volume's attachment entry names the device:
    # neither the server's attachments nor the attachment itself are looked up.
    assert not [k for k in made if k.startswith("GET ") and "/os-volume_attachments" in k], made
    stored = await ctl.cloud.storage.get_volume(volume.volume_id)
    assert context["device_path"] == stored.attachments[0].device

    before = _requests(ctl)
    assert await ctl.publish(volume.volume_id, "node-a") == context
    made = _made(before, _requests(ctl))
    assert made == {"GET /volume/v3/{id}/volumes/{id}": 1}, made


async def test_publish_to_a_second_node_of_a_single_node_volume_fails_naming_the_first(ctl: Harness) -> None:
    volume = await ctl.create_volume()
    await ctl.publish(volume.volume_id, "node-a")
    await expect_code(
        ctl.publish(volume.volume_id, "node-b"), grpc.StatusCode.FAILED_PRECONDITION, ctl.node("node-a")
    )


async def test_publish_of_unknown_volume_or_node_is_not_found(ctl: Harness) -> None:
    volume = await ctl.create_volume()
    unknown_volume = csi_pb2.ControllerPublishVolumeRequest(
        volume_id=MISSING_ID, node_id=ctl.node("node-a"), volume_capability=mount_cap()
    )
    await expect_code(
        ctl.stub.ControllerPublishVolume(unknown_volume), grpc.StatusCode.NOT_FOUND, "volume_id"
    )
    unknown_node = csi_pb2.ControllerPublishVolumeRequest(
        volume_id=volume.volume_id, node_id=MISSING_ID, volume_capability=mount_cap()
    )
    await expect_code(ctl.stub.ControllerPublishVolume(unknown_node), grpc.StatusCode.NOT_FOUND, "node_id")


async def test_publish_across_zones_is_refused_clearly(ctl: Harness) -> None:
    volume = await ctl.create_volume()  # zone nova; node-c is in zone-b
    await expect_code(
        ctl.publish(volume.volume_id, "node-c"),
        grpc.StatusCode.FAILED_PRECONDITION,
        "zone nova",
        "zone zone-b",
    )


async def test_readonly_publish_is_refused_because_it_is_not_advertised(ctl: Harness) -> None:
    volume = await ctl.create_volume()
    request = csi_pb2.ControllerPublishVolumeRequest(
        volume_id=volume.volume_id, node_id=ctl.node("node-a"), volume_capability=mount_cap(), readonly=True
    )
    await expect_code(ctl.stub.ControllerPublishVolume(request), grpc.StatusCode.INVALID_ARGUMENT, "readonly")
    assert (await ctl.cloud.storage.get_volume(volume.volume_id)).attachments == ()


async def test_multiattach_block_volume_publishes_to_two_nodes(ctl: Harness) -> None:
    cap = block_cap(AccessMode.MULTI_NODE_MULTI_WRITER)
    request = csi_pb2.CreateVolumeRequest(
        name=unique("pvc"),
        capacity_range=gib_range(1),
        volume_capabilities=[cap],
        parameters={"type": "shared"},
    )
    volume = (await ctl.stub.CreateVolume(request)).volume
    await ctl.publish(volume.volume_id, "node-a", cap)
    await ctl.publish(volume.volume_id, "node-b", cap)
    stored = await ctl.cloud.storage.get_volume(volume.volume_id)
    assert set(stored.attached_server_ids) == {ctl.node("node-a"), ctl.node("node-b")}
    await ctl.stub.ControllerUnpublishVolume(_unpublish(volume.volume_id, ctl.node("node-a")))
    stored = await ctl.cloud.storage.get_volume(volume.volume_id)
    assert stored.attached_server_ids == (ctl.node("node-b"),)
    assert stored.raw_status == "in-use"


async def test_single_writer_mode_on_a_multiattach_volume_stays_on_one_node(ctl: Harness) -> None:
    request = csi_pb2.CreateVolumeRequest(
        name=unique("pvc"),
        capacity_range=gib_range(1),
        volume_capabilities=[mount_cap()],
        parameters={"type": "shared"},
    )
    volume = (await ctl.stub.CreateVolume(request)).volume
    await ctl.publish(volume.volume_id, "node-a")
    await expect_code(
        ctl.publish(volume.volume_id, "node-b"), grpc.StatusCode.FAILED_PRECONDITION, "single-node"
    )


async def test_unpublish_detaches_waits_and_is_ok_again(ctl: Harness) -> None:
    volume = await ctl.create_volume()
    await ctl.publish(volume.volume_id, "node-a")
    request = _unpublish(volume.volume_id, ctl.node("node-a"))
    await ctl.stub.ControllerUnpublishVolume(request)
    stored = await ctl.cloud.storage.get_volume(volume.volume_id)
    assert stored.raw_status == "available" and stored.attachments == ()
    assert not _disk(ctl, "node-a", volume.volume_id).exists()
    await ctl.stub.ControllerUnpublishVolume(request)


async def test_unpublish_without_node_detaches_from_every_node(ctl: Harness) -> None:
    volume = await ctl.create_volume()
    await ctl.publish(volume.volume_id, "node-b")
    await ctl.stub.ControllerUnpublishVolume(_unpublish(volume.volume_id))
    assert (await ctl.cloud.storage.get_volume(volume.volume_id)).raw_status == "available"


async def test_unpublish_of_missing_volume_node_or_attachment_is_ok(ctl: Harness) -> None:
    volume = await ctl.create_volume()
    await ctl.stub.ControllerUnpublishVolume(_unpublish(MISSING_ID, ctl.node("node-a")))
    await ctl.stub.ControllerUnpublishVolume(_unpublish(volume.volume_id, MISSING_ID))
    await ctl.stub.ControllerUnpublishVolume(_unpublish(volume.volume_id, ctl.node("node-b")))
    assert (await ctl.cloud.storage.get_volume(volume.volume_id)).raw_status == "available"


async def test_a_full_node_is_resource_exhausted(emulator: EmulatorProcess, short_tmp: Path) -> None:
    async with running_controller(emulator, short_tmp, max_volumes_per_node=1) as ctl:
        first, second = await ctl.create_volume(), await ctl.create_volume()
        await ctl.publish(first.volume_id, "node-a")
        await expect_code(ctl.publish(second.volume_id, "node-a"), grpc.StatusCode.RESOURCE_EXHAUSTED, "node")
        assert await ctl.publish(first.volume_id, "node-a")  # what is attached stays publishable
        await ctl.publish(second.volume_id, "node-b")
