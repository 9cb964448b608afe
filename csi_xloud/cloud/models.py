"""What the cloud client returns: frozen dataclasses built from the APIs' JSON in one place each."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Generic, TypeVar

T = TypeVar("T")
S = TypeVar("S", bound=StrEnum)

Json = Mapping[str, Any]


class VolumeStatus(StrEnum):
    CREATING = "creating"
    AVAILABLE = "available"
    RESERVED = "reserved"
    ATTACHING = "attaching"
    DETACHING = "detaching"
    IN_USE = "in-use"
    MAINTENANCE = "maintenance"
    DELETING = "deleting"
    AWAITING_TRANSFER = "awaiting-transfer"
    ERROR = "error"
    ERROR_DELETING = "error_deleting"
    BACKING_UP = "backing-up"
    RESTORING_BACKUP = "restoring-backup"
    ERROR_BACKING_UP = "error_backing-up"
    ERROR_RESTORING = "error_restoring"
    ERROR_EXTENDING = "error_extending"
    ERROR_MANAGING = "error_managing"
    DOWNLOADING = "downloading"
    UPLOADING = "uploading"
    RETYPING = "retyping"
    EXTENDING = "extending"
    UNKNOWN = "unknown"

    @property
    def is_error(self) -> bool:
        return self.value.startswith("error")


class SnapshotStatus(StrEnum):
    CREATING = "creating"
    AVAILABLE = "available"
    BACKING_UP = "backing-up"
    DELETING = "deleting"
    ERROR = "error"
    ERROR_DELETING = "error_deleting"
    RESTORING = "restoring"
    UNMANAGING = "unmanaging"
    UNKNOWN = "unknown"

    @property
    def is_error(self) -> bool:
        return self.value.startswith("error")


class BackupStatus(StrEnum):
    CREATING = "creating"
    AVAILABLE = "available"
    DELETING = "deleting"
    ERROR = "error"
    ERROR_DELETING = "error_deleting"
    RESTORING = "restoring"
    UNKNOWN = "unknown"

    @property
    def is_error(self) -> bool:
        return self.value.startswith("error")


def enum_value(kind: type[S], raw: object) -> S:
    """The member for a status string; a status this client does not know becomes UNKNOWN."""
    try:
        return kind(str(raw))
    except ValueError:
        return kind("unknown")


def parse_time(raw: object) -> datetime | None:
    """Parse the APIs' ISO times (with or without zone; naive ones are UTC)."""
    if not isinstance(raw, str) or not raw:
        return None
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _str_map(raw: object) -> dict[str, str]:
    return {str(k): str(v) for k, v in raw.items()} if isinstance(raw, Mapping) else {}


def _opt_str(raw: object) -> str | None:
    return None if raw is None or raw == "" else str(raw)


def _int(raw: object, default: int = 0) -> int:
    try:
        return int(raw)  # type: ignore[call-overload, no-any-return]
    except (TypeError, ValueError):
        return default


def _bool(raw: object) -> bool:
    if isinstance(raw, str):
        return raw.strip().lower() in ("true", "1", "yes", "on")
    return bool(raw)


@dataclass(frozen=True, slots=True)
class VolumeAttachment:
    """One entry of a Storage volume's `attachments`: where the volume is attached."""

    server_id: str
    attachment_id: str | None
    device: str | None
    host_name: str | None = None
    attached_at: datetime | None = None

    @classmethod
    def from_api(cls, body: Json) -> VolumeAttachment:
        return cls(
            server_id=str(body.get("server_id") or ""),
            attachment_id=_opt_str(body.get("attachment_id")),
            device=_opt_str(body.get("device")),
            host_name=_opt_str(body.get("host_name")),
            attached_at=parse_time(body.get("attached_at")),
        )


