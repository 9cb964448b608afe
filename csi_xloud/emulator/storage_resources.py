"""Storage API: snapshots, backups, types, qos-specs, quotas, limits, zones and services."""

from __future__ import annotations

import dataclasses
from typing import Any

from starlette.responses import Response

from csi_xloud.emulator.context import json_body, require_object
from csi_xloud.emulator.errors import bad_request, conflict, forbidden, invalid_input, not_found
from csi_xloud.emulator.models import (
    Backup,
    BackupStatus,
    QosSpec,
    Snapshot,
    SnapshotStatus,
    Volume,
    VolumeStatus,
    VolumeType,
    new_id,
    now,
)
from csi_xloud.emulator.ops import backend_of
from csi_xloud.emulator.routing import Call, RouteTable
from csi_xloud.emulator.storage_core import StorageCore, check_metadata, check_name, parse_bool

ID = r"[^/]+"
QOS_CONSUMERS = ("back-end", "front-end", "both")
SNAPSHOT_SORT = {"id", "status", "size", "created_at", "updated_at", "name", "volume_id"}
BACKUP_SORT = {"id", "status", "size", "created_at", "updated_at", "name", "volume_id", "container"}


def register_resources(core: StorageCore, table: RouteTable) -> None:
    """Add the non-volume route groups."""
    SnapshotRoutes(core).register(table)
    BackupRoutes(core).register(table)
    TypeRoutes(core).register(table)
    AdminRoutes(core).register(table)


