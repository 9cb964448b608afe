"""CreateVolume's work: find a volume by name or create it from its source, then wait until it is usable."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

from csi_xloud._proto import csi_pb2
from csi_xloud.cloud import errors as cloud
from csi_xloud.cloud.models import Volume, VolumeStatus, VolumeType
from csi_xloud.cloud.storage import StorageApi
from csi_xloud.controller.ids import (
    DELETED_METADATA_KEY,
    SOURCE_METADATA_KEY,
    ContentSource,
    SourceKind,
    is_storage_id,
)
from csi_xloud.controller.late import LateRequests, keep_the_first
from csi_xloud.controller.views import content_source_of
from csi_xloud.rpc.errors import AlreadyExists, Internal, InvalidArgument, NotFound
from csi_xloud.validation import (
    CapabilityNeeds,
    VolumeParameters,
    fits,
    multi_node_refusal,
    size_gib,
    zone_allowed,
)

log = logging.getLogger(__name__)

# Volumes on their way out are not candidates for a name any more.
GONE_STATUSES = frozenset({VolumeStatus.DELETING, VolumeStatus.ERROR_DELETING})


@dataclass(frozen=True, slots=True)
class Timeouts:
    """How long the controller waits for the cloud before answering DEADLINE_EXCEEDED (the CO retries)."""

    create_seconds: float = 300.0
    delete_seconds: float = 120.0
    attach_seconds: float = 120.0
    detach_seconds: float = 120.0
    expand_seconds: float = 300.0
    retype_seconds: float = 900.0
    # ControllerGetVolume calls a volume abnormal when a transition takes longer than this.
    stuck_seconds: float = 900.0


@dataclass(frozen=True, slots=True)
class NewVolume:
    """A validated CreateVolume request."""

    name: str
    capacity: csi_pb2.CapacityRange | None
    needs: CapabilityNeeds
    parameters: VolumeParameters
    requirement: csi_pb2.TopologyRequirement | None
    zone: str | None
    source: ContentSource | None


@dataclass(frozen=True, slots=True)
class SourceFacts:
    """What a content source imposes on a new volume: a minimum size and, for clones, a zone."""

    size_gib: int
    zone: str | None


async def fetch_volume(storage: StorageApi, volume_id: str, field: str = "volume_id") -> Volume:
    """The volume, or NotFound naming the field."""
    if not is_storage_id(volume_id):
        raise NotFound(f"{field} {volume_id!r} does not name a volume")
    try:
        return await storage.get_volume(volume_id)
    except cloud.NotFound:
        raise NotFound(f"{field} {volume_id}: no such volume") from None


async def resolve_type(storage: StorageApi, name_or_id: str, field: str) -> VolumeType:
    """A volume type by name or id, or InvalidArgument naming the field."""
    try:
        return await storage.get_type(name_or_id)
    except (cloud.NotFound, cloud.BadRequest):
        raise InvalidArgument(f"{field} {name_or_id!r} is not a volume type of this cloud") from None


def has_type(volume: Volume, volume_type: VolumeType) -> bool:
    return volume_type.id == volume.volume_type_id or volume.volume_type in (volume_type.name, volume_type.id)


class VolumeCreator:
    """Creates volumes idempotently by name; a volume that fails is deleted before the error is returned."""

    def __init__(self, storage: StorageApi, timeouts: Timeouts, late: LateRequests) -> None:
        self._storage = storage
        self._timeouts = timeouts
        self._late = late

    async def create(self, request: NewVolume) -> Volume:
        volume_type = await self._volume_type(request)
        source, facts = await self._resolve_source(request.source)
        key = ("volume", request.name)
        existing = await self._find(request.name)
        if existing is not None:
            self._late.forget(key)
            self._check_compatible(existing, request, volume_type, source)
            return await self._settle(existing)
        self._late.refuse_while_in_flight(key, f"volume {request.name!r}")
        size = size_gib(request.capacity, minimum_gib=max(1, facts.size_gib))
        zone = self._zone(request, facts)
        metadata = request.parameters.metadata()
        if source is not None:
            metadata[SOURCE_METADATA_KEY] = str(source)
        try:
            volume = await self._post(request.name, size, volume_type, zone, metadata, source)
        except cloud.CloudError as exc:
            if exc.may_still_land:
                self._late.note(key)
            raise
        log.debug(
            "creating volume %s (%s, %d GiB) for %s", volume.id, zone or "default zone", size, request.name
        )
        self._late.after_create(lambda: self._find(request.name))
        return await self._settle(volume)

    async def _post(
        self,
        name: str,
        size: int,
        volume_type: VolumeType | None,
        zone: str | None,
        metadata: dict[str, str],
        source: ContentSource | None,
    ) -> Volume:
        return await self._storage.create_volume(
            name,
            size,
            volume_type=volume_type.name if volume_type else None,
            availability_zone=zone,
            metadata=metadata,
            snapshot_id=_source_id(source, SourceKind.SNAPSHOT),
            source_volid=_source_id(source, SourceKind.VOLUME),
            backup_id=_source_id(source, SourceKind.BACKUP),
        )

    async def _volume_type(self, request: NewVolume) -> VolumeType | None:
        """The requested type (checked to exist), and whether it may serve the requested access modes."""
        name = request.parameters.volume_type
        volume_type = await resolve_type(self._storage, name, "parameters[type]") if name else None
        refusal = multi_node_refusal(request.needs, volume_type.multiattach if volume_type else False)
        if refusal is not None:
            raise InvalidArgument(f"volume_capabilities: {refusal}")
        return volume_type

    async def _find(self, name: str) -> Volume | None:
        """The live volume with this name; later duplicates that nobody uses are removed."""
        found = [v for v in await self._storage.find_volume_by_name(name) if v.status not in GONE_STATUSES]
        return await keep_the_first(found, self._remove_duplicate, "volume")

    async def _remove_duplicate(self, volume: Volume) -> None:
        """Delete a later volume of the same name, unless someone already uses it."""
        if volume.attachments:
            raise Internal(f"volume {volume.id} carries the name {volume.name!r} of another and is attached")
        if volume.status is VolumeStatus.CREATING:
            raise cloud.Conflict(f"volume {volume.id} is still being created")
        await self._storage.delete_volume(volume.id)

    @staticmethod
    def _check_compatible(
        volume: Volume, request: NewVolume, volume_type: VolumeType | None, source: ContentSource | None
    ) -> None:
        """Spec: a volume with this name that does not match the request means ALREADY_EXISTS."""
        problems = []
        if not fits(request.capacity, volume.size_gib):
            problems.append(f"its size {volume.size_gib} GiB is outside capacity_range")
        if volume_type is not None and not has_type(volume, volume_type):
            problems.append(f"its type is {volume.volume_type}, not {volume_type.name}")
        if content_source_of(volume) != source:
            problems.append(f"its content source is {content_source_of(volume) or 'none'}")
        if volume.availability_zone and not zone_allowed(request.requirement, volume.availability_zone):
            problems.append(f"its zone {volume.availability_zone} is outside the requisite topology")
        if problems:
            raise AlreadyExists(
                f"volume {volume.id} named {request.name!r} already exists but " + "; ".join(problems)
            )

    async def _resolve_source(self, source: ContentSource | None) -> tuple[ContentSource | None, SourceFacts]:
        """The source as the cloud has it (a plain snapshot id may be an imported backup), and its facts."""
        if source is None:
            return None, SourceFacts(0, None)
        try:
            return source, await self._source_facts(source)
        except cloud.NotFound:
            pass
        if source.kind is SourceKind.SNAPSHOT:
            backup = ContentSource(SourceKind.BACKUP, source.id)
            with contextlib.suppress(cloud.NotFound):
                return backup, await self._source_facts(backup)
        raise NotFound(f"volume_content_source: {source.kind.value} {source.id} does not exist")

    async def _source_facts(self, source: ContentSource) -> SourceFacts:
        """Size and zone of the source; cloud NotFound when it does not exist."""
        if source.kind is SourceKind.VOLUME:
            volume = await self._storage.get_volume(source.id)
            return SourceFacts(volume.size_gib, volume.availability_zone)
        if source.kind is SourceKind.SNAPSHOT:
            snapshot = await self._storage.get_snapshot(source.id)
            return SourceFacts(snapshot.size_gib, await self._zone_of(snapshot.volume_id))
        backup = await self._storage.get_backup(source.id)
        if DELETED_METADATA_KEY in backup.metadata:
            raise cloud.NotFound(f"backup {source.id} was deleted")  # its cloud copy waits for its dependents
        return SourceFacts(backup.size_gib, None)

    async def _zone_of(self, volume_id: str) -> str | None:
        try:
            return (await self._storage.get_volume(volume_id)).availability_zone
        except cloud.NotFound:
            return None

    @staticmethod
    def _zone(request: NewVolume, facts: SourceFacts) -> str | None:
        """The zone to ask for: a clone's or snapshot copy's is the source's, which must be allowed."""
        if facts.zone is None:
            return request.zone
        if not zone_allowed(request.requirement, facts.zone):
            raise InvalidArgument(
                f"volume_content_source is in zone {facts.zone}, outside the requisite topology; "
                "a copy is made in its source's zone"
            )
        return facts.zone

    async def _settle(self, volume: Volume) -> Volume:
        """Wait until available; a volume that fails is deleted and the failure returned."""
        if volume.status is VolumeStatus.AVAILABLE or volume.status is VolumeStatus.IN_USE:
            return volume
        if not volume.status.is_error:
            try:
                return await self._storage.wait_for_volume(
                    volume.id,
                    VolumeStatus.AVAILABLE,
                    VolumeStatus.IN_USE,
                    timeout_seconds=self._timeouts.create_seconds,
                    expect=volume.raw_status,
                    seen=volume,
                )
            except (cloud.WaitTimeout, cloud.Unavailable, cloud.NotFound):
                raise
            except cloud.CloudError as exc:
                log.warning("volume %s failed while being created: %s", volume.id, exc)
                raise await self._discard(volume.id, str(exc)) from None
        failure = f"volume {volume.id} went to status {volume.raw_status}"
        reason = await self._storage.volume_error_reason(volume.id)
        raise await self._discard(volume.id, f"{failure}: {reason}" if reason else failure)

    async def _discard(self, volume_id: str, failure: str) -> Internal:
        """Delete a failed volume (so the CO's retry starts afresh) and say why it failed."""
        with contextlib.suppress(cloud.NotFound):
            await self._storage.delete_volume(volume_id)
        return Internal(f"{failure}; it was deleted, a retry creates a new one")


def _source_id(source: ContentSource | None, kind: SourceKind) -> str | None:
    return source.id if source is not None and source.kind is kind else None
