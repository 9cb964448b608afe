"""The CSI Controller service: thin RPCs that validate, guard, call the workers beside it and respond.

Capabilities: everything the Storage and Compute APIs let us do for real. PUBLISH_READONLY is
not advertised: Compute attaches volumes read-write, so a read-only ControllerPublishVolume is
refused (read-only access is the node's job, with read-only mounts). Readiness: the cloud
answers and accepts our credentials (CloudClient.readiness).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from google.protobuf.wrappers_pb2 import Int64Value

from csi_xloud import GIB
from csi_xloud._proto import csi_pb2, csi_pb2_grpc
from csi_xloud.clock import SystemClock
from csi_xloud.cloud import errors as cloud_errors
from csi_xloud.cloud.client import CloudClient
from csi_xloud.cloud.models import Volume
from csi_xloud.config import DEFAULT_MAX_VOLUMES_PER_NODE
from csi_xloud.controller.attach import Attacher
from csi_xloud.controller.capacity import CapacityReader
from csi_xloud.controller.changes import VolumeChanges
from csi_xloud.controller.deadnodes import NodeStates, StaleAttachments
from csi_xloud.controller.group_service import GroupControllerService
from csi_xloud.controller.groups import GroupSnapshotter
from csi_xloud.controller.ids import ContentSource, SourceKind, check_max_entries, parse_snapshot_id
from csi_xloud.controller.late import LateRequests
from csi_xloud.controller.listing import Lister
from csi_xloud.controller.snapshots import NewSnapshot, Snapshotter
from csi_xloud.controller.views import ConditionJudge, snapshot_message, volume_message
from csi_xloud.controller.volumes import NewVolume, Timeouts, VolumeCreator, fetch_volume
from csi_xloud.inflight import InFlight
from csi_xloud.metrics import Metrics
from csi_xloud.rpc.errors import InvalidArgument, NotFound
from csi_xloud.rpc.types import Context
from csi_xloud.validation import (
    MIN_VOLUME_GIB,
    check_capabilities,
    multi_node_refusal,
    parse_mutable_parameters,
    parse_snapshot_parameters,
    parse_volume_parameters,
    require,
    size_gib,
    zone_from_topology,
)

log = logging.getLogger(__name__)

_RPC = csi_pb2.ControllerServiceCapability.RPC
CAPABILITIES = (
    _RPC.CREATE_DELETE_VOLUME,
    _RPC.PUBLISH_UNPUBLISH_VOLUME,
    _RPC.LIST_VOLUMES,
    _RPC.GET_CAPACITY,
    _RPC.CREATE_DELETE_SNAPSHOT,
    _RPC.LIST_SNAPSHOTS,
    _RPC.CLONE_VOLUME,
    _RPC.EXPAND_VOLUME,
    _RPC.LIST_VOLUMES_PUBLISHED_NODES,
    _RPC.VOLUME_CONDITION,
    _RPC.GET_VOLUME,
    _RPC.SINGLE_NODE_MULTI_WRITER,
    _RPC.MODIFY_VOLUME,
    _RPC.GET_SNAPSHOT,
)


class ControllerService(csi_pb2_grpc.ControllerServicer):
    """Every CSI controller RPC on the Xloud Storage and Compute APIs."""

    def __init__(
        self,
        cloud: CloudClient,
        inflight: InFlight,
        timeouts: Timeouts | None = None,
        now: Callable[[], datetime] | None = None,
        max_volumes_per_node: int = DEFAULT_MAX_VOLUMES_PER_NODE,
        late: LateRequests | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._cloud = cloud
        self._inflight = inflight
        timeouts = timeouts or Timeouts()
        # A request the cloud may still receive cannot be held up much longer than our own timeout
        # allows (proxies in between time out alike); three times that is the wait before re-creating.
        late = late or LateRequests(SystemClock(), 3 * cloud.settings.tuning.timeout_seconds)
        self._late = late
        self._creator = VolumeCreator(cloud.storage, timeouts, late)
        self._group_snapshots = GroupSnapshotter(cloud.storage, cloud.groups, timeouts, late)
        self._states = NodeStates(cloud.compute)
        stale = StaleAttachments(cloud.storage, self._states, timeouts.detach_seconds)
        self._changes = VolumeChanges(cloud.storage, timeouts, stale, self._group_snapshots.release_volume)
        self._attacher = Attacher(cloud.storage, cloud.compute, timeouts, max_volumes_per_node, metrics)
        self._snapshots = Snapshotter(cloud.storage, timeouts, late)
        self._lister = Lister(cloud.storage)
        self._capacity = CapacityReader(cloud.storage)
        self._judge = ConditionJudge(now or (lambda: datetime.now(UTC)), timeouts.stuck_seconds)
        self._sweep: asyncio.Task[None] | None = None

    def group_service(self) -> GroupControllerService:
        """The GroupController service on the same cloud client, in-flight keys and late creates."""
        return GroupControllerService(self._group_snapshots, self._inflight)

    async def readiness(self) -> str | None:
        """None when the cloud answers and accepts our credentials, else why not."""
        return await self._cloud.readiness()

    def start(self) -> None:
        """Begin the work of a running controller: remove backups marked deleted whose dependents are gone."""
        if self._sweep is None:
            self._sweep = asyncio.get_running_loop().create_task(self.sweep_deleted_backups())

    async def sweep_deleted_backups(self, first_retry_seconds: float = 5.0) -> None:
        """Reap every backup marked deleted that nothing depends on; retried while the cloud fails."""
        delay = first_retry_seconds
        while True:
            try:
                removed = await self._snapshots.reap()
            except cloud_errors.CloudError as exc:
                log.warning("backups marked deleted not swept yet (%s); trying again in %g s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(2 * delay, 300.0)
                continue
            if removed:
                log.info("start-up sweep: %d backup(s) marked deleted were removed", removed)
            return

    async def aclose(self) -> None:
        if self._sweep is not None:
            self._sweep.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweep
        await self._late.aclose()
        await self._cloud.aclose()

    # -- volumes ----------------------------------------------------------------------------------

    async def CreateVolume(
        self, request: csi_pb2.CreateVolumeRequest, context: Context
    ) -> csi_pb2.CreateVolumeResponse:
        new = _new_volume(request)
        with self._inflight.guard(("volume-name", new.name)):
            volume = await self._creator.create(new)
        return csi_pb2.CreateVolumeResponse(volume=volume_message(volume))

    async def DeleteVolume(
        self, request: csi_pb2.DeleteVolumeRequest, context: Context
    ) -> csi_pb2.DeleteVolumeResponse:
        volume_id = require(request.volume_id, "volume_id")
        with self._inflight.guard(("volume", volume_id)):
            await self._changes.delete(volume_id)
        return csi_pb2.DeleteVolumeResponse()

    async def ControllerPublishVolume(
        self, request: csi_pb2.ControllerPublishVolumeRequest, context: Context
    ) -> csi_pb2.ControllerPublishVolumeResponse:
        volume_id = require(request.volume_id, "volume_id")
        node_id = require(request.node_id, "node_id")
        capability = request.volume_capability if request.HasField("volume_capability") else None
        needs = check_capabilities([capability] if capability else [], "volume_capability")
        if request.readonly:
            raise InvalidArgument(
                "readonly: this driver does not publish read-only (no PUBLISH_READONLY capability); "
                "Xloud attaches volumes read-write and the node mounts read-only access modes read-only"
            )
        with self._inflight.guard(("volume", volume_id)):
            publish_context = await self._attacher.publish(volume_id, node_id, needs)
        return csi_pb2.ControllerPublishVolumeResponse(publish_context=publish_context)

    async def ControllerUnpublishVolume(
        self, request: csi_pb2.ControllerUnpublishVolumeRequest, context: Context
    ) -> csi_pb2.ControllerUnpublishVolumeResponse:
        volume_id = require(request.volume_id, "volume_id")
        with self._inflight.guard(("volume", volume_id)):
            await self._attacher.unpublish(volume_id, request.node_id)
        return csi_pb2.ControllerUnpublishVolumeResponse()

    async def ValidateVolumeCapabilities(
        self, request: csi_pb2.ValidateVolumeCapabilitiesRequest, context: Context
    ) -> csi_pb2.ValidateVolumeCapabilitiesResponse:
        volume_id = require(request.volume_id, "volume_id")
        needs = check_capabilities(request.volume_capabilities, "volume_capabilities")
        volume = await fetch_volume(self._cloud.storage, volume_id)
        try:
            parse_volume_parameters(request.parameters, request.mutable_parameters)
        except InvalidArgument as exc:
            return csi_pb2.ValidateVolumeCapabilitiesResponse(message=exc.message)
        refusal = multi_node_refusal(needs, volume.multiattach)
        if refusal is not None:
            return csi_pb2.ValidateVolumeCapabilitiesResponse(message=refusal)
        confirmed = csi_pb2.ValidateVolumeCapabilitiesResponse.Confirmed(
            volume_context=request.volume_context,
            volume_capabilities=request.volume_capabilities,
            parameters=request.parameters,
            mutable_parameters=request.mutable_parameters,
        )
        return csi_pb2.ValidateVolumeCapabilitiesResponse(confirmed=confirmed)

    async def ListVolumes(
        self, request: csi_pb2.ListVolumesRequest, context: Context
    ) -> csi_pb2.ListVolumesResponse:
        listing = await self._lister.volumes(check_max_entries(request.max_entries), request.starting_token)
        # Only attachments to servers that still exist count as published, so the attacher's
        # reconciliation detaches VolumeAttachments of deleted nodes (one server list per page).
        attached = any(volume.attached_server_ids for volume in listing.items)
        servers = await self._states.existing() if attached else frozenset[str]()
        entries = [self._entry(volume, servers) for volume in listing.items]
        return csi_pb2.ListVolumesResponse(entries=entries, next_token=listing.next_token)

    def _entry(self, volume: Volume, servers: frozenset[str]) -> csi_pb2.ListVolumesResponse.Entry:
        published = [s for s in dict.fromkeys(volume.attached_server_ids) if s in servers]
        status = csi_pb2.ListVolumesResponse.VolumeStatus(
            published_node_ids=published, volume_condition=self._judge.condition(volume)
        )
        return csi_pb2.ListVolumesResponse.Entry(volume=volume_message(volume), status=status)

    async def ControllerGetVolume(
        self, request: csi_pb2.ControllerGetVolumeRequest, context: Context
    ) -> csi_pb2.ControllerGetVolumeResponse:
        volume = await fetch_volume(self._cloud.storage, require(request.volume_id, "volume_id"))
        published = await self._states.live(tuple(dict.fromkeys(volume.attached_server_ids)))
        status = csi_pb2.ControllerGetVolumeResponse.VolumeStatus(
            published_node_ids=published, volume_condition=self._judge.condition(volume)
        )
        return csi_pb2.ControllerGetVolumeResponse(volume=volume_message(volume), status=status)

    async def GetCapacity(
        self, request: csi_pb2.GetCapacityRequest, context: Context
    ) -> csi_pb2.GetCapacityResponse:
        if request.volume_capabilities:
            check_capabilities(request.volume_capabilities, "volume_capabilities")
        parameters = parse_volume_parameters(request.parameters, {})
        capacity = await self._capacity.capacity(parameters.volume_type)
        response = csi_pb2.GetCapacityResponse(
            available_capacity=capacity.available_bytes,
            minimum_volume_size=Int64Value(value=MIN_VOLUME_GIB * GIB),
        )
        if capacity.maximum_volume_bytes is not None:
            response.maximum_volume_size.CopyFrom(Int64Value(value=capacity.maximum_volume_bytes))
        return response

    async def ControllerGetCapabilities(
        self, request: csi_pb2.ControllerGetCapabilitiesRequest, context: Context
    ) -> csi_pb2.ControllerGetCapabilitiesResponse:
        capabilities = [csi_pb2.ControllerServiceCapability(rpc=_RPC(type=kind)) for kind in CAPABILITIES]
        return csi_pb2.ControllerGetCapabilitiesResponse(capabilities=capabilities)

    async def ControllerExpandVolume(
        self, request: csi_pb2.ControllerExpandVolumeRequest, context: Context
    ) -> csi_pb2.ControllerExpandVolumeResponse:
        volume_id = require(request.volume_id, "volume_id")
        if not request.HasField("capacity_range"):
            raise InvalidArgument("capacity_range is required")
        new_size = size_gib(request.capacity_range)
        block = False
        if request.HasField("volume_capability"):
            block = check_capabilities([request.volume_capability], "volume_capability").block
        with self._inflight.guard(("volume", volume_id)):
            volume = await self._changes.expand(volume_id, new_size)
        # A raw block device needs nothing from the node; a filesystem must be grown there.
        return csi_pb2.ControllerExpandVolumeResponse(
            capacity_bytes=volume.size_gib * GIB, node_expansion_required=not block
        )

    async def ControllerModifyVolume(
        self, request: csi_pb2.ControllerModifyVolumeRequest, context: Context
    ) -> csi_pb2.ControllerModifyVolumeResponse:
        volume_id = require(request.volume_id, "volume_id")
        if not request.mutable_parameters:
            raise InvalidArgument("mutable_parameters is required")
        change = parse_mutable_parameters(request.mutable_parameters)
        with self._inflight.guard(("volume", volume_id)):
            await self._changes.modify(volume_id, change)
        return csi_pb2.ControllerModifyVolumeResponse()

    # -- snapshots --------------------------------------------------------------------------------

    async def CreateSnapshot(
        self, request: csi_pb2.CreateSnapshotRequest, context: Context
    ) -> csi_pb2.CreateSnapshotResponse:
        new = NewSnapshot(
            name=require(request.name, "name"),
            source_volume_id=require(request.source_volume_id, "source_volume_id"),
            parameters=parse_snapshot_parameters(request.parameters),
        )
        with self._inflight.guard(("snapshot-name", new.name)):
            item = await self._snapshots.create(new)
        return csi_pb2.CreateSnapshotResponse(snapshot=snapshot_message(item))

    async def DeleteSnapshot(
        self, request: csi_pb2.DeleteSnapshotRequest, context: Context
    ) -> csi_pb2.DeleteSnapshotResponse:
        snapshot_id = require(request.snapshot_id, "snapshot_id")
        with self._inflight.guard(("snapshot", snapshot_id)):
            await self._snapshots.delete(snapshot_id)
        return csi_pb2.DeleteSnapshotResponse()

    async def ListSnapshots(
        self, request: csi_pb2.ListSnapshotsRequest, context: Context
    ) -> csi_pb2.ListSnapshotsResponse:
        limit = check_max_entries(request.max_entries)
        if request.snapshot_id:
            # Spec: a snapshot_id that names nothing gives an empty list, not an error.
            item = await self._snapshots.lookup(request.snapshot_id)
            wanted = item is not None and (
                not request.source_volume_id or item.volume_id == request.source_volume_id
            )
            items = [item] if wanted and item is not None else []
            entries = [csi_pb2.ListSnapshotsResponse.Entry(snapshot=snapshot_message(i)) for i in items]
            return csi_pb2.ListSnapshotsResponse(entries=entries)
        listing = await self._lister.snapshots(limit, request.starting_token, request.source_volume_id)
        entries = [
            csi_pb2.ListSnapshotsResponse.Entry(snapshot=snapshot_message(item)) for item in listing.items
        ]
        return csi_pb2.ListSnapshotsResponse(entries=entries, next_token=listing.next_token)

    async def GetSnapshot(
        self, request: csi_pb2.GetSnapshotRequest, context: Context
    ) -> csi_pb2.GetSnapshotResponse:
        item = await self._snapshots.get(require(request.snapshot_id, "snapshot_id"))
        return csi_pb2.GetSnapshotResponse(snapshot=snapshot_message(item))


def _new_volume(request: csi_pb2.CreateVolumeRequest) -> NewVolume:
    """Validate a CreateVolume request into what VolumeCreator needs."""
    name = require(request.name, "name")
    needs = check_capabilities(request.volume_capabilities, "volume_capabilities")
    parameters = parse_volume_parameters(request.parameters, request.mutable_parameters)
    requirement = (
        request.accessibility_requirements if request.HasField("accessibility_requirements") else None
    )
    capacity = request.capacity_range if request.HasField("capacity_range") else None
    size_gib(capacity)  # refuse a bad range before anything else
    return NewVolume(
        name=name,
        capacity=capacity,
        needs=needs,
        parameters=parameters,
        requirement=requirement,
        zone=zone_from_topology(requirement) or parameters.availability_zone,
        source=_content_source(request),
    )


def _content_source(request: csi_pb2.CreateVolumeRequest) -> ContentSource | None:
    """The requested source; a CSI snapshot id names a Storage snapshot or backup (see controller/ids.py)."""
    if not request.HasField("volume_content_source"):
        return None
    source = request.volume_content_source
    kind = source.WhichOneof("type")
    if kind == "volume":
        volume_id = require(source.volume.volume_id, "volume_content_source.volume.volume_id")
        return ContentSource(SourceKind.VOLUME, volume_id)
    if kind == "snapshot":
        snapshot_id = require(source.snapshot.snapshot_id, "volume_content_source.snapshot.snapshot_id")
        ref = parse_snapshot_id(snapshot_id)
        if ref is None:
            raise NotFound(f"volume_content_source: snapshot {snapshot_id!r} does not exist")
        return ContentSource(SourceKind.BACKUP if ref.backup else SourceKind.SNAPSHOT, ref.storage_id)
    raise InvalidArgument("volume_content_source: only snapshot and volume sources are supported")