def _filter(items: list[Any], call: Call, fields: tuple[str, ...]) -> list[Any]:
    for field in fields:
        if field in call.query:
            items = [i for i in items if str(getattr(i, field)) == call.query[field]]
    return items


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
                "Since microversion 3.66 the 'force' flag is invalid for this request.  For backward compatability,"
                " however, when the 'force' flag is passed with a value evaluating to True, it is silently ignored."
            )
        in_use_ok = call.mv.at_least("3.66") or force is True
        if vol.status != VolumeStatus.AVAILABLE and not (vol.status == VolumeStatus.IN_USE and in_use_ok):
            raise bad_request(
                f"Invalid volume: Volume {vol.id} status must be available, but current status is: {vol.status}."
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
        snaps = _filter(snaps, call, ("volume_id", "name", "status"))
        return self._core.sort(snaps, self._core.sort_keys(call, SNAPSHOT_SORT), lambda s, k: getattr(s, k, None))

    def _list(self, call: Call, detail: bool) -> Response:
        page, links = self._core.page(call, self._listed(call), "snapshots", "Snapshot")
        views = [self._core.views.snapshot(s, call.mv, call.caller, detail, detail) for s in page]
        body: dict[str, Any] = {"snapshots": views}
        if links:
            body["snapshots_links"] = links
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
        if snap.status not in (SnapshotStatus.AVAILABLE, SnapshotStatus.ERROR):
            raise bad_request("Invalid snapshot: Snapshot status must be available or error and must not be part"
                              " of a group.")
        self._store.put(dataclasses.replace(snap, status=SnapshotStatus.DELETING, updated_at=now(),
                                            pending={"op": "delete"}))
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
            raise bad_request("There is no such action. Verify the request body and Content-Type header and try again.")
        self._core.require_admin(call, "volume_extension:snapshot_admin_actions:reset_status")
        status = (body["os-reset_status"] or {}).get("status")
        if status not in set(SnapshotStatus):
            raise invalid_input("status", status, f"{status!r} is not a valid snapshot status")
        self._store.put(dataclasses.replace(snap, status=status, pending=None, updated_at=now()))
        return self._core.accepted()


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
                f"Invalid volume: Volume to be backed up must be available or in-use, but the current status is"
                f" \"{vol.status}\"."
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
        )
        self._store.put(backup, dataclasses.replace(vol, status=VolumeStatus.BACKING_UP, updated_at=now()))
        self._core.ops.start_backup(backup.id)
        return self._core.ok({"backup": self._core.views.backup_summary(backup)}, 202)

    def _parent(self, volume_id: str) -> Backup | None:
        done = [b for b in self._store.all(Backup) if b.volume_id == volume_id and b.status == BackupStatus.AVAILABLE]
        return max(done, key=lambda b: b.created_at, default=None)

    def _list(self, call: Call, detail: bool) -> Response:
        backups = [b for b in self._store.all(Backup) if b.project_id == call.project_id]
        backups = _filter(backups, call, ("volume_id", "name", "status"))
        backups = self._core.sort(backups, self._core.sort_keys(call, BACKUP_SORT), lambda b, k: getattr(b, k, None))
        page, links = self._core.page(call, backups, "backups", "Backup")
        items = [self._view(call, b) if detail else self._core.views.backup_summary(b) for b in page]
        body: dict[str, Any] = {"backups": items}
        if links:
            body["backups_links"] = links
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

    async def delete(self, call: Call) -> Response:
        """DELETE /backups/{id}: refused while incrementals depend on it."""
        backup = self._core.backup(call, call.params["id"])
        if backup.status not in (BackupStatus.AVAILABLE, BackupStatus.ERROR):
            raise bad_request("Invalid backup: Backup status must be available or error")
        if self._dependents(backup.id):
            raise bad_request("Invalid backup: Incremental backups exist for this backup.")
        self._store.put(dataclasses.replace(backup, status=BackupStatus.DELETING, updated_at=now(),
                                            pending={"op": "delete"}))
        self._core.ops.start_backup(backup.id)
        return self._core.accepted()

    async def restore(self, call: Call) -> Response:
        """POST /backups/{id}/restore: into a new volume or an existing available one."""
        backup = self._core.backup(call, call.params["id"])
        req = require_object(await json_body(call.request), "restore")
        if backup.status != BackupStatus.AVAILABLE:
            raise bad_request("Invalid backup: Backup status must be available")
        if req.get("volume_id"):
            vol = self._core.volume(call, str(req["volume_id"]))
            if vol.status != VolumeStatus.AVAILABLE:
                raise bad_request("Invalid volume: Volume to be restored to must be available")
            if vol.size < backup.size:
                raise bad_request(
                    f"Invalid volume: volume size {vol.size} is too small to restore backup of size {backup.size}."
                )
        else:
            vtype = self._core.default_type()
            self._core.quotas.check_volume(call.project_id, backup.size, vtype.name)
            vol = Volume(
                id=new_id(), project_id=call.project_id, user_id=call.caller.user.id, size=backup.size,
                status=VolumeStatus.CREATING, type_id=vtype.id, backend=backend_of(vtype),
                availability_zone=backup.availability_zone, created_at=now(),
                name=check_name("name", req.get("name")) or f"restore_backup_{backup.id}",
                description="auto-created_from_restore_from_backup",
            )
        self._store.put(
            dataclasses.replace(vol, status=VolumeStatus.RESTORING_BACKUP, updated_at=now()),
            dataclasses.replace(backup, status=BackupStatus.RESTORING, updated_at=now(),
                                pending={"op": "restore", "volume_id": vol.id}),
        )
        self._core.ops.start_backup(backup.id)
        return self._core.ok({"restore": {"backup_id": backup.id, "volume_id": vol.id, "volume_name": vol.name}}, 202)


