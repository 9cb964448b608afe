"""Storage API: backup update (3.9), status reset, export and import of backup records (admin)."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import uuid
from typing import Any

from starlette.responses import Response

from csi_xloud.emulator.context import json_body, require_object
from csi_xloud.emulator.errors import bad_request, invalid_input, not_found
from csi_xloud.emulator.models import Backup, BackupStatus, now
from csi_xloud.emulator.routing import Call, RouteTable
from csi_xloud.emulator.storage_core import StorageCore, check_metadata, check_name, no_such_action

ID = r"[^/]+"
# Clients check that the service names one of Cinder's backup drivers; the chunk store is posix-like.
BACKUP_SERVICE = "cinder.backup.drivers.posix.PosixBackupDriver"
RESETTABLE = ("available", "error")


class BackupAdminRoutes:
    """PUT /backups/{id}, os-reset_status, export_record and import_record."""

    def __init__(self, core: StorageCore) -> None:
        self._core = core
        self._store = core.store

    def register(self, table: RouteTable) -> None:
        """Add this group's routes."""
        table.add("PUT", f"backups/(?P<id>{ID})", self.update)
        table.add("POST", f"backups/(?P<id>{ID})/action", self.action)
        table.add("GET", f"backups/(?P<id>{ID})/export_record", self.export_record)
        table.add("POST", "backups/import_record", self.import_record)

    async def update(self, call: Call) -> Response:
        """PUT /backups/{id} (3.9): name and description; metadata from 3.43."""
        if not call.mv.at_least("3.9"):
            raise not_found()
        backup = self._core.backup(call, call.params["id"])
        req = require_object(await json_body(call.request), "backup")
        allowed = {"name", "description", *(("metadata",) if call.mv.at_least("3.43") else ())}
        extra = sorted(set(req) - allowed)
        if extra:
            raise invalid_input(
                "backup", req, f"Additional properties are not allowed ({extra[0]!r} was unexpected)"
            )
        changes: dict[str, Any] = {"updated_at": now()}
        for field in ("name", "description"):
            if field in req:
                changes[field] = check_name(field, req[field])
        if "metadata" in req:
            changes["metadata"] = check_metadata(req["metadata"])
        backup = dataclasses.replace(backup, **changes)
        self._store.put(backup)
        return self._core.ok({"backup": self._core.views.backup_summary(backup)})

    async def action(self, call: Call) -> Response:
        """POST /backups/{id}/action: os-reset_status (admin), to available or error."""
        backup = self._core.backup(call, call.params["id"])
        body = await json_body(call.request)
        if not isinstance(body, dict) or len(body) != 1:
            raise bad_request("Invalid request body")
        ((name, arg),) = body.items()
        if name != "os-reset_status":
            raise no_such_action(name)
        self._core.require_admin(call, "volume_extension:backup_admin_actions:reset_status")
        status = arg.get("status") if isinstance(arg, dict) else None
        if status not in RESETTABLE:
            raise invalid_input("status", status, f"{status!r} is not one of {list(RESETTABLE)}")
        self._store.put(dataclasses.replace(backup, status=status, pending=None, updated_at=now()))
        return self._core.accepted()

    async def export_record(self, call: Call) -> Response:
        """GET /backups/{id}/export_record (admin): the record, to import into another cloud (or back)."""
        self._core.require_admin(call, "backup:export-import")
        backup = self._core.backup(call, call.params["id"])
        if backup.status != BackupStatus.AVAILABLE:
            raise bad_request("Invalid backup: Backup status must be available and not restoring.")
        record = {k: v for k, v in dataclasses.asdict(backup).items() if k != "pending"}
        record["service_metadata"] = backup.id  # where its data is, even when imported under a new id
        url = base64.b64encode(json.dumps(record).encode()).decode()
        return self._core.ok({"backup-record": {"backup_service": BACKUP_SERVICE, "backup_url": url}})

    async def import_record(self, call: Call) -> Response:
        """POST /backups/import_record (admin): 201; available when the chunk store still has its data."""
        self._core.require_admin(call, "backup:backup-import")
        req = require_object(await json_body(call.request), "backup-record")
        service, url = req.get("backup_service"), req.get("backup_url")
        if not isinstance(service, str) or not isinstance(url, str):
            raise invalid_input(
                "backup-record", req, "'backup_service' and 'backup_url' are required properties"
            )
        if service != BACKUP_SERVICE:
            raise bad_request(f"Service {service} could not be found.")
        record = _decode(url)
        if not _is_uuid(str(record.get("id"))):
            raise bad_request("Invalid backup: Can't parse backup record.")
        existing = self._store.get(Backup, str(record.get("id")))
        if existing is not None:
            raise bad_request("Invalid backup: Backup already exists in database.")
        data_id = str(record.get("service_metadata") or record.get("id"))
        if self._core.ops.has_backup_data(str(record["id"])) or (
            _is_uuid(data_id) and self._core.ops.share_backup_data(data_id, str(record["id"]))
        ):
            status, reason = BackupStatus.AVAILABLE, None
        else:
            status, reason = BackupStatus.ERROR, "the backup's data is not in the backup store"
        known = {f.name for f in dataclasses.fields(Backup)}
        fields = {k: v for k, v in record.items() if k in known}
        try:
            backup = Backup(
                **{
                    **fields,
                    "project_id": call.project_id,
                    "status": status,
                    "fail_reason": reason,
                    "updated_at": now(),
                    "pending": None,
                }
            )
        except TypeError:
            raise bad_request("Invalid backup: the backup_url does not hold a backup record.") from None
        self._store.put(backup)
        return self._core.ok({"backup": self._core.views.backup_summary(backup)}, 201)


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _decode(url: str) -> dict[str, Any]:
    try:
        record = json.loads(base64.b64decode(url, validate=True))
    except (binascii.Error, ValueError):
        raise bad_request("Invalid backup: Can't parse backup record.") from None
    if not isinstance(record, dict):
        raise bad_request("Invalid backup: Can't parse backup record.")
    return record
