"""Storage API (Cinder v3) at /volume: version discovery, auth, microversions, project prefix, dispatch."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from csi_xloud.emulator.context import (
    PROJECT_ID,
    Caller,
    EmulatorConfig,
    Microversion,
    authenticate,
    negotiate,
)
from csi_xloud.emulator.errors import ApiError, bad_request
from csi_xloud.emulator.routing import Call, RouteTable
from csi_xloud.emulator.state import Store

MIN_VERSION = "3.0"
MAX_VERSION = "3.71"
COLLECTIONS = {
    "volumes",
    "snapshots",
    "backups",
    "types",
    "qos-specs",
    "os-quota-sets",
    "limits",
    "os-availability-zone",
    "attachments",
    "messages",
    "os-services",
    "scheduler-stats",
    "extensions",
    "group_types",
    "groups",
    "group_snapshots",
    "os-hosts",
    "capabilities",
    "os-quota-class-sets",
    "os-volume-transfer",
    "volume-transfers",
}
_WEBOB_404 = {
    "message": "The resource could not be found.<br /><br />\n\n\n",
    "code": "404 Not Found",
    "title": "Not Found",
}


class StorageEndpoints:
    """Dispatches /volume requests to the route groups."""

    def __init__(self, store: Store, config: EmulatorConfig, table: RouteTable) -> None:
        self._store = store
        self._config = config
        self._table = table

    def _version_doc(self) -> dict[str, Any]:
        return {
            "id": "v3.0",
            "status": "CURRENT",
            "version": MAX_VERSION,
            "min_version": MIN_VERSION,
            "updated": "2023-08-31T00:00:00Z",
            "links": [
                {"rel": "describedby", "type": "text/html", "href": "https://docs.openstack.org/"},
                {"rel": "self", "href": f"{self._config.base_url}/volume/v3/"},
            ],
            "media-types": [
                {"base": "application/json", "type": "application/vnd.openstack.volume+json;version=3"}
            ],
        }

    @staticmethod
    def _headers(version: str) -> dict[str, str]:
        return {"OpenStack-API-Version": f"volume {version}", "Vary": "OpenStack-API-Version"}

    async def handle(self, request: Request) -> Response:
        """Entry point for every /volume request."""
        path = request.url.path.removeprefix("/volume").strip("/")
        if path == "":
            return JSONResponse(
                {"versions": [self._version_doc()]}, status_code=300, headers=self._headers(MIN_VERSION)
            )
        if path == "v3":
            return JSONResponse({"versions": [self._version_doc()]}, headers=self._headers(MIN_VERSION))
        if not path.startswith("v3/"):
            return JSONResponse(_WEBOB_404, status_code=404)
        rest = request.url.path.removeprefix("/volume").lstrip("/").removeprefix("v3/")
        try:
            return await self._dispatch(request, rest)  # a trailing slash kept: /volumes/ is no route
        except ApiError as err:
            response = err.response()
            return response

    async def _dispatch(self, request: Request, rest: str) -> Response:
        caller = authenticate(request, self._store, self._config)
        try:
            mv = negotiate(request, "volume", MIN_VERSION, MAX_VERSION)
        except ApiError as err:
            raw = request.headers.get("openstack-api-version", "")
            if err.status == 406 and raw.split()[-1:] and raw.split()[-1].startswith("3."):
                err.headers.update(self._headers(raw.split()[-1]))
            raise
        try:
            response = await self._route(request, caller, mv, rest)
        except ApiError as err:
            err.headers.update(self._headers(str(mv)))
            raise
        response.headers.update(self._headers(str(mv)))
        return response

    async def _route(self, request: Request, caller: Caller, mv: Microversion, rest: str) -> Response:
        first, _, tail = rest.partition("/")
        project_id = caller.project_id
        if first not in COLLECTIONS:
            if not PROJECT_ID.match(first):
                return JSONResponse(_WEBOB_404, status_code=404)
            if first != caller.project_id:
                raise bad_request("Malformed request url")
            project_id = first
            rest = tail
        found = self._table.match(request.method, rest)
        if found is None:
            return JSONResponse(_WEBOB_404, status_code=404)
        handler, params = found
        if request.method in ("POST", "PUT") and not _json_content(request):
            raise ApiError(415, {"badMediaType": {"code": 415, "message": "Unsupported Content-Type"}})
        return await handler(Call(request, caller, mv, project_id, params))


def _json_content(request: Request) -> bool:
    ctype = request.headers.get("content-type")
    return ctype is None or ctype.split(";")[0].strip() in ("application/json", "")
