"""Records the emulator keeps: frozen dataclasses persisted as JSON documents."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from enum import StrEnum
from typing import Any, ClassVar, TypeVar

JsonDict = dict[str, Any]


class VolumeStatus(StrEnum):
    """Cinder volume statuses the emulator uses."""

    CREATING = "creating"
    AVAILABLE = "available"
    RESERVED = "reserved"
    ATTACHING = "attaching"
    IN_USE = "in-use"
    DETACHING = "detaching"
    DELETING = "deleting"
    EXTENDING = "extending"
    RETYPING = "retyping"
    BACKING_UP = "backing-up"
    RESTORING_BACKUP = "restoring-backup"
    ERROR = "error"
    ERROR_DELETING = "error_deleting"
    ERROR_EXTENDING = "error_extending"
    ERROR_RESTORING = "error_restoring"


class SnapshotStatus(StrEnum):
    """Cinder snapshot statuses."""

    CREATING = "creating"
    AVAILABLE = "available"
    DELETING = "deleting"
    ERROR = "error"
    ERROR_DELETING = "error_deleting"


class BackupStatus(StrEnum):
    """Cinder backup statuses."""

    CREATING = "creating"
    AVAILABLE = "available"
    DELETING = "deleting"
    RESTORING = "restoring"
    ERROR = "error"


class ServerStatus(StrEnum):
    """Compute server statuses the emulator uses (Nova's `status`)."""

    BUILD = "BUILD"
    ACTIVE = "ACTIVE"
    SHUTOFF = "SHUTOFF"
    ERROR = "ERROR"


class GroupStatus(StrEnum):
    """Cinder group and group snapshot statuses."""

    CREATING = "creating"
    AVAILABLE = "available"
    UPDATING = "updating"
    DELETING = "deleting"
    ERROR = "error"
    ERROR_DELETING = "error_deleting"


class AttachStatus(StrEnum):
    """Status of one attachment of a volume to a server."""

    RESERVED = "reserved"
    ATTACHING = "attaching"
    ATTACHED = "attached"
    DETACHING = "detaching"


def now() -> str:
    """UTC time in Cinder's format (microseconds, no zone)."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None).isoformat(timespec="microseconds")


def new_id() -> str:
    """A fresh UUID string."""
    return str(uuid.uuid4())


@dataclasses.dataclass(frozen=True, slots=True)
class Volume:
    """A volume; `pending` names the asynchronous operation in flight, if any."""

    KIND: ClassVar[str] = "volume"
    id: str
    project_id: str
    user_id: str
    size: int
    status: str
    type_id: str
    backend: str
    availability_zone: str
    created_at: str
    updated_at: str | None = None
    name: str | None = None
    description: str | None = None
    metadata: dict[str, str] = dataclasses.field(default_factory=dict)
    snapshot_id: str | None = None
    source_volid: str | None = None
    backup_id: str | None = None
    multiattach: bool = False
    bootable: bool = False
    migration_status: str | None = None
    pending: JsonDict | None = None
    group_id: str | None = None
    readonly: bool | None = None  # admin metadata; shown as metadata.readonly once set


@dataclasses.dataclass(frozen=True, slots=True)
class Attachment:
    """One attachment (Cinder attachment and Nova block device mapping in one).

    `legacy` marks attachments made through the Storage API alone (os-attach or the attachments API):
    no hypervisor is involved, so they get no loop device and Compute does not list them.
    """

    KIND: ClassVar[str] = "attachment"
    id: str
    volume_id: str
    server_id: str | None
    status: str
    device: str
    bdm_uuid: str
    created_at: str
    attached_at: str | None = None
    tag: str | None = None
    delete_on_termination: bool = False
    mode: str = "rw"
    loop_device: str | None = None
    legacy: bool = False
    host_name: str | None = None
    connector: JsonDict | None = None
    # The server's boot disk (block_device_mapping_v2 boot_index 0): Compute refuses to detach it.
    root: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class Snapshot:
    """A volume snapshot; its data is a sparse copy of the volume file."""

    KIND: ClassVar[str] = "snapshot"
    id: str
    project_id: str
    user_id: str
    volume_id: str
    size: int
    status: str
    backend: str
    created_at: str
    updated_at: str | None = None
    name: str | None = None
    description: str | None = None
    metadata: dict[str, str] = dataclasses.field(default_factory=dict)
    progress: str = "0%"
    pending: JsonDict | None = None
    group_snapshot_id: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Backup:
    """A backup in the chunk store; incremental ones name their parent."""

    KIND: ClassVar[str] = "backup"
    id: str
    project_id: str
    user_id: str
    volume_id: str
    size: int
    status: str
    availability_zone: str
    container: str
    created_at: str
    updated_at: str | None = None
    name: str | None = None
    description: str | None = None
    snapshot_id: str | None = None
    parent_id: str | None = None
    is_incremental: bool = False
    object_count: int = 0
    data_timestamp: str | None = None
    fail_reason: str | None = None
    metadata: dict[str, str] = dataclasses.field(default_factory=dict)
    pending: JsonDict | None = None
    volume_name: str | None = None
    volume_description: str | None = None
    volume_metadata: dict[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, slots=True)
class VolumeType:
    """A volume type with its extra specs."""

    KIND: ClassVar[str] = "volume_type"
    id: str
    name: str
    description: str | None = None
    is_public: bool = True
    extra_specs: dict[str, str] = dataclasses.field(default_factory=dict)
    qos_specs_id: str | None = None
    projects: list[str] = dataclasses.field(default_factory=list)
    encryption: JsonDict | None = None  # the encryption type (provider, cipher, key size...), if any


@dataclasses.dataclass(frozen=True, slots=True)
class GroupType:
    """A group type with its group specs (admin-made; private ones only admins see)."""

    KIND: ClassVar[str] = "group_type"
    id: str
    name: str
    description: str | None = None
    is_public: bool = True
    group_specs: dict[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, slots=True)
class Group:
    """A generic volume group; `backend` is where the scheduler put it (None: nowhere)."""

    KIND: ClassVar[str] = "group"
    id: str
    project_id: str
    user_id: str
    status: str
    group_type_id: str
    volume_type_ids: list[str]
    availability_zone: str
    created_at: str
    backend: str | None = None
    updated_at: str | None = None
    name: str | None = None
    description: str | None = None
    group_snapshot_id: str | None = None
    source_group_id: str | None = None
    pending: JsonDict | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class GroupSnapshot:
    """A snapshot of a group: one member snapshot per volume, taken together."""

    KIND: ClassVar[str] = "group_snapshot"
    id: str
    project_id: str
    user_id: str
    group_id: str
    group_type_id: str
    status: str
    created_at: str
    updated_at: str | None = None
    name: str | None = None
    description: str | None = None
    pending: JsonDict | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class QosSpec:
    """A QoS spec (admin only)."""

    KIND: ClassVar[str] = "qos_spec"
    id: str
    name: str
    consumer: str
    specs: dict[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, slots=True)
class QuotaSet:
    """Quota limits a project has overridden."""

    KIND: ClassVar[str] = "quota"
    id: str
    limits: dict[str, int] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, slots=True)
class Transfer:
    """A volume offered to another project; only the hash of its auth key is kept."""

    KIND: ClassVar[str] = "transfer"
    id: str
    volume_id: str
    name: str | None
    key_hash: str
    source_project_id: str
    created_at: str
    no_snapshots: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class Message:
    """A user message: why an asynchronous operation failed (GET /messages, 3.3+)."""

    KIND: ClassVar[str] = "message"
    id: str
    project_id: str
    event_id: str
    user_message: str
    resource_type: str
    resource_uuid: str | None
    request_id: str | None
    created_at: str
    guaranteed_until: str
    message_level: str = "ERROR"


@dataclasses.dataclass(frozen=True, slots=True)
class Token:
    """An issued Keystone token."""

    KIND: ClassVar[str] = "token"
    id: str
    user_id: str
    project_id: str
    methods: list[str]
    issued_at: float
    expires_at: float
    audit_id: str
    app_cred_id: str | None = None
    revoked: bool = False
    roles: list[str] | None = None  # on the token's project; None: the user's roles on the seed project


@dataclasses.dataclass(frozen=True, slots=True)
class User:
    """A Keystone user with its project role names."""

    KIND: ClassVar[str] = "user"
    id: str
    name: str
    password: str
    roles: list[str]  # on the seed project; other projects' roles are RoleAssignment records
    enabled: bool = True
    default_project_id: str | None = None
    email: str | None = None
    description: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Project:
    """A Keystone project made through the admin API (the seed project is the emulator's own)."""

    KIND: ClassVar[str] = "project"
    id: str
    name: str
    description: str = ""
    enabled: bool = True


@dataclasses.dataclass(frozen=True, slots=True)
class RoleAssignment:
    """A role of a user on a project; id is user/project/role."""

    KIND: ClassVar[str] = "role_assignment"
    id: str
    user_id: str
    project_id: str
    role: str


@dataclasses.dataclass(frozen=True, slots=True)
class AppCredential:
    """A Keystone application credential."""

    KIND: ClassVar[str] = "app_credential"
    id: str
    name: str
    secret: str
    user_id: str


@dataclasses.dataclass(frozen=True, slots=True)
class Server:
    """A Compute server (a node of the emulated cloud); `pending` names the lifecycle step in flight."""

    KIND: ClassVar[str] = "server"
    id: str
    name: str
    availability_zone: str
    device_dir: str
    created_at: str
    status: str = ServerStatus.ACTIVE
    updated_at: str | None = None
    pending: JsonDict | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class InstanceAction:
    """A Compute instance action: one request on a server and how its one event ended."""

    KIND: ClassVar[str] = "instance_action"
    id: str  # the request id, as Compute names actions
    server_id: str
    project_id: str
    user_id: str
    action: str
    event: str
    start_time: str
    updated_at: str
    finish_time: str | None = None
    result: str | None = None
    details: str | None = None


Record = (
    Volume
    | Attachment
    | Snapshot
    | Backup
    | VolumeType
    | QosSpec
    | QuotaSet
    | Transfer
    | Message
    | Token
    | User
    | Project
    | RoleAssignment
    | AppCredential
    | Server
    | GroupType
    | Group
    | GroupSnapshot
    | InstanceAction
)
R = TypeVar(
    "R",
    Volume,
    Attachment,
    Snapshot,
    Backup,
    VolumeType,
    QosSpec,
    QuotaSet,
    Transfer,
    Message,
    Token,
    User,
    Project,
    RoleAssignment,
    AppCredential,
    Server,
    GroupType,
    Group,
    GroupSnapshot,
    InstanceAction,
)

RECORD_TYPES: dict[str, type[Any]] = {
    cls.KIND: cls
    for cls in (
        Volume,
        Attachment,
        Snapshot,
        Backup,
        VolumeType,
        QosSpec,
        QuotaSet,
        Transfer,
        Message,
        Token,
        User,
        Project,
        RoleAssignment,
        AppCredential,
        Server,
        GroupType,
        Group,
        GroupSnapshot,
        InstanceAction,
    )
}
