"""Cinder JSON views of volumes, snapshots, backups and types, by microversion and caller role."""

from __future__ import annotations

import uuid
from typing import Any

from csi_xloud.emulator.context import Caller, Microversion
from csi_xloud.emulator.models import Attachment, AttachStatus, Backup, Server, Snapshot, Volume, VolumeType
from csi_xloud.emulator.scheduler import pool_name

# The extra specs a non-admin sees (Cinder's USER_VISIBLE_EXTRA_SPECS); the others are filtered out.
USER_VISIBLE_SPECS = ("RESKEY:availability_zones", "multiattach", "replication_enabled")


class StorageViews:
    """Builds Cinder response bodies."""

    def __init__(self, base_url: str) -> None:
        self._base = base_url

    def links(self, project_id: str, collection: str, rec_id: str) -> list[dict[str, str]]:
        """self and bookmark links."""
        return [
            {"rel": "self", "href": f"{self._base}/volume/v3/{project_id}/{collection}/{rec_id}"},
            {"rel": "bookmark", "href": f"{self._base}/volume/{project_id}/{collection}/{rec_id}"},
        ]

    def collection_link(self, project_id: str, collection: str, query: str) -> list[dict[str, str]]:
        """The `next` link of a paged list."""
        return [{"rel": "next", "href": f"{self._base}/volume/v3/{project_id}/{collection}?{query}"}]

    def volume_summary(self, vol: Volume) -> dict[str, Any]:
        """GET /volumes entry."""
        return {"id": vol.id, "name": vol.name, "links": self.links(vol.project_id, "volumes", vol.id)}

    def volume(
        self,
        vol: Volume,
        mv: Microversion,
        caller: Caller,
        vtype: VolumeType | None,
        attachments: list[Attachment],
        servers: dict[str, Server],
        admin_attrs: bool = True,
    ) -> dict[str, Any]:
        """The volume body at a microversion."""
        view: dict[str, Any] = {
            "id": vol.id,
            "status": vol.status,
            "size": vol.size,
            "availability_zone": vol.availability_zone,
            "created_at": vol.created_at,
            "updated_at": vol.updated_at,
            "name": vol.name,
            "description": vol.description,
            "volume_type": vtype.name if vtype else None,
            "snapshot_id": vol.snapshot_id,
            "source_volid": vol.source_volid,
            "metadata": _volume_metadata(vol),
            "links": self.links(vol.project_id, "volumes", vol.id),
            "user_id": vol.user_id,
            "bootable": "true" if vol.bootable else "false",
            "encrypted": bool(vtype and vtype.encryption),
            "replication_status": None,
            "consistencygroup_id": None,
            "multiattach": vol.multiattach,
            "attachments": [
                self._volume_attachment(a, servers) for a in attachments if a.status == AttachStatus.ATTACHED
            ],
        }
        admin = caller.is_admin
        if admin:
            view["migration_status"] = vol.migration_status
        if mv.at_least("3.13"):
            view["group_id"] = vol.group_id
        if mv.at_least("3.21") and admin:
            view["provider_id"] = None
        if mv.at_least("3.48"):
            view["shared_targets"] = False
            view["service_uuid"] = _service_uuid(vol.backend) if vol.backend else None
        if mv.at_least("3.61") and admin:
            view["cluster_name"] = None
        if mv.at_least("3.63"):
            view["volume_type_id"] = vol.type_id
        if mv.at_least("3.65"):
            view["consumes_quota"] = True
        if admin_attrs:
            view["os-vol-tenant-attr:tenant_id"] = vol.project_id
        if admin and admin_attrs:
            view["os-vol-mig-status-attr:migstat"] = vol.migration_status
            view["os-vol-mig-status-attr:name_id"] = None
            view["os-vol-host-attr:host"] = pool_name(vol.backend) if vol.backend else None
        return view

    @staticmethod
    def _volume_attachment(att: Attachment, servers: dict[str, Server]) -> dict[str, Any]:
        server = servers.get(att.server_id or "")
        return {
            "id": att.volume_id,
            "attachment_id": att.id,
            "volume_id": att.volume_id,
            "server_id": att.server_id,
            "host_name": att.host_name or (server.name if server else None),
            "device": att.device,
            "attached_at": att.attached_at,
        }

    def snapshot(
        self, snap: Snapshot, mv: Microversion, caller: Caller, extended: bool = True, versioned: bool = True
    ) -> dict[str, Any]:
        """The snapshot body; list entries carry neither versioned nor extended fields."""
        view: dict[str, Any] = {
            "id": snap.id,
            "created_at": snap.created_at,
            "updated_at": snap.updated_at,
            "name": snap.name,
            "description": snap.description,
            "volume_id": snap.volume_id,
            "status": snap.status,
            "size": snap.size,
            "metadata": dict(snap.metadata),
        }
        if versioned and mv.at_least("3.14"):
            view["group_snapshot_id"] = snap.group_snapshot_id
        if versioned and mv.at_least("3.41"):
            view["user_id"] = snap.user_id
        if versioned and mv.at_least("3.65"):
            view["consumes_quota"] = True
        if extended:
            view["os-extended-snapshot-attributes:project_id"] = snap.project_id
            view["os-extended-snapshot-attributes:progress"] = snap.progress
        return view

    def backup_summary(self, backup: Backup) -> dict[str, Any]:
        """GET /backups entry and the create answer."""
        return {
            "id": backup.id,
            "name": backup.name,
            "links": self.links(backup.project_id, "backups", backup.id),
        }

    def backup(
        self, backup: Backup, mv: Microversion, caller: Caller, has_dependents: bool
    ) -> dict[str, Any]:
        """The backup body."""
        view: dict[str, Any] = {
            "id": backup.id,
            "status": backup.status,
            "size": backup.size,
            "object_count": backup.object_count,
            "availability_zone": backup.availability_zone,
            "container": backup.container,
            "created_at": backup.created_at,
            "updated_at": backup.updated_at,
            "name": backup.name,
            "description": backup.description,
            "fail_reason": backup.fail_reason,
            "volume_id": backup.volume_id,
            "links": self.links(backup.project_id, "backups", backup.id),
            "is_incremental": backup.is_incremental,
            "has_dependent_backups": has_dependents,
            "snapshot_id": backup.snapshot_id,
            "data_timestamp": backup.data_timestamp,
        }
        if mv.at_least("3.43"):
            view["metadata"] = dict(backup.metadata)
        if mv.at_least("3.18") and caller.is_admin:
            view["os-backup-project-attr:project_id"] = backup.project_id
        if mv.at_least("3.56") and caller.is_admin:
            view["user_id"] = backup.user_id
        return view

    @staticmethod
    def volume_type(
        vtype: VolumeType, mv: Microversion, caller: Caller, access: bool = True
    ) -> dict[str, Any]:
        """The volume type body; backend names are admin-only."""
        specs = dict(vtype.extra_specs)
        if not caller.is_admin:
            specs = {k: v for k, v in specs.items() if k in USER_VISIBLE_SPECS}
        view: dict[str, Any] = {
            "id": vtype.id,
            "name": vtype.name,
            "is_public": vtype.is_public,
            "description": vtype.description,
            "extra_specs": specs,
        }
        if caller.is_admin:
            view["qos_specs_id"] = vtype.qos_specs_id
        if access:
            view["os-volume-type-access:is_public"] = vtype.is_public
        return view


def _volume_metadata(vol: Volume) -> dict[str, str]:
    """The volume's metadata, with the readonly flag (admin metadata) once it was set."""
    metadata = dict(vol.metadata)
    if vol.readonly is not None:
        metadata["readonly"] = str(vol.readonly)
    return metadata


def _service_uuid(backend: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"xloud-volume-service/{backend}"))
