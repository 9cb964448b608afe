"""Finds the block device of a volume by the names hypervisors give disks in /dev/disk/by-id."""

from __future__ import annotations

import contextlib
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from csi_xloud.clock import Clock
from csi_xloud.osutil.blocking import BlockingCalls
from csi_xloud.osutil.errors import DeviceNotFound, DeviceTooSmall, PathNotAllowed
from csi_xloud.osutil.runner import Runner
from csi_xloud.osutil.stats import Stats, block_rdev

log = logging.getLogger(__name__)

# The by-id names a volume's disk may carry, tried in order. virtio-blk serials are cut to 20
# characters; some QEMU builds keep the whole id; VMware ESXi names the disk by a WWN made of
# the id without its dashes.
BY_ID_TEMPLATES: tuple[str, ...] = (
    "virtio-{id20}",
    "virtio-{id}",
    "scsi-0QEMU_QEMU_HARDDISK_{id20}",
    "scsi-0QEMU_QEMU_HARDDISK_{id}",
    "wwn-0x{hex}",
)
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_SETTLE_SECONDS = 10


def candidate_names(volume_id: str) -> tuple[str, ...]:
    """The by-id names to look for, without repeats; refuses ids that could leave the by-id folder."""
    if not _SAFE_ID.match(volume_id):
        raise PathNotAllowed(f"volume_id {volume_id!r} has characters no disk name can hold")
    values = {"id": volume_id, "id20": volume_id[:20], "hex": volume_id.replace("-", "")}
    return tuple(dict.fromkeys(template.format(**values) for template in BY_ID_TEMPLATES))


@dataclass(frozen=True, slots=True)
class WaitPolicy:
    """How long and how often to look for a device: exponential back-off up to a ceiling."""

    timeout_seconds: float = 30.0
    first_delay_seconds: float = 0.2
    max_delay_seconds: float = 2.0
    factor: float = 2.0


