"""Cloud models turned into CSI messages, in one place: volumes, snapshots and volume conditions."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp

from csi_xloud import GIB, TOPOLOGY_KEY
from csi_xloud._proto import csi_pb2
from csi_xloud.cloud.models import Backup, BackupStatus, Snapshot, SnapshotStatus, Volume, VolumeStatus
from csi_xloud.controller.ids import SOURCE_METADATA_KEY, ContentSource, SourceKind, backup_snapshot_id

# Statuses a volume passes through on its way somewhere; staying in one too long is abnormal.
TRANSITIONAL_STATUSES = frozenset(
    {
        VolumeStatus.CREATING,
        VolumeStatus.ATTACHING,
        VolumeStatus.DETACHING,
        VolumeStatus.DELETING,
        VolumeStatus.EXTENDING,
        VolumeStatus.RETYPING,
        VolumeStatus.RESERVED,
        VolumeStatus.MAINTENANCE,
        VolumeStatus.DOWNLOADING,
        VolumeStatus.UPLOADING,
        VolumeStatus.BACKING_UP,
        VolumeStatus.RESTORING_BACKUP,
        VolumeStatus.AWAITING_TRANSFER,
    }
)


def content_source_of(volume: Volume) -> ContentSource | None:
    """Where a volume's data came from: our metadata first, else the Storage API's own fields."""
    recorded = ContentSource.parse(volume.metadata.get(SOURCE_METADATA_KEY, ""))
    if recorded is not None:
        return recorded
    if volume.snapshot_id:
        return ContentSource(SourceKind.SNAPSHOT, volume.snapshot_id)
    if volume.source_volume_id:
        return ContentSource(SourceKind.VOLUME, volume.source_volume_id)
    return None


def volume_message(volume: Volume) -> csi_pb2.Volume:
    """The CSI Volume: id, whole-GiB capacity, the real zone as topology, and the content source."""
    message = csi_pb2.Volume(volume_id=volume.id, capacity_bytes=volume.size_gib * GIB)
    if volume.availability_zone:
        message.accessible_topology.append(
            csi_pb2.Topology(segments={TOPOLOGY_KEY: volume.availability_zone})
        )
    source = content_source_of(volume)
    if source is not None:
        message.content_source.CopyFrom(source_message(source))
    return message


def source_message(source: ContentSource) -> csi_pb2.VolumeContentSource:
    """A content source as the CO named it (a backup is a CSI snapshot)."""
    if source.kind is SourceKind.VOLUME:
        return csi_pb2.VolumeContentSource(
            volume=csi_pb2.VolumeContentSource.VolumeSource(volume_id=source.id)
        )
    snapshot_id = backup_snapshot_id(source.id) if source.kind is SourceKind.BACKUP else source.id
    return csi_pb2.VolumeContentSource(
        snapshot=csi_pb2.VolumeContentSource.SnapshotSource(snapshot_id=snapshot_id)
    )


def snapshot_message(item: Snapshot | Backup) -> csi_pb2.Snapshot:
    """The CSI Snapshot of a Storage snapshot or backup; ready once the cloud reports it available."""
    if isinstance(item, Backup):
        snapshot_id = backup_snapshot_id(item.id)
        ready = item.status is BackupStatus.AVAILABLE
    else:
        snapshot_id = item.id
        ready = item.status is SnapshotStatus.AVAILABLE
    message = csi_pb2.Snapshot(
        snapshot_id=snapshot_id,
        source_volume_id=item.volume_id,
        size_bytes=item.size_gib * GIB,
        ready_to_use=ready,
    )
    if isinstance(item, Snapshot) and item.group_snapshot_id:
        message.group_snapshot_id = item.group_snapshot_id
    if item.created_at is not None:
        message.creation_time.CopyFrom(_timestamp(item.created_at))
    return message


def _timestamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


@dataclass(frozen=True, slots=True)
class ConditionJudge:
    """Decides whether a volume is healthy: error statuses and transitions stuck past a limit are abnormal."""

    now: Callable[[], datetime]
    stuck_seconds: float

    def condition(self, volume: Volume) -> csi_pb2.VolumeCondition:
        status = volume.raw_status or volume.status.value
        if volume.status.is_error:
            return _abnormal(f"volume is in status {status}; the storage service reported a failure")
        if volume.status is VolumeStatus.UNKNOWN:
            return _abnormal(f"volume is in status {status!r}, which the driver does not know")
        if volume.status in TRANSITIONAL_STATUSES and self._stuck(volume):
            return _abnormal(f"volume has been {status} since {volume.updated_at}; it looks stuck")
        return csi_pb2.VolumeCondition(abnormal=False, message=f"volume is {status}")

    def _stuck(self, volume: Volume) -> bool:
        if volume.updated_at is None:
            return False
        return (self.now() - volume.updated_at).total_seconds() > self.stuck_seconds


def _abnormal(message: str) -> csi_pb2.VolumeCondition:
    return csi_pb2.VolumeCondition(abnormal=True, message=message)