class TypeRoutes:
    """Volume types and extra specs (changes are admin-only)."""

    def __init__(self, core: StorageCore) -> None:
        self._core = core
        self._store = core.store

    def register(self, table: RouteTable) -> None:
        """Add this group's routes."""
        table.add("GET", "types", self.list_types)
        table.add("POST", "types", self.create)
        table.add("GET", "types/default", self.default)
        table.add("GET", f"types/(?P<id>{ID})", self.show)
        table.add("PUT", f"types/(?P<id>{ID})", self.update)
        table.add("DELETE", f"types/(?P<id>{ID})", self.delete)
        table.add("GET", f"types/(?P<id>{ID})/extra_specs", self.extra_specs)
        table.add("POST", f"types/(?P<id>{ID})/extra_specs", self.set_extra_specs)

    def _by_id(self, type_id: str) -> VolumeType:
        vtype = self._store.get(VolumeType, type_id)
        if vtype is None:
            raise not_found(f"Volume type {type_id} could not be found.")
        return vtype

    def _view(self, call: Call, vtype: VolumeType) -> dict[str, Any]:
        return self._core.views.volume_type(vtype, call.mv, call.caller)

    async def list_types(self, call: Call) -> Response:
        """GET /types."""
        types = [t for t in self._store.all(VolumeType) if t.is_public or call.caller.is_admin]
        return self._core.ok({"volume_types": [self._view(call, t) for t in types]})

    async def default(self, call: Call) -> Response:
        """GET /types/default (3.62)."""
        if not call.mv.at_least("3.62"):
            return await self.show(dataclasses.replace(call, params={"id": "default"}))
        view = self._core.views.volume_type(self._core.default_type(), call.mv, call.caller, access=False)
        return self._core.ok({"volume_type": view})

    async def show(self, call: Call) -> Response:
        """GET /types/{id}."""
        return self._core.ok({"volume_type": self._view(call, self._by_id(call.params["id"]))})

    async def extra_specs(self, call: Call) -> Response:
        """GET /types/{id}/extra_specs."""
        view = self._view(call, self._by_id(call.params["id"]))
        return self._core.ok({"extra_specs": view["extra_specs"]})

    async def create(self, call: Call) -> Response:
        """POST /types (admin)."""
        self._core.require_admin(call, "volume_extension:types_manage")
        req = require_object(await json_body(call.request), "volume_type")
        name = req.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > 255:
            raise invalid_input("name", name, f"{name!r} is not a valid name")
        if any(t.name == name for t in self._store.all(VolumeType)):
            raise conflict(f"Volume Type {name} already exists.")
        specs = check_metadata(req.get("extra_specs"))
        is_public = parse_bool("os-volume-type-access:is_public",
                               req.get("os-volume-type-access:is_public", req.get("is_public", True)))
        vtype = VolumeType(new_id(), name, check_name("description", req.get("description")), is_public, specs)
        self._store.put(vtype)
        view = self._view(call, vtype)
        view.pop("qos_specs_id", None)
        return self._core.ok({"volume_type": view})

    async def update(self, call: Call) -> Response:
        """PUT /types/{id} (admin)."""
        self._core.require_admin(call, "volume_extension:types_manage")
        vtype = self._by_id(call.params["id"])
        req = require_object(await json_body(call.request), "volume_type")
        changes: dict[str, Any] = {}
        if "name" in req:
            if any(t.name == req["name"] and t.id != vtype.id for t in self._store.all(VolumeType)):
                raise conflict(f"Volume Type {req['name']} already exists.")
            changes["name"] = str(req["name"])
        if "description" in req:
            changes["description"] = check_name("description", req["description"])
        if "is_public" in req:
            changes["is_public"] = parse_bool("is_public", req["is_public"])
        vtype = dataclasses.replace(vtype, **changes)
        self._store.put(vtype)
        view = self._view(call, vtype)
        for key in ("qos_specs_id", "os-volume-type-access:is_public"):
            view.pop(key, None)
        return self._core.ok({"volume_type": view})

    async def delete(self, call: Call) -> Response:
        """DELETE /types/{id} (admin); refused while volumes use it."""
        self._core.require_admin(call, "volume_extension:types_manage")
        vtype = self._by_id(call.params["id"])
        if vtype.id == self._core.default_type().id:
            raise bad_request("Invalid volume type: The default volume type cannot be deleted.")
        if any(v.type_id == vtype.id for v in self._store.all(Volume)):
            raise bad_request("Target volume type is still in use.")
        self._store.delete(vtype)
        return self._core.accepted()

    async def set_extra_specs(self, call: Call) -> Response:
        """POST /types/{id}/extra_specs (admin): merge."""
        self._core.require_admin(call, "volume_extension:types_manage")
        vtype = self._by_id(call.params["id"])
        specs = check_metadata(require_object(await json_body(call.request), "extra_specs"))
        self._store.put(dataclasses.replace(vtype, extra_specs={**vtype.extra_specs, **specs}))
        return self._core.ok({"extra_specs": specs})


