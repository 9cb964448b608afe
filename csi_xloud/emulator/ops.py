"""Asynchronous operations: each status transition takes op_seconds, then does the real data work.

An operation in flight is recorded in the record's `pending` field (or in the attachment's status) in
the same transaction that starts it, so after a restart `resume()` runs it again; every operation is
idempotent (copies go to a temporary file and are renamed into place).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from pathlib import Path
from typing import Any

from csi_xloud import GIB
from csi_xloud.emulator.backups import ChunkStore
from csi_xloud.emulator.chaos import FORCED_OUTCOME, REQUEST_ID, STUCK_RELEASE
from csi_xloud.emulator.data import DataPlane
from csi_xloud.emulator.models import (
    Attachment,
    AttachStatus,
    Backup,
    BackupStatus,
    InstanceAction,
    Server,
    ServerStatus,
    Snapshot,
    SnapshotStatus,
    Volume,
    VolumeStatus,
    VolumeType,
    now,
)
from csi_xloud.emulator.scheduler import pick_backend
from csi_xloud.emulator.state import Store
from csi_xloud.emulator.usermessages import (
    CREATE_FAILED,
    EXTEND_FAILED,
    EXTEND_NO_BACKEND,
    NO_VALID_BACKEND,
    SNAPSHOT_FAILED,
    record,
)

log = logging.getLogger(__name__)



class Refused(RuntimeError):
    """The scheduler found no backend for the work: the resource settles back where it was."""


class NoValidBackend(RuntimeError):
    """No backend's pool satisfies the volume's type: the scheduler leaves it in error, with no host."""


def backend_of(vtype: VolumeType | None) -> str:
    """The backend the scheduler puts a type's volumes on; '' when none can serve the type."""
    return pick_backend(vtype) or ""


def settled_status(attachments: list[Attachment]) -> VolumeStatus:
    """A volume's status given its attachments."""
    states = {a.status for a in attachments}
    if AttachStatus.DETACHING in states:
        return VolumeStatus.DETACHING
    if AttachStatus.ATTACHING in states:
        return VolumeStatus.ATTACHING
    if AttachStatus.RESERVED in states:
        return VolumeStatus.ATTACHING if AttachStatus.ATTACHED in states else VolumeStatus.RESERVED
    return VolumeStatus.IN_USE if states else VolumeStatus.AVAILABLE


