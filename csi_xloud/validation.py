"""Checks and parsing of CSI request fields shared by the services: sizes, capabilities, parameters.

Every failure raises InvalidArgument (or OutOfRange for sizes) with a message that names the field.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from csi_xloud import GIB, TOPOLOGY_KEY
from csi_xloud._proto import csi_pb2
from csi_xloud.rpc.errors import InvalidArgument, OutOfRange

MIN_VOLUME_GIB = 1
# Spec "Size Limits": strings 128 bytes and maps 4 KiB unless a field says otherwise.
MAX_STRING_BYTES = 128
MAX_MAP_BYTES = 4096
# Spec: names may be any Unicode but these control characters.
_BANNED_CHARACTERS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")

AccessMode = csi_pb2.VolumeCapability.AccessMode
SINGLE_NODE_MODES = frozenset(
    {
        AccessMode.SINGLE_NODE_WRITER,
        AccessMode.SINGLE_NODE_READER_ONLY,
        AccessMode.SINGLE_NODE_SINGLE_WRITER,
        AccessMode.SINGLE_NODE_MULTI_WRITER,
    }
)
MULTI_NODE_MODES = frozenset(
    {
        AccessMode.MULTI_NODE_READER_ONLY,
        AccessMode.MULTI_NODE_SINGLE_WRITER,
        AccessMode.MULTI_NODE_MULTI_WRITER,
    }
)
READ_ONLY_MODES = frozenset({AccessMode.SINGLE_NODE_READER_ONLY, AccessMode.MULTI_NODE_READER_ONLY})


class FsType(StrEnum):
    EXT4 = "ext4"
    XFS = "xfs"


DEFAULT_FS_TYPE = FsType.EXT4

# Keys the CO adds to parameters on its own (csi-provisioner --extra-create-metadata, csi-snapshotter).
PVC_NAME_KEY = "csi.storage.k8s.io/pvc/name"
PVC_NAMESPACE_KEY = "csi.storage.k8s.io/pvc/namespace"
PV_NAME_KEY = "csi.storage.k8s.io/pv/name"
FSTYPE_KEY = "csi.storage.k8s.io/fstype"
SNAPSHOT_METADATA_KEYS = frozenset(
    {
        "csi.storage.k8s.io/volumesnapshot/name",
        "csi.storage.k8s.io/volumesnapshot/namespace",
        "csi.storage.k8s.io/volumesnapshotcontent/name",
    }
)
GROUP_SNAPSHOT_METADATA_KEYS = frozenset(
    {
        "csi.storage.k8s.io/volumegroupsnapshot/name",
        "csi.storage.k8s.io/volumegroupsnapshot/namespace",
        "csi.storage.k8s.io/volumegroupsnapshotcontent/name",
    }
)


def require(value: str, field: str) -> str:
    """A REQUIRED string field: present, within the size limit, free of banned characters."""
    if not value:
        raise InvalidArgument(f"{field} is required")
    check_string(value, field)
    return value


def check_string(value: str, field: str, limit: int = MAX_STRING_BYTES) -> None:
    if len(value.encode()) > limit:
        raise InvalidArgument(f"{field} is longer than {limit} bytes")
    if _BANNED_CHARACTERS.search(value):
        raise InvalidArgument(f"{field} contains a control character")


def check_map(values: Mapping[str, str], field: str) -> None:
    size = sum(len(key.encode()) + len(value.encode()) for key, value in values.items())
    if size > MAX_MAP_BYTES:
        raise InvalidArgument(f"{field} is larger than {MAX_MAP_BYTES} bytes")


def size_gib(capacity: csi_pb2.CapacityRange | None, minimum_gib: int = MIN_VOLUME_GIB) -> int:
    """The whole GiB to provision: the smallest that satisfies required_bytes and the minimum.

    Spec: a value of 0 means unspecified; negative values are not allowed; the limit MUST be honoured.
    """
    required = capacity.required_bytes if capacity is not None else 0
    limit = capacity.limit_bytes if capacity is not None else 0
    if required < 0:
        raise InvalidArgument("capacity_range.required_bytes must not be negative")
    if limit < 0:
        raise InvalidArgument("capacity_range.limit_bytes must not be negative")
    if limit and required > limit:
        raise InvalidArgument("capacity_range.required_bytes is larger than capacity_range.limit_bytes")
    gib = max(minimum_gib, -(-required // GIB))
    if limit and gib * GIB > limit:
        raise OutOfRange(
            f"capacity_range.limit_bytes {limit} is below the smallest size Xloud can provision here "
            f"({gib} GiB = {gib * GIB} bytes; volumes come in whole GiB)"
        )
    return gib


def fits(capacity: csi_pb2.CapacityRange | None, actual_gib: int) -> bool:
    """Whether an existing volume of actual_gib satisfies the requested range."""
    if capacity is None:
        return True
    actual = actual_gib * GIB
    return actual >= capacity.required_bytes and (not capacity.limit_bytes or actual <= capacity.limit_bytes)


@dataclass(frozen=True, slots=True)
class CapabilityNeeds:
    """What a list of volume capabilities asks of a volume."""

    block: bool
    mount: bool
    multi_node: bool
    read_only: bool
    fs_types: frozenset[str]


def check_capabilities(capabilities: Iterable[csi_pb2.VolumeCapability], field: str) -> CapabilityNeeds:
    """Validate capabilities: each has an access type and a known access mode, and a known fs type."""
    caps = list(capabilities)
    if not caps:
        raise InvalidArgument(f"{field} is required")
    block = mount = multi = read_only = False
    fs_types: set[str] = set()
    for cap in caps:
        kind = cap.WhichOneof("access_type")
        if kind is None:
            raise InvalidArgument(f"{field}: access_type (block or mount) is required")
        mode = cap.access_mode.mode
        if mode == AccessMode.UNKNOWN:
            raise InvalidArgument(f"{field}: access_mode is required")
        if mode not in SINGLE_NODE_MODES | MULTI_NODE_MODES:
            raise InvalidArgument(f"{field}: unknown access_mode {mode}")
        if kind == "block":
            block = True
        else:
            mount = True
            fs_types.add(check_fs_type(cap.mount.fs_type, f"{field}.mount.fs_type"))
        multi = multi or mode in MULTI_NODE_MODES
        read_only = read_only or mode in READ_ONLY_MODES
    return CapabilityNeeds(block, mount, multi, read_only, frozenset(fs_types))


def check_fs_type(fs_type: str, field: str) -> FsType:
    """ext4 (the default when empty) or xfs."""
    if not fs_type:
        return DEFAULT_FS_TYPE
    try:
        return FsType(fs_type.lower())
    except ValueError:
        supported = ", ".join(fs.value for fs in FsType)
        raise InvalidArgument(f"{field} {fs_type!r} is not supported (supported: {supported})") from None


def multi_node_refusal(needs: CapabilityNeeds, multiattach: bool) -> str | None:
    """Why a multi-node request cannot be served, or None when it can.

    Several nodes may share only raw block volumes of a multiattach type: no filesystem we
    format is cluster-aware, so a shared mount would corrupt it.
    """
    if not needs.multi_node:
        return None
    if needs.mount:
        return "MULTI_NODE access modes are for block volumes only (no filesystem here is cluster-safe)"
    if not multiattach:
        return 'MULTI_NODE access modes need a volume type with multiattach="<is> True"'
    return None


@dataclass(frozen=True, slots=True)
class VolumeParameters:
    """StorageClass parameters of CreateVolume, after validation."""

    volume_type: str | None = None
    availability_zone: str | None = None
    fs_type: FsType | None = None
    pvc_name: str | None = None
    pvc_namespace: str | None = None
    pv_name: str | None = None

    def metadata(self) -> dict[str, str]:
        """What we store as volume metadata: the Kubernetes names, under the provisioner's keys."""
        pairs = {
            PVC_NAME_KEY: self.pvc_name,
            PVC_NAMESPACE_KEY: self.pvc_namespace,
            PV_NAME_KEY: self.pv_name,
        }
        return {key: value for key, value in pairs.items() if value}