@dataclass(frozen=True, slots=True)
class Volume:
    """A Storage volume as the controller needs it."""

    id: str
    name: str
    size_gib: int
    status: VolumeStatus
    volume_type: str | None = None
    volume_type_id: str | None = None
    availability_zone: str | None = None
    multiattach: bool = False
    bootable: bool = False
    encrypted: bool = False
    metadata: Mapping[str, str] = field(default_factory=dict)
    attachments: tuple[VolumeAttachment, ...] = ()
    snapshot_id: str | None = None
    source_volume_id: str | None = None
    migration_status: str | None = None
    description: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    raw_status: str = ""
    # The volume group it is in (shown from microversion 3.13).
    group_id: str | None = None

    @classmethod
    def from_api(cls, body: Json) -> Volume:
        raw_status = str(body.get("status") or "")
        return cls(
            id=str(body["id"]),
            name=str(body.get("name") or ""),
            size_gib=_int(body.get("size")),
            status=enum_value(VolumeStatus, raw_status),
            volume_type=_opt_str(body.get("volume_type")),
            volume_type_id=_opt_str(body.get("volume_type_id")),
            availability_zone=_opt_str(body.get("availability_zone")),
            multiattach=_bool(body.get("multiattach")),
            bootable=_bool(body.get("bootable")),
            encrypted=_bool(body.get("encrypted")),
            metadata=_str_map(body.get("metadata")),
            attachments=tuple(VolumeAttachment.from_api(a) for a in body.get("attachments") or ()),
            snapshot_id=_opt_str(body.get("snapshot_id")),
            source_volume_id=_opt_str(body.get("source_volid")),
            migration_status=_opt_str(body.get("migration_status")),
            description=_opt_str(body.get("description")),
            created_at=parse_time(body.get("created_at")),
            updated_at=parse_time(body.get("updated_at")),
            raw_status=raw_status,
            group_id=_opt_str(body.get("group_id")),
        )

    @property
    def attached_server_ids(self) -> tuple[str, ...]:
        return tuple(a.server_id for a in self.attachments if a.server_id)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A Storage snapshot of a volume."""

    id: str
    name: str
    volume_id: str
    size_gib: int
    status: SnapshotStatus
    metadata: Mapping[str, str] = field(default_factory=dict)
    description: str | None = None
    progress: str | None = None
    created_at: datetime | None = None
    raw_status: str = ""
    # The group snapshot this snapshot belongs to (shown from microversion 3.14); it cannot be deleted alone.
    group_snapshot_id: str | None = None

    @classmethod
    def from_api(cls, body: Json) -> Snapshot:
        raw_status = str(body.get("status") or "")
        return cls(
            id=str(body["id"]),
            name=str(body.get("name") or ""),
            volume_id=str(body.get("volume_id") or ""),
            size_gib=_int(body.get("size")),
            status=enum_value(SnapshotStatus, raw_status),
            metadata=_str_map(body.get("metadata")),
            description=_opt_str(body.get("description")),
            progress=_opt_str(body.get("os-extended-snapshot-attributes:progress")),
            created_at=parse_time(body.get("created_at")),
            raw_status=raw_status,
            group_snapshot_id=_opt_str(body.get("group_snapshot_id")),
        )


@dataclass(frozen=True, slots=True)
class Backup:
    """A Storage backup of a volume (full or incremental)."""

    id: str
    name: str
    volume_id: str
    size_gib: int
    status: BackupStatus
    is_incremental: bool = False
    has_dependent_backups: bool = False
    snapshot_id: str | None = None
    availability_zone: str | None = None
    container: str | None = None
    fail_reason: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    description: str | None = None
    created_at: datetime | None = None
    data_timestamp: datetime | None = None
    raw_status: str = ""

    @classmethod
    def from_api(cls, body: Json) -> Backup:
        raw_status = str(body.get("status") or "")
        return cls(
            id=str(body["id"]),
            name=str(body.get("name") or ""),
            volume_id=str(body.get("volume_id") or ""),
            size_gib=_int(body.get("size")),
            status=enum_value(BackupStatus, raw_status),
            is_incremental=_bool(body.get("is_incremental")),
            has_dependent_backups=_bool(body.get("has_dependent_backups")),
            snapshot_id=_opt_str(body.get("snapshot_id")),
            availability_zone=_opt_str(body.get("availability_zone")),
            container=_opt_str(body.get("container")),
            fail_reason=_opt_str(body.get("fail_reason")),
            metadata=_str_map(body.get("metadata")),
            description=_opt_str(body.get("description")),
            created_at=parse_time(body.get("created_at")),
            data_timestamp=parse_time(body.get("data_timestamp")),
            raw_status=raw_status,
        )


@dataclass(frozen=True, slots=True)
class BackupRestore:
    """The answer to a restore request: which volume receives the backup's data."""

    backup_id: str
    volume_id: str
    volume_name: str | None = None

    @classmethod
    def from_api(cls, body: Json) -> BackupRestore:
        return cls(
            backup_id=str(body.get("backup_id") or ""),
            volume_id=str(body.get("volume_id") or ""),
            volume_name=_opt_str(body.get("volume_name")),
        )