class AdminRoutes:
    """qos-specs, quotas, limits, availability zones, services, pools and messages."""

    def __init__(self, core: StorageCore) -> None:
        self._core = core
        self._store = core.store

    def register(self, table: RouteTable) -> None:
        """Add this group's routes."""
        table.add("GET", "qos-specs", self.list_qos)
        table.add("POST", "qos-specs", self.create_qos)
        table.add("GET", f"qos-specs/(?P<id>{ID})", self.show_qos)
        table.add("PUT", f"qos-specs/(?P<id>{ID})", self.update_qos)
        table.add("DELETE", f"qos-specs/(?P<id>{ID})", self.delete_qos)
        table.add("GET", f"qos-specs/(?P<id>{ID})/associations", self.qos_associations)
        table.add("GET", f"qos-specs/(?P<id>{ID})/associate", self.qos_associate)
        table.add("GET", f"qos-specs/(?P<id>{ID})/disassociate", self.qos_disassociate)
        table.add("GET", f"os-quota-sets/(?P<id>{ID})", self.show_quota)
        table.add("GET", f"os-quota-sets/(?P<id>{ID})/defaults", self.quota_defaults)
        table.add("PUT", f"os-quota-sets/(?P<id>{ID})", self.update_quota)
        table.add("DELETE", f"os-quota-sets/(?P<id>{ID})", self.reset_quota)
        table.add("GET", "limits", self.limits)
        table.add("GET", "os-availability-zone", self.zones)
        table.add("GET", "os-services", self.services)
        table.add("GET", "scheduler-stats/get_pools", self.pools)
        table.add("GET", "messages", self.messages)

    # -- qos --------------------------------------------------------------------------------------

    def _qos(self, call: Call, what: str) -> QosSpec | None:
        self._core.require_admin(call, f"volume_extension:qos_specs_manage:{what}")
        if "id" not in call.params:
            return None
        spec = self._store.get(QosSpec, call.params["id"])
        if spec is None:
            raise not_found(f"No such QoS spec {call.params['id']}.")
        return spec

    def _qos_view(self, spec: QosSpec) -> dict[str, Any]:
        return {"id": spec.id, "name": spec.name, "consumer": spec.consumer, "specs": dict(spec.specs)}

    def _qos_links(self, call: Call, spec: QosSpec) -> list[dict[str, str]]:
        return self._core.views.links(call.project_id, "qos-specs", spec.id)

    async def list_qos(self, call: Call) -> Response:
        """GET /qos-specs (admin)."""
        self._qos(call, "get_all")
        return self._core.ok({"qos_specs": [self._qos_view(s) for s in self._store.all(QosSpec)]})

    async def show_qos(self, call: Call) -> Response:
        """GET /qos-specs/{id} (admin)."""
        spec = self._qos(call, "get")
        assert spec is not None
        return self._core.ok({"qos_specs": self._qos_view(spec), "links": self._qos_links(call, spec)})

    async def create_qos(self, call: Call) -> Response:
        """POST /qos-specs (admin)."""
        self._qos(call, "create")
        req = dict(require_object(await json_body(call.request), "qos_specs"))
        name = req.pop("name", None)
        if not isinstance(name, str) or not name.strip():
            raise bad_request("Please specify a name for QoS specs.")
        consumer = req.pop("consumer", "back-end")
        if consumer not in QOS_CONSUMERS:
            raise bad_request(f"Invalid qos specs: Valid consumer of QoS specs are: {list(QOS_CONSUMERS)}")
        if any(s.name == name for s in self._store.all(QosSpec)):
            raise conflict(f"QoS Specs {name} already exists.")
        spec = QosSpec(new_id(), name, consumer, {str(k): str(v) for k, v in req.items()})
        self._store.put(spec)
        return self._core.ok({"qos_specs": self._qos_view(spec), "links": self._qos_links(call, spec)})

    async def update_qos(self, call: Call) -> Response:
        """PUT /qos-specs/{id} (admin)."""
        spec = self._qos(call, "update")
        assert spec is not None
        req = require_object(await json_body(call.request), "qos_specs")
        changes = {str(k): str(v) for k, v in req.items()}
        consumer = changes.pop("consumer", spec.consumer)
        if consumer not in QOS_CONSUMERS:
            raise bad_request(f"Invalid qos specs: Valid consumer of QoS specs are: {list(QOS_CONSUMERS)}")
        self._store.put(dataclasses.replace(spec, consumer=consumer, specs={**spec.specs, **changes}))
        return self._core.ok({"qos_specs": dict(req)})

    async def delete_qos(self, call: Call) -> Response:
        """DELETE /qos-specs/{id} (admin)."""
        spec = self._qos(call, "delete")
        assert spec is not None
        users = [t for t in self._store.all(VolumeType) if t.qos_specs_id == spec.id]
        if users and call.query.get("force", "").lower() not in ("true", "1"):
            raise bad_request(f"QoS Specs {spec.id} is still associated with entities.")
        self._store.write(put=[dataclasses.replace(t, qos_specs_id=None) for t in users], delete=[spec])
        return self._core.accepted()

    async def qos_associations(self, call: Call) -> Response:
        """GET /qos-specs/{id}/associations (admin)."""
        spec = self._qos(call, "get")
        assert spec is not None
        types = [t for t in self._store.all(VolumeType) if t.qos_specs_id == spec.id]
        return self._core.ok(
            {"qos_associations": [{"association_type": "volume_type", "name": t.name, "id": t.id} for t in types]}
        )

    async def qos_associate(self, call: Call) -> Response:
        """GET /qos-specs/{id}/associate?vol_type_id= (admin)."""
        spec = self._qos(call, "update")
        assert spec is not None
        vtype = self._store.get(VolumeType, call.query.get("vol_type_id", ""))
        if vtype is None:
            raise not_found(f"Volume type {call.query.get('vol_type_id')} could not be found.")
        self._store.put(dataclasses.replace(vtype, qos_specs_id=spec.id))
        return self._core.accepted()

    async def qos_disassociate(self, call: Call) -> Response:
        """GET /qos-specs/{id}/disassociate?vol_type_id= (admin)."""
        spec = self._qos(call, "update")
        assert spec is not None
        vtype = self._store.get(VolumeType, call.query.get("vol_type_id", ""))
        if vtype is None:
            raise not_found(f"Volume type {call.query.get('vol_type_id')} could not be found.")
        self._store.put(dataclasses.replace(vtype, qos_specs_id=None))
        return self._core.accepted()

    # -- quotas and limits ------------------------------------------------------------------------

    def _quota_target(self, call: Call) -> str:
        target = call.params["id"]
        if target != call.project_id and not call.caller.is_admin:
            raise forbidden("Policy doesn't allow volume_extension:quotas:show to be performed.")
        return target

    async def show_quota(self, call: Call) -> Response:
        """GET /os-quota-sets/{project}[?usage=true]."""
        target = self._quota_target(call)
        usage = call.query.get("usage", "").lower() in ("true", "1")
        return self._core.ok({"quota_set": self._core.quotas.view(target, usage)})

    async def quota_defaults(self, call: Call) -> Response:
        """GET /os-quota-sets/{project}/defaults."""
        target = self._quota_target(call)
        return self._core.ok({"quota_set": {**self._core.quotas.defaults(), "id": target}})

    async def update_quota(self, call: Call) -> Response:
        """PUT /os-quota-sets/{project} (admin): raise or lower limits."""
        self._core.require_admin(call, "volume_extension:quotas:update")
        body = await json_body(call.request)
        raw = body.get("quota_set") if isinstance(body, dict) else None
        return self._core.ok({"quota_set": self._core.quotas.update(call.params["id"], raw)})

    async def reset_quota(self, call: Call) -> Response:
        """DELETE /os-quota-sets/{project} (admin): back to defaults."""
        self._core.require_admin(call, "volume_extension:quotas:delete")
        self._core.quotas.reset(call.params["id"])
        return Response(status_code=200)

    async def limits(self, call: Call) -> Response:
        """GET /limits."""
        limits = self._core.quotas.limits(call.project_id)
        usage = self._core.quotas.usage(call.project_id)
        absolute = {
            "maxTotalVolumes": limits["volumes"],
            "maxTotalSnapshots": limits["snapshots"],
            "maxTotalVolumeGigabytes": limits["gigabytes"],
            "maxTotalBackups": limits["backups"],
            "maxTotalBackupGigabytes": limits["backup_gigabytes"],
            "totalVolumesUsed": usage["volumes"],
            "totalGigabytesUsed": usage["gigabytes"],
            "totalSnapshotsUsed": usage["snapshots"],
            "totalBackupsUsed": usage["backups"],
            "totalBackupGigabytesUsed": usage["backup_gigabytes"],
        }
        return self._core.ok({"limits": {"rate": [], "absolute": absolute}})

    # -- informational ----------------------------------------------------------------------------

    async def zones(self, call: Call) -> Response:
        """GET /os-availability-zone."""
        info = [{"zoneName": z, "zoneState": {"available": True}} for z in self._core.zones()]
        return self._core.ok({"availabilityZoneInfo": info})

    async def services(self, call: Call) -> Response:
        """GET /os-services (admin)."""
        self._core.require_admin(call, "volume_extension:services:index")
        backends = sorted({backend_of(t) for t in self._store.all(VolumeType)})
        services = [
            {"binary": "cinder-scheduler", "host": "xloud", "zone": self._core.zones()[0], "status": "enabled",
             "state": "up", "updated_at": now(), "disabled_reason": None},
            {"binary": "cinder-backup", "host": "xloud", "zone": self._core.zones()[0], "status": "enabled",
             "state": "up", "updated_at": now(), "disabled_reason": None},
        ] + [
            {"binary": "cinder-volume", "host": f"xloud@{b}", "zone": self._core.zones()[0], "status": "enabled",
             "state": "up", "updated_at": now(), "disabled_reason": None}
            for b in backends
        ]
        return self._core.ok({"services": services})

    async def pools(self, call: Call) -> Response:
        """GET /scheduler-stats/get_pools (admin)."""
        self._core.require_admin(call, "scheduler_extension:scheduler_stats:get_pools")
        backends = sorted({backend_of(t) for t in self._store.all(VolumeType)})
        pools = [
            {"name": f"xloud@{b}#{b}", "capabilities": {"volume_backend_name": b, "pool_name": b,
                                                       "multiattach": True, "online_extend_support": True,
                                                       "thin_provisioning_support": True,
                                                       "storage_protocol": "local"}}
            for b in backends
        ]
        return self._core.ok({"pools": pools})

    async def messages(self, call: Call) -> Response:
        """GET /messages (3.3): no user messages are kept."""
        if not call.mv.at_least("3.3"):
            raise not_found()
        return self._core.ok({"messages": []})
