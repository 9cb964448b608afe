"""The OS layer on its own: device lookup and waits (fake clock), the runner, parsers, path checks."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from nodekit import MIB, Host

from csi_xloud.osutil.devices import DeviceFinder, WaitPolicy, candidate_names
from csi_xloud.osutil.errors import (
    BadMountOption,
    CommandFailed,
    CommandTimeout,
    DeviceNotFound,
    DeviceTooSmall,
    OsUtilError,
    PathNotAllowed,
)
from csi_xloud.osutil.filesystem import FILESYSTEMS, Signature, can_grow_mounted_ext4
from csi_xloud.osutil.mounts import check_mount_options, parse_mountinfo
from csi_xloud.osutil.paths import PathGuard
from csi_xloud.osutil.runner import CommandResult, Runner
from csi_xloud.osutil.stats import Stats

VOLUME = "0f9a8b7c-6d5e-4f3a-9b2c-1d0e9f8a7b6c"


class FakeClock:
    """Time that passes only when slept, calling back after each sleep."""

    def __init__(self, on_sleep: Callable[[int], None] = lambda n: None) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []
        self._on_sleep = on_sleep

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        self._on_sleep(len(self.sleeps))


def finder(host: Host, clock: FakeClock, runner: Runner | None = None, timeout: float = 5.0) -> DeviceFinder:
    return DeviceFinder(
        runner or Runner(),
        Stats(),
        clock,
        host.device_dir,
        wait=WaitPolicy(timeout_seconds=timeout, first_delay_seconds=0.2, max_delay_seconds=1.0),
        udev_control=host.root / "no-udev-control",
    )


def test_candidate_names_are_data_with_the_virtio_serial_cut_to_20() -> None:
    assert candidate_names(VOLUME) == (
        "virtio-0f9a8b7c-6d5e-4f3a-9",
        f"virtio-{VOLUME}",
        "scsi-0QEMU_QEMU_HARDDISK_0f9a8b7c-6d5e-4f3a-9",
        f"scsi-0QEMU_QEMU_HARDDISK_{VOLUME}",
        "wwn-0x0f9a8b7c6d5e4f3a9b2c1d0e9f8a7b6c",
    )
    for bad in ("../../etc", "a/b", "", ".hidden"):
        with pytest.raises(PathNotAllowed):
            candidate_names(bad)


async def test_finder_waits_with_growing_delays_until_the_link_appears(host: Host) -> None:
    disk = host.disk(8)
    clock = FakeClock(on_sleep=lambda n: host.link(VOLUME, disk.device) if n == 4 else None)
    started = time.monotonic()

    found = await finder(host, clock).find(VOLUME)

    assert found == disk.device
    assert clock.sleeps == [0.2, 0.4, 0.8, 1.0]
    assert time.monotonic() - started < 1.0  # no real sleeping


async def test_finder_gives_up_at_the_timeout_without_sleeping_for_real(host: Host) -> None:
    clock = FakeClock()
    started = time.monotonic()
    with pytest.raises(DeviceNotFound) as missing:
        await finder(host, clock, timeout=5.0).find(VOLUME)
    assert sum(clock.sleeps) >= 5.0
    assert time.monotonic() - started < 1.0
    assert "virtio-0f9a8b7c-6d5e-4f3a-9" in str(missing.value)


async def test_finder_ignores_a_link_to_something_that_is_not_a_block_device(host: Host) -> None:
    (host.device_dir / "virtio-0f9a8b7c-6d5e-4f3a-9").symlink_to("/etc/hostname")
    with pytest.raises(DeviceNotFound):
        await finder(host, FakeClock(), timeout=0.5).find(VOLUME)


async def test_rescan_runs_udevadm_only_where_udevd_listens(host: Host, tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    script = bin_dir / "udevadm"
    script.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    script.chmod(0o755)
    runner = Runner(env={"PATH": str(bin_dir)}, search_path="")
    without = finder(host, FakeClock(), runner)
    control = host.root / "udev-control"
    with_udev = DeviceFinder(runner, Stats(), FakeClock(), host.device_dir, udev_control=control)

    await without.rescan()
    assert not calls.exists()
    control.touch()
    await with_udev.rescan()
    assert calls.read_text().splitlines() == [
        "trigger --action=change --subsystem-match=block",
        "settle --timeout=10",
    ]


async def test_wait_for_size_sees_a_device_grow(host: Host) -> None:
    disk = host.disk(8)
    clock = FakeClock(on_sleep=lambda n: disk.grow(16 * MIB) if n == 2 else None)
    size = await finder(host, clock).wait_for_size(disk.device, 16 * MIB, timeout_seconds=10)
    assert size == 16 * MIB
    with pytest.raises(DeviceTooSmall):
        await finder(host, FakeClock()).wait_for_size(disk.device, 32 * MIB, timeout_seconds=3)


# Every runner test runs both ways of waiting for a command: the loop polling its pidfd, and
# asyncio's own subprocesses (the fallback where the kernel has no pidfds).
both_ways = pytest.mark.parametrize("pidfds", [True, False], ids=["pidfd", "asyncio"])


@both_ways
async def test_runner_reports_failures_with_stderr_and_tells_observers(pidfds: bool) -> None:
    seen: list[CommandResult] = []
    runner = Runner(observers=[seen.append], use_pidfds=pidfds)
    result = await runner.run(["sh", "-c", "echo out; echo err >&2"])
    with pytest.raises(CommandFailed) as failed:
        await runner.run(["sh", "-c", "echo broken >&2; exit 3"])
    assert (result.stdout, result.stderr) == ("out\n", "err\n")
    assert failed.value.returncode == 3 and "broken" in str(failed.value)
    assert [r.returncode for r in seen] == [0, 3]
    for bad in ([], ["echo", "a\x00b"], ["csx-no-such-tool"]):
        with pytest.raises(OsUtilError):
            await runner.run(bad)


@both_ways
async def test_runner_reads_output_larger_than_a_pipe_holds(pidfds: bool) -> None:
    script = "head -c 300000 /dev/zero | tr '\\0' o; head -c 200000 /dev/zero | tr '\\0' e >&2; exit 1"
    result = await Runner(use_pidfds=pidfds).run(["sh", "-c", script], ok_codes=(1,))
    assert (result.stdout, result.stderr) == ("o" * 300000, "e" * 200000)


async def test_runner_leaves_no_descriptor_open(tmp_path: Path) -> None:
    runner = Runner()
    await runner.run(["true"])  # anything opened once per process is open from here on
    before = sorted(os.listdir("/proc/self/fd"))
    await runner.run(["sh", "-c", "echo out; echo err >&2"])
    with pytest.raises(CommandFailed):
        await runner.run(["false"])
    with pytest.raises(CommandTimeout):
        await runner.run(["sleep", "30"], timeout_seconds=0.1)
    assert sorted(os.listdir("/proc/self/fd")) == before


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


@both_ways
async def test_runner_kills_a_command_that_times_out(tmp_path: Path, pidfds: bool) -> None:
    pidfile = tmp_path / "pid"
    started = time.monotonic()
    with pytest.raises(CommandTimeout):
        await Runner(use_pidfds=pidfds).run(["sh", "-c", f"echo $$ > {pidfile}; exec sleep 30"], timeout_seconds=0.3)
    assert time.monotonic() - started < 5
    assert not _alive(int(pidfile.read_text()))


@both_ways
async def test_a_cancelled_call_kills_its_command(tmp_path: Path, pidfds: bool) -> None:
    pidfile = tmp_path / "pid"
    task = asyncio.create_task(Runner(use_pidfds=pidfds).run(["sh", "-c", f"echo $$ > {pidfile}; exec sleep 30"]))
    while not pidfile.exists() or not pidfile.read_text().strip():
        await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not _alive(int(pidfile.read_text()))


def test_mountinfo_parsing_handles_escapes_and_optional_fields() -> None:
    text = (
        "36 35 98:0 /mnt1 /mnt/with\\040space rw,noatime master:1 - ext3 /dev/root rw,errors=continue\n"
        "37 36 7:3 / /var/lib/kubelet/x ro,relatime shared:7 master:2 - xfs /dev/loop3 ro,nouuid\n"
        "garbage\n"
    )
    first, second = parse_mountinfo(text)
    assert first.mount_point == Path("/mnt/with space") and first.root == "/mnt1"
    assert (first.major, first.minor, first.fs_type, first.source) == (98, 0, "ext3", "/dev/root")
    assert not first.read_only and "noatime" in first.options
    assert second.read_only and second.super_read_only and second.device_number == os.makedev(7, 3)


def test_mount_options_are_plain_words_only() -> None:
    assert check_mount_options(["noatime", "discard,nobarrier", "commit=30"]) == [
        "noatime", "discard", "nobarrier", "commit=30",
    ]  # fmt: skip
    for bad in ("bind", "rbind", "remount", "move", "a b", "-o", "x;y", "", "$(reboot)", "a,,b"):
        with pytest.raises(BadMountOption):
            check_mount_options([bad])


def test_kubelets_selinux_context_option_is_accepted_whole() -> None:
    """CSIDriver.seLinuxMount makes the kubelet add a quoted context whose label holds a comma."""
    option = 'context="system_u:object_r:container_file_t:s0:c98,c99"'
    assert check_mount_options(["noatime", option]) == ["noatime", option]
    assert check_mount_options([f"ro,{option}"]) == ["ro", option]
    for bad in ('context="a b"', 'context="x";reboot', 'context="unbalanced', 'label="s0:c1,c2"', 'context=""'):
        with pytest.raises(BadMountOption):
            check_mount_options([bad])


async def test_path_guard_resolves_symlinks_before_judging(tmp_path: Path) -> None:
    root = tmp_path / "kubelet"
    (root / "pods").mkdir(parents=True)
    (root / "out").symlink_to(tmp_path)
    (root / "in").symlink_to(root / "pods")
    guard = PathGuard(root)
    assert await guard.check(str(root / "pods/a/mount"), "target_path") == root / "pods/a/mount"
    assert await guard.check(str(root / "in/b"), "target_path") == root / "pods/b"
    for bad in (str(root / "out/x"), str(root / "../x"), "pods/x", str(root), "/etc", f"{root}/a\x00b"):
        with pytest.raises(PathNotAllowed) as refused:
            await guard.check(bad, "target_path")
        assert "target_path" in str(refused.value)


def test_the_fs_table_reads_sizes_from_tool_output() -> None:
    dumpe2fs = (
        "Filesystem volume name:   <none>\nBlock count:              262144\nBlock size:               4096\n"
    )
    xfs_info = (
        "meta-data=/dev/loop0 isize=512 agcount=4, agsize=20480 blks\n"
        "data     =                       bsize=4096   blocks=81920, imaxpct=25\n"
    )
    assert FILESYSTEMS["ext4"].parse_size(dumpe2fs) == 1 << 30
    assert FILESYSTEMS["xfs"].parse_size(xfs_info) == 320 * MIB
    with pytest.raises(OsUtilError):
        FILESYSTEMS["ext4"].parse_size("nothing useful")
    assert "nouuid" in FILESYSTEMS["xfs"].mount_options
    assert "-K" in FILESYSTEMS["xfs"].mkfs
    assert "lazy_itable_init=1,lazy_journal_init=1,nodiscard" in FILESYSTEMS["ext4"].mkfs


def test_only_a_device_with_no_signature_at_all_is_blank() -> None:
    assert Signature().blank
    assert not Signature(type="ext4", usage="filesystem").blank
    assert not Signature(partition_table="dos").blank
    assert not Signature(ambivalent=True).blank
    assert Signature(type="LVM2_member", usage="raid").describe() == "LVM2_member (raid)"
    assert Signature(type="ext4", usage="filesystem", partition_table="gpt").describe() == (
        "ext4 (filesystem) and a gpt partition table"
    )


def fake_sysfs_with_serial(root: Path, rdev: int, serial: str) -> Path:
    """A sysfs tree holding only a disk's serial, as virtio-blk disks show it (a corner-case fake)."""
    folder = root / "dev" / "block" / f"{os.major(rdev)}:{os.minor(rdev)}"
    folder.mkdir(parents=True)
    (folder / "serial").write_text(serial + "\n")
    return root


