"""Storage API, admin only: services, pools, hosts; and the extension list."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from csi_xloud.emulator.context import json_body
from csi_xloud.emulator.errors import bad_request, not_found
from csi_xloud.emulator.models import Snapshot, Volume, now
from csi_xloud.emulator.routing import Call, RouteTable
from csi_xloud.emulator.scheduler import BACKENDS, HOST, capabilities, pool_name
from csi_xloud.emulator.storage_core import StorageCore

# (alias, name, description) of the API extensions Cinder lists at GET /extensions.
EXTENSIONS = (
    ("os-admin-actions", "AdminActions", "Enable admin actions."),
    ("os-availability-zone", "AvailabilityZones", "Describe Availability Zones."),
    ("backups", "Backups", "Backups support."),
    ("os-extended-snapshot-attributes", "ExtendedSnapshotAttributes", "Extended SnapshotAttributes support."),
    ("os-hosts", "Hosts", "Admin-only host administration."),
    ("os-vol-host-attr", "VolumeHostAttribute", "Expose host as an attribute of a volume."),
    (
        "os-vol-mig-status-attr",
        "VolumeMigStatusAttribute",
        "Expose migration_status as an attribute of a volume.",
    ),
    (
        "os-vol-tenant-attr",
        "VolumeTenantAttribute",
        "Expose the internal project_id as an attribute of a volume.",
    ),
    ("os-quota-sets", "Quotas", "Quota management support."),
    ("os-quota-class-sets", "QuotaClasses", "Quota classes management support."),
    ("qos-specs", "Qos_specs_manage", "QoS specs support."),
    ("scheduler-stats", "Scheduler_stats", "Scheduler stats support."),
    ("os-services", "Services", "Services support."),
    ("os-types-extra-specs", "TypesExtraSpecs", "Type extra specs support."),
    ("os-types-manage", "TypesManage", "Types manage support."),
    ("os-volume-actions", "VolumeActions", "Enable volume actions."),
    ("os-volume-transfer", "VolumeTransfer", "Volume transfer management support."),
    ("os-volume-type-access", "VolumeTypeAccess", "Volume type access support."),
    ("os-used-limits", "UsedLimits", "Provide data on limited resources that are being used."),
)


class InfoRoutes:
    """os-services, scheduler-stats/get_pools, os-hosts and extensions."""

    def __init__(self, core: StorageCore) -> None:
        self._core = core
        self._store = core.store

    def register(self, table: RouteTable) -> None:
        """Add this group's routes."""
        table.add("GET", "os-services", self.services)
        table.add("GET", "scheduler-stats/get_pools", self.pools)
        table.add("GET", "os-hosts", self.hosts)
        table.add("GET", "os-hosts/(?P<host>[^/]+)", self.host)
        table.add("GET", "extensions", self.extensions)
        table.add("PUT", "os-services/(?P<action>[a-z-]+)", self.service_action)
        table.add("GET", "capabilities/(?P<host>[^/]+)", self.backend_capabilities)

    def _services(self, call: Call) -> list[dict[str, Any]]:
        zone = self._core.zones()[0]
        updated = now()
        rows: list[dict[str, Any]] = [
            {"binary": "cinder-scheduler", "host": HOST},
            {"binary": "cinder-backup", "host": HOST},
        ]
        rows += [
            {
                "binary": "cinder-volume",
                "host": f"{HOST}@{b}",
                "replication_status": "disabled",
                "active_backend_id": None,
                "frozen": False,
            }
            for b in BACKENDS
        ]
        services = []
        states = self._states()
        for row in rows:
            state = states.get(f"{row['binary']}@{row['host']}", {})
            service = {
                "binary": row["binary"],
                "host": row["host"],
                "zone": zone,
                "status": "disabled" if state.get("disabled") else "enabled",
                "state": "up",
                "updated_at": updated,
                "disabled_reason": state.get("reason"),
                **{k: v for k, v in row.items() if k not in ("binary", "host")},
            }
            if row["binary"] == "cinder-volume":
                service["frozen"] = bool(state.get("frozen", False))
            if call.mv.at_least("3.7"):
                service["cluster"] = None
            if call.mv.at_least("3.49") and row["binary"] == "cinder-volume":
                service["backend_state"] = "up"
            services.append(service)
        return services

    async def services(self, call: Call) -> Response:
        """GET /os-services[?binary=&host=] (admin)."""
        self._core.require_admin(call, "volume_extension:services:index")
        services = self._services(call)
        if "binary" in call.query:
            services = [s for s in services if s["binary"] == call.query["binary"]]
        if "host" in call.query:  # as Cinder's database filter: the host, or any backend or pool on it
            host = call.query["host"]
            services = [
                s for s in services if s["host"] == host or s["host"].startswith((f"{host}@", f"{host}#"))
            ]
        return self._core.ok({"services": services})

    def _states(self) -> dict[str, dict[str, Any]]:
        """Services an admin disabled or froze, by binary@host (kept in the store's meta table)."""
        states = self._store.meta("service_states")
        return states if isinstance(states, dict) else {}

    async def service_action(self, call: Call) -> Response:
        """PUT /os-services/{enable,disable,disable-log-reason,freeze,thaw} (admin)."""
        self._core.require_admin(call, "volume_extension:services:update")
        action = call.params["action"]
        if action not in ("enable", "disable", "disable-log-reason", "freeze", "thaw"):
            raise not_found("Unknown action")
        body = await json_body(call.request)
        req = body if isinstance(body, dict) else {}
        host, binary = req.get("host"), req.get("binary", "cinder-volume")
        if action in ("freeze", "thaw"):
            return self._freeze(call, str(host), action == "freeze")
        known = {(s["host"], s["binary"]) for s in self._services(call)}
        if (host, binary) not in known:
            raise not_found(f"Could not find binary {binary} on host {host}.")
        reason = req.get("disabled_reason")
        if action == "disable-log-reason" and (not isinstance(reason, str) or not 0 < len(reason) <= 255):
            raise bad_request("Disabled reason contains invalid characters or is too long")
        states = self._states()
        key = f"{binary}@{host}"
        state = dict(states.get(key, {}))
        state["disabled"] = action != "enable"
        state["reason"] = reason if action == "disable-log-reason" else None
        self._store.set_meta("service_states", {**states, key: state})
        answer = {"host": host, "service": binary, "binary": binary}
        answer.update(status="enabled" if action == "enable" else "disabled", disabled=action != "enable")
        if action == "disable-log-reason":
            answer["disabled_reason"] = reason
        return self._core.ok(answer)

    def _freeze(self, call: Call, host: str, frozen: bool) -> Response:
        volume_hosts = [s["host"] for s in self._services(call) if s["binary"] == "cinder-volume"]
        if host not in volume_hosts:
            raise bad_request(f"Invalid input received: Host {host} could not be found.")
        states = self._states()
        key = f"cinder-volume@{host}"
        self._store.set_meta("service_states", {**states, key: {**states.get(key, {}), "frozen": frozen}})
        return self._core.ok({})

    async def backend_capabilities(self, call: Call) -> Response:
        """GET /capabilities/{host} (admin): what a backend reports, with the properties it can set."""
        self._core.require_admin(call, "volume_extension:capabilities")
        host = call.params["host"]
        backend = next((b for b in BACKENDS if host in (f"{HOST}@{b}", pool_name(b))), None)
        if backend is None:
            raise not_found(f"Backend {host} could not be found.")
        caps = capabilities(backend)
        thin = {"title": "Thin Provisioning", "description": "Sets thin provisioning.", "type": "boolean"}
        body = {
            "namespace": f"OS::Storage::Capabilities::{HOST}@{backend}",
            "vendor_name": caps["vendor_name"],
            "volume_backend_name": backend,
            "pool_name": backend,
            "driver_version": caps["driver_version"],
            "storage_protocol": caps["storage_protocol"],
            "display_name": None,
            "description": None,
            "visibility": None,
            "replication_targets": [],
            "properties": {"thin_provisioning": thin},
        }
        return self._core.ok(body)

    def _allocated(self, backend: str) -> int:
        return sum(v.size for v in self._store.all(Volume) if v.backend == backend)

    async def pools(self, call: Call) -> Response:
        """GET /scheduler-stats/get_pools[?detail=true] (admin): names only, or with capabilities."""
        self._core.require_admin(call, "scheduler_extension:scheduler_stats:get_pools")
        detail = call.query.get("detail", "").lower() in ("true", "1", "yes", "on")
        pools: list[dict[str, Any]] = []
        for backend in BACKENDS:
            pool: dict[str, Any] = {"name": pool_name(backend)}
            if detail:
                pool["capabilities"] = {**capabilities(backend, self._allocated(backend)), "timestamp": now()}
            pools.append(pool)
        if "name" in call.query:
            pools = [p for p in pools if p["name"] == call.query["name"]]
        return self._core.ok({"pools": pools})

    async def hosts(self, call: Call) -> Response:
        """GET /os-hosts (admin): the services' hosts."""
        self._core.require_admin(call, "volume_extension:hosts")
        hosts = [
            {
                "service-status": "available",
                "service": s["binary"],
                "zone": s["zone"],
                "service-state": "enabled",
                "host_name": s["host"],
                "last-update": s["updated_at"],
            }
            for s in self._services(call)
        ]
        return self._core.ok({"hosts": hosts})

    async def host(self, call: Call) -> Response:
        """GET /os-hosts/{host} (admin): volume and snapshot totals, overall and per project."""
        self._core.require_admin(call, "volume_extension:hosts")
        host = call.params["host"]
        backend = next((b for b in BACKENDS if host in (f"{HOST}@{b}", pool_name(b))), None)
        if backend is None:
            raise not_found(f"Host {host} could not be found.")
        vols = [v for v in self._store.all(Volume) if v.backend == backend]
        snaps = [s for s in self._store.all(Snapshot) if s.backend == backend]
        rows = [_host_usage(host, "(total)", vols, snaps)]
        for project in sorted({v.project_id for v in vols}):
            mine = [v for v in vols if v.project_id == project]
            rows.append(_host_usage(host, project, mine, [s for s in snaps if s.project_id == project]))
        return self._core.ok({"host": rows})

    async def extensions(self, call: Call) -> Response:
        """GET /extensions."""
        items = [
            {
                "alias": alias,
                "name": name,
                "description": description,
                "namespace": f"https://docs.openstack.org/volume/ext/{alias}/api/v1",
                "updated": "2023-01-01T00:00:00+00:00",
                "links": [],
            }
            for alias, name, description in EXTENSIONS
        ]
        return self._core.ok({"extensions": items})


def _host_usage(host: str, project: str, vols: list[Volume], snaps: list[Snapshot]) -> dict[str, Any]:
    resource = {
        "volume_count": str(len(vols)),
        "total_volume_gb": str(sum(v.size for v in vols)),
        "total_snapshot_gb": str(sum(s.size for s in snaps)),
        "project": project,
        "host": host,
        "snapshot_count": str(len(snaps)),
    }
    return {"resource": resource}
