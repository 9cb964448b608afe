"""NodeStageVolume / NodeUnstageVolume on real loop devices: format only blank disks, idempotent repeats."""

from __future__ import annotations

import asyncio
import os
import struct
from pathlib import Path

import grpc
import pytest
from nodekit import (
    MIB,
    Node,
    block_capability,
    mount_capability,
    mounted_at,
    new_volume_id,
    rpc_error,
    sh,
    stage_request,
)

from csi_xloud._proto import csi_pb2
from csi_xloud.osutil.mounts import parse_mountinfo

XFS_MIB = 320  # mkfs.xfs refuses filesystems under 300 MiB


def fs_total_bytes(path: Path) -> int:
    vfs = os.statvfs(path)
    return vfs.f_blocks * vfs.f_frsize


def mount_entry(path: Path):  # type: ignore[no-untyped-def]
    return [e for e in parse_mountinfo(Path("/proc/self/mountinfo").read_text()) if e.mount_point == path][-1]


@pytest.mark.parametrize(("fs_type", "size_mib"), [("ext4", 64), ("xfs", XFS_MIB), ("ext4", 10 * 1024)])
async def test_stage_formats_a_blank_disk_once_and_repeats_are_ok(
    node: Node, fs_type: str, size_mib: int
) -> None:
    volume_id = new_volume_id()
    disk = node.host.disk(size_mib, volume_id)
    staging = node.host.staging(volume_id)
    request = stage_request(volume_id, staging, mount_capability(fs_type))

    await node.stub.NodeStageVolume(request)
    await node.stub.NodeStageVolume(request)  # Spec: staged already, same arguments -> OK

    entry = mount_entry(staging)
    assert (entry.fs_type, entry.device_number) == (fs_type, disk.rdev)
    assert 0.75 * size_mib * MIB < fs_total_bytes(staging) <= size_mib * MIB  # less journal and log
    assert sh("blkid", "-p", "-o", "value", "-s", "TYPE", str(disk.device)).strip() == fs_type
    assert len(node.ran(f"mkfs.{fs_type}")) == 1
    assert ("nouuid" in entry.super_options) == (fs_type == "xfs")
    assert not node.ran("blkid") and not node.ran("mount")  # probed and mounted in the process
    (staging / "data").write_bytes(b"kept across unstage")

    await node.stub.NodeUnstageVolume(
        csi_pb2.NodeUnstageVolumeRequest(volume_id=volume_id, staging_target_path=str(staging))
    )
    assert not mounted_at(staging)
    # Spec: not staged -> OK.
    await node.stub.NodeUnstageVolume(
        csi_pb2.NodeUnstageVolumeRequest(volume_id=volume_id, staging_target_path=str(staging))
    )

    await node.stub.NodeStageVolume(request)  # an existing filesystem is mounted, never formatted again
    assert (staging / "data").read_bytes() == b"kept across unstage"
    assert len(node.ran(f"mkfs.{fs_type}")) == 1


def _put_ext4(disk_device: Path) -> None:
    sh("mkfs.ext4", "-q", str(disk_device))


def _put_xfs(disk_device: Path) -> None:
    sh("mkfs.xfs", "-q", str(disk_device))


def _put_gpt(disk_device: Path) -> None:
    sh("sfdisk", "-q", "--no-reread", str(disk_device), stdin=b"label: gpt\n,16M\n")


def _put_lvm(disk_device: Path) -> None:
    sh("pvcreate", "-q", "-y", "--devices", str(disk_device), str(disk_device))


def _put_luks(disk_device: Path) -> None:
    sh(
        "cryptsetup", "luksFormat", "-q", "--type", "luks2", "--pbkdf", "pbkdf2",
        "--pbkdf-force-iterations", "1000", "--key-file", "-", str(disk_device),
        stdin=b"test key",
    )  # fmt: skip


