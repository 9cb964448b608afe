"""Storage API: volume transfers, at /os-volume-transfer (3.0) and /volume-transfers (3.55+).

Creating a transfer puts an available volume in `awaiting-transfer` and answers the auth key once;
whoever accepts with the id and key gets the volume (and, unless `no_snapshots`, its snapshots) in
the accepting token's project.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import secrets
from typing import Any

from starlette.responses import Response

from csi_xloud.emulator.context import json_body, require_object
from csi_xloud.emulator.errors import bad_request, invalid_input, not_found
from csi_xloud.emulator.models import Snapshot, Transfer, Volume, VolumeStatus, new_id, now
from csi_xloud.emulator.routing import Call, RouteTable
from csi_xloud.emulator.storage_core import StorageCore, check_name, parse_bool

ID = r"[^/]+"
AWAITING = "awaiting-transfer"
NEW_API = "3.55"  # /volume-transfers, with no_snapshots; 3.57 adds the project ids and `accepted`


class TransferRoutes:
    """Create, list, show, delete and accept volume transfers."""

    def __init__(self, core: StorageCore) -> None:
        self._core = core
        self._store = core.store

    def register(self, table: RouteTable) -> None:
        """Add this group's routes (both spellings)."""
        for root in ("os-volume-transfer", "volume-transfers"):
            table.add("POST", root, self.create)
            table.add("GET", root, self.list_summary)
            table.add("GET", f"{root}/detail", self.list_detail)
            table.add("GET", f"{root}/(?P<id>{ID})", self.show)
            table.add("DELETE", f"{root}/(?P<id>{ID})", self.delete)
            table.add("POST", f"{root}/(?P<id>{ID})/accept", self.accept)

    @staticmethod
    def _check_root(call: Call) -> None:
        if "/volume-transfers" in call.request.url.path and not call.mv.at_least(NEW_API):
            raise not_found()

    def _transfer(self, call: Call) -> Transfer:
        self._check_root(call)
        transfer = self._store.get(Transfer, call.params["id"])
        if transfer is None or (transfer.source_project_id != call.project_id and not call.caller.is_admin):
            raise not_found(f"Transfer {call.params['id']} could not be found.")
        return transfer

    def _view(self, call: Call, transfer: Transfer, detail: bool = True) -> dict[str, Any]:
        view: dict[str, Any] = {"id": transfer.id, "name": transfer.name, "volume_id": transfer.volume_id}
        if detail:
            view["created_at"] = transfer.created_at
            if call.mv.at_least(NEW_API):
                view["no_snapshots"] = transfer.no_snapshots
            if call.mv.at_least("3.57"):
                view.update(source_project_id=transfer.source_project_id, destination_project_id=None)
                view["accepted"] = False
        view["links"] = self._core.views.links(call.project_id, "os-volume-transfer", transfer.id)
        return view

    async def create(self, call: Call) -> Response:
        """POST: 202 with the auth key, the only time it is shown."""
        self._check_root(call)
        req = require_object(await json_body(call.request), "transfer")
        if not req.get("volume_id"):
            raise invalid_input("transfer", req, "'volume_id' is a required property")
        vol = self._core.volume(call, str(req["volume_id"]))
        no_snapshots = call.mv.at_least(NEW_API) and parse_bool(
            "no_snapshots", req.get("no_snapshots", False)
        )
        if vol.status != VolumeStatus.AVAILABLE:
            raise bad_request("Invalid volume: status must be available")
        if vol.pending is not None or self._core.ops.attachments_of(vol.id):
            raise bad_request("Invalid volume: status must be available")
        key = secrets.token_hex(8)
        transfer = Transfer(
            id=new_id(),
            volume_id=vol.id,
            name=check_name("name", req.get("name")),
            key_hash=_hash(key),
            source_project_id=vol.project_id,
            created_at=now(),
            no_snapshots=no_snapshots,
        )
        self._store.put(transfer, dataclasses.replace(vol, status=AWAITING, updated_at=now()))
        return self._core.ok({"transfer": {**self._view(call, transfer), "auth_key": key}}, 202)

    def _listed(self, call: Call) -> list[Transfer]:
        self._check_root(call)
        return [t for t in self._store.all(Transfer) if t.source_project_id == call.project_id]

    async def list_summary(self, call: Call) -> Response:
        """GET: id, name, volume_id, links."""
        return self._core.ok({"transfers": [self._view(call, t, False) for t in self._listed(call)]})

    async def list_detail(self, call: Call) -> Response:
        """GET .../detail."""
        return self._core.ok({"transfers": [self._view(call, t) for t in self._listed(call)]})

    async def show(self, call: Call) -> Response:
        """GET .../{id}."""
        return self._core.ok({"transfer": self._view(call, self._transfer(call))})

    async def delete(self, call: Call) -> Response:
        """DELETE .../{id}: the volume is available again."""
        transfer = self._transfer(call)
        vol = self._store.get(Volume, transfer.volume_id)
        put = [dataclasses.replace(vol, status=VolumeStatus.AVAILABLE, updated_at=now())] if vol else []
        self._store.write(put=put, delete=[transfer])
        return self._core.accepted()

    async def accept(self, call: Call) -> Response:
        """POST .../{id}/accept with the auth key: the volume changes project."""
        self._check_root(call)
        transfer = self._store.get(Transfer, call.params["id"])
        if transfer is None:
            raise not_found(f"Transfer {call.params['id']} could not be found.")
        req = require_object(await json_body(call.request), "accept")
        key = req.get("auth_key")
        if not isinstance(key, str) or not hmac.compare_digest(_hash(key), transfer.key_hash):
            raise bad_request(f"Invalid auth key: Attempt to transfer {transfer.id} with invalid auth key.")
        vol = self._store.get(Volume, transfer.volume_id)
        if vol is None:
            raise not_found(f"Volume {transfer.volume_id} could not be found.")
        self._core.quotas.check_volume(call.project_id, vol.size, self._core.type_name(vol.type_id))
        moved: list[Volume | Snapshot] = [
            dataclasses.replace(
                vol,
                project_id=call.project_id,
                user_id=call.caller.user.id,
                status=VolumeStatus.AVAILABLE,
                updated_at=now(),
            )
        ]
        snaps = [s for s in self._store.all(Snapshot) if s.volume_id == vol.id]
        if not transfer.no_snapshots:
            moved += [dataclasses.replace(s, project_id=call.project_id) for s in snaps]
        self._store.write(put=moved, delete=[transfer])
        body: dict[str, Any] = {"id": transfer.id, "name": transfer.name, "volume_id": vol.id}
        body["links"] = self._core.views.links(call.project_id, "os-volume-transfer", transfer.id)
        return self._core.ok({"transfer": body}, 202)


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()
