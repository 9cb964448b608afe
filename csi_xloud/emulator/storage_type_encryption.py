"""Storage API: encryption types of volume types (admin only); volumes of such a type show encrypted."""

from __future__ import annotations

import dataclasses
from typing import Any

from starlette.responses import Response

from csi_xloud.emulator.context import json_body, require_object
from csi_xloud.emulator.errors import bad_request, invalid_input, not_found
from csi_xloud.emulator.models import Volume, VolumeType, new_id, now
from csi_xloud.emulator.routing import Call, RouteTable
from csi_xloud.emulator.storage_core import StorageCore

ID = r"[^/]+"
FIELDS = ("provider", "cipher", "key_size", "control_location")
LOCATIONS = ("front-end", "back-end")


class TypeEncryptionRoutes:
    """/types/{id}/encryption: show, create, update, delete, and one spec."""

    def __init__(self, core: StorageCore) -> None:
        self._core = core
        self._store = core.store

    def register(self, table: RouteTable) -> None:
        """Add this group's routes."""
        table.add("GET", f"types/(?P<id>{ID})/encryption", self.show)
        table.add("POST", f"types/(?P<id>{ID})/encryption", self.create)
        table.add("GET", f"types/(?P<id>{ID})/encryption/(?P<key>[^/]+)", self.show_spec)
        table.add("PUT", f"types/(?P<id>{ID})/encryption/(?P<enc>[^/]+)", self.update)
        table.add("DELETE", f"types/(?P<id>{ID})/encryption/(?P<enc>[^/]+)", self.delete)

    def _type(self, call: Call, what: str) -> VolumeType:
        self._core.require_admin(call, f"volume_extension:volume_type_encryption:{what}")
        vtype = self._store.get(VolumeType, call.params["id"])
        if vtype is None:
            raise not_found(f"Volume type {call.params['id']} could not be found.")
        return vtype

    def _in_use(self, vtype: VolumeType) -> bool:
        return any(v.type_id == vtype.id for v in self._store.all(Volume))

    async def show(self, call: Call) -> Response:
        """GET: the encryption type, or {} when the type has none (no wrapper, as Cinder)."""
        return self._core.ok(dict(self._type(call, "get").encryption or {}))

    async def show_spec(self, call: Call) -> Response:
        """GET .../encryption/{key}: {key: value}."""
        encryption = self._type(call, "get").encryption or {}
        key = call.params["key"]
        if key not in encryption:
            raise not_found(f"Volume type encryption for type {call.params['id']} does not exist.")
        return self._core.ok({key: encryption[key]})

    async def create(self, call: Call) -> Response:
        """POST: 200 with the fields and ids; refused when the type has one already or volumes use it."""
        vtype = self._type(call, "create")
        req = _fields(require_object(await json_body(call.request), "encryption"))
        if vtype.encryption:
            raise bad_request(f"Volume type encryption for type {vtype.id} already exists.")
        if self._in_use(vtype):
            raise bad_request("Cannot create encryption specs. Volume type in use.")
        if "provider" not in req:
            raise invalid_input("encryption", req, "'provider' is a required property")
        stamp = now()
        encryption = {
            "volume_type_id": vtype.id,
            "encryption_id": new_id(),
            "provider": req["provider"],
            "cipher": req.get("cipher"),
            "key_size": req.get("key_size"),
            "control_location": req.get("control_location", "front-end"),
            "created_at": stamp,
            "updated_at": None,
            "deleted": False,
            "deleted_at": None,
        }
        self._store.put(dataclasses.replace(vtype, encryption=encryption))
        created = {k: v for k, v in encryption.items() if k in (*FIELDS, "volume_type_id", "encryption_id")}
        return self._core.ok({"encryption": created})  # the timestamps only show in GET

    async def update(self, call: Call) -> Response:
        """PUT .../encryption/{encryption_id}: the changed fields."""
        vtype = self._type(call, "update")
        changes = _fields(require_object(await json_body(call.request), "encryption"))
        if not vtype.encryption or vtype.encryption["encryption_id"] != call.params["enc"]:
            raise not_found(f"Volume type encryption for type {vtype.id} does not exist.")
        if self._in_use(vtype):
            raise bad_request("Cannot update encryption specs. Volume type in use.")
        encryption = {**vtype.encryption, **changes, "updated_at": now()}
        self._store.put(dataclasses.replace(vtype, encryption=encryption))
        return self._core.ok({"encryption": changes})

    async def delete(self, call: Call) -> Response:
        """DELETE .../encryption/{encryption_id}: 202."""
        vtype = self._type(call, "delete")
        if not vtype.encryption or vtype.encryption["encryption_id"] != call.params["enc"]:
            raise not_found(f"Volume type encryption for type {vtype.id} does not exist.")
        if self._in_use(vtype):
            raise bad_request("Cannot delete encryption specs. Volume type in use.")
        self._store.put(dataclasses.replace(vtype, encryption=None))
        return self._core.accepted()


def _fields(req: dict[str, Any]) -> dict[str, Any]:
    extra = sorted(set(req) - set(FIELDS))
    if extra:
        raise invalid_input(
            "encryption", req, f"Additional properties are not allowed ({extra[0]!r} was unexpected)"
        )
    if "control_location" in req and req["control_location"] not in LOCATIONS:
        value = req["control_location"]
        raise invalid_input("control_location", value, f"{value!r} is not one of {list(LOCATIONS)}")
    if "key_size" in req and req["key_size"] is not None:
        size = req["key_size"]
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise invalid_input("key_size", size, f"{size!r} is not of type 'integer', 'null'")
    return dict(req)