def _put_md_raid(disk_device: Path) -> None:
    """An md RAID member: a version 1.2 superblock 4 KiB in, written by hand (mdadm is not installed)."""
    sb = bytearray(256)
    struct.pack_into("<IIII", sb, 0, 0xA92B4EFC, 1, 0, 0)  # magic, major version 1, no features
    sb[16:32] = os.urandom(16)  # array uuid
    sb[32:37] = b"csx:0"  # array name
    struct.pack_into("<IQ", sb, 72, 1, 100_000)  # raid1, size in sectors
    struct.pack_into("<I", sb, 92, 2)  # two disks
    struct.pack_into("<QQQ", sb, 128, 2048, 100_000, 8)  # data offset, data size, superblock offset (sectors)
    sb[168:184] = os.urandom(16)  # device uuid
    total = sum(struct.unpack("<64I", bytes(sb)))  # checksum over the superblock with max_dev 0
    struct.pack_into("<I", sb, 216, ((total & 0xFFFFFFFF) + (total >> 32)) & 0xFFFFFFFF)
    fd = os.open(disk_device, os.O_WRONLY)
    try:
        os.pwrite(fd, bytes(sb), 4096)
        os.fsync(fd)
    finally:
        os.close(fd)


@pytest.mark.parametrize(
    ("holding", "asked", "size_mib", "expected"),
    [
        (_put_ext4, "xfs", 64, "ext4"),
        (_put_xfs, "ext4", XFS_MIB, "xfs"),
        (_put_gpt, "ext4", 64, "gpt partition table"),
        (_put_lvm, "ext4", 64, "LVM2_member"),
        (_put_luks, "ext4", 64, "crypto_LUKS"),
        (_put_md_raid, "xfs", 64, "linux_raid_member"),
    ],
    ids=["ext4-asked-xfs", "xfs-asked-ext4", "partition-table", "lvm-pv", "luks", "md-raid"],
)
async def test_stage_refuses_a_disk_that_holds_something_else_and_leaves_it_untouched(
    node: Node, holding, asked: str, size_mib: int, expected: str
) -> None:  # type: ignore[no-untyped-def]
    volume_id = new_volume_id()
    disk = node.host.disk(size_mib, volume_id)
    holding(disk.device)
    before = disk.checksum()
    staging = node.host.staging(volume_id)

    error = await rpc_error(
        node.stub.NodeStageVolume(stage_request(volume_id, staging, mount_capability(asked)))
    )

    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION, error.details()
    assert expected in error.details()
    assert not [c for c in node.commands if c.argv[0].startswith("mkfs")]
    assert not mounted_at(staging)
    assert disk.checksum() == before


async def test_two_concurrent_stages_of_one_volume_never_format_twice(node: Node) -> None:
    volume_id = new_volume_id()
    node.host.disk(64, volume_id)
    staging = node.host.staging(volume_id)
    request = stage_request(volume_id, staging)

    results = await asyncio.gather(
        *(node.stub.NodeStageVolume(request) for _ in range(4)), return_exceptions=True
    )

    codes = [r.code() if isinstance(r, grpc.aio.AioRpcError) else grpc.StatusCode.OK for r in results]
    assert grpc.StatusCode.OK in codes
    assert grpc.StatusCode.ABORTED in codes
    assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.ABORTED}
    assert len(node.ran("mkfs.ext4")) == 1
    await node.stub.NodeStageVolume(request)  # the retry the sidecar makes succeeds
    assert mounted_at(staging)


async def test_different_volumes_stage_in_parallel(node: Node) -> None:
    volumes = [new_volume_id() for _ in range(3)]
    for volume_id in volumes:
        node.host.disk(64, volume_id)
    await asyncio.gather(
        *(node.stub.NodeStageVolume(stage_request(v, node.host.staging(v))) for v in volumes)
    )
    assert all(mounted_at(node.host.staging(v)) for v in volumes)


