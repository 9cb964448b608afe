"""The CSI GroupController service: thin RPCs over controller.groups (see there for how it works)."""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp

from csi_xloud._proto import csi_pb2, csi_pb2_grpc
from csi_xloud.controller.groups import GroupSnapshotter, NewGroupSnapshot, TakenGroupSnapshot
from csi_xloud.controller.views import snapshot_message
from csi_xloud.inflight import InFlight
from csi_xloud.rpc.errors import InvalidArgument
from csi_xloud.rpc.types import Context
from csi_xloud.validation import check_string, parse_group_snapshot_parameters, require

_RPC = csi_pb2.GroupControllerServiceCapability.RPC
CAPABILITIES = (_RPC.CREATE_DELETE_GET_VOLUME_GROUP_SNAPSHOT,)


class GroupControllerService(csi_pb2_grpc.GroupControllerServicer):
    """CreateVolumeGroupSnapshot, DeleteVolumeGroupSnapshot and GetVolumeGroupSnapshot."""

    def __init__(self, snapshotter: GroupSnapshotter, inflight: InFlight) -> None:
        self._snapshotter = snapshotter
        self._inflight = inflight

    async def GroupControllerGetCapabilities(
        self, request: csi_pb2.GroupControllerGetCapabilitiesRequest, context: Context
    ) -> csi_pb2.GroupControllerGetCapabilitiesResponse:
        capabilities = [
            csi_pb2.GroupControllerServiceCapability(rpc=_RPC(type=kind)) for kind in CAPABILITIES
        ]
        return csi_pb2.GroupControllerGetCapabilitiesResponse(capabilities=capabilities)

    async def CreateVolumeGroupSnapshot(
        self, request: csi_pb2.CreateVolumeGroupSnapshotRequest, context: Context
    ) -> csi_pb2.CreateVolumeGroupSnapshotResponse:
        new = _new_group_snapshot(request)
        # Each volume's key too: a group snapshot sharing a volume, or any other change to one, waits.
        keys = [("group-snapshot-name", new.name), *(("volume", v) for v in new.source_volume_ids)]
        with self._inflight.guard(*keys):
            taken = await self._snapshotter.create(new)
        return csi_pb2.CreateVolumeGroupSnapshotResponse(group_snapshot=group_snapshot_message(taken))

    async def DeleteVolumeGroupSnapshot(
        self, request: csi_pb2.DeleteVolumeGroupSnapshotRequest, context: Context
    ) -> csi_pb2.DeleteVolumeGroupSnapshotResponse:
        group_snapshot_id = require(request.group_snapshot_id, "group_snapshot_id")
        with self._inflight.guard(("group-snapshot", group_snapshot_id)):
            await self._snapshotter.delete(group_snapshot_id, list(request.snapshot_ids))
        return csi_pb2.DeleteVolumeGroupSnapshotResponse()

    async def GetVolumeGroupSnapshot(
        self, request: csi_pb2.GetVolumeGroupSnapshotRequest, context: Context
    ) -> csi_pb2.GetVolumeGroupSnapshotResponse:
        group_snapshot_id = require(request.group_snapshot_id, "group_snapshot_id")
        taken = await self._snapshotter.get(group_snapshot_id, list(request.snapshot_ids))
        return csi_pb2.GetVolumeGroupSnapshotResponse(group_snapshot=group_snapshot_message(taken))


def _new_group_snapshot(request: csi_pb2.CreateVolumeGroupSnapshotRequest) -> NewGroupSnapshot:
    """Validate a CreateVolumeGroupSnapshot request."""
    name = require(request.name, "name")
    if not request.source_volume_ids:
        raise InvalidArgument("source_volume_ids is required")
    for volume_id in request.source_volume_ids:
        check_string(volume_id, "source_volume_ids")
    if len(set(request.source_volume_ids)) != len(request.source_volume_ids):
        raise InvalidArgument("source_volume_ids names a volume more than once")
    return NewGroupSnapshot(
        name=name,
        source_volume_ids=tuple(request.source_volume_ids),
        parameters=parse_group_snapshot_parameters(request.parameters),
    )


def group_snapshot_message(taken: TakenGroupSnapshot) -> csi_pb2.VolumeGroupSnapshot:
    """The CSI VolumeGroupSnapshot: the Storage group snapshot id and its members as CSI snapshots."""
    gsnap = taken.group_snapshot
    message = csi_pb2.VolumeGroupSnapshot(
        group_snapshot_id=gsnap.id,
        snapshots=[snapshot_message(member) for member in taken.members],
        ready_to_use=taken.ready,
    )
    for snapshot in message.snapshots:
        snapshot.group_snapshot_id = gsnap.id
        snapshot.ready_to_use = snapshot.ready_to_use and taken.ready
    if gsnap.created_at is not None:
        stamp = Timestamp()
        stamp.FromDatetime(gsnap.created_at)
        message.creation_time.CopyFrom(stamp)
    return message
