"""Mounts: mount, bind, read-only bind, unmount (also of broken mounts); the mount table from mountinfo."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import re
from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from csi_xloud.osutil.blocking import BlockingCalls
from csi_xloud.osutil.errors import BadMountOption, CommandFailed, OsUtilError
from csi_xloud.osutil.libs import LibcMount, syscall_mount_args
from csi_xloud.osutil.runner import Runner

log = logging.getLogger(__name__)

# Errors with which the kernel answers for a mount whose server or daemon is gone.
BROKEN_MOUNT_ERRNOS = frozenset({errno.ENOTCONN, errno.ESTALE, errno.EIO, errno.EHOSTDOWN})
_OPTION = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.=:/+@-]*$")
# SELinux context options as the kubelet passes them for CSIDriver.seLinuxMount, e.g.
# context="system_u:object_r:container_file_t:s0:c98,c99" (quoted because the label holds a comma).
_SELINUX_OPTION = re.compile(r'^(context|fscontext|defcontext|rootcontext)="[A-Za-z0-9_.:,-]+"$')
_COMMA_OUTSIDE_QUOTES = re.compile(r',(?=(?:[^"]*"[^"]*")*[^"]*$)')
# Options that would turn a mount into another operation or expose other parts of the host.
_FORBIDDEN_OPTIONS = frozenset({"bind", "rbind", "move", "remount", "x-mount.mkdir"})
_MAX_STACKED_UNMOUNTS = 8


@dataclass(frozen=True, slots=True)
class MountEntry:
    """One line of /proc/self/mountinfo."""

    mount_id: int
    parent_id: int
    major: int
    minor: int
    root: str  # the folder of the source filesystem that appears at mount_point
    mount_point: Path
    options: frozenset[str]  # per-mount: ro for a read-only bind
    fs_type: str
    source: str
    super_options: frozenset[str]  # per-filesystem: ro when the filesystem itself is read-only
    propagation: frozenset[str] = frozenset()  # optional fields: shared:N, master:N, unbindable

    @property
    def shared(self) -> bool:
        """Whether mounts made below this one propagate to its peers (mount --make-shared)."""
        return any(tag.startswith("shared:") for tag in self.propagation)

    @property
    def read_only(self) -> bool:
        return "ro" in self.options

    @property
    def super_read_only(self) -> bool:
        return "ro" in self.super_options

    @property
    def device_number(self) -> int:
        return os.makedev(self.major, self.minor)


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), field)


def parse_mountinfo(text: str) -> list[MountEntry]:
    """Parse the kernel's mountinfo format (proc(5)); lines it cannot read are skipped with a warning."""
    entries = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        head, tail = left.split(), right.split()
        if not sep or len(head) < 6 or len(tail) < 3:
            if line.strip():
                log.warning("unreadable mountinfo line: %r", line)
            continue
        major, _, minor = head[2].partition(":")
        entries.append(
            MountEntry(
                mount_id=int(head[0]),
                parent_id=int(head[1]),
                major=int(major),
                minor=int(minor),
                root=_unescape(head[3]),
                mount_point=Path(_unescape(head[4])),
                options=frozenset(head[5].split(",")),
                fs_type=tail[0],
                source=_unescape(tail[1]),
                super_options=frozenset(tail[2].split(",")),
                propagation=frozenset(head[6:]),
            )
        )
    return entries


def check_mount_options(options: Iterable[str]) -> list[str]:
    """Split and check mount flags from a request: plain option words only, no bind/move/remount."""
    checked = []
    for option in options:
        if option.count('"') % 2:
            raise BadMountOption(f"mount option {option!r} has an unbalanced quote")
        for word in _COMMA_OUTSIDE_QUOTES.split(option):
            if _SELINUX_OPTION.match(word):
                checked.append(word)
                continue
            if not _OPTION.match(word):
                raise BadMountOption(f"mount option {word!r} is not allowed")
            if word.split("=", 1)[0] in _FORBIDDEN_OPTIONS:
                raise BadMountOption(f"mount option {word!r} is not allowed")
            checked.append(word)
    return checked


def is_broken(path: Path) -> bool:
    """True when the path answers with a broken-mount error (its FUSE daemon or NFS server is gone)."""
    try:
        os.stat(path)
    except OSError as exc:
        return exc.errno in BROKEN_MOUNT_ERRNOS
    return False


