"""Asynchronous work on groups and group snapshots, as Cinder's generic group code does it.

A group is a record: creating one only asks the scheduler for one backend that serves all its
volume types (none: `error`). Adding and removing volumes passes through `updating`. A group
snapshot is one snapshot per member volume: every member is flushed first, then all copies start
together, so the members show one moment as closely as files copied side by side can (writes are
not paused meanwhile). As in `ops`, the work in flight is kept in the record's `pending` field and
runs again after a restart; each step is idempotent.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any

from csi_xloud.emulator.data import DataPlane
from csi_xloud.emulator.models import (
    Group,
    GroupSnapshot,
    GroupStatus,
    Snapshot,
    SnapshotStatus,
    Volume,
    VolumeStatus,
    VolumeType,
    now,
)
from csi_xloud.emulator.ops import Operations, backend_of
from csi_xloud.emulator.state import Store

log = logging.getLogger(__name__)

_POLL_SECONDS = 0.02
# Volume statuses a group waits through while its volumes are made or deleted.
_BUSY = frozenset({VolumeStatus.CREATING, VolumeStatus.DELETING, VolumeStatus.RESTORING_BACKUP})


class GroupOperations:
    """Runs and resumes the pending work of groups and group snapshots."""

    def __init__(self, store: Store, ops: Operations, data: DataPlane) -> None:
        self._store = store
        self._ops = ops
        self._data = data

    def start_group(self, group_id: str) -> None:
        """Run a group's pending operation."""
        self._ops.spawn(self._group_op(group_id), f"group {group_id}")

    def start_group_snapshot(self, group_snapshot_id: str) -> None:
        """Run a group snapshot's pending operation."""
        self._ops.spawn(self._group_snapshot_op(group_snapshot_id), f"group snapshot {group_snapshot_id}")

    def resume(self) -> None:
        """After a start: run again what was in flight."""
        for group in self._store.all(Group):
            if group.pending is not None:
                self.start_group(group.id)
        for gsnap in self._store.all(GroupSnapshot):
            if gsnap.pending is not None:
                self.start_group_snapshot(gsnap.id)

    def volumes_of(self, group_id: str) -> list[Volume]:
        """The volumes in a group."""
        return [v for v in self._store.all(Volume) if v.group_id == group_id]

    def members_of(self, group_snapshot_id: str) -> list[Snapshot]:
        """The member snapshots of a group snapshot."""
        return [s for s in self._store.all(Snapshot) if s.group_snapshot_id == group_snapshot_id]

    def backend_for(self, type_ids: list[str]) -> str | None:
        """The one backend serving all these volume types, or None (the scheduler finds no host)."""
        backends = {backend_of(self._store.get(VolumeType, type_id)) for type_id in type_ids}
        return backends.pop() if len(backends) == 1 else None

    # -- groups -----------------------------------------------------------------------------------

    def _update_group(self, group_id: str, **changes: Any) -> None:
        self._store.touch(Group, group_id, **changes)

    async def _group_op(self, group_id: str) -> None:
        group = self._store.get(Group, group_id)
        if group is None or group.pending is None:
            return
        op = str(group.pending["op"])
        handler = {
            "create": self._create,
            "update": self._update,
            "delete": self._delete,
            "create_from_src": self._create_from_src,
        }[op]
        try:
            await self._ops.tick()
            await handler(group)
        except Exception as exc:
            log.warning("group %s %s failed: %s", group_id, op, exc)
            failed = GroupStatus.ERROR_DELETING if op == "delete" else GroupStatus.ERROR
            self._update_group(group_id, status=failed, pending=None)

    async def _create(self, group: Group) -> None:
        backend = self.backend_for(group.volume_type_ids)
        status = GroupStatus.AVAILABLE if backend is not None else GroupStatus.ERROR
        self._update_group(group.id, status=status, backend=backend, pending=None)

    async def _update(self, group: Group) -> None:
        assert group.pending is not None
        changed = []
        for vol_id in group.pending.get("add", []):
            vol = self._store.get(Volume, vol_id)
            if vol is not None and vol.group_id is None:
                changed.append(dataclasses.replace(vol, group_id=group.id, updated_at=now()))
        for vol_id in group.pending.get("remove", []):
            vol = self._store.get(Volume, vol_id)
            if vol is not None and vol.group_id == group.id:
                changed.append(dataclasses.replace(vol, group_id=None, updated_at=now()))
        current = self._store.get(Group, group.id)
        if current is None:
            return
        self._store.put(
            *changed,
            dataclasses.replace(current, status=GroupStatus.AVAILABLE, updated_at=now(), pending=None),
        )

    async def _delete(self, group: Group) -> None:
        """The group goes once its volumes (deleting on their own) are gone."""
        while True:
            volumes = self.volumes_of(group.id)
            if any(v.status == VolumeStatus.ERROR_DELETING for v in volumes):
                raise RuntimeError("a volume of the group could not be deleted")
            if not volumes:
                break
            await asyncio.sleep(_POLL_SECONDS)
        current = self._store.get(Group, group.id)
        if current is not None:
            self._store.delete(current)

    async def _create_from_src(self, group: Group) -> None:
        """The group is ready once every volume made from the source is."""
        while any(v.status in _BUSY for v in self.volumes_of(group.id)):  # noqa: ASYNC110 - state lives in the store
            await asyncio.sleep(_POLL_SECONDS)
        volumes = self.volumes_of(group.id)
        ok = all(v.status == VolumeStatus.AVAILABLE for v in volumes)
        self._update_group(group.id, status=GroupStatus.AVAILABLE if ok else GroupStatus.ERROR, pending=None)

    # -- group snapshots --------------------------------------------------------------------------

    def _update_group_snapshot(self, gsnap_id: str, **changes: Any) -> None:
        self._store.touch(GroupSnapshot, gsnap_id, **changes)

    async def _group_snapshot_op(self, gsnap_id: str) -> None:
        gsnap = self._store.get(GroupSnapshot, gsnap_id)
        if gsnap is None or gsnap.pending is None:
            return
        op = str(gsnap.pending["op"])
        try:
            await self._ops.tick()
            if op == "create":
                await self._snapshot_members(gsnap)
            else:
                await self._delete_members(gsnap)
        except Exception as exc:
            log.warning("group snapshot %s %s failed: %s", gsnap_id, op, exc)
            member_status = SnapshotStatus.ERROR if op == "create" else SnapshotStatus.ERROR_DELETING
            for snap in self.members_of(gsnap_id):
                self._store.put(dataclasses.replace(snap, status=member_status, updated_at=now()))
            status = GroupStatus.ERROR if op == "create" else GroupStatus.ERROR_DELETING
            self._update_group_snapshot(gsnap_id, status=status, pending=None)

    async def _snapshot_members(self, gsnap: GroupSnapshot) -> None:
        members = self.members_of(gsnap.id)
        volumes = []
        for snap in members:
            vol = self._store.get(Volume, snap.volume_id)
            if vol is None:
                raise RuntimeError(f"volume {snap.volume_id} vanished")
            volumes.append(vol)
        for vol in volumes:
            await self._ops.flush_volume(vol)
        await asyncio.gather(
            *(
                self._data.copy_sparse(
                    self._ops.volume_path(vol), self._data.snapshot_path(snap.backend, snap.id), snap.size
                )
                for snap, vol in zip(members, volumes, strict=True)
            )
        )
        done = [
            dataclasses.replace(s, status=SnapshotStatus.AVAILABLE, progress="100%", updated_at=now())
            for s in members
        ]
        current = self._store.get(GroupSnapshot, gsnap.id)
        if current is None:
            return
        self._store.put(
            *done, dataclasses.replace(current, status=GroupStatus.AVAILABLE, updated_at=now(), pending=None)
        )

    async def _delete_members(self, gsnap: GroupSnapshot) -> None:
        members = self.members_of(gsnap.id)
        for snap in members:
            self._data.remove(self._data.snapshot_path(snap.backend, snap.id))
        current = self._store.get(GroupSnapshot, gsnap.id)
        self._store.delete(*members, *([current] if current is not None else []))