class Operations:
    """Runs and resumes the emulator's asynchronous operations."""

    def __init__(self, store: Store, data: DataPlane, chunks: ChunkStore, op_seconds: float) -> None:
        self._store = store
        self._data = data
        self._chunks = chunks
        self._op_seconds = op_seconds
        self._tasks: set[asyncio.Task[None]] = set()

    # -- plumbing ---------------------------------------------------------------------------------

    def _spawn(self, coro: Any, what: str) -> None:
        async def guarded() -> None:
            try:
                await coro
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("operation %s failed", what)

        task = asyncio.get_running_loop().create_task(guarded(), name=what)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _tick(self, fraction: float = 1.0) -> None:
        """Let the operation take its time; a fault rule's forced outcome strikes here."""
        if self._op_seconds > 0:
            await asyncio.sleep(self._op_seconds * fraction)
        outcome = FORCED_OUTCOME.get()
        if outcome == "refused":
            raise Refused("no backend can take the work (injected by a fault rule)")
        if outcome == "error":
            raise RuntimeError("the backend failed (injected by a fault rule)")
        if outcome == "stuck":
            # Until the fault rules are cleared, or shutdown (a restart resumes and finishes it).
            await (STUCK_RELEASE.get() or asyncio.Event()).wait()

    def spawn(self, coro: Any, what: str) -> None:
        """Run work of another module as one of these operations (given time to finish at shutdown)."""
        self._spawn(coro, what)

    async def tick(self, fraction: float = 1.0) -> None:
        """One transition's time, for work of another module (fault rules strike here too)."""
        await self._tick(fraction)

    def has_backup_data(self, backup_id: str) -> bool:
        """Whether the chunk store holds a backup's manifest."""
        try:
            self._chunks.manifest(backup_id)
        except (FileNotFoundError, ValueError):
            return False
        return True

    def share_backup_data(self, src_id: str, dst_id: str) -> bool:
        """Let backup dst_id use the chunks of src_id's data (an imported record under a new id)."""
        if not self.has_backup_data(src_id):
            return False
        self._chunks.share(src_id, dst_id)
        return True

    def running(self) -> int:
        """How many operations are in flight."""
        return len(self._tasks)

    def attachments_of(self, volume_id: str) -> list[Attachment]:
        """Attachments of a volume."""
        return [a for a in self._store.all(Attachment) if a.volume_id == volume_id]

    def volume_path(self, vol: Volume) -> Path:
        """Where a volume's data lives."""
        return self._data.volume_path(vol.backend, vol.id)

    def link_path(self, att: Attachment) -> Path | None:
        """The by-id symlink of an attachment on its server."""
        server = self._store.get(Server, att.server_id or "")
        if server is None:
            return None
        return Path(server.device_dir) / f"virtio-{att.volume_id[:20]}"

    def _powered_off(self, att: Attachment) -> bool:
        """Whether the attachment's server is shut off: its disks have no device until it starts."""
        server = self._store.get(Server, att.server_id or "")
        return server is not None and server.status == ServerStatus.SHUTOFF

    def _update_volume(self, vol_id: str, **changes: Any) -> Volume | None:
        vol = self._store.get(Volume, vol_id)
        if vol is None:
            return None
        new = dataclasses.replace(vol, updated_at=now(), **changes)
        self._store.put(new)
        return new

    async def flush_volume(self, vol: Volume) -> None:
        """Flush every loop device of a volume so its file holds what was written."""
        for att in self.attachments_of(vol.id):
            if att.loop_device:
                try:
                    await self._data.flush(att.loop_device)
                except Exception:
                    log.warning("flush of %s failed", att.loop_device, exc_info=True)

    # -- start ------------------------------------------------------------------------------------

    def start_volume(self, vol_id: str) -> None:
        """Run a volume's pending operation."""
        self._spawn(self._volume_op(vol_id), f"volume {vol_id}")

    def start_snapshot(self, snap_id: str) -> None:
        """Run a snapshot's pending operation."""
        self._spawn(self._snapshot_op(snap_id), f"snapshot {snap_id}")

    def start_backup(self, backup_id: str) -> None:
        """Run a backup's pending operation."""
        self._spawn(self._backup_op(backup_id), f"backup {backup_id}")

    def start_attach(self, att_id: str) -> None:
        """Bring an attachment up (reserved -> attaching -> attached)."""
        action = self._start_action(att_id, "attach_volume")
        self._spawn(self._attach(att_id, action), f"attach {att_id}")

    def start_detach(self, att_id: str) -> None:
        """Take an attachment down (detaching -> gone)."""
        action = self._start_action(att_id, "detach_volume")
        self._spawn(self._detach(att_id, action), f"detach {att_id}")

    def _start_action(self, att_id: str, action: str) -> str | None:
        """The instance action of the Compute request being answered (none when resuming after a start)."""
        request_id = REQUEST_ID.get()
        att = self._store.get(Attachment, att_id)
        vol = self._store.get(Volume, att.volume_id) if att is not None else None
        if request_id is None or att is None or att.server_id is None or vol is None:
            return None
        stamp = now()
        self._store.put(
            InstanceAction(
                id=request_id, server_id=att.server_id, project_id=vol.project_id, user_id=vol.user_id,
                action=action, event=f"compute_{action}", start_time=stamp, updated_at=stamp,
            )
        )
        return request_id

    def _finish_action(self, action_id: str | None, failure: Exception | None) -> None:
        action = self._store.get(InstanceAction, action_id) if action_id else None
        if action is None:
            return
        stamp = now()
        self._store.put(
            dataclasses.replace(
                action, finish_time=stamp, updated_at=stamp, result="Error" if failure else "Success",
                details=str(failure) if failure else None,
            )
        )

    # -- volumes ----------------------------------------------------------------------------------

    async def _volume_op(self, vol_id: str) -> None:
        vol = self._store.get(Volume, vol_id)
        if vol is None or vol.pending is None:
            return
        op = vol.pending["op"]
        handler = {
            "create": self._create,
            "delete": self._delete,
            "extend": self._extend,
            "retype": self._retype,
        }[op]
        try:
            await self._tick()
            await handler(vol_id)
        except Exception as exc:
            log.warning("volume %s %s failed: %s", vol_id, op, exc)
            self._volume_failed(vol, op, exc)

    def _volume_failed(self, vol: Volume, op: str, exc: Exception) -> None:
        """Where a failed volume operation leaves the volume, and what it tells the project.

        A refused extend and any failed retype go back to the status before (size and type unchanged),
        as the scheduler and the volume manager roll them back, and so does a refused delete (the
        backend found the volume busy); other failures end in an error status.
        """
        assert vol.pending is not None
        refused = isinstance(exc, Refused)
        previous = vol.pending.get("prev", VolumeStatus.AVAILABLE)
        if op == "retype" or (op in ("extend", "delete") and refused):
            self._update_volume(vol.id, status=previous, pending=None, migration_status=None)
        else:
            failed = {"delete": VolumeStatus.ERROR_DELETING, "extend": VolumeStatus.ERROR_EXTENDING}
            self._update_volume(vol.id, status=failed.get(op, VolumeStatus.ERROR), pending=None)
        self._tell_user(vol, op, exc)

    def _tell_user(self, vol: Volume, op: str, exc: Exception) -> None:
        """The user message Cinder leaves when a create or extend fails."""
        refused = isinstance(exc, Refused)
        if isinstance(exc, NoValidBackend) or (op == "create" and refused):
            record(self._store, vol.project_id, NO_VALID_BACKEND, vol.id)
        elif op == "create":
            record(self._store, vol.project_id, CREATE_FAILED, vol.id)
        elif op == "extend":
            record(self._store, vol.project_id, EXTEND_NO_BACKEND if refused else EXTEND_FAILED, vol.id)

    async def _create(self, vol_id: str) -> None:
        vol = self._store.get(Volume, vol_id)
        if vol is None:
            return
        if not vol.backend:
            raise NoValidBackend("no valid backend was found")
        dst = self.volume_path(vol)
        if vol.source_volid:
            src_vol = self._store.get(Volume, vol.source_volid)
            if src_vol is None:
                raise RuntimeError("source volume vanished")
            await self.flush_volume(src_vol)
            await self._data.copy_sparse(self.volume_path(src_vol), dst, vol.size)
        elif vol.snapshot_id:
            snap = self._store.get(Snapshot, vol.snapshot_id)
            if snap is None:
                raise RuntimeError("source snapshot vanished")
            await self._data.copy_sparse(self._data.snapshot_path(snap.backend, snap.id), dst, vol.size)
        else:
            await self._data.create_sparse(dst, vol.size)
        current = self._store.get(Volume, vol_id)
        if current is None:
            self._data.remove(dst)  # deleted while its data was being made
            return
        if not current.pending or current.pending.get("op") != "create":
            return  # reset or being deleted meanwhile
        self._update_volume(vol_id, status=VolumeStatus.AVAILABLE, pending=None)

    async def _delete(self, vol_id: str) -> None:
        vol = self._store.get(Volume, vol_id)
        if vol is None:
            return
        snaps = [s for s in self._store.all(Snapshot) if s.volume_id == vol_id]
        for snap in snaps:
            self._data.remove(self._data.snapshot_path(snap.backend, snap.id))
        self._data.remove(self.volume_path(vol))
        self._store.delete(vol, *snaps)

    async def _extend(self, vol_id: str) -> None:
        vol = self._store.get(Volume, vol_id)
        if vol is None or vol.pending is None:
            return
        new_size = int(vol.pending["new_size"])
        await self._data.grow(self.volume_path(vol), new_size)
        for att in self.attachments_of(vol_id):
            if att.loop_device:
                await self._data.refresh_size(att.loop_device)
        self._update_volume(vol_id, size=new_size, status=vol.pending["prev"], pending=None)

    async def _retype(self, vol_id: str) -> None:
        vol = self._store.get(Volume, vol_id)
        if vol is None or vol.pending is None:
            return
        vtype = self._store.get(VolumeType, vol.pending["type_id"])
        backend = backend_of(vtype) or vol.backend
        if backend != vol.backend:
            self._update_volume(vol_id, migration_status="migrating")
            await self._tick()
            await self._data.move(self.volume_path(vol), self._data.volume_path(backend, vol.id))
            self._update_volume(vol_id, backend=backend, migration_status="success")
        self._update_volume(vol_id, type_id=vol.pending["type_id"], status=vol.pending["prev"], pending=None)

    # -- attachments ------------------------------------------------------------------------------

    def _put_attachment(self, att: Attachment, **changes: Any) -> Attachment:
        new = dataclasses.replace(att, **changes)
        vol = self._store.get(Volume, att.volume_id)
        others = [a for a in self.attachments_of(att.volume_id) if a.id != att.id]
        if vol is None:
            self._store.put(new)
            return new
        status = settled_status([*others, new])
        self._store.put(new, dataclasses.replace(vol, status=status, updated_at=now()))
        return new

    async def _attach(self, att_id: str, action: str | None = None) -> None:
        att = self._store.get(Attachment, att_id)
        if att is None:
            return
        try:
            if att.status == AttachStatus.RESERVED:
                await self._tick(0.5)
                att = self._put_attachment(att, status=AttachStatus.ATTACHING)
            await self._tick(0.5)
        except RuntimeError as exc:
            self._attach_failed(att, exc)
            self._finish_action(action, exc)
            return
        att = self._store.get(Attachment, att_id)
        vol = self._store.get(Volume, att.volume_id) if att else None
        link = self.link_path(att) if att else None
        if att is None or vol is None or link is None:
            return
        if self._powered_off(att):
            self._put_attachment(att, status=AttachStatus.ATTACHED, attached_at=now())
            return
        try:
            device = await self._data.attach(self.volume_path(vol), link)
        except Exception as exc:
            self._attach_failed(att, exc)
            self._finish_action(action, exc)
            return
        self._put_attachment(att, status=AttachStatus.ATTACHED, loop_device=device, attached_at=now())
        self._finish_action(action, None)

    def _attach_failed(self, att: Attachment, exc: Exception) -> None:
        """As Nova rolls back a failed attach: the attachment goes, the volume settles again."""
        log.warning("attach %s failed: %s", att.id, exc)
        self._store.delete(att)
        self._update_volume(att.volume_id, status=settled_status(self.attachments_of(att.volume_id)))

    async def _detach(self, att_id: str, action: str | None = None) -> None:
        att = self._store.get(Attachment, att_id)
        if att is None:
            return
        try:
            await self._tick()
        except RuntimeError as exc:
            # As Nova rolls back a failed detach: still attached, the volume in-use again.
            log.warning("detach %s failed: %s", att_id, exc)
            self._put_attachment(att, status=AttachStatus.ATTACHED)
            self._update_volume(att.volume_id, status=settled_status(self.attachments_of(att.volume_id)))
            self._finish_action(action, exc)
            return
        vol = self._store.get(Volume, att.volume_id)
        link = self.link_path(att)
        if vol is not None and link is not None:
            await self._data.detach(att.loop_device, self.volume_path(vol), link)
        self._store.delete(att)
        if vol is not None:
            self._update_volume(vol.id, status=settled_status(self.attachments_of(vol.id)))
        self._finish_action(action, None)

    # -- for the server lifecycle ------------------------------------------------------------------

    def settle_volume(self, volume_id: str) -> None:
        """Give a volume the status its attachments call for."""
        self._update_volume(volume_id, status=settled_status(self.attachments_of(volume_id)))

    def put_attachment(self, att: Attachment, **changes: Any) -> Attachment:
        """Store an attachment change and settle its volume's status."""
        return self._put_attachment(att, **changes)

    async def plug(self, att: Attachment) -> Attachment:
        """Give an attached volume its loop device and by-id link on its (running) server."""
        vol = self._store.get(Volume, att.volume_id)
        link = self.link_path(att)
        if vol is None or link is None or att.legacy:
            return att
        device = await self._data.attach(self.volume_path(vol), link)
        new = dataclasses.replace(att, loop_device=device)
        self._store.put(new)
        return new

    async def unplug(self, att: Attachment) -> Attachment:
        """Flush and take away an attachment's loop device and link (the record stays)."""
        vol = self._store.get(Volume, att.volume_id)
        link = self.link_path(att)
        if att.loop_device:
            try:
                await self._data.flush(att.loop_device)
            except Exception:
                log.warning("flush of %s failed", att.loop_device, exc_info=True)
        if vol is not None and link is not None:
            await self._data.detach(att.loop_device, self.volume_path(vol), link)
        new = dataclasses.replace(att, loop_device=None)
        if self._store.get(Attachment, att.id) is not None:
            self._store.put(new)
        return new

    # -- snapshots --------------------------------------------------------------------------------

    def _update_snapshot(self, snap_id: str, **changes: Any) -> None:
        self._store.touch(Snapshot, snap_id, **changes)

    async def _snapshot_op(self, snap_id: str) -> None:
        snap = self._store.get(Snapshot, snap_id)
        if snap is None or snap.pending is None:
            return
        op = snap.pending["op"]
        try:
            await self._tick()
            if op == "create":
                vol = self._store.get(Volume, snap.volume_id)
                if vol is None:
                    raise RuntimeError("volume vanished")
                await self.flush_volume(vol)
                await self._data.copy_sparse(
                    self.volume_path(vol), self._data.snapshot_path(snap.backend, snap.id), snap.size
                )
                self._update_snapshot(snap_id, status=SnapshotStatus.AVAILABLE, progress="100%", pending=None)
            else:
                self._data.remove(self._data.snapshot_path(snap.backend, snap.id))
                self._store.delete(snap)
        except Exception as exc:
            log.warning("snapshot %s %s failed: %s", snap_id, op, exc)
            status = SnapshotStatus.ERROR if op == "create" else SnapshotStatus.ERROR_DELETING
            if op == "delete" and isinstance(exc, Refused):
                status = SnapshotStatus.AVAILABLE  # the backend found it busy: it stays
            self._update_snapshot(snap_id, status=status, pending=None)
            if op == "create":
                record(self._store, snap.project_id, SNAPSHOT_FAILED, snap.id)

    # -- backups ----------------------------------------------------------------------------------

    def _update_backup(self, backup_id: str, **changes: Any) -> None:
        self._store.touch(Backup, backup_id, **changes)

    async def _backup_op(self, backup_id: str) -> None:
        backup = self._store.get(Backup, backup_id)
        if backup is None or backup.pending is None:
            return
        op = backup.pending["op"]
        try:
            await self._tick()
            await {"create": self._backup_create, "delete": self._backup_delete, "restore": self._restore}[
                op
            ](backup)
        except Exception as exc:
            log.warning("backup %s %s failed: %s", backup_id, op, exc)
            self._backup_failed(backup, str(exc))

    def _backup_failed(self, backup: Backup, reason: str) -> None:
        pending = backup.pending or {}
        op = pending.get("op")
        if op == "create":
            self._update_volume(backup.volume_id, status=pending.get("prev", VolumeStatus.AVAILABLE))
            self._update_backup(backup.id, status=BackupStatus.ERROR, fail_reason=reason, pending=None)
        elif op == "restore":
            self._update_volume(pending["volume_id"], status=VolumeStatus.ERROR_RESTORING)
            self._update_backup(backup.id, status=BackupStatus.AVAILABLE, pending=None)
        else:
            self._update_backup(backup.id, status=BackupStatus.ERROR, fail_reason=reason, pending=None)

    async def _backup_create(self, backup: Backup) -> None:
        assert backup.pending is not None
        if backup.snapshot_id:
            snap = self._store.get(Snapshot, backup.snapshot_id)
            if snap is None:
                raise RuntimeError("snapshot vanished")
            src = self._data.snapshot_path(snap.backend, snap.id)
        else:
            vol = self._store.get(Volume, backup.volume_id)
            if vol is None:
                raise RuntimeError("volume vanished")
            await self.flush_volume(vol)
            src = self.volume_path(vol)
        result = await self._chunks.backup(src, backup.id, backup.parent_id)
        self._update_volume(backup.volume_id, status=backup.pending["prev"])
        self._update_backup(
            backup.id, status=BackupStatus.AVAILABLE, object_count=result.chunks_written, pending=None
        )

    async def _backup_delete(self, backup: Backup) -> None:
        others = [b.id for b in self._store.all(Backup) if b.id != backup.id]
        await self._chunks.delete(backup.id, others)
        self._store.delete(backup)

    async def _restore(self, backup: Backup) -> None:
        assert backup.pending is not None
        vol = self._store.get(Volume, backup.pending["volume_id"])
        if vol is None:
            raise RuntimeError("target volume vanished")
        await self._chunks.restore(backup.id, self.volume_path(vol), vol.size * GIB)
        changes: dict[str, Any] = {}
        if backup.pending.get("copy_metadata"):
            changes["metadata"] = {**backup.volume_metadata, "src_backup_id": backup.id}
        if backup.pending.get("copy_name"):
            changes.update(name=backup.volume_name, description=backup.volume_description)
        self._update_volume(vol.id, status=VolumeStatus.AVAILABLE, pending=None, **changes)
        self._update_backup(backup.id, status=BackupStatus.AVAILABLE, pending=None)

    # -- lifecycle --------------------------------------------------------------------------------

    async def resume(self) -> None:
        """After a start: reuse or drop leftover loop devices, re-create attachments, rerun pending work."""
        await self._reconcile_loops()
        for vol in self._store.all(Volume):
            if vol.pending is not None:
                self.start_volume(vol.id)
        for snap in self._store.all(Snapshot):
            if snap.pending is not None:
                self.start_snapshot(snap.id)
        for backup in self._store.all(Backup):
            if backup.pending is not None:
                self.start_backup(backup.id)
        for att in self._store.all(Attachment):
            server = self._store.get(Server, att.server_id or "")
            if server is not None and (server.pending or {}).get("op") in ("build", "delete"):
                continue  # the server's own step brings it to its end
            if att.status in (AttachStatus.RESERVED, AttachStatus.ATTACHING):
                self.start_attach(att.id)
            elif att.status == AttachStatus.DETACHING:
                self.start_detach(att.id)

    async def _reconcile_loops(self) -> None:
        loops = await self._data.loops_under_root()
        unused = {loop.name: loop.back_file for loop in loops}
        for att in self._store.all(Attachment):
            vol = self._store.get(Volume, att.volume_id)
            link = self.link_path(att)
            if vol is None or link is None or att.status != AttachStatus.ATTACHED or att.legacy:
                continue
            if self._powered_off(att):
                continue
            path = str(self.volume_path(vol))
            reuse = next((name for name, back in unused.items() if back == path), None)
            try:
                if reuse is not None:
                    del unused[reuse]
                    await self._data.relink(reuse, link)
                    device: str | None = reuse
                else:
                    device = await self._data.attach(self.volume_path(vol), link)
            except Exception:
                log.exception("could not set attachment %s up again", att.id)
                device = None
            self._store.put(dataclasses.replace(att, loop_device=device))
        for name in unused:
            await self._data.release(name)

    async def shutdown(self, grace: float = 5.0) -> None:
        """Let running operations finish for a moment, cancel the rest, then detach our loop devices."""
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=2.0)
        for att in self._store.all(Attachment):
            link = self.link_path(att)
            if link is not None:
                await self._data.remove_link(link)
        # Every loop device backed by a file under the data directory is ours, including one an
        # attach cancelled just now had set up before recording it.
        for loop in await self._data.loops_under_root():
            try:
                await self._data.release(loop.name)
            except Exception:
                log.warning("detach of %s at shutdown failed", loop.name, exc_info=True)