@dataclass(frozen=True, slots=True)
class VolumeType:
    """A volume type with its extra specs (backend, multiattach ...)."""

    id: str
    name: str
    extra_specs: Mapping[str, str] = field(default_factory=dict)
    is_public: bool = True
    description: str | None = None
    qos_specs_id: str | None = None

    @classmethod
    def from_api(cls, body: Json) -> VolumeType:
        return cls(
            id=str(body["id"]),
            name=str(body.get("name") or ""),
            extra_specs=_str_map(body.get("extra_specs")),
            is_public=_bool(body.get("is_public", True)),
            description=_opt_str(body.get("description")),
            qos_specs_id=_opt_str(body.get("qos_specs_id")),
        )

    @property
    def multiattach(self) -> bool:
        """Whether volumes of this type may attach to several servers (`multiattach="<is> True"`)."""
        value = self.extra_specs.get("multiattach", "")
        return value.replace("<is>", "").strip().lower() == "true"


@dataclass(frozen=True, slots=True)
class AvailabilityZone:
    """A Storage API availability zone and whether it takes new volumes."""

    name: str
    available: bool

    @classmethod
    def from_api(cls, body: Json) -> AvailabilityZone:
        state = body.get("zoneState")
        available = isinstance(state, Mapping) and _bool(state.get("available", False))
        return cls(name=str(body.get("zoneName") or ""), available=available)


@dataclass(frozen=True, slots=True)
class QosSpec:
    """A QoS spec (admin-only in most clouds)."""

    id: str
    name: str
    consumer: str
    specs: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_api(cls, body: Json) -> QosSpec:
        return cls(
            id=str(body["id"]),
            name=str(body.get("name") or ""),
            consumer=str(body.get("consumer") or ""),
            specs=_str_map(body.get("specs")),
        )


@dataclass(frozen=True, slots=True)
class QuotaItem:
    """Limit and usage of one quota resource; a limit of -1 means unlimited."""

    limit: int
    in_use: int = 0
    reserved: int = 0

    @property
    def unlimited(self) -> bool:
        return self.limit < 0

    @property
    def free(self) -> int | None:
        """What is left (never negative), or None when unlimited."""
        return None if self.unlimited else max(0, self.limit - self.in_use - self.reserved)


@dataclass(frozen=True, slots=True)
class QuotaUsage:
    """A project's quota set with usage, keyed by resource (`gigabytes`, `gigabytes_<type>`, ...)."""

    project_id: str
    items: Mapping[str, QuotaItem] = field(default_factory=dict)

    @classmethod
    def from_api(cls, body: Json) -> QuotaUsage:
        items: dict[str, QuotaItem] = {}
        for key, value in body.items():
            if isinstance(value, Mapping):
                items[key] = QuotaItem(_int(value.get("limit"), -1), _int(value.get("in_use")),
                                       _int(value.get("reserved")))
            elif key != "id":
                items[key] = QuotaItem(_int(value, -1))
        return cls(project_id=str(body.get("id") or ""), items=items)

    def get(self, resource: str) -> QuotaItem | None:
        return self.items.get(resource)

    @property
    def gigabytes(self) -> QuotaItem | None:
        return self.items.get("gigabytes")

    @property
    def max_volume_size_gib(self) -> int | None:
        """The largest volume the project may create (`per_volume_gigabytes`), None when unlimited."""
        item = self.items.get("per_volume_gigabytes")
        return None if item is None or item.unlimited else item.limit

    def gigabytes_for_type(self, type_name: str) -> QuotaItem | None:
        """The per-type gigabytes quota (`gigabytes_<type name>`), when the cloud has one."""
        return self.items.get(f"gigabytes_{type_name}")


