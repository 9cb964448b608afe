"""Storage API: snapshots (sparse copies of volume files)."""

from __future__ import annotations

import dataclasses
from typing import Any

from starlette.responses import Response

from csi_xloud.emulator.context import json_body, require_object
from csi_xloud.emulator.errors import bad_request, invalid_input, not_found
from csi_xloud.emulator.models import (
    Snapshot,
    SnapshotStatus,
    VolumeStatus,
    new_id,
    now,
)
from csi_xloud.emulator.routing import Call, RouteTable
from csi_xloud.emulator.storage_core import (
    StorageCore,
    check_metadata,
    check_name,
    filter_by,
    no_such_action,
    parse_bool,
)

ID = r"[^/]+"
SNAPSHOT_SORT = {
    "id",
    "status",
    "size",
    "created_at",
    "updated_at",
    "name",
    "display_name",
    "description",
    "display_description",
    "volume_id",
    "project_id",
}
LIST_PARAMS = {"limit", "marker", "offset", "sort", "sort_key", "sort_dir", "all_tenants", "with_count"}
MEMBER_FILTERS = {"name", "status", "volume_id", "metadata", "availability_zone"}
# Cinder's fields.SnapshotStatus, in its order (the 400 for an unknown one lists them).
STATUSES = (
    "error",
    "available",
    "creating",
    "deleting",
    "deleted",
    "updating",
    "error_deleting",
    "unmanaging",
    "backing-up",
    "restoring",
)
# os-update_snapshot_status (what Nova calls during assisted snapshots): current -> allowed new statuses.
UPDATABLE = {"creating": ("creating", "available", "error"), "deleting": ("deleting", "error_deleting")}


