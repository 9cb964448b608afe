"""Builds the emulator: state, seed data, the three APIs and /_emulator/* on one Starlette app.

Seed volume types (created at first start):

- ``standard`` -- the default type, backend ``ssd`` (``volume_backend_name=ssd``).
- ``archive`` -- backend ``hdd``; retyping to it with ``migration_policy=on-demand`` moves the data to
  the ``hdd`` backend folder (with ``never`` the retype is refused by the scheduler and the type stays).
- ``shared`` -- backend ``ssd`` with ``multiattach="<is> True"``: its volumes attach to several servers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from csi_xloud.emulator.backups import ChunkStore
from csi_xloud.emulator.chaos import FaultMiddleware, Faults, RequestIdMiddleware, RuleError
from csi_xloud.emulator.compute_api import ComputeEndpoints
from csi_xloud.emulator.context import EmulatorConfig
from csi_xloud.emulator.data import DataPlane
from csi_xloud.emulator.errors import ApiError
from csi_xloud.emulator.group_ops import GroupOperations
from csi_xloud.emulator.identity_admin import IdentityAdminApi
from csi_xloud.emulator.identity_api import ADMIN_USER, MEMBER_USER, IdentityApi, prune_tokens, seed_identity
from csi_xloud.emulator.models import AppCredential, Server, User, VolumeType, new_id, now
from csi_xloud.emulator.ops import Operations
from csi_xloud.emulator.routing import RouteTable
from csi_xloud.emulator.server_ops import ServerOperations
from csi_xloud.emulator.state import Store
from csi_xloud.emulator.storage_api import StorageEndpoints
from csi_xloud.emulator.storage_core import StorageCore
from csi_xloud.emulator.storage_groups import seed_group_types
from csi_xloud.emulator.storage_resources import register_resources
from csi_xloud.emulator.storage_volumes import VolumeRoutes

log = logging.getLogger(__name__)
PROJECT_NAME = "xloud"
SEED_TYPES = (
    ("standard", "Default type (backend ssd)", {"volume_backend_name": "ssd"}),
    ("archive", "Archive type on another backend (backend hdd)", {"volume_backend_name": "hdd"}),
    ("shared", "Multiattach type (backend ssd)", {"volume_backend_name": "ssd", "multiattach": "<is> True"}),
)
METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"]


@dataclass(frozen=True, slots=True)
class ServerSpec:
    """One --servers entry."""

    name: str
    zone: str


def parse_servers(raw: str) -> list[ServerSpec]:
    """Parse NAME[@ZONE][,NAME[@ZONE]...]; the zone defaults to nova."""
    specs: list[ServerSpec] = []
    for item in raw.split(","):
        name, _, zone = item.strip().partition("@")
        if not name or not all(c.isalnum() or c in "-_." for c in name):
            raise ValueError(f"--servers: invalid server name {name!r}")
        if name in {s.name for s in specs}:
            raise ValueError(f"--servers: duplicate server name {name!r}")
        specs.append(ServerSpec(name, zone or "nova"))
    if not specs:
        raise ValueError("--servers: at least one server is required")
    return specs


class Emulator:
    """One emulator instance over a data directory."""

    def __init__(
        self, data_dir: Path, base_url: str, servers: list[ServerSpec], op_seconds: float, token_ttl: float,
        max_page_size: int = 1000,
    ) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.store = Store(data_dir / "state.sqlite")
        project_id = self.store.meta("project_id")
        if project_id is None:
            project_id = secrets.token_hex(16)
            self.store.set_meta("project_id", project_id)
        self.config = EmulatorConfig(
            data_dir, base_url, op_seconds, token_ttl, project_id, PROJECT_NAME, max_page_size=max_page_size
        )
        self.faults = Faults()
        data = DataPlane(data_dir)
        self.ops = Operations(self.store, data, ChunkStore(data_dir / "backups"), op_seconds)
        self.group_ops = GroupOperations(self.store, self.ops, data)
        seed_identity(self.store)
        prune_tokens(self.store)
        self._seed_types()
        seed_group_types(self.store)
        self._sync_servers(servers)
        self.identity = IdentityApi(self.store, self.config)
        self.identity_admin = IdentityAdminApi(self.store, self.config)
        core = StorageCore(self.store, self.ops, self.config)
        table = RouteTable()
        VolumeRoutes(core).register(table)
        register_resources(core, table, self.group_ops)
        self.storage = StorageEndpoints(self.store, self.config, table)
        self.server_ops = ServerOperations(self.store, self.ops, self.write_servers)
        self.compute = ComputeEndpoints(self.store, self.ops, self.config, self.server_ops)

    def _seed_types(self) -> None:
        if self.store.all(VolumeType):
            return
        self.store.put(*(VolumeType(new_id(), name, desc, True, specs) for name, desc, specs in SEED_TYPES))

    def _sync_servers(self, specs: list[ServerSpec]) -> None:
        known = {s.name: s for s in self.store.all(Server)}
        for spec in specs:
            device_dir = self.config.data_dir / "servers" / spec.name / "by-id"
            device_dir.mkdir(parents=True, exist_ok=True)
            old = known.get(spec.name)
            if old is not None:
                server = dataclasses.replace(old, availability_zone=spec.zone, device_dir=str(device_dir))
            else:
                server = Server(new_id(), spec.name, spec.zone, str(device_dir), now())
            self.store.put(server)

    def write_files(self) -> None:
        """DIR/clouds.yaml and DIR/servers.json."""
        users = {u.name: u for u in self.store.all(User)}
        cred = self.store.all(AppCredential)[0]
        common = {"region_name": self.config.region, "interface": "public", "identity_api_version": 3}

        def password_cloud(user: User) -> dict[str, Any]:
            auth = {
                "auth_url": self.config.identity_url,
                "username": user.name,
                "password": user.password,
                "project_id": self.config.project_id,
                "project_name": self.config.project_name,
                "user_domain_name": self.config.domain_name,
                "project_domain_name": self.config.domain_name,
            }
            return {"auth": auth, **common}

        clouds = {
            "clouds": {
                "xloud-emulator": password_cloud(users[MEMBER_USER]),
                "xloud-emulator-admin": password_cloud(users[ADMIN_USER]),
                "xloud-emulator-appcred": {
                    "auth_type": "v3applicationcredential",
                    "auth": {
                        "auth_url": self.config.identity_url,
                        "application_credential_id": cred.id,
                        "application_credential_secret": cred.secret,
                    },
                    **common,
                },
            }
        }
        _write_private(self.config.data_dir / "clouds.yaml", yaml.safe_dump(clouds, sort_keys=False))
        self.write_servers()

    def write_servers(self) -> None:
        """DIR/servers.json, again whenever servers are created or deleted."""
        servers = [
            {"id": s.id, "name": s.name, "availability_zone": s.availability_zone, "device_dir": s.device_dir}
            for s in self.store.all(Server)
        ]
        _write_private(self.config.data_dir / "servers.json", json.dumps(servers, indent=2) + "\n")

    # -- /_emulator -------------------------------------------------------------------------------

    async def set_faults(self, request: Request) -> Response:
        """POST /_emulator/faults."""
        try:
            self.faults.set_rules(json.loads(await request.body()))
        except (ValueError, RuleError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse({"rules": len(self.faults.rules)})

    async def clear_faults(self, request: Request) -> Response:
        """DELETE /_emulator/faults."""
        self.faults.clear()
        return Response(status_code=204)

    async def set_catalog(self, request: Request) -> Response:
        """POST /_emulator/catalog: `{"hide": ["compute"]}` leaves those types out of new tokens' catalogs."""
        hide = json.loads(await request.body() or b"{}").get("hide") or []
        self.identity.hidden_services = frozenset(str(service) for service in hide)
        return JSONResponse({"hidden": sorted(self.identity.hidden_services)})

    async def stats(self, request: Request) -> Response:
        """GET /_emulator/stats."""
        return JSONResponse(self.faults.stats())

    async def health(self, request: Request) -> Response:
        """GET /_emulator/health: who answers on this port (so a starter can tell it is its own child)."""
        body = {"pid": os.getpid(), "data_dir": str(self.config.data_dir), "operations": self.ops.running()}
        return JSONResponse(body)

    async def metadata(self, request: Request) -> Response:
        """GET /_emulator/metadata/{server_id}/openstack/latest/meta_data.json, as Nova's metadata service.

        The server may also be named by its name: a node plugin in a cluster knows its node's name
        (the server's, with --servers $(NODE_NAME)) but not the id the emulator gave it.
        """
        wanted = request.path_params["server_id"]
        server = self.store.get(Server, wanted) or next(
            (s for s in self.store.all(Server) if s.name == wanted), None
        )
        if server is None:
            return JSONResponse({"error": "unknown server"}, status_code=404)
        return JSONResponse(
            {
                "uuid": server.id,
                "name": server.name,
                "hostname": server.name,
                "availability_zone": server.availability_zone,
                "project_id": self.config.project_id,
                "launch_index": 0,
                "devices": [],
                "meta": {},
            }
        )

    def app(self) -> Starlette:
        """The ASGI application."""

        @contextlib.asynccontextmanager
        async def lifespan(_: Starlette) -> AsyncIterator[None]:
            await self.ops.resume()
            await self.server_ops.resume()
            self.group_ops.resume()
            try:
                yield
            finally:
                await self.ops.shutdown()
                self.store.close()

        routes = [
            *self.identity.routes(),
            *self.identity_admin.routes(),
            Route("/volume", self.storage.handle, methods=METHODS),
            Route("/volume/{rest:path}", self.storage.handle, methods=METHODS),
            Route("/compute", self.compute.handle, methods=METHODS),
            Route("/compute/{rest:path}", self.compute.handle, methods=METHODS),
            Route("/_emulator/faults", self.set_faults, methods=["POST"]),
            Route("/_emulator/faults", self.clear_faults, methods=["DELETE"]),
            Route("/_emulator/stats", self.stats, methods=["GET"]),
            Route("/_emulator/catalog", self.set_catalog, methods=["POST"]),
            Route("/_emulator/health", self.health, methods=["GET"]),
            Route(
                "/_emulator/metadata/{server_id}/openstack/latest/meta_data.json",
                self.metadata,
                methods=["GET"],
            ),
        ]
        app = Starlette(
            routes=routes,
            lifespan=lifespan,
            exception_handlers={
                ApiError: _api_error,
                Exception: _internal_error,
                404: _not_found,
                405: _not_found,
            },
        )
        app.add_middleware(FaultMiddleware, faults=self.faults)
        app.add_middleware(RequestIdMiddleware, identity_url=self.config.identity_url)
        return app


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return exc.response()


async def _internal_error(request: Request, exc: Exception) -> Response:
    log.exception("internal error on %s %s", request.method, request.url.path, exc_info=exc)
    body = {
        "computeFault": {
            "code": 500,
            "message": "The server has either erred or is incapable of performing the requested operation.",
        }
    }
    return JSONResponse(body, status_code=500)


async def _not_found(request: Request, exc: Exception) -> Response:
    return JSONResponse(
        {"itemNotFound": {"code": 404, "message": "The resource could not be found."}}, status_code=404
    )


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)
