"""ControllerExpandVolume (offline and online through 3.42) and ControllerModifyVolume (retype)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import grpc

from csi_xloud._proto import csi_pb2
from tests.controller.harness import GIB, Harness, block_cap, expect_code, gib_range, mount_cap, unique

MISSING_ID = "5b0c7b43-0000-4000-8000-0000000000bb"


def _expand(
    volume_id: str, gib: int, cap: csi_pb2.VolumeCapability | None = None
) -> csi_pb2.ControllerExpandVolumeRequest:
    request = csi_pb2.ControllerExpandVolumeRequest(volume_id=volume_id, capacity_range=gib_range(gib))
    if cap is not None:
        request.volume_capability.CopyFrom(cap)
    return request


def _modify(volume_id: str, **parameters: str) -> csi_pb2.ControllerModifyVolumeRequest:
    return csi_pb2.ControllerModifyVolumeRequest(volume_id=volume_id, mutable_parameters=parameters)


async def test_expand_offline_needs_node_expansion_for_filesystems(ctl: Harness) -> None:
    volume = await ctl.create_volume()
    response = await ctl.stub.ControllerExpandVolume(_expand(volume.volume_id, 2, mount_cap()))
    assert response.capacity_bytes == 2 * GIB and response.node_expansion_required
    assert (await ctl.cloud.storage.get_volume(volume.volume_id)).size_gib == 2


async def test_expand_online_while_attached_grows_the_disk_the_node_sees(ctl: Harness) -> None:
    volume = await ctl.create_volume()
    await ctl.publish(volume.volume_id, "node-a", block_cap())
    response = await ctl.stub.ControllerExpandVolume(_expand(volume.volume_id, 3, block_cap()))
    assert response.capacity_bytes == 3 * GIB
    assert not response.node_expansion_required  # a raw block volume needs nothing from the node
    stored = await ctl.cloud.storage.get_volume(volume.volume_id)
    assert (stored.size_gib, stored.raw_status) == (3, "in-use")
    link = Path(ctl.nodes["node-a"]["device_dir"]) / f"virtio-{volume.volume_id[:20]}"
    device = os.path.realpath(link)
    size = subprocess.run(["blockdev", "--getsize64", device], capture_output=True, text=True, check=True)
    assert int(size.stdout) == 3 * GIB


async def test_expand_to_a_size_already_reached_answers_the_current_size(ctl: Harness) -> None:
    volume = await ctl.create_volume(size_gib=2)
    response = await ctl.stub.ControllerExpandVolume(_expand(volume.volume_id, 1))
    assert response.capacity_bytes == 2 * GIB


async def test_expand_errors(ctl: Harness) -> None:
    await expect_code(ctl.stub.ControllerExpandVolume(_expand(MISSING_ID, 2)), grpc.StatusCode.NOT_FOUND)
    volume = await ctl.create_volume()
    no_range = csi_pb2.ControllerExpandVolumeRequest(volume_id=volume.volume_id)
    await expect_code(
        ctl.stub.ControllerExpandVolume(no_range), grpc.StatusCode.INVALID_ARGUMENT, "capacity_range"
    )
    bad_range = csi_pb2.ControllerExpandVolumeRequest(
        volume_id=volume.volume_id,
        capacity_range=csi_pb2.CapacityRange(required_bytes=GIB + 1, limit_bytes=GIB + 2),
    )
    await expect_code(ctl.stub.ControllerExpandVolume(bad_range), grpc.StatusCode.OUT_OF_RANGE)
    await ctl.admin.set_quota(gigabytes=2)
    try:
        await expect_code(
            ctl.stub.ControllerExpandVolume(_expand(volume.volume_id, 50)), grpc.StatusCode.RESOURCE_EXHAUSTED
        )
    finally:
        await ctl.admin.set_quota(gigabytes=1000)


async def test_modify_retypes_with_on_demand_migration(ctl: Harness) -> None:
    volume = await ctl.create_volume()
    await ctl.stub.ControllerModifyVolume(
        _modify(volume.volume_id, type="archive", **{"migration-policy": "on-demand"})
    )
    stored = await ctl.cloud.storage.get_volume(volume.volume_id)
    assert (stored.volume_type, stored.raw_status) == ("archive", "available")
    # on-demand let the cloud move the data to the archive type's backend
    (data_file,) = ctl.emulator.data_dir.rglob(f"{volume.volume_id}.img")
    assert "hdd" in data_file.parts
    await ctl.stub.ControllerModifyVolume(_modify(volume.volume_id, type="archive"))


async def test_modify_without_permission_to_migrate_is_refused_and_changes_nothing(ctl: Harness) -> None:
    volume = await ctl.create_volume()
    await expect_code(
        ctl.stub.ControllerModifyVolume(
            _modify(volume.volume_id, type="archive", **{"migration-policy": "never"})
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "migration-policy is never",
    )
    assert (await ctl.cloud.storage.get_volume(volume.volume_id)).volume_type == "standard"


async def test_modify_in_place_to_a_type_on_the_same_backend_needs_no_migration(ctl: Harness) -> None:
    volume = await ctl.create_volume()
    await ctl.stub.ControllerModifyVolume(
        _modify(volume.volume_id, type="shared", **{"migration-policy": "never"})
    )
    assert (await ctl.cloud.storage.get_volume(volume.volume_id)).volume_type == "shared"


async def test_create_honours_mutable_parameters_and_the_current_type_again_is_a_no_op(ctl: Harness) -> None:
    request = csi_pb2.CreateVolumeRequest(
        name=unique("pvc"),
        capacity_range=gib_range(1),
        volume_capabilities=[mount_cap()],
        mutable_parameters={"type": "archive"},
    )
    volume = (await ctl.stub.CreateVolume(request)).volume
    assert (await ctl.cloud.storage.get_volume(volume.volume_id)).volume_type == "archive"
    await ctl.stub.ControllerModifyVolume(
        _modify(volume.volume_id, type="archive", **{"migration-policy": "never"})
    )
    assert (await ctl.cloud.storage.get_volume(volume.volume_id)).raw_status == "available"


async def test_modify_errors(ctl: Harness) -> None:
    volume = await ctl.create_volume()
    await expect_code(
        ctl.stub.ControllerModifyVolume(_modify(volume.volume_id, iops="100")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "'iops'",
    )
    await expect_code(
        ctl.stub.ControllerModifyVolume(_modify(volume.volume_id, type="gold")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "mutable_parameters[type]",
    )
    await expect_code(
        ctl.stub.ControllerModifyVolume(_modify(MISSING_ID, type="archive")), grpc.StatusCode.NOT_FOUND
    )
    assert (await ctl.cloud.storage.get_volume(volume.volume_id)).volume_type == "standard"
