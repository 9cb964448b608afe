"""Compute API servers: list, show, create (boot from volume), delete, os-stop, os-start, os-resetState."""

from __future__ import annotations

import dataclasses
import hashlib
import re
import secrets
from typing import Any

from starlette.responses import JSONResponse, Response

from csi_xloud.emulator.context import EmulatorConfig, json_body
from csi_xloud.emulator.errors import ApiError, bad_request, conflict, fault, invalid_input, not_found
from csi_xloud.emulator.models import (
    Attachment,
    AttachStatus,
    Server,
    ServerStatus,
    Volume,
    VolumeStatus,
    new_id,
    now,
)
from csi_xloud.emulator.routing import Call, RouteTable
from csi_xloud.emulator.server_ops import TASK_STATES, ServerOperations
from csi_xloud.emulator.state import Store

_UUID = re.compile(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$")
ROOT_DEVICE = "/dev/vda"
# Nova's vm_state and power_state for each status.
VM_STATES = {
    ServerStatus.BUILD: ("building", 0),
    ServerStatus.ACTIVE: ("active", 1),
    ServerStatus.SHUTOFF: ("stopped", 4),
    ServerStatus.ERROR: ("error", 0),
}
# The vm_states in which Compute lets a volume be attached or detached (nova.compute.api).
VOLUME_STATES = frozenset({ServerStatus.ACTIVE, ServerStatus.SHUTOFF})
_BAD_BOOT = (
    "Block Device Mapping is Invalid: Boot sequence for the instance and image/block device mapping "
    "combination is not valid."
)


def check_volume_state(server: Server, method: str) -> None:
    """Compute's 409 for attach_volume / detach_volume on a server that is building, in error or busy."""
    if server.pending is not None:
        raise _invalid_state(server, method, "task_state", TASK_STATES[str(server.pending["op"])])
    if server.status not in VOLUME_STATES:
        raise _invalid_state(server, method, "vm_state", VM_STATES[ServerStatus(server.status)][0])


def _invalid_state(server: Server, method: str, attr: str, state: str) -> ApiError:
    return conflict(f"Cannot '{method}' instance {server.id} while it is in {attr} {state}")


class ServerRoutes:
    """The server half of the Compute API; `attachments_view` lists a server's volumes."""

    def __init__(self, store: Store, config: EmulatorConfig, lifecycle: ServerOperations) -> None:
        self._store = store
        self._config = config
        self._lifecycle = lifecycle

    def register(self, table: RouteTable) -> None:
        """Add this group's routes."""
        table.add("GET", "servers", self.list_servers)
        table.add("POST", "servers", self.create)
        table.add("GET", "servers/detail", self.list_detail)
        table.add("GET", "servers/(?P<id>[^/]+)", self.show_server)
        table.add("DELETE", "servers/(?P<id>[^/]+)", self.delete)
        table.add("POST", "servers/(?P<id>[^/]+)/action", self.action)

    def server(self, server_id: str) -> Server:
        """The server, or Compute's 404."""
        server = self._store.get(Server, server_id)
        if server is None:
            raise not_found(f"Instance {server_id} could not be found.")
        return server

    def _links(self, server: Server) -> list[dict[str, str]]:
        base = self._config.base_url
        return [
            {"rel": "self", "href": f"{base}/compute/v2.1/servers/{server.id}"},
            {"rel": "bookmark", "href": f"{base}/compute/servers/{server.id}"},
        ]

    def server_view(self, server: Server, project_id: str, is_admin: bool = False) -> dict[str, Any]:
        """The server body (the fields a volume driver looks at, and Nova's usual set)."""
        host_id = hashlib.sha224(f"{project_id}{server.name}".encode()).hexdigest()
        attached = self._lifecycle.attachments(server.id)
        vm_state, power_state = VM_STATES[ServerStatus(server.status)]
        created = server.created_at.split(".")[0] + "Z"
        built = server.status != ServerStatus.BUILD
        return {
            "id": server.id,
            "name": server.name,
            "status": server.status,
            "tenant_id": project_id,
            "user_id": "",
            "metadata": {},
            "hostId": host_id,
            "image": "",
            "flavor": {
                "vcpus": 2,
                "ram": 4096,
                "disk": 0,
                "ephemeral": 0,
                "swap": 0,
                "original_name": "x1.node",
                "extra_specs": {},
            },
            "created": created,
            "updated": (server.updated_at or server.created_at).split(".")[0] + "Z",
            "addresses": {},
            "accessIPv4": "",
            "accessIPv6": "",
            "links": self._links(server),
            "OS-DCF:diskConfig": "MANUAL",
            "progress": 0,
            "OS-EXT-AZ:availability_zone": server.availability_zone,
            "config_drive": "",
            "key_name": None,
            "OS-EXT-STS:task_state": TASK_STATES[str(server.pending["op"])] if server.pending else None,
            "OS-EXT-STS:vm_state": vm_state,
            "OS-EXT-STS:power_state": power_state,
            "os-extended-volumes:volumes_attached": [
                {"id": a.volume_id, "delete_on_termination": a.delete_on_termination} for a in attached
            ],
            "locked": False,
            "description": None,
            "tags": [],
            "OS-SRV-USG:launched_at": server.created_at if built else None,
            "OS-SRV-USG:terminated_at": None,
            "trusted_image_certificates": None,
            "server_groups": [],
            "locked_reason": None,
            **(self._admin_fields(server) if is_admin else {}),
        }

    @staticmethod
    def _admin_fields(server: Server) -> dict[str, Any]:
        return {
            "OS-EXT-SRV-ATTR:host": server.name,
            "OS-EXT-SRV-ATTR:instance_name": f"instance-{server.id[:8]}",
            "OS-EXT-SRV-ATTR:hypervisor_hostname": server.name,
            "OS-EXT-SRV-ATTR:hostname": server.name,
            "OS-EXT-SRV-ATTR:kernel_id": "",
            "OS-EXT-SRV-ATTR:launch_index": 0,
            "OS-EXT-SRV-ATTR:ramdisk_id": "",
            "OS-EXT-SRV-ATTR:reservation_id": f"r-{server.id[:8]}",
            "OS-EXT-SRV-ATTR:root_device_name": ROOT_DEVICE,
            "OS-EXT-SRV-ATTR:user_data": None,
            "host_status": "UP",
        }

    async def list_servers(self, call: Call) -> Response:
        """GET /servers[?limit&marker]: oldest first; a next link in servers_links when more follow."""
        servers = self._store.all(Server)
        marker = call.query.get("marker")
        if marker is not None:
            ids = [s.id for s in servers]
            if marker not in ids:
                raise bad_request(f"marker [{marker}] not found")
            servers = servers[ids.index(marker) + 1 :]
        body: dict[str, Any] = {}
        limit = call.query.get("limit")
        if limit is not None:
            if not limit.isdigit():
                raise invalid_input("limit", limit, f"{limit!r} does not match '^[0-9]*$'")
            if int(limit) < len(servers):
                servers = servers[: int(limit)]
                href = f"{self._config.base_url}/compute/v2.1/servers?limit={limit}&marker={servers[-1].id}"
                body["servers_links"] = [{"rel": "next", "href": href}]
        body["servers"] = [{"id": s.id, "name": s.name, "links": self._links(s)} for s in servers]
        return JSONResponse(dict(sorted(body.items(), key=lambda kv: kv[0] != "servers")))

    async def list_detail(self, call: Call) -> Response:
        """GET /servers/detail."""
        return JSONResponse(
            {
                "servers": [
                    self.server_view(s, call.project_id, call.caller.is_admin)
                    for s in self._store.all(Server)
                ]
            }
        )

    async def show_server(self, call: Call) -> Response:
        """GET /servers/{id}."""
        server = self.server(call.params["id"])
        return JSONResponse({"server": self.server_view(server, call.project_id, call.caller.is_admin)})

    # -- create -----------------------------------------------------------------------------------

    async def create(self, call: Call) -> Response:
        """POST /servers: 202 at once; BUILD, then ACTIVE with the boot volume attached as its root disk."""
        req = self._parse_create(call, await json_body(call.request))
        boot = self._boot_volume(call, req)
        zone = self._zone(req, boot)
        server_id = new_id()
        folder = self._config.data_dir / "servers" / f"{req['name']}-{server_id[:8]}" / "by-id"
        folder.mkdir(parents=True, exist_ok=True)
        server = Server(server_id, req["name"], zone, str(folder), now(), status=ServerStatus.BUILD)
        records: list[Any] = []
        if boot is not None:
            vol, delete_on_termination = boot
            records.append(
                Attachment(
                    id=new_id(),
                    volume_id=vol.id,
                    server_id=server.id,
                    status=AttachStatus.RESERVED,
                    device=ROOT_DEVICE,
                    bdm_uuid=new_id(),
                    created_at=now(),
                    delete_on_termination=delete_on_termination,
                    root=True,
                )
            )
            records.append(dataclasses.replace(vol, status=VolumeStatus.RESERVED, updated_at=now()))
        self._lifecycle.begin(server, "build", *records)
        self._lifecycle.changed()
        body = {
            "server": {
                "id": server.id,
                "links": self._links(server),
                "OS-DCF:diskConfig": "MANUAL",
                "security_groups": [{"name": "default"}],
                "adminPass": secrets.token_urlsafe(9)[:12],
            }
        }
        location = f"{self._config.base_url}/compute/v2.1/servers/{server.id}"
        return JSONResponse(body, status_code=202, headers={"Location": location})

    @staticmethod
    def _parse_create(call: Call, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict) or not isinstance(body.get("server"), dict):
            raise invalid_input("server", body, "'server' is a required property")
        req: dict[str, Any] = body["server"]
        name = req.get("name")
        if not isinstance(name, str) or not 1 <= len(name.strip()) <= 255:
            raise invalid_input("name", name, f"{name!r} is not a valid server name")
        if "flavorRef" not in req:
            raise invalid_input("server", req, "'flavorRef' is a required property")
        if call.mv.at_least("2.37") and "networks" not in req:
            raise invalid_input("server", req, "'networks' is a required property")
        bdms = req.get("block_device_mapping_v2", [])
        if not isinstance(bdms, list) or not all(isinstance(b, dict) for b in bdms):
            raise invalid_input("block_device_mapping_v2", bdms, f"{bdms!r} is not of type 'array'")
        image = req.get("imageRef")
        if image not in (None, "") and (not isinstance(image, str) or not _UUID.match(image)):
            raise invalid_input("imageRef", image, f"{image!r} is not a 'uuid'")
        return req

    def _boot_volume(self, call: Call, req: dict[str, Any]) -> tuple[Volume, bool] | None:
        """The volume the server boots from (boot_index 0, source and destination volume), if any."""
        roots = [b for b in req.get("block_device_mapping_v2", []) if str(b.get("boot_index")) == "0"]
        if not roots:
            if not req.get("imageRef"):
                raise bad_request(_BAD_BOOT)
            return None  # boots from an image onto a local disk: no volume involved
        root = roots[0]
        if len(roots) > 1 or root.get("source_type") != "volume" or root.get("destination_type") != "volume":
            raise bad_request(_BAD_BOOT)
        volume_id = str(root.get("uuid") or "")
        vol = self._store.get(Volume, volume_id)
        if vol is None or vol.project_id != call.project_id:
            raise bad_request(f"Block Device Mapping is Invalid: failed to get volume {volume_id}.")
        if vol.status != VolumeStatus.AVAILABLE:
            raise bad_request(
                f"Invalid volume: volume '{vol.id}' status must be 'available'. Currently in '{vol.status}'"
            )
        return vol, bool(root.get("delete_on_termination", False))

    def _zone(self, req: dict[str, Any], boot: tuple[Volume, bool] | None) -> str:
        """The requested zone (one the servers have, or nova), else the boot volume's."""
        zones = {s.availability_zone for s in self._store.all(Server)} | {"nova"}
        zone = req.get("availability_zone")
        if zone is not None and zone not in zones:
            raise bad_request("The requested availability zone is not available")
        if boot is not None and zone is not None and boot[0].availability_zone != zone:
            vol = boot[0]
            raise bad_request(
                f"Invalid volume: Instance and volume {vol.id} are not in the same availability_zone."
                f" Instance is in {zone}. Volume is in {vol.availability_zone}"
            )
        if zone is None:
            return boot[0].availability_zone if boot is not None else "nova"
        return str(zone)

    # -- delete and actions -----------------------------------------------------------------------

    async def delete(self, call: Call) -> Response:
        """DELETE /servers/{id}: 204; its volumes are detached (available again), then it is gone."""
        server = self.server(call.params["id"])
        if server.pending is not None and server.pending.get("op") == "delete":
            return Response(status_code=204)
        attached = self._lifecycle.attachments(server.id)
        detaching = [dataclasses.replace(a, status=AttachStatus.DETACHING) for a in attached]
        volumes = [
            dataclasses.replace(v, status=VolumeStatus.DETACHING, updated_at=now())
            for v in (self._store.get(Volume, a.volume_id) for a in detaching)
            if v is not None
        ]
        self._lifecycle.begin(server, "delete", *detaching, *volumes)
        return Response(status_code=204)

    async def action(self, call: Call) -> Response:
        """POST /servers/{id}/action: os-stop, os-start, os-resetState (admin)."""
        server = self.server(call.params["id"])
        body = await json_body(call.request)
        if not isinstance(body, dict) or len(body) != 1:
            raise bad_request("Malformed request body")
        name = next(iter(body))
        if name == "os-stop":
            self._check_power(server, "stop", ServerStatus.ACTIVE, ServerStatus.ERROR)
            self._lifecycle.begin(server, "stop")
        elif name == "os-start":
            self._check_power(server, "start", ServerStatus.SHUTOFF)
            self._lifecycle.begin(server, "start")
        elif name == "os-resetState":
            await self._reset_state(call, server, body[name])
        else:
            raise bad_request(f"There is no such action: {name}")
        return Response(status_code=202)

    @staticmethod
    def _check_power(server: Server, method: str, *allowed: ServerStatus) -> None:
        if server.pending is not None:
            raise _invalid_state(server, method, "task_state", TASK_STATES[str(server.pending["op"])])
        if server.status not in allowed:
            raise _invalid_state(server, method, "vm_state", VM_STATES[ServerStatus(server.status)][0])

    async def _reset_state(self, call: Call, server: Server, arg: Any) -> None:
        """Put a server in error or active by hand, as an admin does (no power change happens)."""
        if not call.caller.is_admin:
            raise fault(
                403,
                "forbidden",
                "Policy doesn't allow os_compute_api:os-admin-actions:reset_state to be performed.",
            )
        state = arg.get("state") if isinstance(arg, dict) else None
        if state not in ("active", "error"):
            raise invalid_input("state", state, f"{state!r} is not one of ['active', 'error']")
        status = ServerStatus.ACTIVE if state == "active" else ServerStatus.ERROR
        self._store.put(dataclasses.replace(server, status=status, pending=None, updated_at=now()))
        if status == ServerStatus.ACTIVE:
            await self._lifecycle.plug_all(server.id)
