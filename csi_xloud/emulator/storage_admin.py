"""Storage API: qos-specs, quotas, limits and availability zones."""

from __future__ import annotations

import dataclasses
from typing import Any

from starlette.responses import Response

from csi_xloud.emulator.context import json_body, require_object
from csi_xloud.emulator.errors import bad_request, conflict, forbidden, invalid_input, not_found
from csi_xloud.emulator.models import (
    QosSpec,
    VolumeType,
    new_id,
)
from csi_xloud.emulator.routing import Call, RouteTable
from csi_xloud.emulator.storage_core import StorageCore

MESSAGE_FILTERS = ("resource_uuid", "resource_type", "event_id", "request_id", "message_level")

ID = r"[^/]+"
QOS_CONSUMERS = ("back-end", "front-end", "both")
# Cinder prints the field object itself in this message.
BAD_CONSUMER = (
    "Invalid qos specs: Valid consumer of QoS specs are: QoSConsumerValues(default=<class"
    " 'oslo_versionedobjects.fields.UnspecifiedDefault'>,nullable=False,"
    "valid_values=('back-end', 'front-end', 'both'))"
)


class AdminRoutes:
    """qos-specs, quotas, limits and availability zones."""

    def __init__(self, core: StorageCore) -> None:
        self._core = core
        self._store = core.store

    def register(self, table: RouteTable) -> None:
        """Add this group's routes."""
        table.add("GET", "qos-specs", self.list_qos)
        table.add("POST", "qos-specs", self.create_qos)
        table.add("GET", f"qos-specs/(?P<id>{ID})", self.show_qos)
        table.add("PUT", f"qos-specs/(?P<id>{ID})", self.update_qos)
        table.add("DELETE", f"qos-specs/(?P<id>{ID})", self.delete_qos)
        table.add("GET", f"qos-specs/(?P<id>{ID})/associations", self.qos_associations)
        table.add("GET", f"qos-specs/(?P<id>{ID})/associate", self.qos_associate)
        table.add("GET", f"qos-specs/(?P<id>{ID})/disassociate", self.qos_disassociate)
        table.add("GET", f"qos-specs/(?P<id>{ID})/disassociate_all", self.qos_disassociate_all)
        table.add("PUT", f"qos-specs/(?P<id>{ID})/delete_keys", self.qos_delete_keys)
        table.add("GET", f"os-quota-sets/(?P<id>{ID})", self.show_quota)
        table.add("GET", f"os-quota-sets/(?P<id>{ID})/defaults", self.quota_defaults)
        table.add("PUT", f"os-quota-sets/(?P<id>{ID})", self.update_quota)
        table.add("DELETE", f"os-quota-sets/(?P<id>{ID})", self.reset_quota)
        table.add("GET", f"os-quota-class-sets/(?P<id>{ID})", self.show_quota_class)
        table.add("PUT", f"os-quota-class-sets/(?P<id>{ID})", self.update_quota_class)
        table.add("GET", "limits", self.limits)
        table.add("GET", "os-availability-zone", self.zones)

    # -- qos --------------------------------------------------------------------------------------

    def _qos(self, call: Call, what: str) -> QosSpec | None:
        self._core.require_admin(call, f"volume_extension:qos_specs_manage:{what}")
        if "id" not in call.params:
            return None
        spec = self._store.get(QosSpec, call.params["id"])
        if spec is None:
            raise not_found(f"No such QoS spec {call.params['id']}.")
        return spec

    def _qos_view(self, spec: QosSpec) -> dict[str, Any]:
        return {"id": spec.id, "name": spec.name, "consumer": spec.consumer, "specs": dict(spec.specs)}

    def _qos_links(self, call: Call, spec: QosSpec) -> list[dict[str, str]]:
        return self._core.views.links(call.project_id, "qos-specs", spec.id)

    async def list_qos(self, call: Call) -> Response:
        """GET /qos-specs (admin)."""
        self._qos(call, "get_all")
        return self._core.ok({"qos_specs": [self._qos_view(s) for s in self._store.all(QosSpec)]})

    async def show_qos(self, call: Call) -> Response:
        """GET /qos-specs/{id} (admin)."""
        spec = self._qos(call, "get")
        assert spec is not None
        return self._core.ok({"qos_specs": self._qos_view(spec), "links": self._qos_links(call, spec)})

    async def create_qos(self, call: Call) -> Response:
        """POST /qos-specs (admin)."""
        self._qos(call, "create")
        req = dict(require_object(await json_body(call.request), "qos_specs"))
        name = req.pop("name", None)
        if not isinstance(name, str) or not name.strip():
            raise bad_request("Please specify a name for QoS specs.")
        consumer = req.pop("consumer", "back-end")
        if consumer not in QOS_CONSUMERS:
            raise bad_request(BAD_CONSUMER)
        if any(s.name == name for s in self._store.all(QosSpec)):
            raise conflict(f"QoS Specs {name} already exists.")
        spec = QosSpec(new_id(), name, consumer, {str(k): str(v) for k, v in req.items()})
        self._store.put(spec)
        return self._core.ok({"qos_specs": self._qos_view(spec), "links": self._qos_links(call, spec)})

    async def update_qos(self, call: Call) -> Response:
        """PUT /qos-specs/{id} (admin)."""
        spec = self._qos(call, "update")
        assert spec is not None
        req = require_object(await json_body(call.request), "qos_specs")
        changes = {str(k): str(v) for k, v in req.items()}
        consumer = changes.pop("consumer", spec.consumer)
        if consumer not in QOS_CONSUMERS:
            raise bad_request(BAD_CONSUMER)
        self._store.put(dataclasses.replace(spec, consumer=consumer, specs={**spec.specs, **changes}))
        return self._core.ok({"qos_specs": dict(req)})

    async def delete_qos(self, call: Call) -> Response:
        """DELETE /qos-specs/{id} (admin)."""
        spec = self._qos(call, "delete")
        assert spec is not None
        users = [t for t in self._store.all(VolumeType) if t.qos_specs_id == spec.id]
        if users and call.query.get("force", "").lower() not in ("true", "1"):
            raise bad_request(f"QoS Specs {spec.id} is still associated with entities.")
        self._store.write(put=[dataclasses.replace(t, qos_specs_id=None) for t in users], delete=[spec])
        return self._core.accepted()

    async def qos_associations(self, call: Call) -> Response:
        """GET /qos-specs/{id}/associations (admin)."""
        spec = self._qos(call, "get")
        assert spec is not None
        types = [t for t in self._store.all(VolumeType) if t.qos_specs_id == spec.id]
        return self._core.ok(
            {
                "qos_associations": [
                    {"association_type": "volume_type", "name": t.name, "id": t.id} for t in types
                ]
            }
        )

    async def qos_associate(self, call: Call) -> Response:
        """GET /qos-specs/{id}/associate?vol_type_id= (admin)."""
        spec = self._qos(call, "update")
        assert spec is not None
        vtype = self._store.get(VolumeType, call.query.get("vol_type_id", ""))
        if vtype is None:
            raise not_found(f"Volume type {call.query.get('vol_type_id')} could not be found.")
        self._store.put(dataclasses.replace(vtype, qos_specs_id=spec.id))
        return self._core.accepted()

    async def qos_disassociate(self, call: Call) -> Response:
        """GET /qos-specs/{id}/disassociate?vol_type_id= (admin)."""
        spec = self._qos(call, "update")
        assert spec is not None
        vtype = self._store.get(VolumeType, call.query.get("vol_type_id", ""))
        if vtype is None:
            raise not_found(f"Volume type {call.query.get('vol_type_id')} could not be found.")
        self._store.put(dataclasses.replace(vtype, qos_specs_id=None))
        return self._core.accepted()

    async def qos_disassociate_all(self, call: Call) -> Response:
        """GET /qos-specs/{id}/disassociate_all (admin): from every type."""
        spec = self._qos(call, "update")
        assert spec is not None
        users = [t for t in self._store.all(VolumeType) if t.qos_specs_id == spec.id]
        self._store.put(*(dataclasses.replace(t, qos_specs_id=None) for t in users))
        return self._core.accepted()

    async def qos_delete_keys(self, call: Call) -> Response:
        """PUT /qos-specs/{id}/delete_keys (admin): {"keys": [...]}, every one must exist."""
        spec = self._qos(call, "update")
        assert spec is not None
        body = await json_body(call.request)
        keys = body.get("keys") if isinstance(body, dict) else None
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise invalid_input("keys", keys, f"{keys!r} is not of type 'array'")
        for key in keys:
            if key not in spec.specs:
                raise bad_request(f"QoS spec {spec.id} has no spec with key {key}.")
        remaining = {k: v for k, v in spec.specs.items() if k not in keys}
        self._store.put(dataclasses.replace(spec, specs=remaining))
        return self._core.accepted()

    # -- quotas and limits ------------------------------------------------------------------------

    def _quota_target(self, call: Call) -> str:
        target = call.params["id"]
        if target != call.project_id and not call.caller.is_admin:
            raise forbidden("Policy doesn't allow volume_extension:quotas:show to be performed.")
        return target

    async def show_quota(self, call: Call) -> Response:
        """GET /os-quota-sets/{project}[?usage=true]."""
        target = self._quota_target(call)
        usage = call.query.get("usage", "").lower() in ("true", "1")
        return self._core.ok({"quota_set": self._core.quotas.view(target, usage)})

    async def quota_defaults(self, call: Call) -> Response:
        """GET /os-quota-sets/{project}/defaults."""
        target = self._quota_target(call)
        return self._core.ok({"quota_set": {**self._core.quotas.defaults(), "id": target}})

    async def update_quota(self, call: Call) -> Response:
        """PUT /os-quota-sets/{project} (admin): raise or lower limits."""
        self._core.require_admin(call, "volume_extension:quotas:update")
        body = await json_body(call.request)
        raw = body.get("quota_set") if isinstance(body, dict) else None
        return self._core.ok({"quota_set": self._core.quotas.update(call.params["id"], raw)})

    async def reset_quota(self, call: Call) -> Response:
        """DELETE /os-quota-sets/{project} (admin): back to defaults."""
        self._core.require_admin(call, "volume_extension:quotas:delete")
        self._core.quotas.reset(call.params["id"])
        return Response(status_code=200)

    async def show_quota_class(self, call: Call) -> Response:
        """GET /os-quota-class-sets/{class} (admin)."""
        self._core.require_admin(call, "volume_extension:quota_classes")
        return self._core.ok({"quota_class_set": self._core.quotas.class_view(call.params["id"])})

    async def update_quota_class(self, call: Call) -> Response:
        """PUT /os-quota-class-sets/{class} (admin): the 'default' class changes every project's defaults."""
        self._core.require_admin(call, "volume_extension:quota_classes:update")
        body = await json_body(call.request)
        raw = body.get("quota_class_set") if isinstance(body, dict) else None
        limits = self._core.quotas.update_class(call.params["id"], raw)
        return self._core.ok({"quota_class_set": limits})

    async def limits(self, call: Call) -> Response:
        """GET /limits."""
        limits = self._core.quotas.limits(call.project_id)
        usage = self._core.quotas.usage(call.project_id)
        absolute = {
            "maxTotalVolumes": limits["volumes"],
            "maxTotalSnapshots": limits["snapshots"],
            "maxTotalVolumeGigabytes": limits["gigabytes"],
            "maxTotalBackups": limits["backups"],
            "maxTotalBackupGigabytes": limits["backup_gigabytes"],
            "totalVolumesUsed": usage["volumes"],
            "totalGigabytesUsed": usage["gigabytes"],
            "totalSnapshotsUsed": usage["snapshots"],
            "totalBackupsUsed": usage["backups"],
            "totalBackupGigabytesUsed": usage["backup_gigabytes"],
        }
        return self._core.ok({"limits": {"rate": [], "absolute": absolute}})

    # -- informational ----------------------------------------------------------------------------

    async def zones(self, call: Call) -> Response:
        """GET /os-availability-zone."""
        info = [{"zoneName": z, "zoneState": {"available": True}} for z in self._core.zones()]
        return self._core.ok({"availabilityZoneInfo": info})
