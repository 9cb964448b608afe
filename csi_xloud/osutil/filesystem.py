"""Filesystems: what a device holds (blkid), and one table row per filesystem for mkfs, size and grow."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from csi_xloud.osutil.errors import CommandFailed, OsUtilError
from csi_xloud.osutil.libs import SAFEPROBE_AMBIVALENT, SAFEPROBE_NOTHING, LibBlkid
from csi_xloud.osutil.runner import Runner

log = logging.getLogger(__name__)

_BLKID_NOTHING_FOUND = 2
_BLKID_AMBIVALENT = 8
_PROBE_TIMEOUT_SECONDS = 30.0
_MKFS_TIMEOUT_SECONDS = 600.0


@dataclass(frozen=True, slots=True)
class Signature:
    """What a low-level blkid probe found on a device: a filesystem, RAID/LVM/LUKS member, partition table."""

    type: str | None = None  # ext4, xfs, LVM2_member, linux_raid_member, crypto_LUKS, ...
    usage: str | None = None  # filesystem, raid, crypto, other
    partition_table: str | None = None  # dos, gpt
    label: str | None = None
    ambivalent: bool = False  # several signatures at once: blkid cannot tell which is real

    @property
    def blank(self) -> bool:
        """True only when nothing at all was found: the one state in which we may format."""
        return self.type is None and self.partition_table is None and not self.ambivalent

    def describe(self) -> str:
        if self.ambivalent:
            return "several conflicting signatures"
        found = []
        if self.type:
            found.append(f"{self.type} ({self.usage or 'unknown use'})")
        if self.partition_table:
            found.append(f"a {self.partition_table} partition table")
        return " and ".join(found) or "nothing"


def _bytes_from(pattern: str) -> Callable[[str], int]:
    """A parser that multiplies the two numbers a regex finds (block size and block count)."""
    regex = re.compile(pattern, re.MULTILINE)

    def parse(text: str) -> int:
        match = regex.search(text)
        if match is None:
            raise OsUtilError(f"cannot read the filesystem size from: {text.strip()[:300]!r}")
        return int(match["bsize"]) * int(match["blocks"])

    return parse


@dataclass(frozen=True, slots=True)
class FsKind:
    """One filesystem: how to make it fast, how to read its size, how to grow it online, how to mount it.

    Argument templates may hold {device} and {mount}. grow_unmounted, when a filesystem has it,
    grows a filesystem before its first mount: no kernel privilege needed, nobody writing yet.
    """

    name: str
    mkfs: tuple[str, ...]
    size: tuple[str, ...]
    parse_size: Callable[[str], int]
    grow: tuple[str, ...]
    mount_options: tuple[str, ...]
    grow_unmounted: tuple[tuple[str, ...], ...] = ()

    @property
    def tools(self) -> tuple[str, ...]:
        return tuple(
            dict.fromkeys([self.mkfs[0], self.size[0], self.grow[0], *(a[0] for a in self.grow_unmounted)])
        )


FILESYSTEMS: Mapping[str, FsKind] = MappingProxyType(
    {
        "ext4": FsKind(
            name="ext4",
            # lazy_itable_init: the kernel zeroes the inode tables in the background after the first
            # mount. lazy_journal_init: mke2fs does not zero the journal, and nothing does later; a
            # fresh volume reads back zeros anyway, and mke2fs(8) names the small risk otherwise (a
            # crash before the journal has been written through once). Both spare writing hundreds
            # of MiB on large disks without a write-zeroes command. nodiscard skips a device-wide TRIM,
            # wasted on a fresh thin cloud volume and slow there. Without a terminal mke2fs
            # overwrites an existing filesystem unasked: the probe is the only guard.
            mkfs=("mkfs.ext4", "-q", "-E", "lazy_itable_init=1,lazy_journal_init=1,nodiscard", "{device}"),
            size=("dumpe2fs", "-h", "{device}"),
            parse_size=_bytes_from(r"^Block count:\s+(?P<blocks>\d+)[\s\S]*^Block size:\s+(?P<bsize>\d+)"),
            grow=("resize2fs", "{device}"),
            mount_options=(),
            # resize2fs insists on a fresh forced check before it grows an unmounted filesystem.
            grow_unmounted=(("e2fsck", "-f", "-p", "{device}"), ("resize2fs", "{device}")),
        ),
        "xfs": FsKind(
            name="xfs",
            # -K: no discard at mkfs time. No -f, so mkfs.xfs also refuses an existing signature.
            mkfs=("mkfs.xfs", "-q", "-K", "{device}"),
            size=("xfs_info", "{mount}"),
            parse_size=_bytes_from(r"^data\s+=\s+bsize=(?P<bsize>\d+)\s+blocks=(?P<blocks>\d+)"),
            grow=("xfs_growfs", "-d", "{mount}"),
            # A clone or a restored snapshot carries its source's UUID; XFS refuses a second mount
            # of the same UUID unless told not to check.
            mount_options=("nouuid",),
        ),
    }
)


def fs_kind(name: str) -> FsKind:
    try:
        return FILESYSTEMS[name]
    except KeyError:
        raise OsUtilError(f"unsupported filesystem {name!r} (supported: {', '.join(FILESYSTEMS)})") from None


def _argv(template: tuple[str, ...], device: Path | None = None, mount: Path | None = None) -> list[str]:
    return [arg.format(device=device, mount=mount) for arg in template]


class Filesystems:
    """Probes, formats, measures and grows filesystems with the tools of the fs table."""

    def __init__(self, runner: Runner, blkid: LibBlkid | None = None) -> None:
        self._runner = runner
        self._blkid = blkid

    async def probe(self, device: Path) -> Signature:
        """Low-level probe (as `blkid -p`: no cache, superblocks and partition tables) of everything on
        the device; in the process with libblkid when it is loaded, else with the blkid command."""
        if self._blkid is not None:
            probing = asyncio.to_thread(self._blkid.probe, device)
            found = await asyncio.wait_for(probing, _PROBE_TIMEOUT_SECONDS)
            if found.code == SAFEPROBE_NOTHING:
                return Signature()
            if found.code == SAFEPROBE_AMBIVALENT:
                return Signature(ambivalent=True)
            if found.code == 0:
                return _signature(found.values)
            # The probe failed (the device cannot be read?): the command says why, in its own words.
        return await self._probe_command(device)

    async def _probe_command(self, device: Path) -> Signature:
        result = await self._runner.run(
            ["blkid", "-p", "-o", "export", str(device)],
            ok_codes=(0, _BLKID_NOTHING_FOUND, _BLKID_AMBIVALENT),
            timeout_seconds=_PROBE_TIMEOUT_SECONDS,
        )
        if result.returncode == _BLKID_NOTHING_FOUND:
            return Signature()
        if result.returncode == _BLKID_AMBIVALENT:
            return Signature(ambivalent=True)
        return _signature(_export_fields(result.stdout))

    async def make(self, device: Path, kind: FsKind, found: Signature) -> None:
        """Make the filesystem on a device that the caller's probe, its last look at the device, found
        blank. mke2fs without a terminal overwrites a filesystem unasked, so that probe is the only
        guard; a second one right before mkfs would guard no moment it does not.
        """
        if not found.blank:
            raise OsUtilError(f"{device} holds {found.describe()}: it is not formatted")
        log.debug("formatting %s as %s", device, kind.name)
        await self._runner.run(
            _argv(kind.mkfs, device=device), timeout_seconds=_MKFS_TIMEOUT_SECONDS, cancellable=False
        )

    async def size_bytes(self, kind: FsKind, device: Path, mount: Path | None) -> int:
        """The size the filesystem itself believes it has (mount may be None for an unmounted ext4)."""
        result = await self._runner.run(_argv(kind.size, device=device, mount=mount))
        return kind.parse_size(result.stdout)

    async def grow(self, kind: FsKind, device: Path, mount: Path) -> None:
        """Grow the mounted filesystem online to fill its device."""
        log.debug("growing %s filesystem on %s (mounted at %s)", kind.name, device, mount)
        argv = _argv(kind.grow, device=device, mount=mount)
        try:
            await self._runner.run(argv, timeout_seconds=_MKFS_TIMEOUT_SECONDS, cancellable=False)
        except CommandFailed as exc:
            if "Permission denied" not in exc.stderr:
                raise
            raise OsUtilError(
                f"{argv[0]}: the kernel refused to grow {device} online; growing a mounted {kind.name} "
                "needs CAP_SYS_RESOURCE (run the node plugin privileged)"
            ) from exc

    async def grow_unmounted(self, kind: FsKind, device: Path) -> None:
        """Grow a filesystem that nothing has mounted (only for kinds with grow_unmounted steps)."""
        log.debug("growing unmounted %s filesystem on %s", kind.name, device)
        for template in kind.grow_unmounted:
            # e2fsck -p: 1 means it corrected something harmless; 2 and up need a human.
            codes = (0, 1) if template[0] == "e2fsck" else (0,)
            await self._runner.run(
                _argv(template, device=device),
                ok_codes=codes,
                timeout_seconds=_MKFS_TIMEOUT_SECONDS,
                cancellable=False,
            )

    async def find_by_label(self, label: str) -> list[Path]:
        """Every block device whose filesystem has the label (a fresh scan, not the blkid cache)."""
        result = await self._runner.run(
            ["blkid", "-c", "/dev/null", "-o", "device", "-t", f"LABEL={label}"],
            ok_codes=(0, _BLKID_NOTHING_FOUND),
            timeout_seconds=_PROBE_TIMEOUT_SECONDS,
        )
        return [Path(line) for line in result.stdout.split() if line]


def _signature(fields: Mapping[str, str]) -> Signature:
    return Signature(
        type=fields.get("TYPE"),
        usage=fields.get("USAGE"),
        partition_table=fields.get("PTTYPE"),
        label=fields.get("LABEL"),
    )


def _export_fields(text: str) -> dict[str, str]:
    """Parse `blkid -o export` lines (KEY=value, with backslash escapes in values)."""
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            fields[key.strip()] = re.sub(r"\\(.)", r"\1", value)
    return fields


def can_grow_mounted_ext4(status: Path = Path("/proc/self/status")) -> bool:
    """The kernel grows a mounted ext4 only for holders of CAP_SYS_RESOURCE (capability bit 24)."""
    for line in status.read_text().splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) & (1 << 24))
    return False
