"""One volume's whole life as Kubernetes drives it, with data written on one node and checked on another."""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from csi_xloud import GIB
from csi_xloud.demo.orchestrator import Orchestrator, PersistentVolume, mount_capability


@dataclass(frozen=True, slots=True)
class LifeResult:
    """What one lifecycle wrote and what it read back."""

    volume_id: str
    written_sha256: str
    read_sha256: str

    @property
    def intact(self) -> bool:
        return self.written_sha256 == self.read_sha256


def write_payload(root: Path, size_bytes: int) -> str:
    data = os.urandom(size_bytes)
    with (root / "payload.bin").open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    return hashlib.sha256(data).hexdigest()


def read_payload(root: Path) -> str:
    return hashlib.sha256((root / "payload.bin").read_bytes()).hexdigest()


async def mounted_on(co: Orchestrator, pv: PersistentVolume, node: str) -> tuple[Path, str]:
    """Attach, stage and publish on a node; the publish path and the pod uid."""
    pod = str(uuid.uuid4())
    await co.attach(pv, node)
    await co.stage(pv, node)
    return await co.publish(pv, node, pod), pod


async def taken_down(co: Orchestrator, pv: PersistentVolume, node: str, pod: str) -> None:
    await co.unpublish(pv, node, pod)
    await co.unstage(pv, node)
    await co.detach(pv, node)


async def lifecycle(
    co: Orchestrator, writer: str, reader: str, fs_type: str = "ext4", payload_bytes: int = 1 << 20
) -> LifeResult:
    """Provision, attach, stage, publish, write; take it down; bring it up on reader, read; delete."""
    pv = await co.provision(GIB, mount_capability(fs_type))
    try:
        target, pod = await mounted_on(co, pv, writer)
        written = await asyncio.to_thread(write_payload, target, payload_bytes)
        await taken_down(co, pv, writer, pod)
        target, pod = await mounted_on(co, pv, reader)
        read = await asyncio.to_thread(read_payload, target)
        await taken_down(co, pv, reader, pod)
    finally:
        await co.delete(pv)
    return LifeResult(pv.volume_id, written, read)
