"""Storage API: Cinder's attachments API (3.27+), used by callers that manage attachments themselves.

Attachments made here involve no hypervisor: no loop device is made and Compute does not list them.
Compute's own attachments are listed here too, as in Cinder (Nova makes them through this API), and
deleting one takes its disk away from the server, as a volume owner cleaning up after a server that
no longer exists does.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from starlette.responses import Response

from csi_xloud.emulator.context import json_body, require_object
from csi_xloud.emulator.errors import bad_request, invalid_input, not_found
from csi_xloud.emulator.models import Attachment, AttachStatus, Volume, VolumeStatus, new_id, now
from csi_xloud.emulator.routing import Call, RouteTable
from csi_xloud.emulator.storage_core import StorageCore

ID = r"[^/]+"


class AttachmentRoutes:
    """POST/GET/PUT/DELETE /attachments and os-complete."""

    def __init__(self, core: StorageCore) -> None:
        self._core = core
        self._store = core.store

    def register(self, table: RouteTable) -> None:
        """Add this group's routes."""
        table.add("GET", "attachments", self.list_summary)
        table.add("GET", "attachments/detail", self.list_detail)
        table.add("POST", "attachments", self.create)
        table.add("GET", f"attachments/(?P<id>{ID})", self.show)
        table.add("PUT", f"attachments/(?P<id>{ID})", self.update)
        table.add("DELETE", f"attachments/(?P<id>{ID})", self.delete)
        table.add("POST", f"attachments/(?P<id>{ID})/action", self.action)

    @staticmethod
    def _require(call: Call, version: str = "3.27") -> None:
        if not call.mv.at_least(version):
            raise not_found()

    def _attachment(self, call: Call) -> tuple[Attachment, Volume]:
        att = self._store.get(Attachment, call.params["id"])
        vol = self._store.get(Volume, att.volume_id) if att else None
        if att is None or vol is None or vol.project_id != call.project_id:
            raise not_found(
                f"Volume attachment could not be found with filter: attachment_id = {call.params['id']}."
            )
        return att, vol

    def _connection_info(self, att: Attachment, vol: Volume) -> dict[str, Any]:
        if att.connector is None:
            return {}
        return {
            "driver_volume_type": "local",
            "device_path": str(self._core.ops.volume_path(vol)),
            "access_mode": "rw",
            "encrypted": False,
            "attachment_id": att.id,
        }

    def _view(self, att: Attachment, vol: Volume | None, detail: bool) -> dict[str, Any]:
        status = "attached" if att.status == AttachStatus.ATTACHED else "reserved"
        view: dict[str, Any] = {
            "id": att.id,
            "status": status,
            "instance": att.server_id,
            "volume_id": att.volume_id,
        }
        if detail:
            view.update(
                attached_at=att.attached_at or "",
                detached_at="",
                attach_mode=att.mode if att.status == AttachStatus.ATTACHED or att.connector else "null",
                connection_info=self._connection_info(att, vol) if vol else {},
            )
        return view

    def _listed(self, call: Call) -> list[tuple[Attachment, Volume]]:
        pairs = []
        for att in self._store.all(Attachment):
            vol = self._store.get(Volume, att.volume_id)
            if vol is not None and vol.project_id == call.project_id:
                pairs.append((att, vol))
        return pairs

    async def list_summary(self, call: Call) -> Response:
        """GET /attachments."""
        self._require(call)
        return self._core.ok({"attachments": [self._view(a, v, False) for a, v in self._listed(call)]})

    async def list_detail(self, call: Call) -> Response:
        """GET /attachments/detail."""
        self._require(call)
        return self._core.ok({"attachments": [self._view(a, v, True) for a, v in self._listed(call)]})

    async def show(self, call: Call) -> Response:
        """GET /attachments/{id}."""
        self._require(call)
        att, vol = self._attachment(call)
        return self._core.ok({"attachment": self._view(att, vol, True)})

    async def create(self, call: Call) -> Response:
        """POST /attachments: reserve the volume (attaching when a connector is given)."""
        self._require(call)
        req = require_object(await json_body(call.request), "attachment")
        if not isinstance(req.get("volume_uuid"), str):
            raise invalid_input("attachment", req, "'volume_uuid' is a required property")
        connector = req.get("connector")
        if connector is not None and not isinstance(connector, dict):
            raise invalid_input("connector", connector, f"{connector!r} is not of type 'object', 'null'")
        mode = req.get("mode", "rw")
        if mode not in ("rw", "ro") or (mode != "rw" and not call.mv.at_least("3.54")):
            raise invalid_input("mode", mode, f"{mode!r} is not one of ['rw', 'ro']")
        vol = self._core.volume(call, req["volume_uuid"])
        if vol.status == VolumeStatus.ERROR:
            raise bad_request(
                "Invalid volume: Volume attachments can not be created if the volume is in an error state."
                f" The Volume {vol.id} currently has a status of: error "
            )
        if vol.status != VolumeStatus.AVAILABLE and not (
            vol.multiattach and vol.status == VolumeStatus.IN_USE
        ):
            raise bad_request(
                f"Invalid volume: Volume {vol.id} status must be available or downloading to reserve, but the"
                f" current status is {vol.status}."
            )
        att = Attachment(
            id=new_id(),
            volume_id=vol.id,
            server_id=req.get("instance_uuid"),
            status=AttachStatus.RESERVED,
            device=str((connector or {}).get("mountpoint", "")),
            bdm_uuid=new_id(),
            created_at=now(),
            mode=mode,
            legacy=True,
            host_name=(connector or {}).get("host"),
            connector=connector,
        )
        status = VolumeStatus.ATTACHING if connector else VolumeStatus.RESERVED
        self._store.put(att, dataclasses.replace(vol, status=status, updated_at=now()))
        return self._core.ok({"attachment": self._view(att, vol, True)})

    async def update(self, call: Call) -> Response:
        """PUT /attachments/{id}: give the connector; the volume goes attaching."""
        self._require(call)
        att, vol = self._attachment(call)
        req = require_object(await json_body(call.request), "attachment")
        connector = req.get("connector")
        if not isinstance(connector, dict):
            raise invalid_input("attachment", req, "'connector' is a required property")
        att = dataclasses.replace(
            att,
            connector=connector,
            device=str(connector.get("mountpoint", att.device)),
            host_name=connector.get("host", att.host_name),
        )
        if vol.status == VolumeStatus.RESERVED:
            vol = dataclasses.replace(vol, status=VolumeStatus.ATTACHING, updated_at=now())
        self._store.put(att, vol)
        return self._core.ok({"attachment": self._view(att, vol, True)})

    async def action(self, call: Call) -> Response:
        """POST /attachments/{id}/action: os-complete (3.44) marks it attached and the volume in-use."""
        self._require(call, "3.44")
        att, vol = self._attachment(call)
        body = await json_body(call.request)
        if not isinstance(body, dict) or "os-complete" not in body:
            raise bad_request(
                "There is no such action. Verify the request body and Content-Type header and try again."
            )
        attached = dataclasses.replace(
            att, status=AttachStatus.ATTACHED, attached_at=att.attached_at or now()
        )
        self._store.put(attached, dataclasses.replace(vol, status=VolumeStatus.IN_USE, updated_at=now()))
        return Response(status_code=204)

    async def delete(self, call: Call) -> Response:
        """DELETE /attachments/{id}: the volume goes back to available when nothing else holds it."""
        self._require(call)
        att, vol = self._attachment(call)
        if not att.legacy:
            att = await self._core.ops.unplug(att)
        remaining = [a for a in self._core.ops.attachments_of(vol.id) if a.id != att.id]
        status: str = vol.status
        if any(a.status == AttachStatus.ATTACHED for a in remaining):
            status = VolumeStatus.IN_USE
        elif not remaining:
            status = VolumeStatus.AVAILABLE
        self._store.write(put=[dataclasses.replace(vol, status=status, updated_at=now())], delete=[att])
        return self._core.ok({"attachments": [self._view(a, vol, False) for a in remaining]})
