"""Storage API: backups in the chunk store, full and incremental, and restores."""

from __future__ import annotations

import dataclasses
from typing import Any

from starlette.responses import Response

from csi_xloud.emulator.context import json_body, require_object
from csi_xloud.emulator.errors import bad_request, invalid_input, not_found, unexpected_properties
from csi_xloud.emulator.models import (
    Backup,
    BackupStatus,
    SnapshotStatus,
    Volume,
    VolumeStatus,
    new_id,
    now,
)
from csi_xloud.emulator.ops import backend_of
from csi_xloud.emulator.routing import Call, RouteTable
from csi_xloud.emulator.storage_core import StorageCore, check_metadata, check_name, filter_by, parse_bool

ID = r"[^/]+"
BACKUP_SORT = {"id", "status", "size", "created_at", "updated_at", "name", "volume_id", "container"}


class BackupRoutes:
    """Backups in the chunk store: full and incremental, restore to new or existing volumes."""

    def __init__(self, core: StorageCore) -> None:
        self._core = core
        self._store = core.store

    def register(self, table: RouteTable) -> None:
        """Add this group's routes."""
        table.add("GET", "backups", self.list_summary)
        table.add("GET", "backups/detail", self.list_detail)
        table.add("POST", "backups", self.create)
        table.add("GET", f"backups/(?P<id>{ID})", self.show)
        table.add("PUT", f"backups/(?P<id>{ID})", self.update)
        table.add("DELETE", f"backups/(?P<id>{ID})", self.delete)
        table.add("POST", f"backups/(?P<id>{ID})/restore", self.restore)

    def _dependents(self, backup_id: str) -> bool:
        return any(b.parent_id == backup_id for b in self._store.all(Backup))

    def _view(self, call: Call, backup: Backup) -> dict[str, Any]:
        return self._core.views.backup(backup, call.mv, call.caller, self._dependents(backup.id))

    async def create(self, call: Call) -> Response:
        """POST /backups: 202; the volume goes backing-up while chunks are stored."""
        req = require_object(await json_body(call.request), "backup")
        if not req.get("volume_id"):
            raise invalid_input("backup", req, "'volume_id' is a required property")
        incremental = parse_bool("incremental", req.get("incremental", False))
        force = parse_bool("force", req.get("force", False))
        name = check_name("name", req.get("name"))
        description = check_name("description", req.get("description"))
        metadata = check_metadata(req.get("metadata")) if call.mv.at_least("3.43") else {}
        vol = self._core.volume(call, str(req["volume_id"]))
        snap = self._core.snapshot(call, str(req["snapshot_id"])) if req.get("snapshot_id") else None
        if snap is not None and (snap.volume_id != vol.id or snap.status != SnapshotStatus.AVAILABLE):
            raise bad_request("Invalid snapshot: Snapshot must be available and belong to the volume.")
        if snap is None and vol.status == VolumeStatus.IN_USE and not force:
            raise bad_request("Invalid volume: Backing up an in-use volume must use the force flag.")
        if vol.status not in (VolumeStatus.AVAILABLE, VolumeStatus.IN_USE):
            raise bad_request(
                "Invalid volume: Volume to be backed up must be"
                " available or in-use, but the current status is"
                f' "{vol.status}".'
            )
        parent = self._parent(vol.id) if incremental else None
        if incremental and parent is None:
            raise bad_request("Invalid backup: No backups available to do an incremental backup.")
        self._core.quotas.check_backup(call.project_id, vol.size)
        backup_id = new_id()
        backup = Backup(
            id=backup_id,
            project_id=call.project_id,
            user_id=call.caller.user.id,
            volume_id=vol.id,
            size=vol.size,
            status=BackupStatus.CREATING,
            availability_zone=vol.availability_zone,
            container=str(req.get("container") or f"{backup_id[:2]}/{backup_id[2:4]}/{backup_id}"),
            created_at=now(),
            name=name,
            description=description,
            snapshot_id=snap.id if snap else None,
            parent_id=parent.id if parent else None,
            is_incremental=parent is not None,
            data_timestamp=snap.created_at if snap else now(),
            metadata=metadata,
            pending={"op": "create", "prev": vol.status},
            volume_name=vol.name,
            volume_description=vol.description,
            volume_metadata=dict(vol.metadata),
        )
        self._store.put(backup, dataclasses.replace(vol, status=VolumeStatus.BACKING_UP, updated_at=now()))
        self._core.ops.start_backup(backup.id)
        return self._core.ok({"backup": self._core.views.backup_summary(backup)}, 202)

    def _parent(self, volume_id: str) -> Backup | None:
        done = [
            b
            for b in self._store.all(Backup)
            if b.volume_id == volume_id and b.status == BackupStatus.AVAILABLE
        ]
        return max(done, key=lambda b: b.created_at, default=None)

    def _list(self, call: Call, detail: bool) -> Response:
        backups = [b for b in self._store.all(Backup) if self._core.in_listed_projects(call, b.project_id)]
        backups = filter_by(backups, call, ("volume_id", "name", "status"))
        backups = self._core.sort(
            backups, self._core.sort_keys(call, BACKUP_SORT), lambda b, k: getattr(b, k, None)
        )
        page, links = self._core.page(call, backups, "backups", "Backup")
        items = [self._view(call, b) if detail else self._core.views.backup_summary(b) for b in page]
        body: dict[str, Any] = {"backups": items}
        if links:
            body["backups_links"] = links
        if self._core.wants_count(call):
            body["count"] = len(backups)
        return self._core.ok(body)

    async def list_summary(self, call: Call) -> Response:
        """GET /backups."""
        return self._list(call, False)

    async def list_detail(self, call: Call) -> Response:
        """GET /backups/detail."""
        return self._list(call, True)

    async def show(self, call: Call) -> Response:
        """GET /backups/{id}."""
        return self._core.ok({"backup": self._view(call, self._core.backup(call, call.params["id"]))})

    async def update(self, call: Call) -> Response:
        """PUT /backups/{id} (3.9): name and description; metadata from 3.43, replacing the old."""
        if not call.mv.at_least("3.9"):
            raise not_found()
        backup = self._core.backup(call, call.params["id"])
        req = require_object(await json_body(call.request), "backup")
        allowed = {"name", "description"} | ({"metadata"} if call.mv.at_least("3.43") else set())
        extra = [k for k in req if k not in allowed]
        if extra:
            raise unexpected_properties("backup", req, extra)
        changes: dict[str, Any] = {
            field: check_name(field, req[field]) for field in ("name", "description") if field in req
        }
        if "metadata" in req:
            changes["metadata"] = check_metadata(req["metadata"])
        backup = dataclasses.replace(backup, updated_at=now(), **changes)
        self._store.put(backup)
        body = self._core.views.backup_summary(backup)
        if call.mv.at_least("3.43"):
            body["metadata"] = dict(backup.metadata)
        return self._core.ok({"backup": body})

    async def delete(self, call: Call) -> Response:
        """DELETE /backups/{id}: refused while incrementals depend on it."""
        backup = self._core.backup(call, call.params["id"])
        if backup.status not in (BackupStatus.AVAILABLE, BackupStatus.ERROR):
            raise bad_request("Invalid backup: Backup status must be available or error")
        if self._dependents(backup.id):
            raise bad_request("Invalid backup: Incremental backups exist for this backup.")
        self._store.put(
            dataclasses.replace(
                backup, status=BackupStatus.DELETING, updated_at=now(), pending={"op": "delete"}
            )
        )
        self._core.ops.start_backup(backup.id)
        return self._core.accepted()

    async def restore(self, call: Call) -> Response:
        """POST /backups/{id}/restore: into a new volume or an existing available one."""
        backup = self._core.backup(call, call.params["id"])
        req = require_object(await json_body(call.request), "restore")
        if backup.status != BackupStatus.AVAILABLE:
            raise bad_request("Invalid backup: Backup status must be available")
        # Like Cinder's backup metadata, the source volume's metadata (and, when no name was
        # asked, its name and description) come back with the data.
        pending: dict[str, Any] = {"op": "restore", "copy_metadata": True}
        if req.get("volume_id"):
            vol = self._core.volume(call, str(req["volume_id"]))
            if vol.status != VolumeStatus.AVAILABLE:
                raise bad_request("Invalid volume: Volume to be restored to must be available")
            if vol.size < backup.size:
                raise bad_request(
                    f"Invalid volume: volume size {vol.size} is too"
                    f" small to restore backup of size {backup.size}."
                )
        else:
            vtype = self._core.default_type()
            self._core.quotas.check_volume(call.project_id, backup.size, vtype.name)
            pending["copy_name"] = not req.get("name")
            vol = Volume(
                id=new_id(),
                project_id=call.project_id,
                user_id=call.caller.user.id,
                size=backup.size,
                status=VolumeStatus.CREATING,
                type_id=vtype.id,
                backend=backend_of(vtype),
                availability_zone=backup.availability_zone,
                created_at=now(),
                name=check_name("name", req.get("name")) or f"restore_backup_{backup.id}",
                description="auto-created_from_restore_from_backup",
            )
        self._store.put(
            dataclasses.replace(vol, status=VolumeStatus.RESTORING_BACKUP, updated_at=now()),
            dataclasses.replace(
                backup,
                status=BackupStatus.RESTORING,
                updated_at=now(),
                pending={**pending, "volume_id": vol.id},
            ),
        )
        self._core.ops.start_backup(backup.id)
        return self._core.ok(
            {"restore": {"backup_id": backup.id, "volume_id": vol.id, "volume_name": vol.name}}, 202
        )
