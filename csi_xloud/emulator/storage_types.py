"""Storage API: volume types and extra specs."""

from __future__ import annotations

import dataclasses
from typing import Any

from starlette.responses import Response

from csi_xloud.emulator.context import json_body, require_object
from csi_xloud.emulator.errors import ApiError, bad_request, conflict, invalid_input, not_found
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
        table.add("GET", f"types/(?P<id>{ID})/extra_specs/(?P<key>[^/]+)", self.get_spec)
        table.add("PUT", f"types/(?P<id>{ID})/extra_specs/(?P<key>[^/]+)", self.put_spec)
        table.add("DELETE", f"types/(?P<id>{ID})/extra_specs/(?P<key>[^/]+)", self.delete_spec)

    def _by_id(self, call: Call, type_id: str) -> VolumeType:
        vtype = self._store.get(VolumeType, type_id)
        if vtype is None or not self._core.type_visible(call, vtype):
            raise not_found(f"Volume type {type_id} could not be found.")
        return vtype

    def _view(self, call: Call, vtype: VolumeType) -> dict[str, Any]:
        return self._core.views.volume_type(vtype, call.mv, call.caller)

    async def list_types(self, call: Call) -> Response:
        """GET /types: public types and the private ones the project may use; admins pick with is_public."""
        types = [t for t in self._store.all(VolumeType) if self._core.type_visible(call, t)]
        if call.caller.is_admin:
            wanted = _is_public_filter(call.query.get("is_public"))
            types = [t for t in types if wanted is None or t.is_public == wanted]
        return self._core.ok({"volume_types": [self._view(call, t) for t in types]})

    async def default(self, call: Call) -> Response:
        """GET /types/default (3.62)."""
        if not call.mv.at_least("3.62"):
            return await self.show(dataclasses.replace(call, params={"id": "default"}))
        view = self._core.views.volume_type(self._core.default_type(), call.mv, call.caller, access=False)
        return self._core.ok({"volume_type": view})

    async def show(self, call: Call) -> Response:
        """GET /types/{id}."""
        return self._core.ok({"volume_type": self._view(call, self._by_id(call, call.params["id"]))})

    async def extra_specs(self, call: Call) -> Response:
        """GET /types/{id}/extra_specs."""
        view = self._view(call, self._by_id(call, call.params["id"]))
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
        vtype = self._by_id(call, call.params["id"])
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
        vtype = self._by_id(call, call.params["id"])
        if vtype.id == self._core.default_type().id:
            raise bad_request("Invalid volume type: The default volume type cannot be deleted.")
        if any(v.type_id == vtype.id for v in self._store.all(Volume)):
            raise bad_request("Target volume type is still in use.")
        self._store.delete(vtype)
        return self._core.accepted()

    async def set_extra_specs(self, call: Call) -> Response:
        """POST /types/{id}/extra_specs (admin): merge."""
        self._core.require_admin(call, "volume_extension:types_extra_specs:create")
        vtype = self._by_id(call, call.params["id"])
        specs = check_metadata(require_object(await json_body(call.request), "extra_specs"))
        self._store.put(dataclasses.replace(vtype, extra_specs={**vtype.extra_specs, **specs}))
        return self._core.ok({"extra_specs": specs})

    def _spec_missing(self, vtype: VolumeType, key: str) -> ApiError:
        return not_found(f"Volume Type {vtype.id} has no extra specs with key {key}.")

    async def get_spec(self, call: Call) -> Response:
        """GET /types/{id}/extra_specs/{key}: {key: value}; a non-admin sees only the user-visible keys."""
        vtype = self._by_id(call, call.params["id"])
        key = call.params["key"]
        visible = self._view(call, vtype)["extra_specs"]
        if key not in visible:
            raise self._spec_missing(vtype, key)
        return self._core.ok({key: visible[key]})

    async def put_spec(self, call: Call) -> Response:
        """PUT /types/{id}/extra_specs/{key} (admin): body {key: value}, one key, the URL's."""
        self._core.require_admin(call, "volume_extension:types_extra_specs:update")
        vtype = self._by_id(call, call.params["id"])
        body = await json_body(call.request)
        key = call.params["key"]
        if not isinstance(body, dict) or not body:
            raise bad_request("Malformed request body")
        if len(body) > 1:
            raise bad_request(f"{body!r} has too many properties")
        if key not in body:
            raise bad_request("Request body and URI mismatch")
        value = body[key]
        if value is not None and not isinstance(value, str):
            raise invalid_input(key, value, f"{value!r} is not of type 'string', 'null'")
        self._store.put(dataclasses.replace(vtype, extra_specs={**vtype.extra_specs, key: value or ""}))
        return self._core.ok({key: value})

    async def delete_spec(self, call: Call) -> Response:
        """DELETE /types/{id}/extra_specs/{key} (admin)."""
        self._core.require_admin(call, "volume_extension:types_extra_specs:delete")
        vtype = self._by_id(call, call.params["id"])
        key = call.params["key"]
        if key not in vtype.extra_specs:
            raise self._spec_missing(vtype, key)
        specs = {k: v for k, v in vtype.extra_specs.items() if k != key}
        self._store.put(dataclasses.replace(vtype, extra_specs=specs))
        return self._core.accepted()


def _is_public_filter(raw: str | None) -> bool | None:
    """Cinder's is_public query value: public only by default, 'none' for all."""
    if raw is None:
        return True
    if raw.lower() == "none":
        return None
    return parse_bool("is_public", raw)
