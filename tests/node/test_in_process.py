"""libblkid probes and mount(2) in the process, on real loop devices: the same answers and mounts as
`blkid -p` and `mount`, and the same refusal to format a disk that holds anything."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from nodekit import Host, build_service, mounted_at, new_volume_id, serve, sh, stage_request
from test_stage import XFS_MIB, _put_ext4, _put_gpt, _put_luks, _put_lvm, _put_md_raid, _put_xfs, mount_entry

from csi_xloud._proto import csi_pb2_grpc
from csi_xloud.demo.orchestrator import mount_capability
from csi_xloud.osutil.errors import CommandFailed, OsUtilError
from csi_xloud.osutil.filesystem import Filesystems, _export_fields, fs_kind
from csi_xloud.osutil.libs import LibBlkid, LibcMount, syscall_mount_args
from csi_xloud.osutil.mounts import Mounter
from csi_xloud.osutil.runner import CommandResult, Runner


def _put_dos(device: Path) -> None:
    sh("sfdisk", "-q", "--no-reread", str(device), stdin=b"label: dos\n,16M\n")


def _put_labelled_ext4(device: Path) -> None:
    sh("mkfs.ext4", "-q", "-L", "my data", str(device))


def _nothing(device: Path) -> None:
    pass


SIGNATURES: list[tuple[str, Callable[[Path], None], int]] = [
    ("blank", _nothing, 64), ("ext4", _put_ext4, 64), ("labelled-ext4", _put_labelled_ext4, 64),
    ("xfs", _put_xfs, XFS_MIB), ("gpt", _put_gpt, 64), ("dos", _put_dos, 64), ("lvm", _put_lvm, 64),
    ("luks", _put_luks, 64), ("md-raid", _put_md_raid, 64),
]


@pytest.mark.parametrize(("holding", "size_mib"), [(h, s) for _, h, s in SIGNATURES],
                         ids=[name for name, _, _ in SIGNATURES])
async def test_the_in_process_probe_finds_what_blkid_p_finds(
    host: Host, holding: Callable[[Path], None], size_mib: int
) -> None:
    disk = host.disk(size_mib)
    holding(disk.device)
    library = LibBlkid.load()
    assert library is not None, "util-linux ships libblkid.so.1"
    in_process = await Filesystems(Runner(), library).probe(disk.device)
    by_command = await Filesystems(Runner()).probe(disk.device)
    assert in_process == by_command
    exported = _export_fields(sh("blkid", "-p", "-o", "export", str(disk.device), ok_codes=(0, 2)))
    assert in_process.type == exported.get("TYPE") and in_process.label == exported.get("LABEL")


async def test_mkfs_runs_only_on_what_a_probe_found_blank(host: Host) -> None:
    commands: list[CommandResult] = []
    filesystems = Filesystems(Runner(observers=[commands.append]), LibBlkid.load())
    held = host.disk(XFS_MIB)
    _put_xfs(held.device)
    before = held.checksum()
    found = await filesystems.probe(held.device)
    assert found.type == "xfs"
    with pytest.raises(OsUtilError, match="xfs"):
        await filesystems.make(held.device, fs_kind("ext4"), found)
    assert not commands and held.checksum() == before
    blank = host.disk(64)
    found = await filesystems.probe(blank.device)
    assert found.blank
    await filesystems.make(blank.device, fs_kind("ext4"), found)
    assert [c.argv[0] for c in commands] == ["mkfs.ext4"]
    assert (await filesystems.probe(blank.device)).type == "ext4"


def test_only_options_mount_maps_the_same_way_go_to_the_system_call() -> None:
    assert syscall_mount_args([]) == (0, "")
    assert syscall_mount_args(["ro", "nodev", "noatime"]) == (1 | 4 | 1024, "")
    assert syscall_mount_args(["nouuid", "rw", "sync", "async"]) == (0, "nouuid")
    # SELinux contexts, options mount(8) handles itself and anything unknown go to mount(8).
    for option in ('context="system_u:object_r:container_file_t:s0:c1,c2"', "x-mount.foo", "_netdev",
                   "nofail", "loop", "errors=remount-ro", "user"):
        assert syscall_mount_args(["ro", option]) is None, option


@pytest.mark.parametrize("options", [[], ["ro"], ["nodev", "noexec", "nosuid"], ["noatime", "sync"],
                                     ["errors=remount-ro"], ["relatime", "lazytime"]])
async def test_the_system_call_mounts_exactly_as_mount_does(host: Host, options: list[str]) -> None:
    disk = host.disk(64)
    _put_ext4(disk.device)
    commands: list[CommandResult] = []
    runner = Runner(observers=[commands.append])
    libc = LibcMount.load()
    assert libc is not None
    seen = []
    for mounter in (Mounter(runner, libc=libc), Mounter(runner)):
        target = host.root / f"m{len(seen)}"
        target.mkdir()
        await mounter.mount(disk.device, target, "ext4", options)
        try:
            entry = mount_entry(target)
            seen.append((entry.options, entry.super_options, entry.fs_type, entry.device_number))
        finally:
            await mounter.unmount(target)
    assert seen[0] == seen[1]
    ran_mount = [c for c in commands if c.argv[0] == "mount"]
    assert len(ran_mount) == (2 if syscall_mount_args(options) is None else 1)


async def test_a_failed_system_call_leaves_the_error_to_mount(host: Host) -> None:
    disk = host.disk(64)  # blank: nothing to mount
    target = host.root / "m"
    target.mkdir()
    commands: list[CommandResult] = []
    mounter = Mounter(Runner(observers=[commands.append]), libc=LibcMount.load())
    with pytest.raises(CommandFailed, match=r"wrong fs type|bad superblock"):
        await mounter.mount(disk.device, target, "ext4", [])
    assert [c.argv[0] for c in commands] == ["mount"] and not mounted_at(target)


async def test_stage_without_the_libraries_runs_blkid_and_mount(host: Host, short_tmp: Path) -> None:
    commands: list[CommandResult] = []
    socket = short_tmp / "plain.sock"
    server = await serve(build_service(host, commands, in_process=False), socket)
    try:
        async with grpc.aio.insecure_channel(f"unix://{socket}") as channel:
            volume_id = new_volume_id()
            host.disk(64, volume_id)
            staging = host.staging(volume_id)
            request = stage_request(volume_id, staging, mount_capability("ext4"))
            await csi_pb2_grpc.NodeStub(channel).NodeStageVolume(request)
            assert mount_entry(staging).fs_type == "ext4"
            ran = [c.argv[0] for c in commands]
            assert ran.count("blkid") == 1 and ran.count("mount") == 1 and ran.count("mkfs.ext4") == 1
            await Mounter(Runner()).unmount(staging)
    finally:
        await server.stop(0)
