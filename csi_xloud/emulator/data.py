"""Volume data: sparse files per backend, sparse copies, and loop devices for attachments."""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass
from pathlib import Path

from csi_xloud import GIB


class CommandError(RuntimeError):
    """A command exited non-zero."""


async def run(*argv: str) -> str:
    """Run a command (argv list, no shell) and return its stdout; raise CommandError on failure."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise CommandError(f"{argv[0]} exited {proc.returncode}: {err.decode(errors='replace').strip()}")
    return out.decode()


@dataclass(frozen=True, slots=True)
class LoopDevice:
    """A loop device and the file behind it."""

    name: str
    back_file: str


async def list_loops() -> list[LoopDevice]:
    """Every loop device on the machine with its backing file."""
    out = await run("losetup", "--list", "--json", "--output", "NAME,BACK-FILE")
    if not out.strip():
        return []
    devices = json.loads(out).get("loopdevices", [])
    return [LoopDevice(str(d["name"]), strip_deleted(str(d.get("back-file") or ""))) for d in devices]


def _read_only(device: str) -> bool:
    try:
        return Path(f"/sys/block/{Path(device).name}/ro").read_text().strip() == "1"
    except OSError:
        return False


def strip_deleted(back_file: str) -> str:
    """The backing file path without the kernel's ' (deleted)' suffix."""
    return back_file.removesuffix(" (deleted)")


def is_under(path: str, root: Path) -> bool:
    """Whether path lies under root."""
    try:
        Path(path).resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True


class DataPlane:
    """Files of volumes and snapshots under DIR/backends/<backend>/, and loop devices for attachments."""

    def __init__(self, data_dir: Path) -> None:
        self._root = data_dir
        # Loop devices read and write their files directly, as a hypervisor's disk does: without it the
        # node's reads of a volume would fill a second cache, of the file, that no cloud disk has.
        # Off for good after a set-up with it failed (a filesystem that cannot do it, on older kernels).
        self._direct_io = True

    def volume_path(self, backend: str, volume_id: str) -> Path:
        """Where a volume's data lives."""
        return self._root / "backends" / backend / "volumes" / f"{volume_id}.img"

    def snapshot_path(self, backend: str, snapshot_id: str) -> Path:
        """Where a snapshot's data lives."""
        return self._root / "backends" / backend / "snapshots" / f"{snapshot_id}.img"

    async def create_sparse(self, path: Path, size_gib: int) -> None:
        """Make an empty sparse file of size_gib (replacing any earlier one)."""
        await asyncio.to_thread(_make_sparse, path, size_gib)

    async def copy_sparse(self, src: Path, dst: Path, size_gib: int) -> None:
        """Copy src to dst keeping holes, then grow dst to size_gib."""
        tmp = dst.with_suffix(".tmp")
        await asyncio.to_thread(dst.parent.mkdir, parents=True, exist_ok=True)
        await run("cp", "--sparse=always", "--reflink=auto", str(src), str(tmp))
        await asyncio.to_thread(_grow, tmp, size_gib)
        await asyncio.to_thread(os.replace, tmp, dst)

    async def grow(self, path: Path, size_gib: int) -> None:
        """Grow a file to size_gib; never shrinks."""
        await asyncio.to_thread(_grow, path, size_gib)

    async def move(self, src: Path, dst: Path) -> None:
        """Move a volume file to another backend folder (same inode: open loop devices keep working)."""
        await asyncio.to_thread(_move, src, dst)

    def remove(self, path: Path) -> None:
        """Delete a data file if present."""
        path.unlink(missing_ok=True)
        path.with_suffix(".tmp").unlink(missing_ok=True)

    async def attach(self, path: Path, link: Path) -> str:
        """Set up a writable loop device for path and point link at it; returns the loop device."""
        device = await self._writable_loop(path)
        await asyncio.to_thread(_point_link, link, device)
        return device

    async def _writable_loop(self, path: Path, tries: int = 5) -> str:
        # losetup falls back to read-only when it cannot open a fresh /dev/loopN read-write (a race
        # with the node's creation); such a device is useless to a guest, so take another one.
        # Concurrent set-ups (ours or other programs') can also race for the same free device.
        error: CommandError | None = None
        for attempt in range(tries):
            direct = ("--direct-io=on",) if self._direct_io else ()
            try:
                device = (await run("losetup", "--find", "--show", *direct, str(path))).strip()
            except CommandError as exc:
                error = exc
                if direct:  # perhaps only direct I/O was refused: every later try goes without it
                    self._direct_io = False
                    continue
            else:
                if not _read_only(device):
                    return device
                await self._detach_device(device)
            await asyncio.sleep(0.05 * (attempt + 1))
        raise error or CommandError(f"could not get a writable loop device for {path.name}")

    async def _detach_device(self, device: str, tries: int = 5) -> None:
        for attempt in range(tries):
            try:
                await run("losetup", "--detach", device)
                return
            except CommandError:
                if attempt == tries - 1:
                    raise
                await asyncio.sleep(0.1 * (attempt + 1))

    async def relink(self, device: str, link: Path) -> None:
        """Point link at an existing loop device."""
        await asyncio.to_thread(_point_link, link, device)

    async def detach(self, device: str | None, path: Path, link: Path) -> None:
        """Remove link and detach device if it still holds path."""
        await asyncio.to_thread(_remove_link, link)
        if not device:
            return
        wanted = await asyncio.to_thread(os.path.realpath, path)
        for loop in await list_loops():
            if loop.name == device and await asyncio.to_thread(os.path.realpath, loop.back_file) == wanted:
                await self._detach_device(device)

    async def remove_link(self, link: Path) -> None:
        """Remove a by-id symlink if present."""
        await asyncio.to_thread(_remove_link, link)

    async def release(self, device: str) -> None:
        """Detach a loop device known to be ours."""
        await self._detach_device(device)

    async def refresh_size(self, device: str) -> None:
        """Make a loop device pick up its file's new size, as a hypervisor does on extend."""
        await run("losetup", "--set-capacity", device)

    async def flush(self, device: str) -> None:
        """Flush a loop device's buffers so its file holds everything written."""
        await run("blockdev", "--flushbufs", device)

    async def loops_under_root(self) -> list[LoopDevice]:
        """Loop devices whose backing file lies under the data directory."""
        return [
            loop for loop in await list_loops() if loop.back_file and is_under(loop.back_file, self._root)
        ]


def _make_sparse(path: Path, size_gib: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        f.truncate(size_gib * GIB)
    os.replace(tmp, path)


def _grow(path: Path, size_gib: int) -> None:
    if path.stat().st_size < size_gib * GIB:
        os.truncate(path, size_gib * GIB)


def _move(src: Path, dst: Path) -> None:
    if src.exists():
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dst)


def _point_link(link: Path, device: str) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    tmp = link.with_name(link.name + ".tmp")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(device)
    os.replace(tmp, link)


def _remove_link(link: Path) -> None:
    if link.is_symlink():
        link.unlink(missing_ok=True)
