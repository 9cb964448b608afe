"""CreateVolume and DeleteVolume against the emulator, through the socket."""

from __future__ import annotations

import asyncio
import shutil

import grpc
import pytest

from csi_xloud import TOPOLOGY_KEY
from csi_xloud._proto import csi_pb2
from csi_xloud.cloud import errors as cloud
from tests.controller.harness import (
    GIB,
    AccessMode,
    Harness,
    block_cap,
    expect_code,
    gib_range,
    mount_cap,
    unique,
    zone_requirement,
)


def _request(name: str, size_gib: int = 1, **fields: object) -> csi_pb2.CreateVolumeRequest:
    fields.setdefault("volume_capabilities", [mount_cap()])
    return csi_pb2.CreateVolumeRequest(name=name, capacity_range=gib_range(size_gib), **fields)  # type: ignore[arg-type]


async def test_create_and_delete_volume(ctl: Harness) -> None:
    volume = await ctl.create_volume(size_gib=1)
    assert volume.capacity_bytes == GIB
    assert [dict(t.segments) for t in volume.accessible_topology] == [{TOPOLOGY_KEY: "nova"}]
    stored = await ctl.cloud.storage.get_volume(volume.volume_id)
    assert stored.raw_status == "available"
    assert stored.volume_type == "standard"
    await ctl.stub.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=volume.volume_id))
    with pytest.raises(cloud.NotFound):
        await ctl.cloud.storage.get_volume(volume.volume_id)


async def test_create_is_idempotent_by_name_and_refuses_incompatible_repeats(ctl: Harness) -> None:
    name = unique("pvc")
    first = (await ctl.stub.CreateVolume(_request(name))).volume
    again = (await ctl.stub.CreateVolume(_request(name))).volume
    assert again == first
    await expect_code(
        ctl.stub.CreateVolume(_request(name, size_gib=3)), grpc.StatusCode.ALREADY_EXISTS, "size"
    )
    other_type = _request(name, parameters={"type": "archive"})
    await expect_code(ctl.stub.CreateVolume(other_type), grpc.StatusCode.ALREADY_EXISTS, "type")
    assert len(await ctl.cloud.storage.find_volume_by_name(name)) == 1


async def test_fifty_identical_concurrent_creates_make_one_volume(ctl: Harness) -> None:
    name = unique("pvc")
    aborted = 0

    async def create_once() -> csi_pb2.Volume:
        nonlocal aborted
        try:
            return (await ctl.stub.CreateVolume(_request(name))).volume
        except grpc.aio.AioRpcError as exc:
            aborted += exc.code() == grpc.StatusCode.ABORTED
            raise

    creates_before = _volume_creates(ctl)
    volumes = await asyncio.gather(*(ctl.retry(create_once) for _ in range(50)))
    assert _volume_creates(ctl) == creates_before + 1
    assert len({v.volume_id for v in volumes}) == 1
    assert aborted > 0  # the in-flight guard turned duplicates away while the first call worked
    found = await ctl.cloud.storage.find_volume_by_name(name)
    assert [v.id for v in found] == [volumes[0].volume_id]


def _volume_creates(ctl: Harness) -> int:
    """POST .../volumes requests the emulator has served."""
    stats = ctl.emulator.stats()["requests"]
    return sum(n for key, n in stats.items() if key.startswith("POST ") and key.endswith("/volumes"))


