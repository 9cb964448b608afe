"""Content-addressed chunk store for backups: sha256 per chunk; incrementals write only changed chunks."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

CHUNK_BYTES = 1024 * 1024
_ZERO = bytes(CHUNK_BYTES)


class ChunkCorrupt(RuntimeError):
    """A stored chunk does not match its hash."""


@dataclass(frozen=True, slots=True)
class BackupResult:
    """What a backup stored."""

    chunks_total: int
    chunks_written: int


class ChunkStore:
    """Backups under DIR/backups: chunks/<aa>/<sha256> and manifests/<backup id>.json."""

    def __init__(self, root: Path) -> None:
        self._chunks = root / "chunks"
        self._manifests = root / "manifests"

    def _chunk_path(self, digest: str) -> Path:
        return self._chunks / digest[:2] / digest

    def _manifest_path(self, backup_id: str) -> Path:
        return self._manifests / f"{backup_id}.json"

    def manifest(self, backup_id: str) -> list[str | None]:
        """Chunk hashes of a backup (None for an all-zero chunk)."""
        doc = json.loads(self._manifest_path(backup_id).read_text())
        return list(doc["chunks"])

    def share(self, src_id: str, dst_id: str) -> None:
        """Give dst_id a manifest of the same chunks as src_id (chunks are shared, not copied)."""
        tmp = self._manifest_path(dst_id).with_suffix(".tmp")
        tmp.write_text(self._manifest_path(src_id).read_text())
        os.replace(tmp, self._manifest_path(dst_id))

    async def backup(self, src: Path, backup_id: str, parent_id: str | None) -> BackupResult:
        """Store src's chunks; with a parent, chunks equal to the parent's are not written again."""
        return await asyncio.to_thread(self._backup, src, backup_id, parent_id)

    def _backup(self, src: Path, backup_id: str, parent_id: str | None) -> BackupResult:
        parent = self.manifest(parent_id) if parent_id else []
        size = src.stat().st_size
        count = (size + CHUNK_BYTES - 1) // CHUNK_BYTES
        chunks: list[str | None] = [None] * count
        written = 0
        fd = os.open(src, os.O_RDONLY)
        try:
            for index in _data_chunks(fd, size):
                data = os.pread(fd, CHUNK_BYTES, index * CHUNK_BYTES)
                if data == _ZERO[: len(data)]:
                    continue
                digest = hashlib.sha256(data).hexdigest()
                chunks[index] = digest
                unchanged = index < len(parent) and parent[index] == digest
                if not unchanged and self._store_chunk(digest, data):
                    written += 1
        finally:
            os.close(fd)
        self._manifests.mkdir(parents=True, exist_ok=True)
        tmp = self._manifest_path(backup_id).with_suffix(".tmp")
        tmp.write_text(json.dumps({"size_bytes": size, "chunk_bytes": CHUNK_BYTES, "chunks": chunks}))
        os.replace(tmp, self._manifest_path(backup_id))
        return BackupResult(sum(1 for c in chunks if c), written)

    def _store_chunk(self, digest: str, data: bytes) -> bool:
        path = self._chunk_path(digest)
        if path.exists():
            return False
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{digest}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return True

    async def restore(self, backup_id: str, dst: Path, size_bytes: int) -> None:
        """Write a backup's data into a new file at dst of size_bytes, checking every chunk's hash."""
        await asyncio.to_thread(self._restore, backup_id, dst, size_bytes)

    def _restore(self, backup_id: str, dst: Path, size_bytes: int) -> None:
        chunks = self.manifest(backup_id)
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.ftruncate(fd, size_bytes)
            for index, digest in enumerate(chunks):
                if digest is None:
                    continue
                data = self._chunk_path(digest).read_bytes()
                if hashlib.sha256(data).hexdigest() != digest:
                    raise ChunkCorrupt(f"chunk {index} of backup {backup_id} does not match its hash")
                os.pwrite(fd, data, index * CHUNK_BYTES)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, dst)

    async def delete(self, backup_id: str, remaining: list[str]) -> None:
        """Drop a backup's manifest and every chunk no remaining backup refers to."""
        await asyncio.to_thread(self._delete, backup_id, remaining)

    def _delete(self, backup_id: str, remaining: list[str]) -> None:
        try:
            doomed = set(self.manifest(backup_id))
        except FileNotFoundError:
            return
        for other in remaining:
            try:
                doomed -= set(self.manifest(other))
            except FileNotFoundError:
                continue
        for digest in doomed:
            if digest:
                self._chunk_path(digest).unlink(missing_ok=True)
        self._manifest_path(backup_id).unlink(missing_ok=True)


def _data_chunks(fd: int, size: int) -> list[int]:
    """Indexes of chunks that hold data (holes skipped with SEEK_DATA/SEEK_HOLE)."""
    indexes: list[int] = []
    offset = 0
    while offset < size:
        try:
            start = os.lseek(fd, offset, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:
                break
            raise
        end = os.lseek(fd, start, os.SEEK_HOLE)
        first, last = start // CHUNK_BYTES, (end - 1) // CHUNK_BYTES
        indexes.extend(i for i in range(first, last + 1) if not indexes or i > indexes[-1])
        offset = (last + 1) * CHUNK_BYTES
    return indexes