class Mounter:
    """Mounts and unmounts with mount(8)/umount(8); reads the table from mountinfo, never from mount(8)."""

    def __init__(
        self,
        runner: Runner,
        mountinfo: Path = Path("/proc/self/mountinfo"),
        blocking: BlockingCalls | None = None,
        libc: LibcMount | None = None,
    ) -> None:
        self._runner = runner
        self._mountinfo = mountinfo
        self._blocking = blocking or BlockingCalls()
        self._libc = libc

    async def entries(self) -> list[MountEntry]:
        """The mount table; read in a thread, as a long table (or a busy kernel) takes its time."""
        return parse_mountinfo(await self._blocking.call(self._mountinfo, self._mountinfo.read_text))

    async def find(self, path: Path) -> MountEntry | None:
        """The top mount at exactly this path (the last one mounted over it), or None."""
        found = None
        for entry in await self.entries():
            if entry.mount_point == path:
                found = entry
        return found

    async def is_mounted(self, path: Path) -> bool:
        return await self.find(path) is not None

    async def containing(self, path: Path) -> MountEntry:
        """The mount whose filesystem holds the path (the longest mount point above it)."""
        best: MountEntry | None = None
        for entry in await self.entries():
            if path.is_relative_to(entry.mount_point) and (
                best is None or len(entry.mount_point.parts) >= len(best.mount_point.parts)
            ):
                best = entry
        if best is None:
            raise OsUtilError(f"no mount holds {path}")
        return best

    async def bind_identity(self, path: Path) -> tuple[int, str]:
        """(device number, folder within that filesystem) that a bind mount of the path shows in mountinfo."""
        holder = await self.containing(path)
        inside = path.relative_to(holder.mount_point)
        return holder.device_number, str(PurePosixPath(holder.root, inside))

    async def mount(self, source: Path, target: Path, fs_type: str, options: Sequence[str] = ()) -> None:
        """Mount a filesystem: with mount(2) when the options map onto it exactly as mount(8) maps them,
        else (SELinux contexts, options mount(8) handles itself) or when the call fails, with mount(8)."""
        log.debug("mounting %s (%s) at %s with %s", source, fs_type, target, ",".join(options) or "defaults")
        syscall = syscall_mount_args(options) if self._libc is not None else None
        if syscall is not None and self._libc is not None:
            mounting = asyncio.to_thread(self._libc.mount, source, target, fs_type, *syscall)
            failed = await _unabandoned(mounting)
            if not failed:
                return
            # mount(8) reports the failure in its words, and retries read-only where it would.
            log.debug("mount(2) of %s failed: %s; running mount(8)", source, os.strerror(failed))
        argv = ["mount", "-t", fs_type]
        if options:
            argv += ["-o", ",".join(options)]
        await self._runner.run([*argv, "--", str(source), str(target)])

    async def bind(self, source: Path, target: Path, read_only: bool) -> None:
        """Bind mount source onto target; a read-only bind needs a second, remounting step."""
        log.debug("bind mounting %s at %s%s", source, target, " read-only" if read_only else "")
        await self._runner.run(["mount", "--bind", "--", str(source), str(target)])
        if not read_only:
            return
        try:
            await self._runner.run(["mount", "-o", "remount,bind,ro", "--", str(target)])
        except BaseException:
            # Never leave a writable bind behind where a read-only one was asked for.
            await self._runner.run(["umount", "--", str(target)])
            raise

    async def unmount(self, target: Path) -> bool:
        """Unmount every mount stacked on target; broken mounts are detached lazily. False: none was there."""
        unmounted = False
        for _ in range(_MAX_STACKED_UNMOUNTS):
            if await self.find(target) is None:
                return unmounted
            await self._unmount_once(target)
            unmounted = True
        raise OsUtilError(f"{target} is still mounted after {_MAX_STACKED_UNMOUNTS} unmounts")

    async def _unmount_once(self, target: Path) -> None:
        log.debug("unmounting %s", target)
        try:
            await self._runner.run(["umount", "--", str(target)])
        except CommandFailed:
            if not await self._blocking.call(target, is_broken, target):
                raise
            log.warning("%s is a broken mount; detaching it lazily", target)
            await self._runner.run(["umount", "--lazy", "--force", "--", str(target)])


async def _unabandoned(call: Awaitable[int]) -> int:
    """Await a call in a thread; a cancelled caller still waits for it: no mount lands after the answer."""
    task = asyncio.ensure_future(call)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await task
        raise