def hint_finder(host: Host, sysfs: Path, clock: FakeClock) -> DeviceFinder:
    return DeviceFinder(
        Runner(),
        Stats(sysfs_root=sysfs),
        clock,
        host.device_dir,
        wait=WaitPolicy(timeout_seconds=2.0, first_delay_seconds=0.5),
        sysfs_root=sysfs,
        udev_control=host.root / "no-udev-control",
    )


async def test_a_hint_whose_serial_is_the_volume_id_is_taken_at_once(host: Host, tmp_path: Path) -> None:
    disk = host.disk(8)
    clock = FakeClock()
    sysfs = fake_sysfs_with_serial(tmp_path / "sys", disk.rdev, VOLUME[:20])
    assert await hint_finder(host, sysfs, clock).find(VOLUME, hint=disk.device) == disk.device
    assert clock.sleeps == []


async def test_a_hint_with_another_serial_is_never_taken(host: Host, tmp_path: Path) -> None:
    disk = host.disk(8)
    clock = FakeClock()
    sysfs = fake_sysfs_with_serial(tmp_path / "sys", disk.rdev, "some-other-volume-id")
    with pytest.raises(DeviceNotFound):
        await hint_finder(host, sysfs, clock).find(VOLUME, hint=disk.device)
    assert sum(clock.sleeps) >= 2.0


@both_ways
async def test_a_cancelled_mkfs_like_command_runs_to_its_end_first(tmp_path: Path, pidfds: bool) -> None:
    done = tmp_path / "done"
    started = tmp_path / "started"
    task = asyncio.create_task(
        Runner(use_pidfds=pidfds).run(["sh", "-c", f"touch {started}; sleep 0.5; touch {done}"], cancellable=False)
    )
    while not started.exists():
        await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert done.exists()  # the cancellation waited for the command instead of killing it half way


def test_the_ext4_online_grow_capability_is_read_from_the_effective_set(tmp_path: Path) -> None:
    status = tmp_path / "status"
    status.write_text("Name:\tx\nCapEff:\t000001fffeffffff\n")  # everything but CAP_SYS_RESOURCE
    assert not can_grow_mounted_ext4(status)
    status.write_text("Name:\tx\nCapEff:\t000001ffffffffff\n")
    assert can_grow_mounted_ext4(status)