async def test_sizes_round_up_to_whole_gib_and_a_low_limit_is_out_of_range(ctl: Harness) -> None:
    request = csi_pb2.CreateVolumeRequest(
        name=unique("pvc"),
        volume_capabilities=[mount_cap()],
        capacity_range=csi_pb2.CapacityRange(required_bytes=GIB + 1),
    )
    assert (await ctl.stub.CreateVolume(request)).volume.capacity_bytes == 2 * GIB
    no_size = csi_pb2.CreateVolumeRequest(name=unique("pvc"), volume_capabilities=[mount_cap()])
    assert (await ctl.stub.CreateVolume(no_size)).volume.capacity_bytes == GIB
    tight = csi_pb2.CreateVolumeRequest(
        name=unique("pvc"),
        volume_capabilities=[mount_cap()],
        capacity_range=csi_pb2.CapacityRange(required_bytes=GIB + 1, limit_bytes=GIB + GIB // 2),
    )
    await expect_code(ctl.stub.CreateVolume(tight), grpc.StatusCode.OUT_OF_RANGE, "limit_bytes")


async def test_unknown_parameter_or_volume_type_is_invalid(ctl: Harness) -> None:
    unknown_key = _request(unique("pvc"), parameters={"iops": "100"})
    await expect_code(ctl.stub.CreateVolume(unknown_key), grpc.StatusCode.INVALID_ARGUMENT, "'iops'")
    unknown_type = _request(unique("pvc"), parameters={"type": "gold"})
    await expect_code(
        ctl.stub.CreateVolume(unknown_type), grpc.StatusCode.INVALID_ARGUMENT, "parameters[type]", "gold"
    )
    unknown_zone = _request(unique("pvc"), parameters={"availability": "mars"})
    await expect_code(ctl.stub.CreateVolume(unknown_zone), grpc.StatusCode.INVALID_ARGUMENT, "mars")
    assert (await ctl.cloud.storage.list_volumes()).items == ()


async def test_multi_node_modes_need_block_volumes_of_a_multiattach_type(ctl: Harness) -> None:
    shared_mount = _request(
        unique("pvc"),
        parameters={"type": "shared"},
        volume_capabilities=[mount_cap(AccessMode.MULTI_NODE_MULTI_WRITER)],
    )
    await expect_code(
        ctl.stub.CreateVolume(shared_mount), grpc.StatusCode.INVALID_ARGUMENT, "block volumes only"
    )
    plain_block = _request(unique("pvc"), volume_capabilities=[block_cap(AccessMode.MULTI_NODE_MULTI_WRITER)])
    await expect_code(ctl.stub.CreateVolume(plain_block), grpc.StatusCode.INVALID_ARGUMENT, "multiattach")
    shared_block = _request(
        unique("pvc"),
        parameters={"type": "shared"},
        volume_capabilities=[block_cap(AccessMode.MULTI_NODE_MULTI_WRITER)],
    )
    volume = (await ctl.stub.CreateVolume(shared_block)).volume
    assert (await ctl.cloud.storage.get_volume(volume.volume_id)).multiattach


async def test_topology_picks_the_zone_and_reports_the_real_one(ctl: Harness) -> None:
    preferred = _request(
        unique("pvc"), accessibility_requirements=zone_requirement("zone-b", requisite=("nova", "zone-b"))
    )
    volume = (await ctl.stub.CreateVolume(preferred)).volume
    assert [dict(t.segments) for t in volume.accessible_topology] == [{TOPOLOGY_KEY: "zone-b"}]
    assert (await ctl.cloud.storage.get_volume(volume.volume_id)).availability_zone == "zone-b"
    by_parameter = (
        await ctl.stub.CreateVolume(_request(unique("pvc"), parameters={"availability": "zone-b"}))
    ).volume
    assert by_parameter.accessible_topology[0].segments[TOPOLOGY_KEY] == "zone-b"


async def test_kubernetes_names_are_stored_as_volume_metadata(ctl: Harness) -> None:
    parameters = {
        "csi.storage.k8s.io/pvc/name": "data",
        "csi.storage.k8s.io/pvc/namespace": "shop",
        "csi.storage.k8s.io/pv/name": "pvc-1234",
    }
    volume = (await ctl.stub.CreateVolume(_request(unique("pvc"), parameters=parameters))).volume
    metadata = (await ctl.cloud.storage.get_volume(volume.volume_id)).metadata
    assert {k: metadata[k] for k in parameters} == parameters


async def test_clone_is_at_least_its_source_and_reports_it(ctl: Harness) -> None:
    source = await ctl.create_volume(size_gib=2)
    clone_source = csi_pb2.VolumeContentSource(
        volume=csi_pb2.VolumeContentSource.VolumeSource(volume_id=source.volume_id)
    )
    clone = (await ctl.stub.CreateVolume(_request(unique("pvc"), volume_content_source=clone_source))).volume
    assert clone.capacity_bytes == 2 * GIB
    assert clone.content_source == clone_source
    assert (await ctl.cloud.storage.get_volume(clone.volume_id)).source_volume_id == source.volume_id
    too_small = _request(unique("pvc"), volume_content_source=clone_source)
    too_small.capacity_range.limit_bytes = GIB
    await expect_code(ctl.stub.CreateVolume(too_small), grpc.StatusCode.OUT_OF_RANGE)


async def test_a_missing_source_is_not_found(ctl: Harness) -> None:
    missing_volume = csi_pb2.VolumeContentSource(
        volume=csi_pb2.VolumeContentSource.VolumeSource(volume_id="5b0c7b43-0000-4000-8000-000000000000")
    )
    await expect_code(
        ctl.stub.CreateVolume(_request(unique("pvc"), volume_content_source=missing_volume)),
        grpc.StatusCode.NOT_FOUND,
        "volume_content_source",
    )
    for snapshot_id in (
        "5b0c7b43-0000-4000-8000-000000000001",
        "backup:5b0c7b43-0000-4000-8000-000000000002",
    ):
        missing = csi_pb2.VolumeContentSource(
            snapshot=csi_pb2.VolumeContentSource.SnapshotSource(snapshot_id=snapshot_id)
        )
        await expect_code(
            ctl.stub.CreateVolume(_request(unique("pvc"), volume_content_source=missing)),
            grpc.StatusCode.NOT_FOUND,
        )


async def test_restore_from_snapshot_and_from_backup(ctl: Harness) -> None:
    source = await ctl.create_volume(size_gib=2)
    for parameters in ({}, {"type": "backup"}):
        snapshot = await ctl.ready_snapshot(source.volume_id, **parameters)
        content = csi_pb2.VolumeContentSource(
            snapshot=csi_pb2.VolumeContentSource.SnapshotSource(snapshot_id=snapshot.snapshot_id)
        )
        restored = (
            await ctl.stub.CreateVolume(_request(unique("pvc"), volume_content_source=content))
        ).volume
        assert restored.capacity_bytes == 2 * GIB
        assert restored.content_source == content
        assert (await ctl.cloud.storage.get_volume(restored.volume_id)).raw_status == "available"


async def test_over_quota_is_resource_exhausted(ctl: Harness) -> None:
    await ctl.admin.set_quota(gigabytes=3)
    try:
        await expect_code(
            ctl.stub.CreateVolume(_request(unique("pvc"), size_gib=5)), grpc.StatusCode.RESOURCE_EXHAUSTED
        )
    finally:
        await ctl.admin.set_quota(gigabytes=1000)


async def test_a_volume_that_ends_in_error_is_deleted_before_the_error_is_returned(ctl: Harness) -> None:
    source = await ctl.create_volume()
    snapshot = await ctl.ready_snapshot(source.volume_id)
    # The backend loses the snapshot's data: a volume made from it fails while being created.
    (data_file,) = ctl.emulator.data_dir.rglob(f"{snapshot.snapshot_id}.img")
    data_file.unlink()
    name = unique("pvc")
    content = csi_pb2.VolumeContentSource(
        snapshot=csi_pb2.VolumeContentSource.SnapshotSource(snapshot_id=snapshot.snapshot_id)
    )
    await expect_code(
        ctl.stub.CreateVolume(_request(name, volume_content_source=content)),
        grpc.StatusCode.INTERNAL,
        "status error",
        "deleted",
    )
    left = await ctl.cloud.storage.find_volume_by_name(name)
    assert all(v.raw_status in ("deleting",) for v in left)
    for volume in left:
        await ctl.cloud.storage.wait_for_volume_deleted(volume.id, timeout_seconds=10)


async def test_a_blank_volume_whose_backend_fails_is_deleted_and_reported(ctl: Harness) -> None:
    name = unique("pvc")
    ctl.emulator.set_faults([{"method": "POST", "path": "/volumes$", "outcome": "error", "count": 1}])
    try:
        await expect_code(ctl.stub.CreateVolume(_request(name)), grpc.StatusCode.INTERNAL, "status error", "deleted")
    finally:
        ctl.emulator.clear_faults()
    for volume in await ctl.cloud.storage.find_volume_by_name(name):
        await ctl.cloud.storage.wait_for_volume_deleted(volume.id, timeout_seconds=10)
    retried = await ctl.stub.CreateVolume(_request(name))  # the CO's retry gets a healthy volume
    assert (await ctl.cloud.storage.get_volume(retried.volume.volume_id)).raw_status == "available"
    await ctl.stub.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=retried.volume.volume_id))


