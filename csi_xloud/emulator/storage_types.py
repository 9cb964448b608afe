"""Storage API: volume types and extra specs."""

from __future__ import annotations

import dataclasses
from typing import Any

from starlette.responses import Response

from csi_xloud.emulator.context import json_body, require_object
from csi_xloud.emulator.errors import bad_request, conflict, invalid_input, not_found
from csi_xloud.emulator.models import (
    Volume,
    VolumeType,
    new_id,
)
from csi_xloud.emulator.routing import Call, RouteTable
from csi_xloud.emulator.storage_core import StorageCore, check_metadata, check_name, parse_bool

ID = r"[^/]+"


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
        is_public = parse_bool(
            "os-volume-type-access:is_public",
            req.get("os-volume-type-access:is_public", req.get("is_public", True)),
        )
        vtype = VolumeType(
            new_id(), name, check_name("description", req.get("description")), is_public, specs
        )
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