class SnapshotRoutes:
    """Snapshots of volumes (sparse copies)."""

    def __init__(self, core: StorageCore) -> None:
        self._core = core
        self._store = core.store

    def register(self, table: RouteTable) -> None:
        """Add this group's routes."""
        table.add("GET", "snapshots", self.list_summary)
        table.add("GET", "snapshots/detail", self.list_detail)
        table.add("POST", "snapshots", self.create)
        table.add("GET", f"snapshots/(?P<id>{ID})", self.show)
        table.add("PUT", f"snapshots/(?P<id>{ID})", self.update)
        table.add("DELETE", f"snapshots/(?P<id>{ID})", self.delete)
        table.add("GET", f"snapshots/(?P<id>{ID})/metadata", self.get_metadata)
        table.add("POST", f"snapshots/(?P<id>{ID})/metadata", self.add_metadata)
        table.add("PUT", f"snapshots/(?P<id>{ID})/metadata", self.replace_metadata)
        table.add("GET", f"snapshots/(?P<id>{ID})/metadata/(?P<key>[^/]+)", self.get_meta_key)
        table.add("PUT", f"snapshots/(?P<id>{ID})/metadata/(?P<key>[^/]+)", self.set_meta_key)
        table.add("DELETE", f"snapshots/(?P<id>{ID})/metadata/(?P<key>[^/]+)", self.delete_meta_key)
        table.add("POST", f"snapshots/(?P<id>{ID})/action", self.action)

    async def create(self, call: Call) -> Response:
        """POST /snapshots: 202 creating; in-use volumes need force before 3.66."""
        req = require_object(await json_body(call.request), "snapshot")
        if "volume_id" not in req:
            raise invalid_input("snapshot", req, "'volume_id' is a required property")
        if not req["volume_id"]:
            raise not_found(f"Volume {req['volume_id']} could not be found.")
        force = parse_bool("force", req["force"]) if req.get("force") is not None else None
        vol = self._core.volume(call, str(req["volume_id"]))
        name = check_name("name", req.get("name", req.get("display_name")))
        description = check_name("description", req.get("description", req.get("display_description")))
        metadata = check_metadata(req.get("metadata"))
        if call.mv.at_least("3.66") and force is False:
            raise bad_request(
                "Since microversion 3.66 the 'force' flag is invalid"
                " for this request.  For backward compatability,"
                " however, when the 'force' flag is passed with a"
                " value evaluating to True, it is silently ignored."
            )
        in_use_ok = call.mv.at_least("3.66") or force is True
        if vol.status != VolumeStatus.AVAILABLE and not (vol.status == VolumeStatus.IN_USE and in_use_ok):
            raise bad_request(
                f"Invalid volume: Volume {vol.id} status must be"
                f" available, but current status is: {vol.status}."
            )
        self._core.quotas.check_snapshot(call.project_id, vol.size, self._core.type_name(vol.type_id))
        snap = Snapshot(
            id=new_id(),
            project_id=call.project_id,
            user_id=call.caller.user.id,
            volume_id=vol.id,
            size=vol.size,
            status=SnapshotStatus.CREATING,
            backend=vol.backend,
            created_at=now(),
            name=name,
            description=description,
            metadata=metadata,
            pending={"op": "create"},
        )
        self._store.put(snap)
        self._core.ops.start_snapshot(snap.id)
        return self._core.ok({"snapshot": self._core.views.snapshot(snap, call.mv, call.caller, False)}, 202)

    def _listed(self, call: Call) -> list[Snapshot]:
        self._core.reject_invalid_filters(call, MEMBER_FILTERS, LIST_PARAMS)
        snaps = [s for s in self._store.all(Snapshot) if self._core.in_listed_projects(call, s.project_id)]
        snaps = filter_by(snaps, call, ("volume_id", "name", "status"))
        if "group_snapshot_id" in call.query:
            if call.mv.at_least("3.33") and not call.caller.is_admin:
                # Not among a member's allowed snapshot filters (Cinder's resource_filters.json).
                raise bad_request("Invalid filters group_snapshot_id are found in query options.")
            snaps = [s for s in snaps if s.group_snapshot_id == call.query["group_snapshot_id"]]
        if "metadata" in call.query:
            wanted = self._core.parse_metadata_filter(call.query["metadata"])
            snaps = [s for s in snaps if all(s.metadata.get(k) == v for k, v in wanted.items())]
        return self._core.sort(snaps, self._core.sort_keys(call, SNAPSHOT_SORT), _sort_value)

    def _list(self, call: Call, detail: bool) -> Response:
        listed = self._listed(call)
        page, links = self._core.page(call, listed, "snapshots", "Snapshot")
        views = [self._core.views.snapshot(s, call.mv, call.caller, detail, detail) for s in page]
        body: dict[str, Any] = {"snapshots": views}
        if links:
            body["snapshots_links"] = links
        if self._core.wants_count(call):
            body["count"] = len(listed)
        return self._core.ok(body)

    async def list_summary(self, call: Call) -> Response:
        """GET /snapshots."""
        return self._list(call, False)

    async def list_detail(self, call: Call) -> Response:
        """GET /snapshots/detail."""
        return self._list(call, True)

    async def show(self, call: Call) -> Response:
        """GET /snapshots/{id}."""
        snap = self._core.snapshot(call, call.params["id"])
        return self._core.ok({"snapshot": self._core.views.snapshot(snap, call.mv, call.caller)})

    async def update(self, call: Call) -> Response:
        """PUT /snapshots/{id}: name and description."""
        snap = self._core.snapshot(call, call.params["id"])
        req = require_object(await json_body(call.request), "snapshot")
        changes: dict[str, Any] = {}
        for field, alias in (("name", "display_name"), ("description", "display_description")):
            if field in req or alias in req:
                changes[field] = check_name(field, req.get(field, req.get(alias)))
        snap = dataclasses.replace(snap, updated_at=now(), **changes)
        self._store.put(snap)
        return self._core.ok({"snapshot": self._core.views.snapshot(snap, call.mv, call.caller, False)})

    async def delete(self, call: Call) -> Response:
        """DELETE /snapshots/{id}."""
        snap = self._core.snapshot(call, call.params["id"])
        if snap.status not in (SnapshotStatus.AVAILABLE, SnapshotStatus.ERROR) or snap.group_snapshot_id:
            raise bad_request(
                "Invalid snapshot: Snapshot status must be available or error and must not be part"
                " of a group."
            )
        self._start_delete(snap)
        return self._core.accepted()

    async def get_metadata(self, call: Call) -> Response:
        """GET /snapshots/{id}/metadata."""
        return self._core.ok({"metadata": dict(self._core.snapshot(call, call.params["id"]).metadata)})

    async def add_metadata(self, call: Call) -> Response:
        """POST /snapshots/{id}/metadata."""
        snap = self._core.snapshot(call, call.params["id"])
        meta = check_metadata(require_object(await json_body(call.request), "metadata"))
        snap = dataclasses.replace(snap, metadata={**snap.metadata, **meta}, updated_at=now())
        self._store.put(snap)
        return self._core.ok({"metadata": dict(snap.metadata)})

    async def replace_metadata(self, call: Call) -> Response:
        """PUT /snapshots/{id}/metadata."""
        snap = self._core.snapshot(call, call.params["id"])
        meta = check_metadata(require_object(await json_body(call.request), "metadata"))
        snap = dataclasses.replace(snap, metadata=meta, updated_at=now())
        self._store.put(snap)
        return self._core.ok({"metadata": dict(snap.metadata)})

    async def get_meta_key(self, call: Call) -> Response:
        """GET /snapshots/{id}/metadata/{key}."""
        snap = self._core.snapshot(call, call.params["id"])
        key = call.params["key"]
        if key not in snap.metadata:
            raise not_found("Metadata item was not found")
        return self._core.ok({"meta": {key: snap.metadata[key]}})

    async def set_meta_key(self, call: Call) -> Response:
        """PUT /snapshots/{id}/metadata/{key}."""
        snap = self._core.snapshot(call, call.params["id"])
        meta = check_metadata(require_object(await json_body(call.request), "meta"))
        if list(meta) != [call.params["key"]]:
            raise bad_request("Request body and URI mismatch")
        self._store.put(dataclasses.replace(snap, metadata={**snap.metadata, **meta}, updated_at=now()))
        return self._core.ok({"meta": meta})

    async def delete_meta_key(self, call: Call) -> Response:
        """DELETE /snapshots/{id}/metadata/{key}."""
        snap = self._core.snapshot(call, call.params["id"])
        key = call.params["key"]
        if key not in snap.metadata:
            raise not_found("Metadata item was not found")
        metadata = {k: v for k, v in snap.metadata.items() if k != key}
        self._store.put(dataclasses.replace(snap, metadata=metadata, updated_at=now()))
        return Response(status_code=200)

    async def action(self, call: Call) -> Response:
        """POST /snapshots/{id}/action: os-reset_status, os-force_delete (admin), update_snapshot_status."""
        snap = self._core.snapshot(call, call.params["id"])
        body = await json_body(call.request)
        if not isinstance(body, dict) or len(body) != 1:
            raise bad_request("Invalid request body")
        ((name, arg),) = body.items()
        handler = {
            "os-reset_status": self._reset_status,
            "os-force_delete": self._force_delete,
            "os-update_snapshot_status": self._update_status,
        }.get(name)
        if handler is None:
            raise no_such_action(name)
        return await handler(call, snap, arg)

    async def _reset_status(self, call: Call, snap: Snapshot, arg: Any) -> Response:
        self._core.require_admin(call, "volume_extension:snapshot_admin_actions:reset_status")
        status = arg.get("status") if isinstance(arg, dict) else None
        if status not in STATUSES:
            raise bad_request(f"Snapshot status: {status} is invalid, valid statuses are: {STATUSES}.")
        self._store.put(dataclasses.replace(snap, status=status, pending=None, updated_at=now()))
        return self._core.accepted()

    async def _force_delete(self, call: Call, snap: Snapshot, arg: Any) -> Response:
        self._core.require_admin(call, "volume_extension:snapshot_admin_actions:force_delete")
        self._start_delete(snap)
        return self._core.accepted()

    async def _update_status(self, call: Call, snap: Snapshot, arg: Any) -> Response:
        if not isinstance(arg, dict) or "status" not in arg:
            raise invalid_input("os-update_snapshot_status", arg, "'status' is a required property")
        status = arg["status"]
        if snap.status not in UPDATABLE:
            raise bad_request(f"Snapshot status {snap.status} not allowed for update_snapshot_status")
        if status not in UPDATABLE[snap.status]:
            raise bad_request(
                f"Provided snapshot status {status} not allowed for snapshot with status {snap.status}."
            )
        changes: dict[str, Any] = {"status": status, "updated_at": now()}
        if arg.get("progress") is not None:
            changes["progress"] = str(arg["progress"])
        if status != snap.status:
            changes["pending"] = None
        self._store.put(dataclasses.replace(snap, **changes))
        return self._core.accepted()

    def _start_delete(self, snap: Snapshot) -> None:
        self._store.put(
            dataclasses.replace(
                snap, status=SnapshotStatus.DELETING, updated_at=now(), pending={"op": "delete"}
            )
        )
        self._core.ops.start_snapshot(snap.id)


def _sort_value(snap: Snapshot, key: str) -> Any:
    if key == "display_name":
        return snap.name
    if key == "display_description":
        return snap.description
    return getattr(snap, key, None)