async def test_staged_with_another_device_or_filesystem_is_already_exists(node: Node) -> None:
    first, second = new_volume_id(), new_volume_id()
    node.host.disk(64, first)
    node.host.disk(64, second)
    staging = node.host.staging(first)
    await node.stub.NodeStageVolume(stage_request(first, staging))

    other_device = await rpc_error(node.stub.NodeStageVolume(stage_request(second, staging)))
    other_fs = await rpc_error(
        node.stub.NodeStageVolume(stage_request(first, staging, mount_capability("xfs")))
    )

    assert other_device.code() == grpc.StatusCode.ALREADY_EXISTS
    assert other_fs.code() == grpc.StatusCode.ALREADY_EXISTS
    assert "ext4" in other_fs.details()


@pytest.mark.parametrize(("fs_type", "small_mib", "big_mib"), [("ext4", 64, 128), ("xfs", XFS_MIB, 400)])
async def test_stage_grows_a_filesystem_smaller_than_its_disk(
    node: Node, fs_type: str, small_mib: int, big_mib: int
) -> None:
    volume_id = new_volume_id()
    disk = node.host.disk(small_mib, volume_id)
    sh(f"mkfs.{fs_type}", "-q", str(disk.device))  # a snapshot of the smaller volume ...
    staging = node.host.staging(volume_id)
    sh("mount", "-o", "nouuid" if fs_type == "xfs" else "defaults", str(disk.device), str(staging))
    (staging / "data").write_bytes(b"from the snapshot")
    small_total = fs_total_bytes(staging)
    sh("umount", str(staging))
    disk.grow(big_mib * MIB)  # ... restored onto a bigger one

    await node.stub.NodeStageVolume(stage_request(volume_id, staging, mount_capability(fs_type)))

    grown = fs_total_bytes(staging) - small_total
    assert grown > 0.9 * (big_mib - small_mib) * MIB  # less the new groups' metadata
    assert (staging / "data").read_bytes() == b"from the snapshot"
    assert not [c for c in node.commands if c.argv[0].startswith("mkfs")]


async def test_mount_flags_are_applied_and_bad_ones_refused(node: Node) -> None:
    volume_id = new_volume_id()
    node.host.disk(64, volume_id)
    staging = node.host.staging(volume_id)

    await node.stub.NodeStageVolume(stage_request(volume_id, staging, mount_capability(flags=("noatime",))))
    assert "noatime" in mount_entry(staging).options

    for bad in ("bind", "remount", "ro,x y", "-o", "rw;reboot"):
        error = await rpc_error(
            node.stub.NodeStageVolume(stage_request(volume_id, staging, mount_capability(flags=(bad,))))
        )
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, bad


async def test_attached_size_is_checked(node: Node) -> None:
    volume_id = new_volume_id()
    node.host.disk(64, volume_id)
    staging = node.host.staging(volume_id)

    too_small = await rpc_error(
        node.stub.NodeStageVolume(stage_request(volume_id, staging, publish_context={"size_gib": "1"}))
    )
    garbage = await rpc_error(
        node.stub.NodeStageVolume(stage_request(volume_id, staging, publish_context={"size_gib": "lots"}))
    )

    assert too_small.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert garbage.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "size_gib" in garbage.details()
    assert not node.ran("mkfs.ext4") and not mounted_at(staging)


async def test_a_disk_that_never_appears_is_not_found(node: Node) -> None:
    volume_id = new_volume_id()
    error = await rpc_error(node.stub.NodeStageVolume(stage_request(volume_id, node.host.staging(volume_id))))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert volume_id[:20] in error.details()


