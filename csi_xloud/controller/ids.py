"""The controller's identifiers: CSI snapshot ids for Storage snapshots and backups, sources, list tokens.

A CSI snapshot id is either a Storage snapshot id as it is (``<uuid>``) or a Storage backup id
with a prefix (``backup:<uuid>``). Why both: the ids this driver hands out say what they are, so
every later call on a backup costs one request, not a failed snapshot lookup first; and operators
who import an existing Storage snapshot or backup by its plain id keep working, because a plain id
that is no snapshot is looked up as a backup (one extra request, only for imported backups).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from csi_xloud.rpc.errors import Aborted, InvalidArgument

BACKUP_PREFIX = "backup:"
# Volume metadata key that records the content source the CO asked for (kind:id).
SOURCE_METADATA_KEY = "csi.xloud.tech/content-source"
# Backup metadata key marking a backup deleted through CSI while incremental backups still depend on it:
# it no longer exists for the CO, and the cloud's copy goes once nothing depends on it.
DELETED_METADATA_KEY = "csi.xloud.tech/deleted"
# Storage ids are UUIDs; a token or id outside this alphabet never reaches the cloud.
_ID = re.compile(r"^[0-9A-Za-z][0-9A-Za-z_.-]{0,63}$")


class SourceKind(StrEnum):
    SNAPSHOT = "snapshot"
    BACKUP = "backup"
    VOLUME = "volume"


@dataclass(frozen=True, slots=True)
class ContentSource:
    """What a new volume is made from: a Storage snapshot, backup or volume, by Storage id."""

    kind: SourceKind
    id: str

    def __str__(self) -> str:
        return f"{self.kind.value}:{self.id}"

    @classmethod
    def parse(cls, text: str) -> ContentSource | None:
        """Read the form written by __str__; None for anything else."""
        kind, sep, ident = text.partition(":")
        if not sep or kind not in SourceKind.__members__.values() or not is_storage_id(ident):
            return None
        return cls(SourceKind(kind), ident)


@dataclass(frozen=True, slots=True)
class SnapshotRef:
    """A CSI snapshot id read: the Storage id, and whether it is known to be a backup."""

    storage_id: str
    backup: bool


def is_storage_id(text: str) -> bool:
    return bool(_ID.match(text))


def backup_snapshot_id(backup_id: str) -> str:
    """The CSI snapshot id of a Storage backup."""
    return f"{BACKUP_PREFIX}{backup_id}"


def parse_snapshot_id(snapshot_id: str) -> SnapshotRef | None:
    """Read a CSI snapshot id; None when it cannot name anything in the cloud (so: not found)."""
    backup = snapshot_id.startswith(BACKUP_PREFIX)
    storage_id = snapshot_id.removeprefix(BACKUP_PREFIX) if backup else snapshot_id
    if not is_storage_id(storage_id):
        return None
    return SnapshotRef(storage_id, backup)


def check_max_entries(max_entries: int) -> int | None:
    """The page size to ask for (None: no limit); negative values are refused."""
    if max_entries < 0:
        raise InvalidArgument("max_entries must not be negative")
    return max_entries or None


def volume_token(token: str) -> str | None:
    """A ListVolumes starting_token is the Storage marker (the last volume id of the previous page)."""
    if not token:
        return None
    if not is_storage_id(token):
        raise Aborted(
            f"starting_token {token!r} is not a token this driver issued; list again from the start"
        )
    return token


class SnapshotPhase(StrEnum):
    SNAPSHOTS = "s"
    BACKUPS = "b"


@dataclass(frozen=True, slots=True)
class SnapshotToken:
    """Where ListSnapshots goes on: snapshots first, then backups, each from a Storage marker.

    Written as ``s:<marker>`` or ``b:<marker>`` (``b:`` starts the backups from their beginning).
    """

    phase: SnapshotPhase
    marker: str | None

    def __str__(self) -> str:
        return f"{self.phase.value}:{self.marker or ''}"

    @classmethod
    def parse(cls, token: str) -> SnapshotToken:
        if not token:
            return cls(SnapshotPhase.SNAPSHOTS, None)
        phase, sep, marker = token.partition(":")
        valid_phase = phase in SnapshotPhase.__members__.values()
        if not sep or not valid_phase or (marker and not is_storage_id(marker)):
            raise Aborted(
                f"starting_token {token!r} is not a token this driver issued; list again from the start"
            )
        return cls(SnapshotPhase(phase), marker or None)
