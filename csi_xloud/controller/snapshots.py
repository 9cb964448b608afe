"""CreateSnapshot, DeleteSnapshot and GetSnapshot's work on Storage snapshots and backups.

Creation does not wait: the CO calls CreateSnapshot again until ready_to_use turns true, so
an hour-long backup holds no call open. See ids.py for how a CSI snapshot id names
a snapshot or a backup.

Deleting a backup that incremental backups build on: the Storage API refuses it, but users
delete snapshots in any order. Such a backup is marked deleted in its metadata instead
(DELETED_METADATA_KEY): from then on it exists for no CSI call, and the cloud's copy is removed
as soon as nothing depends on it: after each backup deletion, the marked backups of that volume
are looked at again (a chain frees one link at a time), and at start-up every marked backup is.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from csi_xloud.cloud import errors as cloud
from csi_xloud.cloud.models import Backup, BackupStatus, Snapshot, SnapshotStatus, VolumeStatus
from csi_xloud.cloud.storage import StorageApi
from csi_xloud.controller.ids import DELETED_METADATA_KEY, is_storage_id, parse_snapshot_id
from csi_xloud.controller.late import LateRequests, keep_the_first
from csi_xloud.controller.volumes import Timeouts
from csi_xloud.deadline import within_call
from csi_xloud.rpc.errors import (
    Aborted,
    AlreadyExists,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
)
from csi_xloud.validation import SnapshotKind, SnapshotParameters

log = logging.getLogger(__name__)

Item = Snapshot | Backup
GONE = frozenset({SnapshotStatus.DELETING.value, SnapshotStatus.ERROR_DELETING.value})
# Statuses the cloud leaves on its own and refuses to delete in; then those it may be deleted from
# (or is being deleted in already).
SNAPSHOT_BUSY = frozenset({SnapshotStatus.CREATING, SnapshotStatus.BACKING_UP, SnapshotStatus.RESTORING})
SNAPSHOT_SETTLED = (SnapshotStatus.AVAILABLE, SnapshotStatus.ERROR, SnapshotStatus.DELETING)
BACKUP_BUSY = frozenset({BackupStatus.CREATING, BackupStatus.RESTORING})
BACKUP_SETTLED = (BackupStatus.AVAILABLE, BackupStatus.ERROR, BackupStatus.DELETING)


@dataclass(frozen=True, slots=True)
class NewSnapshot:
    """A validated CreateSnapshot request."""

    name: str
    source_volume_id: str
    parameters: SnapshotParameters


def is_gone(item: Item) -> bool:
    """Being deleted (or failed to be, or marked deleted): no longer a snapshot the CO may use."""
    return item.raw_status in GONE or (isinstance(item, Backup) and is_marked_deleted(item))


def is_marked_deleted(backup: Backup) -> bool:
    return DELETED_METADATA_KEY in backup.metadata


def is_failed(item: Item) -> bool:
    return item.status.is_error


class Snapshotter:
    """Starts snapshots and backups idempotently by name; finds and deletes them by CSI snapshot id."""

    def __init__(self, storage: StorageApi, timeouts: Timeouts, late: LateRequests) -> None:
        self._storage = storage
        self._timeouts = timeouts
        self._late = late

    async def create(self, request: NewSnapshot) -> Item:
        """The snapshot with this name, started now if there is none; ALREADY_EXISTS for another volume's."""
        key = (request.parameters.kind.value, request.name)
        existing = await self._find(request)
        if existing is not None:
            self._late.forget(key)
            if existing.volume_id != request.source_volume_id:
                raise AlreadyExists(
                    f"snapshot {request.name!r} already exists for volume {existing.volume_id}, "
                    f"not for source_volume_id {request.source_volume_id}"
                )
            if is_failed(existing):
                raise await self._discard(existing)
            return existing
        self._late.refuse_while_in_flight(key, f"{request.parameters.kind.value} {request.name!r}")
        volume_id = request.source_volume_id
        if not is_storage_id(volume_id):
            raise NotFound(f"source_volume_id {volume_id!r} does not name a volume")
        try:
            if request.parameters.kind is SnapshotKind.BACKUP:
                item: Item = await self._start_backup(request)
            else:
                item = await self._start_snapshot(request)
        except cloud.NotFound:
            # The create names no other resource: the cloud's 404 is the source volume's.
            raise NotFound(f"source_volume_id {volume_id}: no such volume") from None
        except cloud.CloudError as exc:
            if exc.may_still_land:
                self._late.note(key)
            raise
        self._late.after_create(lambda: self._find(request))
        return item

    async def _find(self, request: NewSnapshot) -> Item | None:
        found: list[Item]
        if request.parameters.kind is SnapshotKind.BACKUP:
            found = list(await self._storage.find_backup_by_name(request.name))
        else:
            found = list(await self._storage.find_snapshot_by_name(request.name))
        live = [item for item in found if not is_gone(item)]
        return await keep_the_first(live, self._remove_duplicate, request.parameters.kind.value)

    async def _remove_duplicate(self, item: Item) -> None:
        if isinstance(item, Backup):
            await self._storage.delete_backup(item.id)
        else:
            await self._storage.delete_snapshot(item.id)

    async def _start_snapshot(self, request: NewSnapshot) -> Snapshot:
        """A snapshot; the cloud itself refuses an in-use volume without force (Conflict)."""
        params = request.parameters
        volume_id = request.source_volume_id
        snapshot = await self._storage.create_snapshot(
            volume_id, request.name, force=params.force, metadata=dict(params.metadata)
        )
        log.debug("snapshotting volume %s as %s", volume_id, snapshot.id)
        return snapshot

    async def _start_backup(self, request: NewSnapshot) -> Backup:
        """A backup; incremental only when a full one exists to build on (the cloud refuses otherwise).

        The cloud answers an in-use volume backed up without force with a plain Bad Request, so that
        case alone reads the volume first to refuse it as a failed precondition.
        """
        params = request.parameters
        volume_id = request.source_volume_id
        if not params.force:
            volume = await self._storage.get_volume(volume_id)
            if volume.status is VolumeStatus.IN_USE:
                raise FailedPrecondition(
                    f"source_volume_id {volume_id} is attached and parameters[force-create] is false"
                )
        incremental = params.incremental and await self._has_backup(volume_id)
        backup = await self._storage.create_backup(
            volume_id,
            request.name,
            incremental=incremental,
            force=params.force,
            metadata=dict(params.metadata) or None,
        )
        log.debug(
            "backing up volume %s as %s (%s)", volume_id, backup.id, "incremental" if incremental else "full"
        )
        return backup

    async def _has_backup(self, volume_id: str) -> bool:
        page = await self._storage.list_backups(volume_id=volume_id)
        return any(b.status is BackupStatus.AVAILABLE for b in page.items)

    async def _discard(self, item: Item) -> Internal:
        """Delete a failed snapshot or backup (the CO's retry starts afresh) and say why it failed."""
        reason = item.fail_reason if isinstance(item, Backup) else None
        try:
            if isinstance(item, Backup):
                await self._storage.delete_backup(item.id)
            else:
                await self._storage.delete_snapshot(item.id)
        except cloud.NotFound:
            pass
        detail = f": {reason}" if reason else ""
        return Internal(f"snapshot {item.id} went to status {item.raw_status}{detail}; it was deleted")

    async def lookup(self, snapshot_id: str) -> Item | None:
        """The snapshot or backup a CSI snapshot id names, or None; a plain id is tried as both."""
        ref = parse_snapshot_id(snapshot_id)
        if ref is None:
            return None
        if not ref.backup:
            try:
                return await self._storage.get_snapshot(ref.storage_id)
            except cloud.NotFound:
                pass
        try:
            backup = await self._storage.get_backup(ref.storage_id)
        except cloud.NotFound:
            return None
        return None if is_marked_deleted(backup) else backup

    async def get(self, snapshot_id: str) -> Item:
        item = await self.lookup(snapshot_id)
        if item is None:
            raise NotFound(f"snapshot_id {snapshot_id}: no such snapshot or backup")
        return item

    async def delete(self, snapshot_id: str) -> None:
        """Delete and wait until gone; a missing one is already deleted, a backup others build on stays."""
        item = await self.lookup(snapshot_id)
        if item is None:
            return  # Spec: "If a snapshot ... does not exist ..., the Plugin MUST reply 0 OK."
        if isinstance(item, Snapshot) and item.group_snapshot_id:
            # Spec: a snapshot that is part of a group snapshot CAN NOT be deleted stand alone.
            raise InvalidArgument(
                f"snapshot {snapshot_id} is part of group snapshot {item.group_snapshot_id}; "
                "delete it with DeleteVolumeGroupSnapshot"
            )
        try:
            item = await self._settled(item)
            if isinstance(item, Backup):
                await self._delete_backup(item)
            else:
                await self._delete_snapshot(item)
        except cloud.NotFound:
            return
        log.debug("deleted snapshot %s", snapshot_id)

    async def _delete_snapshot(self, snapshot: Snapshot) -> None:
        if snapshot.status is not SnapshotStatus.DELETING:
            await self._storage.delete_snapshot(snapshot.id)
        await self._storage.wait_for_snapshot_deleted(
            snapshot.id, timeout_seconds=self._timeouts.delete_seconds
        )

    async def _delete_backup(self, backup: Backup) -> None:
        """Delete and wait; one that incrementals build on is marked deleted and goes when they have."""
        if backup.has_dependent_backups:
            await self._mark_deleted(backup)
            return
        if backup.status is not BackupStatus.DELETING:
            try:
                await self._storage.delete_backup(backup.id)
            except (cloud.BadRequest, cloud.Conflict):
                fresh = await self._storage.get_backup(backup.id)
                if not fresh.has_dependent_backups:
                    raise
                await self._mark_deleted(fresh)  # an incremental was made on it meanwhile
                return
        await self._storage.wait_for_backup_deleted(backup.id, timeout_seconds=self._timeouts.delete_seconds)
        await self._reap_quietly(backup.volume_id)

    async def _mark_deleted(self, backup: Backup) -> None:
        metadata = {**backup.metadata, DELETED_METADATA_KEY: "true"}
        await self._storage.set_backup_metadata(backup.id, metadata)
        log.info("backup %s has incremental backups: marked deleted, removed once they are gone", backup.id)
        # The last incremental may have gone while the mark was on its way: look again.
        await self._reap_quietly(backup.volume_id)

    async def _reap_quietly(self, volume_id: str) -> None:
        """Reap after a deletion; a failure is logged (the next deletion or start-up tries again)."""
        try:
            await self.reap(volume_id)
        except cloud.CloudError as exc:
            log.warning("backups marked deleted of volume %s stay for now: %s", volume_id, exc)

    async def reap(self, volume_id: str | None = None) -> int:
        """Remove the backups marked deleted that nothing depends on any more (of one volume, or all).

        Removing one can free the next link of its chain, so this goes on until no marked backup is
        free; each is tried once. Returns how many were removed.
        """
        tried: set[str] = set()
        removed = 0
        while True:
            marked = [b for b in await self._storage.list_all_backups(volume_id) if is_marked_deleted(b)]
            free = [
                b for b in marked
                if b.id not in tried and not b.has_dependent_backups
                and b.status in (BackupStatus.AVAILABLE, BackupStatus.ERROR, BackupStatus.DELETING)
            ]
            if not free:
                return removed
            for backup in free:
                tried.add(backup.id)
                removed += await self._remove_marked(backup)

    async def _remove_marked(self, backup: Backup) -> bool:
        """Delete one marked backup and wait; False when it stays (a failure is logged, not raised)."""
        try:
            if backup.status is not BackupStatus.DELETING:
                await self._storage.delete_backup(backup.id)
            await self._storage.wait_for_backup_deleted(
                backup.id, timeout_seconds=self._timeouts.delete_seconds
            )
        except cloud.NotFound:
            return True
        except cloud.CloudError as exc:
            log.warning("backup %s marked deleted stays for now: %s", backup.id, exc)
            return False
        log.info("removed backup %s, marked deleted, now that nothing depends on it", backup.id)
        return True

    async def _settled(self, item: Item) -> Item:
        """The snapshot or backup once the cloud is done making it, waited for within the call's deadline.

        The spec's DeleteSnapshot has no error for a snapshot still being made: the CO may delete a
        VolumeSnapshot a second after creating it. Only a deadline too short to see it done answers
        ABORTED (an operation is pending on it), which the CO retries.
        """
        busy = item.status in (BACKUP_BUSY if isinstance(item, Backup) else SNAPSHOT_BUSY)
        if not busy:
            return item
        budget = within_call(self._timeouts.delete_seconds, time.monotonic())
        try:
            if isinstance(item, Backup):
                return await self._storage.wait_for_backup(item.id, *BACKUP_SETTLED, timeout_seconds=budget)
            return await self._storage.wait_for_snapshot(item.id, *SNAPSHOT_SETTLED, timeout_seconds=budget)
        except cloud.WaitTimeout:
            raise Aborted(
                f"snapshot {item.id} is still {item.raw_status} after {budget:.0f} s; the cloud refuses to "
                "delete it until it is done: call DeleteSnapshot again"
            ) from None