async def test_disk_found_by_its_scsi_name_or_by_the_device_hint_as_last_resort(node: Node) -> None:
    scsi_volume, hinted_volume, other_volume = new_volume_id(), new_volume_id(), new_volume_id()
    scsi_disk = node.host.disk(64)
    node.host.link(scsi_volume, scsi_disk.device, "scsi-0QEMU_QEMU_HARDDISK_{id20}")
    hinted_disk = node.host.disk(64)
    other_disk = node.host.disk(64, other_volume)

    await node.stub.NodeStageVolume(stage_request(scsi_volume, node.host.staging(scsi_volume)))
    hinted = stage_request(
        hinted_volume,
        node.host.staging(hinted_volume),
        publish_context={"device_path": str(hinted_disk.device)},
    )
    await node.stub.NodeStageVolume(hinted)
    # A hint that names another volume's disk is never used.
    wrong = stage_request(
        new_volume_id(), node.host.staging("wrong"), publish_context={"device_path": str(other_disk.device)}
    )
    error = await rpc_error(node.stub.NodeStageVolume(wrong))

    assert mount_entry(node.host.staging(scsi_volume)).device_number == scsi_disk.rdev
    assert mount_entry(node.host.staging(hinted_volume)).device_number == hinted_disk.rdev
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert not mounted_at(node.host.staging("wrong"))


async def test_block_volume_stage_formats_nothing(node: Node) -> None:
    volume_id = new_volume_id()
    disk = node.host.disk(64, volume_id)
    staging = node.host.staging(volume_id, block=True)
    request = stage_request(volume_id, staging, block_capability())

    await node.stub.NodeStageVolume(request)
    await node.stub.NodeStageVolume(request)
    await node.stub.NodeUnstageVolume(
        csi_pb2.NodeUnstageVolumeRequest(volume_id=volume_id, staging_target_path=str(staging))
    )

    assert not mounted_at(staging)
    assert not node.ran("mkfs.ext4")
    assert sh("blkid", "-p", "-o", "export", str(disk.device), ok_codes=(2,)) == ""


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"volume_id": ""}, "volume_id is required"),
        ({"staging_target_path": ""}, "staging_target_path is required"),
        ({"volume_capability": None}, "volume_capability is required"),
        ({"volume_capability": mount_capability("btrfs")}, "volume_capability.mount.fs_type"),
        ({"volume_capability": mount_capability(mode=0)}, "access_mode is required"),
        ({"staging_target_path": "relative/path"}, "staging_target_path must be an absolute path"),
        ({"staging_target_path": "/etc"}, "outside"),
        ({"publish_context": {"device_path": "vdb"}}, "publish_context[device_path]"),
    ],
)
async def test_stage_arguments_are_checked(node: Node, change: dict[str, object], fragment: str) -> None:
    volume_id = new_volume_id()
    fields: dict[str, object] = {
        "volume_id": volume_id,
        "staging_target_path": str(node.host.staging(volume_id)),
        "volume_capability": mount_capability(),
        "publish_context": {},
        **change,
    }
    fields = {k: v for k, v in fields.items() if v is not None}
    error = await rpc_error(node.stub.NodeStageVolume(csi_pb2.NodeStageVolumeRequest(**fields)))  # type: ignore[arg-type]
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert fragment in error.details()


async def test_a_read_only_disk_is_mounted_read_only_and_a_blank_one_refused(node: Node) -> None:
    volume_id, blank_id = new_volume_id(), new_volume_id()
    disk = node.host.disk(64, volume_id)
    sh("mkfs.ext4", "-q", str(disk.device))
    sh("blockdev", "--setro", str(disk.device))  # as a read-only attachment shows
    blank = node.host.disk(64, blank_id)
    sh("blockdev", "--setro", str(blank.device))
    staging = node.host.staging(volume_id)

    await node.stub.NodeStageVolume(stage_request(volume_id, staging))
    refused = await rpc_error(node.stub.NodeStageVolume(stage_request(blank_id, node.host.staging(blank_id))))
    stats = await node.stub.NodeGetVolumeStats(
        csi_pb2.NodeGetVolumeStatsRequest(volume_id=volume_id, volume_path=str(staging))
    )

    assert mount_entry(staging).super_read_only
    with pytest.raises(OSError):
        (staging / "new").write_bytes(b"x")
    assert not stats.volume_condition.abnormal  # read-only because its disk is, not because of an error
    assert refused.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert not node.ran("mkfs.ext4")
