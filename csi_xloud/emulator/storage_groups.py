"""Storage API: group types (3.11), generic volume groups (3.13) and group snapshots (3.14).

Seed group types: ``default_cgsnapshot_type`` (made by every Cinder's database migrations and
reserved for consistency groups moved to groups: groups of it are refused) and ``consistent``
(``consistent_group_snapshot_enabled="<is> True"``, as an administrator would make one). There is
no default group type (`GET /group_types/default` is 404), as in a Cinder without
`default_group_type` set. A plain `DELETE /groups/{id}` is a 500, as in Cinder: the API deletes
groups with `POST /groups/{id}/action {"delete": {...}}`.
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

from starlette.responses import Response

from csi_xloud.emulator.context import json_body, require_object
from csi_xloud.emulator.errors import bad_request, conflict, fault, invalid_input, not_found
from csi_xloud.emulator.group_ops import GroupOperations
from csi_xloud.emulator.models import (
    Group,
    GroupSnapshot,
    GroupStatus,
    GroupType,
    Snapshot,
    SnapshotStatus,
    Volume,
    VolumeStatus,
    VolumeType,
    new_id,
    now,
)
from csi_xloud.emulator.routing import Call, Handler, RouteTable
from csi_xloud.emulator.state import Store
from csi_xloud.emulator.storage_core import StorageCore, check_name, parse_bool

ID = r"[^/]+"
RESERVED_TYPE = "default_cgsnapshot_type"
SEED_GROUP_TYPES = (
    (
        RESERVED_TYPE,
        "Default group type for migrating cgsnapshot",
        {"consistent_group_snapshot_enabled": "<is> True"},
    ),
    (
        "consistent",
        "Group snapshots at one point in time",
        {"consistent_group_snapshot_enabled": "<is> True"},
    ),
)
ADD_STATES = ("available", "in-use")
REMOVE_STATES = ("available", "in-use", "error", "error_deleting")
EMPTY_SOURCE = (
    "Invalid Group: Source group cannot be empty or in 'creating' or 'updating' state. No group snapshot"
    " will be created."
)


def seed_group_types(store: Store) -> None:
    """The group types a fresh cloud has."""
    known = {t.name for t in store.all(GroupType)}
    store.put(
        *(
            GroupType(new_id(), name, desc, True, specs)
            for name, desc, specs in SEED_GROUP_TYPES
            if name not in known
        )
    )


def _since(version: str, handler: Handler) -> Handler:
    """The handler from a microversion on; before it the route does not exist (404)."""

    async def gated(call: Call) -> Response:
        if not call.mv.at_least(version):
            raise not_found()
        return await handler(call)

    return gated


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def _id_list(raw: Any) -> list[str]:
    """'id1,id2' as Cinder splits it."""
    if not raw:
        return []
    return [part for part in str(raw).strip(",").split(",") if part]


class GroupRoutes:
    """Group types, groups and group snapshots."""

    def __init__(self, core: StorageCore, work: GroupOperations) -> None:
        self._core = core
        self._store = core.store
        self._work = work

    def register(self, table: RouteTable) -> None:
        """Add this group's routes."""
        routes: list[tuple[str, str, str, Handler]] = [
            ("GET", "group_types", "3.11", self.list_types),
            ("POST", "group_types", "3.11", self.create_type),
            ("GET", "group_types/default", "3.11", self.default_type),
            ("GET", f"group_types/(?P<id>{ID})", "3.11", self.show_type),
            ("DELETE", f"group_types/(?P<id>{ID})", "3.11", self.delete_type),
            ("GET", f"group_types/(?P<id>{ID})/group_specs", "3.11", self.group_specs),
            ("GET", "groups", "3.13", self.list_summary),
            ("GET", "groups/detail", "3.13", self.list_detail),
            ("POST", "groups", "3.13", self.create),
            ("POST", "groups/action", "3.14", self.create_from_src),
            ("GET", f"groups/(?P<id>{ID})", "3.13", self.show),
            ("PUT", f"groups/(?P<id>{ID})", "3.13", self.update),
            ("DELETE", f"groups/(?P<id>{ID})", "3.13", self.plain_delete),
            ("POST", f"groups/(?P<id>{ID})/action", "3.13", self.action),
            ("GET", "group_snapshots", "3.14", self.list_snapshots_summary),
            ("GET", "group_snapshots/detail", "3.14", self.list_snapshots_detail),
            ("POST", "group_snapshots", "3.14", self.create_snapshot),
            ("GET", f"group_snapshots/(?P<id>{ID})", "3.14", self.show_snapshot),
            ("DELETE", f"group_snapshots/(?P<id>{ID})", "3.14", self.delete_snapshot),
        ]
        for method, path, version, handler in routes:
            table.add(method, path, _since(version, handler))

    # -- lookups ----------------------------------------------------------------------------------

    def _visible_type(self, call: Call, gtype: GroupType) -> bool:
        return gtype.is_public or call.caller.is_admin

    def group_type(self, call: Call, name_or_id: str) -> GroupType:
        """A group type by id (or by name when the text is no UUID), as Cinder looks it up."""
        by_name = not _is_uuid(name_or_id)
        for gtype in self._store.all(GroupType):
            if (gtype.name if by_name else gtype.id) == name_or_id and self._visible_type(call, gtype):
                return gtype
        if by_name:
            raise not_found(f"Group type with name {name_or_id} could not be found.")
        raise not_found(f"Group type {name_or_id} could not be found.")

    def group(self, call: Call, group_id: str) -> Group:
        """A group of the caller's project, or 404."""
        group = self._store.get(Group, group_id)
        if group is None or (group.project_id != call.project_id and not call.caller.is_admin):
            raise not_found(f"Group {group_id} could not be found.")
        return group

    def group_snapshot(self, call: Call, gsnap_id: str) -> GroupSnapshot:
        """A group snapshot of the caller's project, or 404."""
        gsnap = self._store.get(GroupSnapshot, gsnap_id)
        if gsnap is None or (gsnap.project_id != call.project_id and not call.caller.is_admin):
            raise not_found(f"GroupSnapshot {gsnap_id} could not be found.")
        return gsnap

    def _check_not_reserved(self, type_id: str) -> None:
        gtype = self._store.get(GroupType, type_id)
        if gtype is not None and gtype.name == RESERVED_TYPE:
            raise bad_request(
                f"Group_type {type_id} is reserved for migrating CGs to groups. Migrated group can only be"
                " operated by CG APIs."
            )

    def _reserved(self, type_id: str) -> bool:
        gtype = self._store.get(GroupType, type_id)
        return gtype is not None and gtype.name == RESERVED_TYPE

    # -- views ------------------------------------------------------------------------------------

    @staticmethod
    def _type_view(call: Call, gtype: GroupType) -> dict[str, Any]:
        view: dict[str, Any] = {
            "id": gtype.id,
            "name": gtype.name,
            "description": gtype.description,
            "is_public": gtype.is_public,
        }
        if call.caller.is_admin:
            view["group_specs"] = dict(gtype.group_specs)
        return view

    def _group_view(self, call: Call, group: Group) -> dict[str, Any]:
        view: dict[str, Any] = {
            "id": group.id,
            "status": group.status,
            "availability_zone": group.availability_zone,
            "created_at": group.created_at,
            "name": group.name,
            "description": group.description,
            "group_type": group.group_type_id,
            "volume_types": sorted(group.volume_type_ids),
        }
        if call.mv.at_least("3.14"):
            view["group_snapshot_id"] = group.group_snapshot_id
            view["source_group_id"] = group.source_group_id
        if call.mv.at_least("3.25") and call.query.get("list_volume", "").lower() in ("true", "1", "yes"):
            view["volumes"] = sorted(v.id for v in self._work.volumes_of(group.id))
        if call.mv.at_least("3.38"):
            view["replication_status"] = "disabled"
        if call.mv.at_least("3.58") and call.caller.is_admin:
            view["project_id"] = group.project_id
        return view

    @staticmethod
    def _snapshot_view(call: Call, gsnap: GroupSnapshot) -> dict[str, Any]:
        view: dict[str, Any] = {
            "id": gsnap.id,
            "group_id": gsnap.group_id,
            "group_type_id": gsnap.group_type_id,
            "status": gsnap.status,
            "created_at": gsnap.created_at,
            "name": gsnap.name,
            "description": gsnap.description,
        }
        if call.mv.at_least("3.58") and call.caller.is_admin:
            view["project_id"] = gsnap.project_id
        return view

    # -- group types ------------------------------------------------------------------------------

    async def list_types(self, call: Call) -> Response:
        """GET /group_types: public ones (all for an admin), newest first."""
        types = [t for t in reversed(self._store.all(GroupType)) if self._visible_type(call, t)]
        return self._core.ok({"group_types": [self._type_view(call, t) for t in types]})

    async def create_type(self, call: Call) -> Response:
        """POST /group_types (admin)."""
        self._core.require_admin(call, "group:group_types:create")
        req = require_object(await json_body(call.request), "group_type")
        name = check_name("name", req.get("name"))
        if not name or not name.strip():
            raise bad_request("Group type name can not be empty.")
        if any(t.name == name for t in self._store.all(GroupType)):
            raise conflict(f"Group Type {name} already exists.")
        specs = req.get("group_specs") or {}
        if not isinstance(specs, dict) or not all(isinstance(v, str) for v in specs.values()):
            raise invalid_input("group_specs", specs, f"{specs!r} is not of type 'object'")
        is_public = parse_bool("is_public", req.get("is_public", True))
        gtype = GroupType(new_id(), name, check_name("description", req.get("description")), is_public, specs)
        self._store.put(gtype)
        return self._core.ok({"group_type": self._type_view(call, gtype)}, 202)

    async def default_type(self, call: Call) -> Response:
        """GET /group_types/default: this cloud sets none."""
        raise not_found("Default group type can not be found.")

    async def show_type(self, call: Call) -> Response:
        """GET /group_types/{id}."""
        gtype = self._store.get(GroupType, call.params["id"])
        if gtype is None or not self._visible_type(call, gtype):
            raise not_found(f"Group type {call.params['id']} could not be found.")
        return self._core.ok({"group_type": self._type_view(call, gtype)})

    async def group_specs(self, call: Call) -> Response:
        """GET /group_types/{id}/group_specs (admin)."""
        self._core.require_admin(call, "group:group_types_specs:get_all")
        gtype = self._store.get(GroupType, call.params["id"])
        if gtype is None:
            raise not_found(f"Group type {call.params['id']} could not be found.")
        return self._core.ok({"group_specs": dict(gtype.group_specs)})

    async def delete_type(self, call: Call) -> Response:
        """DELETE /group_types/{id} (admin); refused while groups use it."""
        self._core.require_admin(call, "group:group_types:delete")
        gtype = self._store.get(GroupType, call.params["id"])
        if gtype is None:
            raise not_found(f"Group type {call.params['id']} could not be found.")
        if any(g.group_type_id == gtype.id for g in self._store.all(Group)):
            raise bad_request("Target group type is still in use.")
        self._store.delete(gtype)
        return self._core.accepted()

    # -- groups -----------------------------------------------------------------------------------

    def _listed(self, call: Call) -> list[Group]:
        every = call.caller.is_admin and "all_tenants" in call.query
        groups = [
            g
            for g in reversed(self._store.all(Group))
            if (every or g.project_id == call.project_id) and not self._reserved(g.group_type_id)
        ]
        return groups

    async def list_summary(self, call: Call) -> Response:
        """GET /groups, newest first."""
        return self._core.ok({"groups": [{"id": g.id, "name": g.name} for g in self._listed(call)]})

    async def list_detail(self, call: Call) -> Response:
        """GET /groups/detail."""
        return self._core.ok({"groups": [self._group_view(call, g) for g in self._listed(call)]})

    async def show(self, call: Call) -> Response:
        """GET /groups/{id}[?list_volume=True]."""
        group = self.group(call, call.params["id"])
        self._check_not_reserved(group.group_type_id)
        return self._core.ok({"group": self._group_view(call, group)})

    async def create(self, call: Call) -> Response:
        """POST /groups: 202 creating; the scheduler needs one backend for all volume types."""
        req = require_object(await json_body(call.request), "group")
        for key in ("group_type", "volume_types"):
            if key not in req:
                raise invalid_input("group", req, f"{key!r} is a required property")
        if not isinstance(req["volume_types"], list) or not req["volume_types"]:
            raise invalid_input("volume_types", req["volume_types"], "[] is too short")
        gtype = self.group_type(call, str(req["group_type"]))
        self._check_not_reserved(gtype.id)
        type_ids = sorted({self._core.volume_type(str(t)).id for t in req["volume_types"]})
        zone = req.get("availability_zone") or self._core.zones()[0]
        if zone not in self._core.zones():
            raise bad_request(f"Invalid input received: Availability zone '{zone}' is invalid.")
        group = Group(
            id=new_id(),
            project_id=call.project_id,
            user_id=call.caller.user.id,
            status=GroupStatus.CREATING,
            group_type_id=gtype.id,
            volume_type_ids=type_ids,
            availability_zone=str(zone),
            created_at=now(),
            name=_stripped(check_name("name", req.get("name"))),
            description=_stripped(check_name("description", req.get("description"))),
            pending={"op": "create"},
        )
        self._store.put(group)
        self._work.start_group(group.id)
        return self._core.ok({"group": {"id": group.id, "name": group.name}}, 202)

    async def update(self, call: Call) -> Response:
        """PUT /groups/{id}: rename, add_volumes, remove_volumes (202; updating -> available)."""
        group = self.group(call, call.params["id"])
        body = await json_body(call.request)
        req = require_object(body, "group")
        known = {"name", "description", "add_volumes", "remove_volumes"}
        if not req or not set(req) & known:
            raise invalid_input("group", req, f"{req} is not valid under any of the given schemas")
        self._check_not_reserved(group.group_type_id)
        add, remove = _id_list(req.get("add_volumes")), _id_list(req.get("remove_volumes"))
        both = [v for v in add if v in remove]
        if both:
            raise bad_request(f"Invalid volume: UUIDs {both} are in both add and remove volume list.")
        add = self._valid_additions(call, group, add)
        remove = self._valid_removals(group, remove)
        changes: dict[str, Any] = {}
        if "name" in req:
            changes["name"] = _stripped(check_name("name", req["name"]))
        if "description" in req:
            changes["description"] = _stripped(check_name("description", req["description"]))
        if not changes and not add and not remove:
            raise bad_request(
                f"Invalid Group: Cannot update group {group.id} because no valid name, description,"
                " add_volumes, or remove_volumes were provided."
            )
        if add or remove:
            if group.status != GroupStatus.AVAILABLE:
                raise bad_request("Invalid Group: Group status must be available.")
            changes.update(
                status=GroupStatus.UPDATING, pending={"op": "update", "add": add, "remove": remove}
            )
        self._store.put(dataclasses.replace(group, updated_at=now(), **changes))
        if add or remove:
            self._work.start_group(group.id)
        return self._core.accepted()

    def _valid_additions(self, call: Call, group: Group, wanted: list[str]) -> list[str]:
        members = {v.id for v in self._work.volumes_of(group.id)}
        added = []
        for vol_id in (v for v in wanted if v not in members):
            prefix = f"Invalid volume: Cannot add volume {vol_id} to group {group.id}"
            vol = self._store.get(Volume, vol_id)
            if vol is None or (vol.project_id != call.project_id and not call.caller.is_admin):
                raise bad_request(f"{prefix} because volume cannot be found.")
            if vol.group_id:
                raise bad_request(f"{prefix} because it is already in group {vol.group_id}.")
            if vol.project_id != group.project_id:
                raise bad_request(f"{prefix} as they belong to different projects.")
            if vol.type_id not in group.volume_type_ids:
                raise bad_request(
                    f"{prefix} because volume type {vol.type_id} is not supported by the group."
                )
            if vol.status not in ADD_STATES:
                raise bad_request(
                    f"{prefix} because volume is in an invalid state: {vol.status}. Valid states are:"
                    f" {ADD_STATES}."
                )
            if vol.backend != group.backend:
                raise bad_request("Invalid volume: Volume is not local to this node.")
            added.append(vol_id)
        return added

    def _valid_removals(self, group: Group, wanted: list[str]) -> list[str]:
        members = {v.id: v for v in self._work.volumes_of(group.id)}
        for vol_id in wanted:
            vol = members.get(vol_id)
            if vol is None:
                raise bad_request(
                    f"Invalid volume: Cannot remove volume {vol_id} from group {group.id} because it is not"
                    " in the group."
                )
            if vol.status not in REMOVE_STATES:
                raise bad_request(
                    f"Invalid volume: Cannot remove volume {vol_id} from group {group.id} because volume"
                    f" is in an invalid state: {vol.status}. Valid states are: {REMOVE_STATES}."
                )
        return list(wanted)

    async def plain_delete(self, call: Call) -> Response:
        """DELETE /groups/{id}: not part of the API; Cinder answers 500."""
        raise fault(
            500,
            "computeFault",
            "The server has either erred or is incapable of performing the requested operation.",
        )

    async def action(self, call: Call) -> Response:
        """POST /groups/{id}/action: delete (with or without its volumes)."""
        body = await json_body(call.request)
        if not isinstance(body, dict) or "delete" not in body:
            raise bad_request(
                "There is no such action. Verify the request body and Content-Type header and try again."
            )
        arg = require_object(body, "delete")
        delete_volumes = parse_bool("delete-volumes", arg.get("delete-volumes", False))
        group = self.group(call, call.params["id"])
        self._check_not_reserved(group.group_type_id)
        self._check_deletable(group, delete_volumes)
        volumes = self._work.volumes_of(group.id)
        deleting = [
            dataclasses.replace(v, status=VolumeStatus.DELETING, updated_at=now(), pending={"op": "delete"})
            for v in volumes
        ]
        self._store.put(
            *deleting,
            dataclasses.replace(
                group, status=GroupStatus.DELETING, updated_at=now(), pending={"op": "delete"}
            ),
        )
        for vol in deleting:
            self._core.ops.start_volume(vol.id)
        self._work.start_group(group.id)
        return self._core.accepted()

    def _check_deletable(self, group: Group, delete_volumes: bool) -> None:
        if not delete_volumes and group.status not in (GroupStatus.AVAILABLE, GroupStatus.ERROR):
            raise bad_request(
                "Invalid Group: Group status must be available or error, but current status is:"
                f" {group.status}"
            )
        if any(s.group_id == group.id for s in self._store.all(GroupSnapshot)):
            raise bad_request("Invalid Group: Group has existing snapshots.")
        volumes = self._work.volumes_of(group.id)
        if volumes and not delete_volumes:
            raise bad_request(
                f"Invalid Group: Group {group.id} still contains volumes. The delete-volumes flag is required"
                " to delete it."
            )
        for vol in volumes:
            if self._core.ops.attachments_of(vol.id):
                raise bad_request(
                    f"Invalid Group: Volume in group {group.id} is attached. Need to detach first."
                )
            if any(s.volume_id == vol.id for s in self._store.all(Snapshot)):
                raise bad_request("Invalid Group: Volume in group still has dependent snapshots.")

    async def create_from_src(self, call: Call) -> Response:
        """POST /groups/action {"create-from-src": ...}: volumes made from a group snapshot or group."""
        body = await json_body(call.request)
        req = require_object(body, "create-from-src")
        has_snap, has_group = "group_snapshot_id" in req, "source_group_id" in req
        if has_snap and has_group:
            raise invalid_input(
                "create-from-src",
                req,
                f"{req} is valid under each of {{'required': ['source_group_id']}},"
                " {'required': ['group_snapshot_id']}",
            )
        if not has_snap and not has_group:
            raise invalid_input("create-from-src", req, f"{req} is not valid under any of the given schemas")
        sources: list[tuple[Volume, Snapshot | None]]
        if has_snap:
            gsnap = self.group_snapshot(call, str(req["group_snapshot_id"]))
            source_group = self.group(call, gsnap.group_id)
            members = self._work.members_of(gsnap.id)
            if not members:
                raise bad_request("Invalid Group: Group snapshot is empty. No group will be created.")
            sources = [(self._core.volume(call, s.volume_id), s) for s in members]
        else:
            gsnap = None
            source_group = self.group(call, str(req["source_group_id"]))
            volumes = self._work.volumes_of(source_group.id)
            if not volumes:
                raise bad_request("Invalid Group: Source Group is empty. No group will be created.")
            sources = [(v, None) for v in volumes]
        self._check_not_reserved(source_group.group_type_id)
        group = Group(
            id=new_id(),
            project_id=call.project_id,
            user_id=call.caller.user.id,
            status=GroupStatus.CREATING,
            group_type_id=source_group.group_type_id,
            volume_type_ids=list(source_group.volume_type_ids),
            availability_zone=source_group.availability_zone,
            created_at=now(),
            backend=source_group.backend,
            name=_stripped(check_name("name", req.get("name"))),
            description=_stripped(check_name("description", req.get("description"))),
            group_snapshot_id=gsnap.id if gsnap else None,
            source_group_id=None if gsnap else source_group.id,
            pending={"op": "create_from_src"},
        )
        volumes = [self._volume_from(call, group, vol, snap) for vol, snap in sources]
        self._store.put(group, *volumes)
        for vol in volumes:
            self._core.ops.start_volume(vol.id)
        self._work.start_group(group.id)
        return self._core.ok({"group": {"id": group.id, "name": group.name}}, 202)

    def _volume_from(self, call: Call, group: Group, source: Volume, snap: Snapshot | None) -> Volume:
        self._core.quotas.check_volume(call.project_id, source.size, self._core.type_name(source.type_id))
        return Volume(
            id=new_id(),
            project_id=call.project_id,
            user_id=call.caller.user.id,
            size=source.size,
            status=VolumeStatus.CREATING,
            type_id=source.type_id,
            backend=source.backend,
            availability_zone=group.availability_zone,
            created_at=now(),
            snapshot_id=snap.id if snap else None,
            source_volid=None if snap else source.id,
            multiattach=source.multiattach,
            group_id=group.id,
            pending={"op": "create"},
        )

    # -- group snapshots --------------------------------------------------------------------------

    def _snapshots_listed(self, call: Call) -> list[GroupSnapshot]:
        every = call.caller.is_admin and "all_tenants" in call.query
        found = [
            s
            for s in reversed(self._store.all(GroupSnapshot))
            if (every or s.project_id == call.project_id) and not self._reserved(s.group_type_id)
        ]
        if "group_id" in call.query:
            found = [s for s in found if s.group_id == call.query["group_id"]]
        return found

    async def list_snapshots_summary(self, call: Call) -> Response:
        """GET /group_snapshots."""
        listed = [{"id": s.id, "name": s.name} for s in self._snapshots_listed(call)]
        return self._core.ok({"group_snapshots": listed})

    async def list_snapshots_detail(self, call: Call) -> Response:
        """GET /group_snapshots/detail."""
        listed = [self._snapshot_view(call, s) for s in self._snapshots_listed(call)]
        return self._core.ok({"group_snapshots": listed})

    async def show_snapshot(self, call: Call) -> Response:
        """GET /group_snapshots/{id}."""
        gsnap = self.group_snapshot(call, call.params["id"])
        self._check_not_reserved(gsnap.group_type_id)
        return self._core.ok({"group_snapshot": self._snapshot_view(call, gsnap)})

    async def create_snapshot(self, call: Call) -> Response:
        """POST /group_snapshots: 202; one member snapshot per volume, named like the group snapshot."""
        req = require_object(await json_body(call.request), "group_snapshot")
        if "group_id" not in req:
            raise invalid_input("group_snapshot", req, "'group_id' is a required property")
        group = self.group(call, str(req["group_id"]))
        self._check_not_reserved(group.group_type_id)
        volumes = self._work.volumes_of(group.id)
        if not volumes or group.status in (GroupStatus.CREATING, GroupStatus.UPDATING):
            raise bad_request(EMPTY_SOURCE)
        for vol in volumes:
            if vol.status == VolumeStatus.ERROR:
                raise bad_request(f"Invalid volume: Volume {vol.id} is in error status.")
        # Cinder reserves the quota of every member snapshot at once.
        type_name = self._core.type_name(volumes[0].type_id)
        self._core.quotas.check_snapshot(
            call.project_id, sum(v.size for v in volumes), type_name, len(volumes)
        )
        gsnap = GroupSnapshot(
            id=new_id(),
            project_id=call.project_id,
            user_id=call.caller.user.id,
            group_id=group.id,
            group_type_id=group.group_type_id,
            status=GroupStatus.CREATING,
            created_at=now(),
            name=check_name("name", req.get("name")),
            description=check_name("description", req.get("description")),
            pending={"op": "create"},
        )
        members = [
            Snapshot(
                id=new_id(),
                project_id=call.project_id,
                user_id=call.caller.user.id,
                volume_id=vol.id,
                size=vol.size,
                status=SnapshotStatus.CREATING,
                backend=vol.backend,
                created_at=gsnap.created_at,
                name=gsnap.name,
                description=gsnap.description,
                group_snapshot_id=gsnap.id,
            )
            for vol in volumes
        ]
        self._store.put(gsnap, *members)
        self._work.start_group_snapshot(gsnap.id)
        body = {"id": gsnap.id, "name": gsnap.name, "group_type_id": gsnap.group_type_id}
        return self._core.ok({"group_snapshot": body}, 202)

    async def delete_snapshot(self, call: Call) -> Response:
        """DELETE /group_snapshots/{id}: the member snapshots go with it."""
        gsnap = self.group_snapshot(call, call.params["id"])
        self._check_not_reserved(gsnap.group_type_id)
        making = any(
            g.group_snapshot_id == gsnap.id and g.status == GroupStatus.CREATING
            for g in self._store.all(Group)
        )
        if gsnap.status not in (GroupStatus.AVAILABLE, GroupStatus.ERROR) or making:
            raise bad_request(
                "Invalid GroupSnapshot: GroupSnapshot status must be available or error, and no Group can be"
                " currently using it as source for its creation."
            )
        members = [
            dataclasses.replace(s, status=SnapshotStatus.DELETING, updated_at=now())
            for s in self._work.members_of(gsnap.id)
        ]
        self._store.put(
            *members,
            dataclasses.replace(
                gsnap, status=GroupStatus.DELETING, updated_at=now(), pending={"op": "delete"}
            ),
        )
        self._work.start_group_snapshot(gsnap.id)
        return self._core.accepted()


def new_volume_group(core: StorageCore, call: Call, req: dict[str, Any], vtype: VolumeType) -> str | None:
    """The group a new volume joins (POST /volumes with group_id), checked as Cinder does."""
    group_id = req.get("group_id")
    if not group_id:
        return None
    group = core.store.get(Group, str(group_id))
    if group is None or (group.project_id != call.project_id and not call.caller.is_admin):
        raise not_found(f"Group {group_id} could not be found.")
    if not req.get("volume_type"):
        raise bad_request(
            "Invalid input received: volume_type must be provided when creating a volume in a group."
        )
    if vtype.id not in group.volume_type_ids:
        raise bad_request(
            "Invalid input received: Invalid volume_type provided: "
            f"VolumeType(description={vtype.description!r},extra_specs={vtype.extra_specs},id={vtype.id},is_public={vtype.is_public},name={vtype.name!r})"
            " (requested type must be supported by this group)."
        )
    return group.id


def _stripped(text: str | None) -> str | None:
    return text.strip() if text else text
