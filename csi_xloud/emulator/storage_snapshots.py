"""Storage API: snapshots (sparse copies of volume files)."""

from __future__ import annotations

import dataclasses
from typing import Any

from starlette.responses import Response

from csi_xloud.emulator.context import json_body, require_object
from csi_xloud.emulator.errors import bad_request, invalid_input
from csi_xloud.emulator.models import (
    Snapshot,
    SnapshotStatus,
    VolumeStatus,
    new_id,
    now,
)
from csi_xloud.emulator.routing import Call, RouteTable
from csi_xloud.emulator.storage_core import StorageCore, check_metadata, check_name, filter_by, parse_bool

ID = r"[^/]+"
SNAPSHOT_SORT = {"id", "status", "size", "created_at", "updated_at", "name", "volume_id"}


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
        table.add("POST", f"snapshots/(?P<id>{ID})/action", self.action)

    async def create(self, call: Call) -> Response:
        """POST /snapshots: 202 creating; in-use volumes need force before 3.66."""
        req = require_object(await json_body(call.request), "snapshot")
        if not req.get("volume_id"):
            raise invalid_input("snapshot", req, "'volume_id' is a required property")
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
        snaps = [s for s in self._store.all(Snapshot) if s.project_id == call.project_id]
        snaps = filter_by(snaps, call, ("volume_id", "name", "status"))
        if "group_snapshot_id" in call.query:
            if call.mv.at_least("3.33") and not call.caller.is_admin:
                # Not among a member's allowed snapshot filters (Cinder's resource_filters.json).
                raise bad_request("Invalid filters group_snapshot_id are found in query options.")
            snaps = [s for s in snaps if s.group_snapshot_id == call.query["group_snapshot_id"]]
        return self._core.sort(
            snaps, self._core.sort_keys(call, SNAPSHOT_SORT), lambda s, k: getattr(s, k, None)
        )

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
        self._store.put(
            dataclasses.replace(
                snap, status=SnapshotStatus.DELETING, updated_at=now(), pending={"op": "delete"}
            )
        )
        self._core.ops.start_snapshot(snap.id)
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

    async def action(self, call: Call) -> Response:
        """POST /snapshots/{id}/action: os-reset_status (admin)."""
        snap = self._core.snapshot(call, call.params["id"])
        body = await json_body(call.request)
        if not isinstance(body, dict) or "os-reset_status" not in body:
            raise bad_request(
                "There is no such action. Verify the request body and Content-Type header and try again."
            )
        self._core.require_admin(call, "volume_extension:snapshot_admin_actions:reset_status")
        status = (body["os-reset_status"] or {}).get("status")
        if status not in set(SnapshotStatus):
            raise invalid_input("status", status, f"{status!r} is not a valid snapshot status")
        self._store.put(dataclasses.replace(snap, status=status, pending=None, updated_at=now()))
        return self._core.accepted()