def parse_volume_parameters(parameters: Mapping[str, str], mutable: Mapping[str, str]) -> VolumeParameters:
    """StorageClass parameters; mutable_parameters (VolumeAttributesClass) take precedence for `type`."""
    check_map(parameters, "parameters")
    known = {"type", "availability", FSTYPE_KEY, PVC_NAME_KEY, PVC_NAMESPACE_KEY, PV_NAME_KEY}
    _reject_unknown(parameters, known, "parameters")
    modify = parse_mutable_parameters(mutable) if mutable else None
    volume_type = (modify.volume_type if modify else None) or parameters.get("type") or None
    fs_type = (
        check_fs_type(parameters[FSTYPE_KEY], f"parameters[{FSTYPE_KEY}]")
        if FSTYPE_KEY in parameters
        else None
    )
    return VolumeParameters(
        volume_type=volume_type,
        availability_zone=parameters.get("availability") or None,
        fs_type=fs_type,
        pvc_name=parameters.get(PVC_NAME_KEY),
        pvc_namespace=parameters.get(PVC_NAMESPACE_KEY),
        pv_name=parameters.get(PV_NAME_KEY),
    )


class SnapshotKind(StrEnum):
    SNAPSHOT = "snapshot"
    BACKUP = "backup"


@dataclass(frozen=True, slots=True)
class SnapshotParameters:
    """VolumeSnapshotClass parameters of CreateSnapshot, after validation."""

    kind: SnapshotKind = SnapshotKind.SNAPSHOT
    force: bool = True
    incremental: bool = False
    metadata: tuple[tuple[str, str], ...] = ()


