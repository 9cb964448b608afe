"""Storage API: volume actions for admins (reset status, force delete, force detach) and the readonly flag."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.responses import Response

from csi_xloud.emulator.errors import bad_request, conflict, invalid_input
from csi_xloud.emulator.models import Snapshot, Volume, VolumeStatus, now
from csi_xloud.emulator.routing import Call
from csi_xloud.emulator.storage_core import StorageCore, parse_bool

# Cinder's fields.VolumeStatus, in its order (the 400 for an unknown one lists them).
VOLUME_STATUSES = (
    "creating",
    "available",
    "deleting",
    "error",
    "error_deleting",
    "error_managing",
    "managing",
    "attaching",
    "in-use",
    "detaching",
    "maintenance",
    "restoring-backup",
    "error_restoring",
    "reserved",
    "awaiting-transfer",
    "backing-up",
    "error_backing-up",
    "error_extending",
    "downloading",
    "uploading",
    "retyping",
    "extending",
)
ATTACH_STATUSES = (
    "attached",
    "attaching",
    "detached",
    "reserved",
    "error_attaching",
    "error_detaching",
    "deleted",
)
MIGRATION_STATUSES = (
    "migrating",
    "error",
    "success",
    "completing",
    "none",
    "starting",
)
VolumeAction = Callable[[Call, Volume, Any], Awaitable[Response]]


class VolumeAdminActions:
    """os-reset_status, os-force_delete, os-force_detach (admin) and os-update_readonly_flag."""

    def __init__(self, core: StorageCore) -> None:
        self._core = core
        self._store = core.store

    def handlers(self) -> dict[str, VolumeAction]:
        """Action name -> handler(call, volume, argument)."""
        return {
            "os-reset_status": self.reset_status,
            "os-force_delete": self.force_delete,
            "os-force_detach": self.force_detach,
            "os-update_readonly_flag": self.update_readonly_flag,
        }

    async def reset_status(self, call: Call, vol: Volume, arg: Any) -> Response:
        """Set status, attach_status and/or migration_status by hand; nothing runs."""
        self._core.require_admin(call, "volume_extension:volume_admin_actions:reset_status")
        if not isinstance(arg, dict):
            raise invalid_input("os-reset_status", arg, f"{arg!r} is not of type 'object'")
        status, attach, migration = arg.get("status"), arg.get("attach_status"), arg.get("migration_status")
        if status is None and attach is None and migration is None:
            raise bad_request("Must specify 'status', 'attach_status' or 'migration_status' for update.")
        if status is not None and status not in VOLUME_STATUSES:
            raise bad_request(f"Volume status: {status} is invalid, valid statuses are: {VOLUME_STATUSES}.")
        if attach is not None and attach not in ATTACH_STATUSES:
            raise bad_request(
                f"Volume attach status: {attach} is invalid, valid statuses are: {ATTACH_STATUSES}."
            )
        if migration is not None and migration not in MIGRATION_STATUSES:
            raise bad_request(
                f"Volume migration status: {migration} is invalid, valid statuses are: {MIGRATION_STATUSES}."
            )
        changes: dict[str, Any] = {"updated_at": now()}
        if status is not None:
            changes.update(status=status, pending=None)
        if migration is not None:
            # The string 'none' clears it; a JSON null leaves it as it is.
            changes["migration_status"] = None if migration == "none" else migration
        self._store.put(dataclasses.replace(vol, **changes))
        return self._core.accepted()

    async def force_delete(self, call: Call, vol: Volume, arg: Any) -> Response:
        """Delete whatever the volume's status (not while attached), with its snapshots."""
        self._core.require_admin(call, "volume_extension:volume_admin_actions:force_delete")
        if self._core.ops.attachments_of(vol.id):
            raise bad_request("Invalid volume: Volume must not be attached to be deleted.")
        snaps = [s for s in self._store.all(Snapshot) if s.volume_id == vol.id]
        if snaps:
            raise bad_request(f"Invalid volume: Volume still has {len(snaps)} dependent snapshots.")
        if not vol.backend:
            self._store.delete(vol)
            return self._core.accepted()
        self._store.put(
            dataclasses.replace(vol, status=VolumeStatus.DELETING, updated_at=now(), pending={"op": "delete"})
        )
        self._core.ops.start_volume(vol.id)
        return self._core.accepted()

    async def force_detach(self, call: Call, vol: Volume, arg: Any) -> Response:
        """Drop an attachment made through the Storage API; one Compute made must be detached there."""
        self._core.require_admin(call, "volume_extension:volume_admin_actions:force_detach")
        wanted = arg.get("attachment_id") if isinstance(arg, dict) else None
        attachments = self._core.ops.attachments_of(vol.id)
        if wanted is None:
            doomed = [a for a in attachments if a.legacy]
        else:
            doomed = [a for a in attachments if a.id == wanted and a.legacy]
            if not doomed:
                raise conflict(
                    "ConflictNovaUsingAttachment: Detach volume from instance  using the Compute API"
                )
        if doomed:
            remaining = [a for a in attachments if a not in doomed]
            status = VolumeStatus.IN_USE if remaining else VolumeStatus.AVAILABLE
            self._store.write(put=[dataclasses.replace(vol, status=status, updated_at=now())], delete=doomed)
        return self._core.accepted()

    async def update_readonly_flag(self, call: Call, vol: Volume, arg: Any) -> Response:
        """Kept as admin metadata: the volume view shows it as metadata.readonly."""
        if not isinstance(arg, dict) or "readonly" not in arg:
            raise invalid_input("os-update_readonly_flag", arg, "'readonly' is a required property")
        readonly = parse_bool("readonly", arg["readonly"])
        self._store.put(dataclasses.replace(vol, readonly=readonly, updated_at=now()))
        return self._core.accepted()