async def test_a_type_no_backend_serves_fails_with_the_clouds_message_and_leaves_no_volume(
    ctl: Harness,
) -> None:
    type_name, name = unique("no-backend"), unique("pvc")
    type_id = await ctl.admin.create_type(type_name, {"volume_backend_name": "no-such-backend"})
    try:
        await expect_code(
            ctl.stub.CreateVolume(_request(name, parameters={"type": type_name})),
            grpc.StatusCode.INTERNAL,
            "went to status error: schedule allocate volume:Could not find any available weighted backend.",
            "deleted",
        )
        assert await ctl.cloud.storage.find_volume_by_name(name) == []
    finally:
        await ctl.admin.delete_type(type_id)


async def test_delete_of_a_missing_volume_is_ok(ctl: Harness) -> None:
    for volume_id in ("5b0c7b43-0000-4000-8000-000000000003", "not/a/volume"):
        await ctl.stub.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=volume_id))


async def test_delete_refuses_attached_volumes_and_volumes_with_snapshots(ctl: Harness) -> None:
    volume = await ctl.create_volume()
    await ctl.publish(volume.volume_id, "node-a")
    await expect_code(
        ctl.stub.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=volume.volume_id)),
        grpc.StatusCode.FAILED_PRECONDITION,
        "attached",
        ctl.node("node-a"),
    )
    other = await ctl.create_volume()
    snapshot = await ctl.ready_snapshot(other.volume_id)
    await expect_code(
        ctl.stub.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=other.volume_id)),
        grpc.StatusCode.FAILED_PRECONDITION,
        "snapshots",
        snapshot.snapshot_id,
    )
    assert (await ctl.cloud.storage.get_volume(other.volume_id)).raw_status == "available"


async def test_a_failed_deletion_is_internal_with_the_reason(ctl: Harness) -> None:
    volume = await ctl.create_volume()
    (data_file,) = ctl.emulator.data_dir.rglob(f"{volume.volume_id}.img")
    # The backend cannot remove the volume's data: the deletion ends in error_deleting.
    data_file.unlink()
    data_file.mkdir()
    (data_file / "busy").write_text("x")
    try:
        request = csi_pb2.DeleteVolumeRequest(volume_id=volume.volume_id)
        await expect_code(ctl.stub.DeleteVolume(request), grpc.StatusCode.INTERNAL, "error_deleting")
        await expect_code(ctl.stub.DeleteVolume(request), grpc.StatusCode.INTERNAL, "error_deleting")
    finally:
        shutil.rmtree(data_file)
        data_file.touch()
        await ctl.admin.reset_status(volume.volume_id, "available")
