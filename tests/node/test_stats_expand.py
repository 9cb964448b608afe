"""NodeGetVolumeStats (numbers, volume condition) and NodeExpandVolume (online grow) on loop devices."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

import grpc
import pytest
from nodekit import (
    MIB,
    Loop,
    Node,
    block_capability,
    mount_capability,
    new_volume_id,
    publish_request,
    rpc_error,
    sh,
    stage_request,
)
from test_publish import broken_fuse_mount

from csi_xloud._proto import csi_pb2
from csi_xloud.osutil.filesystem import can_grow_mounted_ext4
from csi_xloud.osutil.mounts import parse_mountinfo

Usage = csi_pb2.VolumeUsage
XFS_MIB = 320


async def published(
    node: Node, fs_type: str = "ext4", size_mib: int = 64, readonly: bool = False
) -> tuple[str, Loop, Path, Path]:
    volume_id = new_volume_id()
    disk = node.host.disk(size_mib, volume_id)
    staging = node.host.staging(volume_id)
    target = node.host.target(volume_id)
    capability = mount_capability(fs_type)
    await node.stub.NodeStageVolume(stage_request(volume_id, staging, capability))
    await node.stub.NodePublishVolume(
        publish_request(volume_id, staging, target, capability, readonly=readonly)
    )
    return volume_id, disk, staging, target


async def stats(node: Node, volume_id: str, path: Path) -> csi_pb2.NodeGetVolumeStatsResponse:
    return await node.stub.NodeGetVolumeStats(
        csi_pb2.NodeGetVolumeStatsRequest(volume_id=volume_id, volume_path=str(path))
    )


def usage(response: csi_pb2.NodeGetVolumeStatsResponse, unit: int) -> csi_pb2.VolumeUsage:
    return next(u for u in response.usage if u.unit == unit)


async def test_stats_report_bytes_and_inodes_that_follow_writes(node: Node) -> None:
    volume_id, _, _, target = await published(node)
    before = await stats(node, volume_id, target)
    (target / "blob").write_bytes(os.urandom(8 * MIB))
    for n in range(20):
        (target / f"small-{n}").write_bytes(b"x")
    os.sync()
    after = await stats(node, volume_id, target)

    vfs = os.statvfs(target)
    size = usage(after, Usage.BYTES)
    inodes = usage(after, Usage.INODES)
    assert size.total == vfs.f_blocks * vfs.f_frsize
    assert 50 * MIB < size.total <= 64 * MIB
    assert size.used - usage(before, Usage.BYTES).used >= 8 * MIB
    assert size.available <= size.total - size.used
    assert inodes.total == vfs.f_files
    assert inodes.used - usage(before, Usage.INODES).used == 21
    assert not after.volume_condition.abnormal


async def test_stats_of_a_read_only_publish_are_normal(node: Node) -> None:
    volume_id, _, _, target = await published(node, readonly=True)
    response = await stats(node, volume_id, target)
    assert not response.volume_condition.abnormal
    assert usage(response, Usage.BYTES).total > 0


async def test_stats_of_a_block_volume_give_its_size(node: Node) -> None:
    volume_id = new_volume_id()
    disk = node.host.disk(96, volume_id)
    staging = node.host.staging(volume_id, block=True)
    target = node.host.target(volume_id, block=True)
    await node.stub.NodeStageVolume(stage_request(volume_id, staging, block_capability()))
    await node.stub.NodePublishVolume(publish_request(volume_id, staging, target, block_capability()))

    response = await stats(node, volume_id, target)

    assert [(u.unit, u.total) for u in response.usage] == [(Usage.BYTES, disk.size_bytes)]
    assert disk.size_bytes == 96 * MIB
    assert not response.volume_condition.abnormal


async def test_a_filesystem_turned_read_only_is_abnormal(node: Node) -> None:
    volume_id, _, staging, target = await published(node)
    sh("mount", "-o", "remount,ro", str(staging))  # what errors=remount-ro does after an I/O error

    for path in (target, staging):
        response = await stats(node, volume_id, path)
        assert response.volume_condition.abnormal
        assert "read-only" in response.volume_condition.message


async def test_a_missing_mount_is_abnormal_and_a_missing_path_not_found(node: Node) -> None:
    volume_id, _, _, target = await published(node)
    sh("umount", str(target))

    unmounted = await stats(node, volume_id, target)
    target.rmdir()
    missing = await rpc_error(stats(node, volume_id, target))

    assert unmounted.volume_condition.abnormal
    assert "not mounted" in unmounted.volume_condition.message
    assert missing.code() == grpc.StatusCode.NOT_FOUND


async def test_a_vanished_device_is_abnormal_and_still_unstages(node: Node) -> None:
    volume_id = new_volume_id()
    disk = node.host.disk(64)
    # A device node of our own, so that it can vanish as a hot-unplugged disk's node does.
    node_path = node.host.root / "vanishing-disk"
    os.mknod(node_path, 0o600 | 0o060000, disk.rdev)
    node.host.link(volume_id, node_path)
    staging = node.host.staging(volume_id)
    await node.stub.NodeStageVolume(stage_request(volume_id, staging))
    node_path.unlink()

    response = await stats(node, volume_id, staging)
    # Spec: NodeUnstageVolume succeeds when the device is already gone.
    await node.stub.NodeUnstageVolume(
        csi_pb2.NodeUnstageVolumeRequest(volume_id=volume_id, staging_target_path=str(staging))
    )

    assert response.volume_condition.abnormal
    assert "gone" in response.volume_condition.message
    assert not any(
        e.mount_point == staging for e in parse_mountinfo(Path("/proc/self/mountinfo").read_text())
    )


@pytest.mark.skipif(not os.path.exists("/dev/fuse"), reason="no /dev/fuse to make a broken mount with")
async def test_a_broken_mount_is_abnormal(node: Node) -> None:
    volume_id = new_volume_id()
    target = node.host.target(volume_id)
    broken_fuse_mount(target)

    response = await stats(node, volume_id, target)

    assert response.volume_condition.abnormal
    assert "broken mount" in response.volume_condition.message


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def expand_request(volume_id: str, target: Path, staging: Path, required: int, fs_type: str = "ext4"):  # type: ignore[no-untyped-def]
    return csi_pb2.NodeExpandVolumeRequest(
        volume_id=volume_id,
        volume_path=str(target),
        staging_target_path=str(staging),
        capacity_range=csi_pb2.CapacityRange(required_bytes=required),
        volume_capability=mount_capability(fs_type),
    )


@pytest.mark.parametrize(("fs_type", "small_mib", "big_mib"), [("ext4", 64, 160), ("xfs", XFS_MIB, 480)])
async def test_expand_online_grows_the_filesystem_and_keeps_data(
    node: Node, fs_type: str, small_mib: int, big_mib: int
) -> None:
    volume_id, disk, staging, target = await published(node, fs_type, small_mib)
    (target / "data").write_bytes(os.urandom(4 * MIB))
    kept = digest(target / "data")
    total_before = usage(await stats(node, volume_id, target), Usage.BYTES).total
    disk.grow(big_mib * MIB)
    request = expand_request(volume_id, target, staging, big_mib * MIB, fs_type)

    if fs_type == "ext4" and not can_grow_mounted_ext4():
        error = await rpc_error(node.stub.NodeExpandVolume(request))
        assert "CAP_SYS_RESOURCE" in error.details()
        assert digest(target / "data") == kept
        return
    response = await node.stub.NodeExpandVolume(request)
    again = await node.stub.NodeExpandVolume(request)

    total_after = usage(await stats(node, volume_id, target), Usage.BYTES).total
    assert response.capacity_bytes == again.capacity_bytes == big_mib * MIB
    assert total_after - total_before > 0.9 * (big_mib - small_mib) * MIB
    assert digest(target / "data") == kept
    assert (
        len(node.ran("resize2fs" if fs_type == "ext4" else "xfs_growfs")) == 1
    )  # the repeat had nothing to do


async def test_expand_waits_for_the_device_to_show_the_new_size(node: Node) -> None:
    volume_id, disk, staging, target = await published(node, "xfs", XFS_MIB)
    request = expand_request(volume_id, target, staging, 400 * MIB, "xfs")

    async def resize_later() -> None:
        await asyncio.sleep(0.3)
        disk.grow(400 * MIB)

    response, _ = await asyncio.gather(node.stub.NodeExpandVolume(request), resize_later())

    assert response.capacity_bytes == 400 * MIB
    assert os.statvfs(target).f_blocks * os.statvfs(target).f_frsize > XFS_MIB * MIB


async def test_expand_beyond_the_device_fails_after_waiting(node: Node) -> None:
    volume_id, _, staging, target = await published(node)
    error = await rpc_error(node.stub.NodeExpandVolume(expand_request(volume_id, target, staging, 1 << 30)))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_expand_of_a_block_volume_reports_the_device_size(node: Node) -> None:
    volume_id = new_volume_id()
    disk = node.host.disk(64, volume_id)
    staging = node.host.staging(volume_id, block=True)
    target = node.host.target(volume_id, block=True)
    await node.stub.NodeStageVolume(stage_request(volume_id, staging, block_capability()))
    await node.stub.NodePublishVolume(publish_request(volume_id, staging, target, block_capability()))
    disk.grow(128 * MIB)

    response = await node.stub.NodeExpandVolume(
        csi_pb2.NodeExpandVolumeRequest(
            volume_id=volume_id,
            volume_path=str(target),
            capacity_range=csi_pb2.CapacityRange(required_bytes=128 * MIB),
            volume_capability=block_capability(),
        )
    )

    assert response.capacity_bytes == 128 * MIB


async def test_expand_of_a_path_that_is_not_mounted_is_not_found(node: Node) -> None:
    volume_id = new_volume_id()
    folder = node.host.target(volume_id)
    folder.mkdir()
    unmounted = await rpc_error(node.stub.NodeExpandVolume(expand_request(volume_id, folder, folder, 0)))
    missing = await rpc_error(
        node.stub.NodeExpandVolume(expand_request(volume_id, folder / "nothing", folder, 0))
    )
    assert unmounted.code() == missing.code() == grpc.StatusCode.NOT_FOUND


async def test_expand_refuses_a_path_mounted_from_another_volumes_disk(node: Node) -> None:
    _, _, staging, target = await published(node)
    other = new_volume_id()
    node.host.disk(64, other)
    error = await rpc_error(node.stub.NodeExpandVolume(expand_request(other, target, staging, 0)))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert other in error.details()
