"""Sizes and usage: statvfs for filesystems, the kernel's sector count for block devices."""

from __future__ import annotations

import fcntl
import os
import stat
import struct
from dataclasses import dataclass
from pathlib import Path

from csi_xloud.osutil.blocking import BlockingCalls
from csi_xloud.osutil.errors import DeviceNotFound

SECTOR_BYTES = 512  # /sys/class/block/*/size counts 512-byte sectors whatever the device's block size
_BLKGETSIZE64 = 0x80081272


@dataclass(frozen=True, slots=True)
class FsUsage:
    """Bytes and inodes of a mounted filesystem, as an unprivileged user sees them."""

    total_bytes: int
    used_bytes: int
    available_bytes: int
    total_inodes: int
    used_inodes: int
    available_inodes: int
    read_only: bool


class Stats:
    """Reads usage and sizes in threads, so a stuck disk hangs its own call only; sysfs_root is for tests."""

    def __init__(self, sysfs_root: Path = Path("/sys"), blocking: BlockingCalls | None = None) -> None:
        self._sysfs = sysfs_root
        self._blocking = blocking or BlockingCalls()

    async def fs_usage(self, path: Path) -> FsUsage:
        """statvfs of a mounted path; raises OSError as the kernel answers (ENOENT, ENOTCONN, EIO...)."""
        return await self._blocking.call(path, _fs_usage, path)

    async def device_size_bytes(self, device: Path) -> int:
        """The size of a block device, from sysfs when it knows the device, else BLKGETSIZE64."""
        return await self._blocking.call(device, self._device_size_bytes, device)

    async def device_read_only(self, device: Path) -> bool:
        """Whether the kernel marks the block device read-only (a read-only attachment)."""
        return await self._blocking.call(device, self._sysfs_attribute, device, "ro") == "1"

    async def block_dir(self, device: Path) -> Path | None:
        """/sys/dev/block/MAJ:MIN for a block device node, or None when sysfs does not list it."""
        return await self._blocking.call(device, self.block_dir_now, device)

    async def rdev(self, device: Path) -> int:
        """The device number of a block device node (see block_rdev)."""
        return await self._blocking.call(device, block_rdev, device)

    def block_dir_now(self, device: Path) -> Path | None:
        """block_dir for code already running off the loop."""
        rdev = block_rdev(device)
        path = self._sysfs / "dev" / "block" / f"{os.major(rdev)}:{os.minor(rdev)}"
        return path if path.exists() else None

    def _device_size_bytes(self, device: Path) -> int:
        sectors = self._sysfs_attribute(device, "size")
        if sectors is not None:
            return int(sectors) * SECTOR_BYTES
        fd = os.open(device, os.O_RDONLY | os.O_CLOEXEC)
        try:
            raw = fcntl.ioctl(fd, _BLKGETSIZE64, b"\0" * 8)
        finally:
            os.close(fd)
        size: int = struct.unpack("Q", raw)[0]
        return size

    def _sysfs_attribute(self, device: Path, name: str) -> str | None:
        folder = self.block_dir_now(device)
        if folder is None:
            return None
        try:
            return (folder / name).read_text().strip()
        except FileNotFoundError:
            return None


def _fs_usage(path: Path) -> FsUsage:
    vfs = os.statvfs(path)
    total = vfs.f_blocks * vfs.f_frsize
    free = vfs.f_bfree * vfs.f_frsize
    return FsUsage(
        total_bytes=total,
        used_bytes=total - free,
        available_bytes=vfs.f_bavail * vfs.f_frsize,
        total_inodes=vfs.f_files,
        used_inodes=vfs.f_files - vfs.f_ffree,
        available_inodes=vfs.f_favail,
        read_only=bool(vfs.f_flag & os.ST_RDONLY),
    )


def block_rdev(device: Path) -> int:
    """The device number of a block device node; DeviceNotFound when it is missing or not a block device."""
    try:
        st = os.stat(device)
    except FileNotFoundError:
        raise DeviceNotFound(f"{device} does not exist") from None
    if not stat.S_ISBLK(st.st_mode):
        raise DeviceNotFound(f"{device} is not a block device")
    return st.st_rdev
