"""Storage API: volumes, their metadata and actions."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from typing import Any

from starlette.responses import Response

from csi_xloud.emulator.context import json_body, require_object
from csi_xloud.emulator.errors import bad_request, invalid_input, not_found, unexpected_properties
from csi_xloud.emulator.models import (
    Attachment,
    AttachStatus,
    Backup,
    BackupStatus,
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
from csi_xloud.emulator.storage_core import StorageCore, check_metadata, check_name, parse_bool, parse_size
from csi_xloud.emulator.storage_groups import new_volume_group
from csi_xloud.emulator.storage_volume_admin import VolumeAdminActions

UUID = r"[^/]+"
CREATE_KEYS = {
    "name",
    "description",
    "display_name",
    "display_description",
    "size",
    "volume_type",
    "availability_zone",
    "source_volid",
    "snapshot_id",
    "backup_id",
    "metadata",
    "multiattach",
    "imageRef",
    "consistencygroup_id",
    "group_id",
    "bootable",
}
DELETABLE = {
    VolumeStatus.AVAILABLE,
    VolumeStatus.ERROR,
    VolumeStatus.ERROR_EXTENDING,
    "error_restoring",
    "error_managing",
}
DELETE_REFUSED = (
    "Invalid volume: Volume status must be available or error or error_restoring or error_extending or"
    " error_managing and must not be migrating, attached, belong to a group, have snapshots, awaiting a"
    " transfer, or be disassociated from snapshots after volume transfer."
)
RETYPE_REFUSED = (
    "Invalid volume: Retype needs volume to be in available or in-use state, not be part of an active"
    " migration or a consistency group, requested type has to be different that the one from the volume,"
    " and for in-use volumes front-end qos specs cannot change."
)
SORT_KEYS = {
    "id",
    "status",
    "size",
    "availability_zone",
    "created_at",
    "updated_at",
    "name",
    "description",
    "volume_type",
    "bootable",
    "display_name",
    "user_id",
    "project_id",
}
LIST_PARAMS = {"limit", "marker", "sort", "sort_key", "sort_dir", "with_count", "all_tenants", "offset"}
# What a non-admin may filter volumes by from 3.33 (Cinder's default resource_filters.json).
MEMBER_FILTERS = {
    "name",
    "status",
    "metadata",
    "bootable",
    "migration_status",
    "availability_zone",
    "group_id",
    "size",
    "created_at",
    "updated_at",
}


def is_multiattach(vtype: VolumeType | None) -> bool:
    """Whether a type makes multiattach volumes."""
    return vtype is not None and vtype.extra_specs.get("multiattach", "").lower() == "<is> true"


class VolumeRoutes:
    """Volume CRUD, listing, metadata and actions."""

    def __init__(self, core: StorageCore) -> None:
        self._core = core
        self._store = core.store
        self._admin_actions = VolumeAdminActions(core)

    def register(self, table: RouteTable) -> None:
        """Add this group's routes."""
        table.add("GET", "volumes", self.list_summary)
        table.add("GET", "volumes/detail", self.list_detail)
        table.add("GET", "volumes/summary", self.summary)
        table.add("POST", "volumes", self.create)
        table.add("GET", f"volumes/(?P<id>{UUID})", self.show)
        table.add("PUT", f"volumes/(?P<id>{UUID})", self.update)
        table.add("DELETE", f"volumes/(?P<id>{UUID})", self.delete)
        table.add("GET", f"volumes/(?P<id>{UUID})/metadata", self.get_metadata)
        table.add("POST", f"volumes/(?P<id>{UUID})/metadata", self.add_metadata)
        table.add("PUT", f"volumes/(?P<id>{UUID})/metadata", self.replace_metadata)
        table.add("GET", f"volumes/(?P<id>{UUID})/metadata/(?P<key>[^/]+)", self.get_meta_key)
        table.add("PUT", f"volumes/(?P<id>{UUID})/metadata/(?P<key>[^/]+)", self.set_meta_key)
        table.add("DELETE", f"volumes/(?P<id>{UUID})/metadata/(?P<key>[^/]+)", self.delete_meta_key)
        table.add("POST", f"volumes/(?P<id>{UUID})/action", self.action)

    # -- listing ----------------------------------------------------------------------------------

    def _filtered(self, call: Call) -> list[Volume]:
        self._core.reject_invalid_filters(call, MEMBER_FILTERS, LIST_PARAMS)
        vols = [
            v
            for v in self._store.all(Volume)
            if v.project_id == call.project_id
            or (call.caller.is_admin and call.query.get("all_tenants") in ("1", "true", "True"))
        ]
        for key, value in call.query.multi_items():
            if key in LIST_PARAMS:
                continue
            vols = [v for v in vols if self._matches(v, key, value, call)]
        keys = self._core.sort_keys(call, SORT_KEYS)
        return self._core.sort(vols, keys, self._sort_value)

    def _sort_value(self, vol: Volume, key: str) -> Any:
        if key == "volume_type":
            return self._core.type_name(vol.type_id)
        if key == "display_name":
            return vol.name
        return getattr(vol, key, None)

    def _matches(self, vol: Volume, key: str, value: str, call: Call) -> bool:
        if key in ("name", "display_name"):
            return vol.name == value
        if key in ("name~", "display_name~"):
            return value in (vol.name or "")
        if key == "status":
            return str(vol.status) == value
        if key == "metadata":
            wanted = self._core.parse_metadata_filter(value)
            return all(vol.metadata.get(k) == v for k, v in wanted.items())
        if key == "availability_zone":
            return vol.availability_zone == value
        if key == "bootable":
            return vol.bootable == (value.lower() in ("true", "1"))
        if key == "volume_type":
            return value in (vol.type_id, self._core.type_name(vol.type_id))
        if key == "id":
            return vol.id == value
        if key == "size":
            return str(vol.size) == value
        if key in ("project_id", "tenant_id"):
            return vol.project_id == value
        if key == "migration_status":
            return str(vol.migration_status) == value
        if key in ("created_at", "updated_at") and call.mv.at_least("3.60"):
            return _time_matches(getattr(vol, key), value)
        return False

    async def list_summary(self, call: Call) -> Response:
        """GET /volumes."""
        return self._list(call, detail=False)

    async def list_detail(self, call: Call) -> Response:
        """GET /volumes/detail."""
        return self._list(call, detail=True)

    def _list(self, call: Call, detail: bool) -> Response:
        vols = self._filtered(call)
        page, links = self._core.page(call, vols, "volumes", "Volume")
        items = (
            self._core.volume_bodies(call, page)
            if detail
            else [self._core.views.volume_summary(v) for v in page]
        )
        body: dict[str, Any] = {"volumes": items}
        if links:
            body["volumes_links"] = links
        if self._core.wants_count(call):
            body["count"] = len(vols)
        return self._core.ok(body)

    async def summary(self, call: Call) -> Response:
        """GET /volumes/summary (3.12)."""
        if not call.mv.at_least("3.12"):
            raise not_found()
        vols = [v for v in self._store.all(Volume) if v.project_id == call.project_id]
        body: dict[str, Any] = {"total_count": len(vols), "total_size": sum(v.size for v in vols)}
        if call.mv.at_least("3.36"):
            meta: dict[str, list[str]] = {}
            for v in vols:
                for k, val in v.metadata.items():
                    meta.setdefault(k, [])
                    if val not in meta[k]:
                        meta[k].append(val)
            body["metadata"] = meta
        return self._core.ok({"volume-summary": body})

    # -- create -----------------------------------------------------------------------------------

    async def create(self, call: Call) -> Response:
        """POST /volumes: 202 with status creating."""
        req = require_object(await json_body(call.request), "volume")
        if call.mv.at_least("3.53"):
            extra = sorted(set(req) - CREATE_KEYS)
            if extra:
                raise unexpected_properties("volume", req, extra)
        name = check_name("name", req.get("name", req.get("display_name")))
        description = check_name("description", req.get("description", req.get("display_description")))
        metadata = check_metadata(req.get("metadata"))
        size = None if req.get("size") is None else parse_size("size", req["size"])
        source, snap, backup = self._sources(call, req)
        vtype = self._type_for(call, req, source, snap)
        group_id = new_volume_group(self._core, call, req, vtype)
        size = self._size_for(size, source, snap, backup)
        zone = self._zone_for(req, source, snap)
        multiattach = is_multiattach(vtype) or (
            "multiattach" in req and parse_bool("multiattach", req["multiattach"])
        )
        self._core.quotas.check_volume(call.project_id, size, vtype.name)
        vol = Volume(
            id=new_id(),
            project_id=call.project_id,
            user_id=call.caller.user.id,
            size=size,
            status=VolumeStatus.CREATING,
            type_id=vtype.id,
            backend=backend_of(vtype),
            availability_zone=zone,
            created_at=now(),
            name=name,
            description=description,
            metadata=metadata,
            snapshot_id=snap.id if snap else None,
            source_volid=source.id if source else None,
            backup_id=backup.id if backup else None,
            multiattach=multiattach,
            pending={"op": "create"},
            group_id=group_id,
        )
        if backup is not None:
            self._start_restore(backup, vol)
        else:
            self._store.put(vol)
            self._core.ops.start_volume(vol.id)
        return self._core.ok({"volume": self._core.volume_body(call, vol, admin_attrs=False)}, 202)

    def _start_restore(self, backup: Backup, vol: Volume) -> None:
        restoring = dataclasses.replace(vol, status=VolumeStatus.RESTORING_BACKUP, pending=None)
        busy = dataclasses.replace(
            backup, status=BackupStatus.RESTORING, pending={"op": "restore", "volume_id": vol.id}
        )
        self._store.put(restoring, busy)
        self._core.ops.start_backup(backup.id)

    def _sources(
        self, call: Call, req: dict[str, Any]
    ) -> tuple[Volume | None, Snapshot | None, Backup | None]:
        source = snap = backup = None
        if req.get("source_volid"):
            source = self._core.volume(call, str(req["source_volid"]))
            if source.status not in (VolumeStatus.AVAILABLE, VolumeStatus.IN_USE):
                raise bad_request(
                    "Invalid volume: Source volume status must be"
                    " available or in-use, but current status is:"
                    f" {source.status}."
                )
        if req.get("snapshot_id"):
            snap = self._core.snapshot(call, str(req["snapshot_id"]))
            if snap.status != SnapshotStatus.AVAILABLE:
                raise bad_request(
                    "Invalid snapshot: Originating snapshot status must be one of 'available' values"
                )
        if req.get("backup_id"):
            if not call.mv.at_least("3.47"):
                raise unexpected_properties("volume", req, ["backup_id"])
            backup = self._core.backup(call, str(req["backup_id"]))
            if backup.status != BackupStatus.AVAILABLE:
                raise bad_request(f"Invalid backup: Backup status must be available but is {backup.status}.")
        return source, snap, backup

    def _type_for(
        self, call: Call, req: dict[str, Any], source: Volume | None, snap: Snapshot | None
    ) -> VolumeType:
        origin = source or (self._store.get(Volume, snap.volume_id) if snap else None)
        if req.get("volume_type"):
            vtype = self._core.usable_type(call, str(req["volume_type"]))
            if source is not None and backend_of(vtype) != source.backend:
                raise bad_request(
                    f"Invalid input received: Invalid volume_type provided: {vtype.id} (requested type is not"
                    " compatible; either match source volume, or omit type argument)."
                )
            return vtype
        if origin is not None:
            vtype_or_none = self._store.get(VolumeType, origin.type_id)
            if vtype_or_none is not None:
                return vtype_or_none
        return self._core.default_type()

    @staticmethod
    def _size_for(
        size: int | None, source: Volume | None, snap: Snapshot | None, backup: Backup | None
    ) -> int:
        if source is not None:
            if size is not None and size < source.size:
                raise bad_request(
                    f"Invalid input received: Volume size '{size}'GB"
                    " cannot be smaller than original volume size "
                    f" {source.size}GB. They must be >= original volume size."
                )
            return size or source.size
        if snap is not None:
            if size is not None and size < snap.size:
                raise bad_request(
                    f"Invalid input received: Volume size '{size}'GB cannot be smaller than the snapshot size"
                    f" {snap.size}GB. They must be >= original snapshot size."
                )
            return size or snap.size
        if backup is not None:
            if size is not None and size < backup.size:
                raise bad_request(
                    f"Invalid input received: Volume size {size}GB cannot be smaller than the backup size"
                    f" {backup.size}GB."
                )
            return size or backup.size
        if size is None:
            raise bad_request()
        return size

    def _zone_for(self, req: dict[str, Any], source: Volume | None, snap: Snapshot | None) -> str:
        zones = self._core.zones()
        zone = req.get("availability_zone")
        if zone is None:
            if source is not None:
                return source.availability_zone
            origin = self._store.get(Volume, snap.volume_id) if snap else None
            return origin.availability_zone if origin else ("nova" if "nova" in zones else zones[0])
        if zone not in zones:
            raise bad_request(f"Availability zone '{zone}' is invalid.")
        return str(zone)

    # -- show / update / delete -------------------------------------------------------------------

    async def show(self, call: Call) -> Response:
        """GET /volumes/{id}."""
        vol = self._core.volume(call, call.params["id"])
        return self._core.ok({"volume": self._core.volume_body(call, vol)})

    async def update(self, call: Call) -> Response:
        """PUT /volumes/{id}: name, description, metadata."""
        vol = self._core.volume(call, call.params["id"])
        req = require_object(await json_body(call.request), "volume")
        changes: dict[str, Any] = {}
        for field, alias in (("name", "display_name"), ("description", "display_description")):
            if field in req or alias in req:
                changes[field] = check_name(field, req.get(field, req.get(alias)))
        if "metadata" in req:
            changes["metadata"] = check_metadata(req["metadata"])
        if not changes:
            raise bad_request(
                "Invalid input received: At least one of name, description or metadata must be given"
            )
        vol = dataclasses.replace(vol, updated_at=now(), **changes)
        self._store.put(vol)
        return self._core.ok({"volume": self._core.volume_body(call, vol, admin_attrs=False)})

    async def delete(self, call: Call) -> Response:
        """DELETE /volumes/{id}[?cascade=true]."""
        vol = self._core.volume(call, call.params["id"])
        cascade = call.query.get("cascade", "").lower() in ("true", "1")
        snaps = [s for s in self._store.all(Snapshot) if s.volume_id == vol.id]
        attached = self._core.ops.attachments_of(vol.id)
        if (
            vol.status not in DELETABLE
            or attached
            or (snaps and not cascade)
            or vol.migration_status == "migrating"
            or vol.group_id
        ):
            raise bad_request(DELETE_REFUSED)
        if cascade and any(s.status not in (SnapshotStatus.AVAILABLE, SnapshotStatus.ERROR) for s in snaps):
            raise bad_request("Invalid volume: Snapshot of volume not in a deletable state.")
        if not vol.backend:
            # Never scheduled: Cinder removes the row at once.
            self._store.delete(vol)
            return self._core.accepted()
        deleting = [dataclasses.replace(s, status=SnapshotStatus.DELETING) for s in snaps]
        self._store.put(
            dataclasses.replace(
                vol, status=VolumeStatus.DELETING, updated_at=now(), pending={"op": "delete"}
            ),
            *deleting,
        )
        self._core.ops.start_volume(vol.id)
        return self._core.accepted()

    # -- metadata ---------------------------------------------------------------------------------

    async def get_metadata(self, call: Call) -> Response:
        """GET /volumes/{id}/metadata."""
        return self._core.ok({"metadata": dict(self._core.volume(call, call.params["id"]).metadata)})

    async def add_metadata(self, call: Call) -> Response:
        """POST /volumes/{id}/metadata: merge."""
        vol = self._core.volume(call, call.params["id"])
        body = await json_body(call.request)
        meta = check_metadata(require_object(body, "metadata"))
        vol = dataclasses.replace(vol, metadata={**vol.metadata, **meta}, updated_at=now())
        self._store.put(vol)
        return self._core.ok({"metadata": dict(vol.metadata)})

    async def replace_metadata(self, call: Call) -> Response:
        """PUT /volumes/{id}/metadata: replace."""
        vol = self._core.volume(call, call.params["id"])
        meta = check_metadata(require_object(await json_body(call.request), "metadata"))
        vol = dataclasses.replace(vol, metadata=meta, updated_at=now())
        self._store.put(vol)
        return self._core.ok({"metadata": dict(vol.metadata)})

    async def get_meta_key(self, call: Call) -> Response:
        """GET /volumes/{id}/metadata/{key}."""
        vol = self._core.volume(call, call.params["id"])
        key = call.params["key"]
        if key not in vol.metadata:
            raise not_found(f"Metadata item was not found for volume {vol.id} with key {key}.")
        return self._core.ok({"meta": {key: vol.metadata[key]}})

    async def set_meta_key(self, call: Call) -> Response:
        """PUT /volumes/{id}/metadata/{key}."""
        vol = self._core.volume(call, call.params["id"])
        meta = check_metadata(require_object(await json_body(call.request), "meta"))
        key = call.params["key"]
        if list(meta) != [key]:
            raise bad_request("Request body and URI mismatch")
        vol = dataclasses.replace(vol, metadata={**vol.metadata, **meta}, updated_at=now())
        self._store.put(vol)
        return self._core.ok({"meta": meta})

    async def delete_meta_key(self, call: Call) -> Response:
        """DELETE /volumes/{id}/metadata/{key}."""
        vol = self._core.volume(call, call.params["id"])
        key = call.params["key"]
        if key not in vol.metadata:
            raise not_found(f"Metadata item was not found for volume {vol.id} with key {key}.")
        self._store.put(
            dataclasses.replace(
                vol, metadata={k: v for k, v in vol.metadata.items() if k != key}, updated_at=now()
            )
        )
        return Response(status_code=200)

    # -- actions ----------------------------------------------------------------------------------

    async def action(self, call: Call) -> Response:
        """POST /volumes/{id}/action."""
        body = await json_body(call.request)
        vol = self._core.volume(call, call.params["id"])
        if not isinstance(body, dict) or len(body) != 1:
            raise bad_request("Invalid request body")
        ((name, arg),) = body.items()
        handler = {
            "os-extend": self._extend,
            "os-retype": self._retype,
            "os-reserve": self._reserve,
            "os-unreserve": self._unreserve,
            "os-begin_detaching": self._begin_detaching,
            "os-roll_detaching": self._roll_detaching,
            "os-attach": self._legacy_attach,
            "os-detach": self._legacy_detach,
            "os-set_bootable": self._set_bootable,
            "os-terminate_connection": self._noop,
            "os-initialize_connection": self._initialize_connection,
            **self._admin_actions.handlers(),
        }.get(name)
        if handler is None:
            raise bad_request(
                f"There is no such action: {name}. Verify the"
                " request body and Content-Type header and try again."
            )
        return await handler(call, vol, arg)

    def _set_status(self, vol: Volume, status: str, **changes: Any) -> None:
        self._store.put(dataclasses.replace(vol, status=status, updated_at=now(), **changes))

    async def _extend(self, call: Call, vol: Volume, arg: Any) -> Response:
        if not isinstance(arg, dict) or "new_size" not in arg:
            raise invalid_input("os-extend", arg, "'new_size' is a required property")
        new_size = parse_size("new_size", arg["new_size"])
        allowed = [VolumeStatus.AVAILABLE]
        if call.mv.at_least("3.42"):
            allowed.append(VolumeStatus.IN_USE)
        if vol.status not in allowed:
            raise bad_request(
                f"Invalid volume: Volume {vol.id} status must be '{{'status': 'available'}}' to extend,"
                f" currently {vol.status}."
            )
        if new_size <= vol.size:
            raise bad_request(
                "Invalid input received: New size for extend must be greater than current size."
                f" (current: {vol.size}, extended: {new_size})."
            )
        self._core.quotas.check_extend(
            call.project_id, new_size - vol.size, self._core.type_name(vol.type_id)
        )
        self._set_status(
            vol, VolumeStatus.EXTENDING, pending={"op": "extend", "new_size": new_size, "prev": vol.status}
        )
        self._core.ops.start_volume(vol.id)
        return self._core.accepted()

    async def _retype(self, call: Call, vol: Volume, arg: Any) -> Response:
        if not isinstance(arg, dict) or "new_type" not in arg:
            raise invalid_input("os-retype", arg, "'new_type' is a required property")
        policy = arg.get("migration_policy", "never")
        if policy not in ("on-demand", "never"):
            raise invalid_input(
                "migration_policy", policy, f"{policy!r} is not one of ['on-demand', 'never']"
            )
        vtype = self._core.usable_type(call, str(arg["new_type"]))
        if vol.status not in (VolumeStatus.AVAILABLE, VolumeStatus.IN_USE) or vtype.id == vol.type_id:
            raise bad_request(RETYPE_REFUSED)
        if vol.status == VolumeStatus.IN_USE and vol.multiattach != is_multiattach(vtype):
            raise bad_request(RETYPE_REFUSED)
        target = backend_of(vtype)
        if not target or (target != vol.backend and policy == "never"):
            # Cinder accepts the call, then the scheduler refuses to migrate: the type stays.
            self._set_status(
                vol,
                VolumeStatus.RETYPING,
                pending={"op": "retype", "type_id": vol.type_id, "prev": vol.status},
            )
        else:
            self._set_status(
                vol, VolumeStatus.RETYPING, pending={"op": "retype", "type_id": vtype.id, "prev": vol.status}
            )
        self._core.ops.start_volume(vol.id)
        return self._core.accepted()

    async def _reserve(self, call: Call, vol: Volume, arg: Any) -> Response:
        if vol.status != VolumeStatus.AVAILABLE and not (
            vol.multiattach and vol.status == VolumeStatus.IN_USE
        ):
            raise bad_request(
                f"Invalid volume: Volume status must be available to reserve, but the status is {vol.status}."
            )
        self._set_status(vol, VolumeStatus.ATTACHING)
        return self._core.accepted()

    async def _unreserve(self, call: Call, vol: Volume, arg: Any) -> Response:
        if vol.status == VolumeStatus.ATTACHING:
            attached = [a for a in self._core.ops.attachments_of(vol.id) if a.status == AttachStatus.ATTACHED]
            self._set_status(vol, VolumeStatus.IN_USE if attached else VolumeStatus.AVAILABLE)
        return self._core.accepted()

    async def _begin_detaching(self, call: Call, vol: Volume, arg: Any) -> Response:
        if vol.status != VolumeStatus.IN_USE:
            raise bad_request(
                "Invalid volume: Unable to detach volume. Volume status must be 'in-use' and"
                " attach_status must be 'attached' to detach."
            )
        self._set_status(vol, VolumeStatus.DETACHING)
        return self._core.accepted()

    async def _roll_detaching(self, call: Call, vol: Volume, arg: Any) -> Response:
        if vol.status == VolumeStatus.DETACHING:
            self._set_status(vol, VolumeStatus.IN_USE)
        return self._core.accepted()

    async def _legacy_attach(self, call: Call, vol: Volume, arg: Any) -> Response:
        if not isinstance(arg, dict) or not arg.get("mountpoint"):
            raise invalid_input("os-attach", arg, "'mountpoint' is a required property")
        if vol.status not in (VolumeStatus.ATTACHING, VolumeStatus.AVAILABLE, VolumeStatus.RESERVED) and not (
            vol.multiattach and vol.status == VolumeStatus.IN_USE
        ):
            raise bad_request(f"Invalid volume: Volume status must be attaching, but is {vol.status}.")
        att = Attachment(
            id=new_id(),
            volume_id=vol.id,
            server_id=arg.get("instance_uuid"),
            status=AttachStatus.ATTACHED,
            device=str(arg["mountpoint"]),
            bdm_uuid=new_id(),
            created_at=now(),
            attached_at=now(),
            mode=str(arg.get("mode", "rw")),
            legacy=True,
        )
        self._store.put(att, dataclasses.replace(vol, status=VolumeStatus.IN_USE, updated_at=now()))
        return self._core.accepted()

    async def _legacy_detach(self, call: Call, vol: Volume, arg: Any) -> Response:
        wanted = arg.get("attachment_id") if isinstance(arg, dict) else None
        doomed = [a for a in self._core.ops.attachments_of(vol.id) if a.legacy and wanted in (None, a.id)]
        remaining = [a for a in self._core.ops.attachments_of(vol.id) if a not in doomed]
        status = VolumeStatus.IN_USE if remaining else VolumeStatus.AVAILABLE
        if doomed or vol.status == VolumeStatus.DETACHING:
            self._store.write(put=[dataclasses.replace(vol, status=status, updated_at=now())], delete=doomed)
        return self._core.accepted()

    async def _set_bootable(self, call: Call, vol: Volume, arg: Any) -> Response:
        if not isinstance(arg, dict) or "bootable" not in arg:
            raise invalid_input("os-set_bootable", arg, "'bootable' is a required property")
        self._store.put(
            dataclasses.replace(vol, bootable=parse_bool("bootable", arg["bootable"]), updated_at=now())
        )
        return Response(status_code=200)

    async def _noop(self, call: Call, vol: Volume, arg: Any) -> Response:
        return self._core.accepted()

    async def _initialize_connection(self, call: Call, vol: Volume, arg: Any) -> Response:
        info = {
            "driver_volume_type": "local",
            "data": {
                "device_path": str(self._core.ops.volume_path(vol)),
                "access_mode": "rw",
                "encrypted": False,
                "cacheable": False,
                "enforce_multipath": False,
            },
            "mount_point_base": "",
            "enforce_multipath": False,
        }
        return self._core.ok({"connection_info": info})


_TIME_OPERATORS: dict[str, Callable[[dt.datetime, dt.datetime], bool]] = {
    "gt": lambda a, b: a > b, "gte": lambda a, b: a >= b, "eq": lambda a, b: a == b,
    "neq": lambda a, b: a != b, "lt": lambda a, b: a < b, "lte": lambda a, b: a <= b,
}


def _time_matches(stamp: str | None, value: str) -> bool:
    """3.60's time comparison filter, e.g. updated_at=gte:2026-01-01T00:00:00 (eq without an operator)."""
    operator, sep, moment = value.partition(":")
    if not sep or operator not in _TIME_OPERATORS:
        operator, moment = "eq", value
    try:
        wanted = dt.datetime.fromisoformat(moment.replace("Z", "+00:00"))
    except ValueError:
        raise bad_request(f"Invalid input received: invalid time {moment!r}") from None
    if stamp is None:
        return False
    wanted = wanted.astimezone(dt.UTC).replace(tzinfo=None) if wanted.tzinfo else wanted
    return _TIME_OPERATORS[operator](dt.datetime.fromisoformat(stamp), wanted)