@dataclass(frozen=True, slots=True)
class Limits:
    """Absolute limits of the project (`GET /limits`); None where the cloud does not say."""

    max_total_volume_gigabytes: int | None = None
    max_total_volumes: int | None = None
    max_total_snapshots: int | None = None
    max_total_backups: int | None = None
    max_total_backup_gigabytes: int | None = None
    total_gigabytes_used: int | None = None
    total_volumes_used: int | None = None
    max_volume_size_gib: int | None = None
    absolute: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def from_api(cls, body: Json) -> Limits:
        raw = body.get("absolute") or {}
        absolute = {str(k): _int(v, -1) for k, v in raw.items()} if isinstance(raw, Mapping) else {}

        def pick(key: str) -> int | None:
            value = absolute.get(key)
            return None if value is None or value < 0 else value

        return cls(
            max_total_volume_gigabytes=pick("maxTotalVolumeGigabytes"),
            max_total_volumes=pick("maxTotalVolumes"),
            max_total_snapshots=pick("maxTotalSnapshots"),
            max_total_backups=pick("maxTotalBackups"),
            max_total_backup_gigabytes=pick("maxTotalBackupGigabytes"),
            total_gigabytes_used=pick("totalGigabytesUsed"),
            total_volumes_used=pick("totalVolumesUsed"),
            # Upstream Cinder has no such limit (see QuotaUsage.max_volume_size_gib); some clouds add one.
            max_volume_size_gib=pick("maxVolumeSize") or pick("maxVolumeGigabytes"),
            absolute=absolute,
        )


@dataclass(frozen=True, slots=True)
class Attachment:
    """A Compute volume attachment (`volumeAttachment`): a volume on a server."""

    id: str
    server_id: str
    volume_id: str
    device: str | None = None
    attachment_id: str | None = None
    tag: str | None = None
    delete_on_termination: bool = False
    # The Compute request that started it: the id of its instance action (set by attach_volume).
    request_id: str | None = None

    @classmethod
    def from_api(cls, body: Json) -> Attachment:
        volume_id = str(body.get("volumeId") or "")
        return cls(
            # Before 2.89 `id` is the volume id; from 2.89 there is no `id`, only the Storage attachment_id.
            id=str(body.get("id") or volume_id),
            server_id=str(body.get("serverId") or ""),
            volume_id=volume_id,
            device=_opt_str(body.get("device")),
            attachment_id=_opt_str(body.get("attachment_id")),
            tag=_opt_str(body.get("tag")),
            delete_on_termination=_bool(body.get("delete_on_termination")),
        )


class ServerStatus(StrEnum):
    """Compute server statuses (`status`) the driver tells apart."""

    ACTIVE = "ACTIVE"
    BUILD = "BUILD"
    SHUTOFF = "SHUTOFF"
    SOFT_DELETED = "SOFT_DELETED"
    DELETED = "DELETED"
    ERROR = "ERROR"
    UNKNOWN = "UNKNOWN"


@dataclass(frozen=True, slots=True)
class Server:
    """A Compute server (a Kubernetes node)."""

    id: str
    name: str
    status: str
    availability_zone: str | None = None
    # Every volume attached or being attached (Compute records one as soon as it accepts the attach).
    attached_volume_ids: tuple[str, ...] = ()

    @classmethod
    def from_api(cls, body: Json) -> Server:
        return cls(
            id=str(body["id"]),
            name=str(body.get("name") or ""),
            status=str(body.get("status") or ""),
            availability_zone=_opt_str(body.get("OS-EXT-AZ:availability_zone")),
            attached_volume_ids=tuple(
                str(v["id"]) for v in body.get("os-extended-volumes:volumes_attached") or () if v.get("id")
            ),
        )


@dataclass(frozen=True, slots=True, order=True)
class ApiVersion:
    """A microversion `MAJOR.MINOR`, ordered numerically (3.9 < 3.42)."""

    major: int
    minor: int

    @classmethod
    def parse(cls, text: str) -> ApiVersion:
        major, sep, minor = text.strip().removeprefix("v").partition(".")
        if not sep or not major.isdigit() or not minor.isdigit():
            raise ValueError(f"not a microversion: {text!r}")
        return cls(int(major), int(minor))

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}"


@dataclass(frozen=True, slots=True)
class VersionRange:
    """The microversions a service accepts; `max` None means it has no microversions at all."""

    min: ApiVersion | None
    max: ApiVersion | None

    def supports(self, version: ApiVersion) -> bool:
        if self.max is None:
            return False
        low = self.min or ApiVersion(version.major, 0)
        return low <= version <= self.max


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a listing; `next_marker` is the marker for the next page, None on the last."""

    items: tuple[T, ...]
    next_marker: str | None = None
    count: int | None = None  # items across all pages, when asked for (with_count) and answered
