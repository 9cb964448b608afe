"""Compute API (Nova v2.1) at /compute: servers (compute_servers) and os-volume_attachments."""

from __future__ import annotations

import dataclasses
import re
import string
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from csi_xloud.emulator.compute_actions import InstanceActionRoutes
from csi_xloud.emulator.compute_servers import ServerRoutes, check_volume_state
from csi_xloud.emulator.context import EmulatorConfig, authenticate, json_body, negotiate
from csi_xloud.emulator.errors import ApiError, bad_request, invalid_input, not_found, unexpected_properties
from csi_xloud.emulator.models import Attachment, AttachStatus, Server, Volume, VolumeStatus, new_id, now
from csi_xloud.emulator.ops import Operations
from csi_xloud.emulator.routing import Call, RouteTable
from csi_xloud.emulator.server_ops import ServerOperations
from csi_xloud.emulator.state import Store

MIN_VERSION = "2.1"
MAX_VERSION = "2.104"
_UUID = re.compile(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$")
_DEVICE = re.compile(r"(^/dev/x{0,1}[a-z]{0,1}d{0,1})([a-z]+)[0-9]*$")
_DEVICE_PATTERN = "(^/dev/x{0,1}[a-z]{0,1}d{0,1})([a-z]+)[0-9]*$"


class ComputeEndpoints:
    """Servers (from --servers or POST /servers) and their volume attachments."""

    def __init__(
        self, store: Store, ops: Operations, config: EmulatorConfig, lifecycle: ServerOperations
    ) -> None:
        self._store = store
        self._ops = ops
        self._config = config
        self._servers = ServerRoutes(store, config, lifecycle)
        self._table = RouteTable()
        t = self._table
        self._servers.register(t)
        t.add("GET", "servers/(?P<id>[^/]+)/os-volume_attachments", self.list_attachments)
        t.add("POST", "servers/(?P<id>[^/]+)/os-volume_attachments", self.attach)
        t.add("GET", "servers/(?P<id>[^/]+)/os-volume_attachments/(?P<vol>[^/]+)", self.show_attachment)
        t.add("DELETE", "servers/(?P<id>[^/]+)/os-volume_attachments/(?P<vol>[^/]+)", self.detach)
        t.add("PUT", "servers/(?P<id>[^/]+)/os-volume_attachments/(?P<vol>[^/]+)", self.update_attachment)
        InstanceActionRoutes(store, self._servers.server).register(t)

    @staticmethod
    def _headers(version: str) -> dict[str, str]:
        return {
            "OpenStack-API-Version": f"compute {version}",
            "X-OpenStack-Nova-API-Version": version,
            "Vary": "OpenStack-API-Version, X-OpenStack-Nova-API-Version",
        }

    @staticmethod
    def _echoed_version(request: Request, status: int) -> str:
        """The version an error answer names: the requested one for 406, else the default."""
        raw = request.headers.get("openstack-api-version", "").split()
        return raw[-1] if status == 406 and len(raw) == 2 else MIN_VERSION

    def _version_doc(self) -> dict[str, Any]:
        return {
            "id": "v2.1",
            "status": "CURRENT",
            "version": MAX_VERSION,
            "min_version": MIN_VERSION,
            "updated": "2013-07-23T11:33:21Z",
            "links": [{"rel": "self", "href": f"{self._config.base_url}/compute/v2.1/"}],
        }

    async def handle(self, request: Request) -> Response:
        """Entry point for every /compute request."""
        path = request.url.path.removeprefix("/compute").strip("/")
        if path == "":
            return JSONResponse({"versions": [self._version_doc()]})
        if path == "v2.1":
            return JSONResponse({"version": self._version_doc()})
        try:
            if not path.startswith("v2.1/"):
                raise not_found()
            caller = authenticate(request, self._store, self._config)
            mv = negotiate(
                request, "compute", MIN_VERSION, MAX_VERSION, "x-openstack-nova-api-version", foreign_ok=True
            )
            found = self._table.match(request.method, path.removeprefix("v2.1/").rstrip("/"))
            if found is None:
                raise not_found()
            handler, params = found
            response = await handler(Call(request, caller, mv, caller.project_id, params))
        except ApiError as err:
            response = err.response()
            response.headers.update(self._headers(self._echoed_version(request, err.status)))
            return response
        response.headers.update(self._headers(str(mv)))
        return response

    # -- attachments ------------------------------------------------------------------------------

    def _attachment_view(self, att: Attachment, call: Call, for_create: bool = False) -> dict[str, Any]:
        view: dict[str, Any] = {}
        if for_create or not call.mv.at_least("2.89"):
            view["id"] = att.volume_id
        if for_create:
            view.update({"serverId": att.server_id, "volumeId": att.volume_id})
        else:
            view.update({"volumeId": att.volume_id, "serverId": att.server_id})
        view["device"] = att.device
        if call.mv.at_least("2.70"):
            view["tag"] = att.tag
        if call.mv.at_least("2.79"):
            view["delete_on_termination"] = att.delete_on_termination
        if call.mv.at_least("2.89") and not for_create:
            view["attachment_id"] = att.id
            view["bdm_uuid"] = att.bdm_uuid
        return view

    def _server_attachments(self, server_id: str) -> list[Attachment]:
        return sorted(
            (a for a in self._store.all(Attachment) if a.server_id == server_id and not a.legacy),
            key=lambda a: a.device,
        )

    async def list_attachments(self, call: Call) -> Response:
        """GET /servers/{id}/os-volume_attachments[?limit&offset]."""
        server = self._servers.server(call.params["id"])
        atts = self._server_attachments(server.id)
        try:
            offset = int(call.query.get("offset", 0))
            limit = int(call.query["limit"]) if "limit" in call.query else None
        except ValueError:
            raise bad_request("Invalid input for query parameters limit or offset.") from None
        atts = atts[offset:] if limit is None else atts[offset : offset + limit]
        return JSONResponse({"volumeAttachments": [self._attachment_view(a, call) for a in atts]})

    def _attached(self, server: Server, volume_id: str) -> Attachment:
        att = next((a for a in self._server_attachments(server.id) if a.volume_id == volume_id), None)
        if att is None:
            raise not_found(f"Instance {server.id} is not attached to volume {volume_id}")
        return att

    async def show_attachment(self, call: Call) -> Response:
        """GET /servers/{id}/os-volume_attachments/{volume_id}."""
        server = self._servers.server(call.params["id"])
        return JSONResponse(
            {"volumeAttachment": self._attachment_view(self._attached(server, call.params["vol"]), call)}
        )

    def _parse_attach(self, call: Call, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict) or not isinstance(body.get("volumeAttachment"), dict):
            raise bad_request(
                "Invalid input for field/attribute volumeAttachment."
                " 'volumeAttachment' is a required property"
            )
        req: dict[str, Any] = body["volumeAttachment"]
        allowed = {"volumeId", "device"}
        if call.mv.at_least("2.49"):
            allowed.add("tag")
        if call.mv.at_least("2.79"):
            allowed.add("delete_on_termination")
        extra = [k for k in req if k not in allowed]
        if extra:
            raise unexpected_properties("volumeAttachment", req, extra)
        if "volumeId" not in req:
            raise invalid_input("volumeAttachment", req, "'volumeId' is a required property")
        volume_id = req["volumeId"]
        if not isinstance(volume_id, str) or not _UUID.match(volume_id):
            raise invalid_input("volumeId", volume_id, f"{volume_id!r} is not a 'uuid'")
        device = req.get("device")
        if device is not None and (not isinstance(device, str) or not _DEVICE.match(device)):
            raise invalid_input("device", device, f"{device!r} does not match {_DEVICE_PATTERN!r}")
        return req

    async def attach(self, call: Call) -> Response:
        """POST /servers/{id}/os-volume_attachments: 200 at once; the volume goes reserved -> in-use."""
        req = self._parse_attach(call, await json_body(call.request))
        server = self._servers.server(call.params["id"])
        vol = self._store.get(Volume, req["volumeId"])
        if vol is None or vol.project_id != call.project_id:
            raise not_found(f"Volume {req['volumeId']} could not be found.")
        self._check_attachable(call, server, vol)
        check_volume_state(server, "attach_volume")
        att = Attachment(
            id=new_id(),
            volume_id=vol.id,
            server_id=server.id,
            status=AttachStatus.RESERVED,
            device=self._next_device(server),
            bdm_uuid=new_id(),
            created_at=now(),
            tag=req.get("tag"),
            delete_on_termination=bool(req.get("delete_on_termination", False)),
        )
        reserved = VolumeStatus.RESERVED if vol.status == VolumeStatus.AVAILABLE else VolumeStatus.ATTACHING
        self._store.put(att, _replace_volume(vol, status=reserved))
        self._ops.start_attach(att.id)
        return JSONResponse({"volumeAttachment": self._attachment_view(att, call, for_create=True)})

    def _check_attachable(self, call: Call, server: Server, vol: Volume) -> None:
        existing = [a for a in self._ops.attachments_of(vol.id) if not a.legacy]
        if existing and (not vol.multiattach or any(a.server_id == server.id for a in existing)):
            servers = ",".join(sorted({a.server_id or "" for a in existing}))
            raise bad_request(f"Invalid volume: volume {vol.id} is already attached to instances: {servers}")
        if vol.multiattach and not call.mv.at_least("2.60"):
            raise bad_request(
                "Multiattach volumes are only supported starting with compute API version 2.60."
            )
        if vol.status == VolumeStatus.ERROR:
            raise bad_request(
                "Invalid input received: Invalid volume: Volume"
                " attachments can not be created if the volume is in"
                f" an error state. The Volume {vol.id} currently has a status of: error  (HTTP 400)"
                f" (Request-ID: req-{new_id()})"
            )
        if vol.status != VolumeStatus.AVAILABLE and not (
            vol.multiattach and vol.status == VolumeStatus.IN_USE
        ):
            raise bad_request(
                "Invalid input received: Invalid volume: Volume"
                f" {vol.id} status must be available or downloading"
                f" to reserve, but the current status is {vol.status}. (HTTP 400)"
                f" (Request-ID: req-{new_id()})"
            )
        if vol.availability_zone != server.availability_zone:
            raise bad_request(
                f"Invalid volume: Instance {server.id} and volume"
                f" {vol.id} are not in the same availability_zone."
                f" Instance is in {server.availability_zone}. Volume is in {vol.availability_zone}"
            )

    def _next_device(self, server: Server) -> str:
        used = {a.device for a in self._store.all(Attachment) if a.server_id == server.id}
        for letter in string.ascii_lowercase[1:]:
            if f"/dev/vd{letter}" not in used:
                return f"/dev/vd{letter}"
        raise ApiError(403, {"forbidden": {"code": 403, "message": "Maximum number of volumes reached."}})

    async def update_attachment(self, call: Call) -> Response:
        """PUT /servers/{id}/os-volume_attachments/{volume_id}: delete_on_termination (2.85); no swap."""
        body = await json_body(call.request)
        req = body.get("volumeAttachment") if isinstance(body, dict) else None
        if not isinstance(req, dict) or "volumeId" not in req:
            raise invalid_input("volumeAttachment", req, "'volumeId' is a required property")
        server = self._servers.server(call.params["id"])
        att = self._attached(server, call.params["vol"])
        if req["volumeId"] != att.volume_id:
            raise bad_request("Swapping volumes is not supported by this cloud.")
        allowed = {"volumeId", "device", "tag", "id", "serverId", "delete_on_termination"}
        if "delete_on_termination" in req and not call.mv.at_least("2.85"):
            allowed.discard("delete_on_termination")
        extra = [k for k in req if k not in allowed]
        if extra:
            raise unexpected_properties("volumeAttachment", req, extra)
        if "delete_on_termination" in req:
            if not isinstance(req["delete_on_termination"], bool):
                raise invalid_input(
                    "delete_on_termination", req["delete_on_termination"], "is not of type 'boolean'"
                )
            self._store.put(_replace_attachment(att, delete_on_termination=req["delete_on_termination"]))
        return Response(status_code=202)

    async def detach(self, call: Call) -> Response:
        """DELETE /servers/{id}/os-volume_attachments/{volume_id}: 202, then detaching -> available."""
        server = self._servers.server(call.params["id"])
        volume_id = call.params["vol"]
        vol = self._store.get(Volume, volume_id)
        if vol is None or vol.project_id != call.project_id:
            raise not_found(f"Volume {volume_id} could not be found.")
        att = self._attached(server, volume_id)
        if att.root:
            raise bad_request("Cannot detach a root device volume")
        check_volume_state(server, "detach_volume")
        if att.status != AttachStatus.ATTACHED or vol.status != VolumeStatus.IN_USE:
            raise bad_request(
                "Invalid volume: Invalid input received: Invalid"
                " volume: Unable to detach volume. Volume status must"
                " be 'in-use' and attach_status must be 'attached' to detach."
            )
        self._store.put(
            _replace_attachment(att, status=AttachStatus.DETACHING),
            _replace_volume(vol, status=VolumeStatus.DETACHING),
        )
        self._ops.start_detach(att.id)
        return Response(status_code=202)


def _replace_volume(vol: Volume, **changes: Any) -> Volume:
    return dataclasses.replace(vol, updated_at=now(), **changes)


def _replace_attachment(att: Attachment, **changes: Any) -> Attachment:
    return dataclasses.replace(att, **changes)