def parse_snapshot_parameters(parameters: Mapping[str, str]) -> SnapshotParameters:
    check_map(parameters, "parameters")
    _reject_unknown(
        parameters, {"type", "force-create", "incremental", *SNAPSHOT_METADATA_KEYS}, "parameters"
    )
    try:
        kind = SnapshotKind(parameters.get("type", SnapshotKind.SNAPSHOT.value).lower())
    except ValueError:
        raise InvalidArgument(
            f"parameters[type] {parameters['type']!r} is not supported (supported: snapshot, backup)"
        ) from None
    incremental = parse_bool(parameters, "incremental", default=False)
    if incremental and kind is not SnapshotKind.BACKUP:
        raise InvalidArgument("parameters[incremental] applies only to type=backup")
    return SnapshotParameters(
        kind=kind,
        force=parse_bool(parameters, "force-create", default=True),
        incremental=incremental,
        metadata=tuple(sorted((k, v) for k, v in parameters.items() if k in SNAPSHOT_METADATA_KEYS)),
    )


@dataclass(frozen=True, slots=True)
class GroupSnapshotParameters:
    """VolumeGroupSnapshotClass parameters: the Xloud group type (None: the cloud's default one)."""

    group_type: str | None = None
    metadata: tuple[tuple[str, str], ...] = ()


def parse_group_snapshot_parameters(parameters: Mapping[str, str]) -> GroupSnapshotParameters:
    check_map(parameters, "parameters")
    _reject_unknown(parameters, {"group-type", *GROUP_SNAPSHOT_METADATA_KEYS}, "parameters")
    group_type = parameters.get("group-type")
    if group_type is not None and not group_type.strip():
        raise InvalidArgument("parameters[group-type] is empty (name an Xloud group type, or leave it out)")
    return GroupSnapshotParameters(
        group_type=group_type.strip() if group_type else None,
        metadata=tuple(sorted((k, v) for k, v in parameters.items() if k in GROUP_SNAPSHOT_METADATA_KEYS)),
    )


class MigrationPolicy(StrEnum):
    ON_DEMAND = "on-demand"
    NEVER = "never"


@dataclass(frozen=True, slots=True)
class MutableParameters:
    """VolumeAttributesClass parameters: a new volume type and how Cinder may move the data."""

    volume_type: str | None = None
    migration_policy: MigrationPolicy = MigrationPolicy.ON_DEMAND


def parse_mutable_parameters(parameters: Mapping[str, str]) -> MutableParameters:
    check_map(parameters, "mutable_parameters")
    _reject_unknown(parameters, {"type", "migration-policy"}, "mutable_parameters")
    raw_policy = parameters.get("migration-policy", MigrationPolicy.ON_DEMAND.value)
    try:
        policy = MigrationPolicy(raw_policy)
    except ValueError:
        raise InvalidArgument(
            f"mutable_parameters[migration-policy] {raw_policy!r} is not supported (on-demand or never)"
        ) from None
    volume_type = parameters.get("type")
    if volume_type is not None and not volume_type:
        raise InvalidArgument("mutable_parameters[type] must not be empty")
    return MutableParameters(volume_type=volume_type, migration_policy=policy)


def parse_bool(parameters: Mapping[str, str], key: str, default: bool) -> bool:
    raw = parameters.get(key)
    if raw is None:
        return default
    lowered = raw.strip().lower()
    if lowered in ("true", "yes", "1"):
        return True
    if lowered in ("false", "no", "0"):
        return False
    raise InvalidArgument(f"parameters[{key}] {raw!r} is not a boolean (use true or false)")


def _reject_unknown(parameters: Mapping[str, str], known: set[str] | frozenset[str], field: str) -> None:
    unknown = sorted(set(parameters) - set(known))
    if unknown:
        raise InvalidArgument(f"{field}: unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})")


def zone_from_topology(requirement: csi_pb2.TopologyRequirement | None) -> str | None:
    """The zone to create in: the first preferred segment's zone, else the first requisite one's."""
    if requirement is None:
        return None
    for topology in (*requirement.preferred, *requirement.requisite):
        zone = topology.segments.get(TOPOLOGY_KEY)
        if zone:
            return zone
    return None


def zone_allowed(requirement: csi_pb2.TopologyRequirement | None, zone: str) -> bool:
    """Whether a volume in `zone` satisfies the requisite topology (no requisite: anywhere)."""
    if requirement is None or not requirement.requisite:
        return True
    return any(t.segments.get(TOPOLOGY_KEY) == zone for t in requirement.requisite)