class DeviceFinder:
    """Looks up volumes' devices in a by-id folder, rescanning between tries."""

    def __init__(
        self,
        runner: Runner,
        stats: Stats,
        clock: Clock,
        device_dir: Path,
        *,
        wait: WaitPolicy = WaitPolicy(),
        sysfs_root: Path = Path("/sys"),
        udev_control: Path = Path("/run/udev/control"),
        blocking: BlockingCalls | None = None,
    ) -> None:
        self._runner = runner
        self._stats = stats
        self._clock = clock
        self._device_dir = device_dir
        self._wait = wait
        self._sysfs = sysfs_root
        self._udev_control = udev_control
        self._blocking = blocking or BlockingCalls()

    async def lookup(self, volume_id: str) -> Path | None:
        """One look: the resolved block device behind the first by-id name that exists, else None."""
        return await self._blocking.call(self._device_dir, self._lookup_now, volume_id)

    def _lookup_now(self, volume_id: str) -> Path | None:
        for name in candidate_names(volume_id):
            link = self._device_dir / name
            if not os.path.lexists(link):
                continue
            device = link.resolve()
            try:
                block_rdev(device)
            except DeviceNotFound:
                log.warning("%s exists but %s is not a block device; ignoring it", link, device)
                continue
            return device
        return None

    async def find(self, volume_id: str, hint: Path | None = None) -> Path:
        """The volume's device, waiting with rescans; the hint (Nova's guess) serves only as a last resort."""
        delay = self._wait.first_delay_seconds
        deadline = self._clock.monotonic() + self._wait.timeout_seconds
        while True:
            device = await self.lookup(volume_id)
            if device is not None:
                return device
            if hint is not None and await self._blocking.call(
                hint, self._hint_serial_matches, volume_id, hint
            ):
                return await self._blocking.call(hint, _resolved, hint)
            if self._clock.monotonic() >= deadline:
                break
            await self.rescan()
            await self._clock.sleep(delay)
            delay = min(delay * self._wait.factor, self._wait.max_delay_seconds)
        if hint is not None and await self._blocking.call(hint, self._hint_usable, volume_id, hint):
            log.warning("no by-id name for volume %s appeared; using the attach hint %s", volume_id, hint)
            return await self._blocking.call(hint, _resolved, hint)
        raise DeviceNotFound(
            f"no device for volume {volume_id} in {self._device_dir} after {self._wait.timeout_seconds:g}s "
            f"(looked for {', '.join(candidate_names(volume_id))})"
        )

    async def rescan(self) -> None:
        """Ask SCSI hosts to rescan and, where udevd runs, replay block events and let them settle."""
        await self._blocking.call(self._sysfs, self._scan_scsi_hosts)
        if self._runner.which("udevadm") is None or not self._udev_control.exists():
            return
        await self._runner.run(
            ["udevadm", "trigger", "--action=change", "--subsystem-match=block"], ok_codes=(0, 1)
        )
        await self._runner.run(
            ["udevadm", "settle", f"--timeout={_SETTLE_SECONDS}"],
            timeout_seconds=_SETTLE_SECONDS + 5,
            ok_codes=(0, 1),
        )

    def _scan_scsi_hosts(self) -> None:
        for scan in sorted((self._sysfs / "class" / "scsi_host").glob("host*/scan")):
            with contextlib.suppress(OSError):
                scan.write_text("- - -")

    async def wait_for_size(self, device: Path, min_bytes: int, timeout_seconds: float) -> int:
        """Wait (asking the device to rescan its capacity) until it holds min_bytes; returns its size."""
        delay = self._wait.first_delay_seconds
        deadline = self._clock.monotonic() + timeout_seconds
        while True:
            size = await self._stats.device_size_bytes(device)
            if size >= min_bytes:
                return size
            if self._clock.monotonic() >= deadline:
                raise DeviceTooSmall(
                    f"{device} holds {size} bytes, fewer than the {min_bytes} bytes expected "
                    f"(waited {timeout_seconds:g}s for it to grow)"
                )
            await self._blocking.call(device, self._rescan_capacity, device)
            await self._clock.sleep(delay)
            delay = min(delay * self._wait.factor, self._wait.max_delay_seconds)

    def _rescan_capacity(self, device: Path) -> None:
        """SCSI disks learn a new capacity only when asked; virtio and loop devices update by themselves."""
        folder = self._stats.block_dir_now(device)
        if folder is not None:
            with contextlib.suppress(OSError):
                (folder / "device" / "rescan").write_text("1")

    def _hint_serial_matches(self, volume_id: str, hint: Path) -> bool:
        serial = self._serial(hint)
        return serial is not None and serial == volume_id[:20] and self._hint_usable(volume_id, hint)

    def _hint_usable(self, volume_id: str, hint: Path) -> bool:
        """A block device that no by-id name gives to another volume and whose serial, if any, is ours."""
        try:
            rdev = block_rdev(hint)
        except DeviceNotFound:
            return False
        serial = self._serial(hint)
        if serial is not None and serial not in (volume_id[:20], volume_id):
            log.warning("attach hint %s has serial %r, not volume %s; ignoring it", hint, serial, volume_id)
            return False
        mine = set(candidate_names(volume_id))
        for link in self._links():
            if link.name in mine:
                continue
            with contextlib.suppress(OSError, DeviceNotFound):
                if block_rdev(link.resolve()) == rdev:
                    log.warning("attach hint %s is %s, another disk; ignoring it", hint, link.name)
                    return False
        return True

    def _links(self) -> list[Path]:
        try:
            return list(self._device_dir.iterdir())
        except FileNotFoundError:
            return []

    def _serial(self, device: Path) -> str | None:
        folder = self._stats.block_dir_now(device)
        if folder is None:
            return None
        try:
            return (folder / "serial").read_text().strip() or None
        except OSError:
            return None


def _resolved(path: Path) -> Path:
    return path.resolve()
