"""A server's lifecycle as Compute runs it: build, stop, start and delete, each taking op_seconds.

The step in flight is stored in the server's `pending` in the same transaction that starts it, so
`resume()` runs it again after a restart. What each step does to the server's volumes:

- build: the boot volume (reserved when the request was accepted) is attached as the server's
  root disk; a failed build (fault outcome "error") leaves the server in ERROR and the volume
  available again.
- stop / start: a shut-off guest has no disks, so the loop devices and by-id links go away and come
  back; the attachments stay (Compute detaches from and attaches to stopped servers as usual).
- delete: every attachment is detached and its volume is available again (deleted when it was
  attached with delete_on_termination). When that clean-up fails (fault outcome "error"), the server
  is gone all the same but the Storage API keeps its attachments, as when Compute's calls to Cinder
  fail during a delete: volumes stay in-use, attached to a server that no longer exists.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from csi_xloud.emulator.models import (
    Attachment,
    AttachStatus,
    Server,
    ServerStatus,
    Volume,
    VolumeStatus,
    now,
)
from csi_xloud.emulator.ops import Operations
from csi_xloud.emulator.state import Store

log = logging.getLogger(__name__)

# Compute's task_state while a step runs.
TASK_STATES = {"build": "spawning", "stop": "powering-off", "start": "powering-on", "delete": "deleting"}


class ServerOperations:
    """Starts and resumes server lifecycle steps; `on_change` runs when servers come or go."""

    def __init__(self, store: Store, ops: Operations, on_change: Callable[[], None]) -> None:
        self._store = store
        self._ops = ops
        self._on_change = on_change

    def changed(self) -> None:
        """Servers came or went: tell whoever lists them (servers.json)."""
        self._on_change()

    def attachments(self, server_id: str) -> list[Attachment]:
        """Every attachment of a server."""
        return [a for a in self._store.all(Attachment) if a.server_id == server_id]

    def begin(self, server: Server, op: str, *records: Any) -> Server:
        """Record the step (with any records it changes at once) and run it."""
        started = dataclasses.replace(server, pending={"op": op}, updated_at=now())
        self._store.put(started, *records)
        self._ops.spawn(self._run(server.id), f"server {op} {server.id}")
        return started

    async def resume(self) -> None:
        """Run again every step a stop of the emulator interrupted."""
        for server in self._store.all(Server):
            if server.pending is not None:
                self._ops.spawn(self._run(server.id), f"server {server.pending['op']} {server.id}")

    async def _run(self, server_id: str) -> None:
        server = self._store.get(Server, server_id)
        if server is None or server.pending is None:
            return
        op = str(server.pending["op"])
        step = {"build": self._build, "stop": self._stop, "start": self._start, "delete": self._delete}[op]
        try:
            await self._ops.tick()
        except RuntimeError as exc:
            log.warning("server %s %s failed: %s", server_id, op, exc)
            await self._failed(server_id, op)
            return
        current = self._store.get(Server, server_id)
        if current is None or (current.pending or {}).get("op") != op:
            return  # deleted or reset meanwhile: the later step has its own run
        await step(server_id)

    def _finish(self, server_id: str, **changes: Any) -> Server | None:
        server = self._store.get(Server, server_id)
        if server is None:
            return None
        done = dataclasses.replace(server, pending=None, updated_at=now(), **changes)
        self._store.put(done)
        return done

    async def _build(self, server_id: str) -> None:
        for att in self.attachments(server_id):
            if att.status != AttachStatus.ATTACHED:
                att = self._ops.put_attachment(att, status=AttachStatus.ATTACHED, attached_at=now())
            if att.loop_device is None:
                await self._ops.plug(att)
        self._finish(server_id, status=ServerStatus.ACTIVE)

    async def _stop(self, server_id: str) -> None:
        for att in self.attachments(server_id):
            await self._ops.unplug(att)
        self._finish(server_id, status=ServerStatus.SHUTOFF)

    async def _start(self, server_id: str) -> None:
        await self.plug_all(server_id)
        self._finish(server_id, status=ServerStatus.ACTIVE)

    async def plug_all(self, server_id: str) -> None:
        """Give every attached volume of a running (or starting) server its device."""
        for att in self.attachments(server_id):
            if att.status == AttachStatus.ATTACHED and att.loop_device is None and not att.legacy:
                await self._ops.plug(att)

    async def _delete(self, server_id: str) -> None:
        server = self._store.get(Server, server_id)
        if server is None:
            return
        for att in self.attachments(server_id):
            await self._ops.unplug(att)
            self._store.delete(att)
            self._ops.settle_volume(att.volume_id)
            if att.delete_on_termination:
                self._delete_volume(att.volume_id)
        self._forget(server)

    def _delete_volume(self, volume_id: str) -> None:
        vol = self._store.get(Volume, volume_id)
        if vol is None or vol.status != VolumeStatus.AVAILABLE:
            return
        self._store.put(
            dataclasses.replace(vol, status=VolumeStatus.DELETING, pending={"op": "delete"}, updated_at=now())
        )
        self._ops.start_volume(volume_id)

    def _forget(self, server: Server) -> None:
        """The server record goes, and with it its by-id folder."""
        self._store.delete(server)
        folder = Path(server.device_dir)
        shutil.rmtree(folder, ignore_errors=True)
        if folder.name == "by-id":
            shutil.rmtree(folder.parent, ignore_errors=True)
        self._on_change()

    async def _failed(self, server_id: str, op: str) -> None:
        """What a failed step leaves: see the module docstring."""
        server = self._store.get(Server, server_id)
        if server is None:
            return
        if op == "delete":
            for att in self.attachments(server_id):
                att = await self._ops.unplug(att)
                self._ops.put_attachment(att, status=AttachStatus.ATTACHED)
            self._forget(server)
            return
        if op == "build":
            for att in self.attachments(server_id):
                self._store.delete(att)
                self._ops.settle_volume(att.volume_id)
        self._finish(server_id, status=ServerStatus.ERROR)
