"""Bad input to every controller RPC: the documented gRPC code, a message naming the field, and no
mutating request reaching the cloud (counted by the emulator's stats).

The controller runs in-process on a real unix socket over the emulator. Real objects (a volume, a
snapshot, a node) exist so that "an id of another kind" is a real id that names something else.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message

from csi_xloud._proto import csi_pb2
from csi_xloud.cloud.models import VolumeStatus
from csi_xloud.demo.orchestrator import Mode, mount_capability
from csi_xloud.emulator.process import EmulatorProcess
from tests.faults.lifecycle import GIB
from tests.faults.support import InProcessController, census, controller_on_socket, member_client, mutations

INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
OK = grpc.StatusCode.OK
LONG = "x" * 4096
NOT_OURS = str(uuid.uuid4())  # well-formed, names nothing


@dataclass(frozen=True, slots=True)
class World:
    """Real ids of each kind."""

    volume_id: str
    snapshot_id: str
    node_id: str


@dataclass(frozen=True, slots=True)
class Case:
    rpc: str
    what: str
    request: Callable[[World], Message]
    code: grpc.StatusCode
    fragment: str  # the field the message must name ("" when the answer is OK)


def cap(mode: int = Mode.SINGLE_NODE_WRITER, fs: str = "ext4") -> csi_pb2.VolumeCapability:
    return mount_capability(fs, mode)


def rng(required: int, limit: int = 0) -> csi_pb2.CapacityRange:
    return csi_pb2.CapacityRange(required_bytes=required, limit_bytes=limit)


def create(**fields: Any) -> Callable[[World], Message]:
    def build(w: World) -> Message:
        base: dict[str, Any] = {"name": "pvc-bad", "capacity_range": rng(GIB), "volume_capabilities": [cap()]}
        base.update({k: (v(w) if callable(v) else v) for k, v in fields.items()})
        return csi_pb2.CreateVolumeRequest(**{k: v for k, v in base.items() if v is not None})

    return build


def make(kind: type[Message], **fields: Any) -> Callable[[World], Message]:
    def build(w: World) -> Message:
        return kind(**{k: (v(w) if callable(v) else v) for k, v in fields.items()})

    return build


def vol(w: World) -> str:
    return w.volume_id


def snap(w: World) -> str:
    return w.snapshot_id


def node(w: World) -> str:
    return w.node_id


C = csi_pb2
CASES = [
    # CreateVolume
    Case("CreateVolume", "missing name", create(name=None), INVALID, "name"),
    Case("CreateVolume", "very long name", create(name=LONG), INVALID, "name"),
    Case("CreateVolume", "control character in name", create(name="pvc\x07bell"), INVALID, "name"),
    Case(
        "CreateVolume", "missing capabilities", create(volume_capabilities=[]), INVALID, "volume_capabilities"
    ),
    Case(
        "CreateVolume",
        "capability without access type",
        create(volume_capabilities=[C.VolumeCapability(access_mode=Mode(mode=Mode.SINGLE_NODE_WRITER))]),
        INVALID,
        "volume_capabilities",
    ),
    Case(
        "CreateVolume",
        "unknown access mode",
        create(volume_capabilities=[cap(Mode.UNKNOWN)]),
        INVALID,
        "volume_capabilities",
    ),
    Case(
        "CreateVolume",
        "multi-node writer on a single-attach type",
        create(volume_capabilities=[cap(Mode.MULTI_NODE_MULTI_WRITER)]),
        INVALID,
        "volume_capabilities",
    ),
    Case(
        "CreateVolume",
        "required above limit",
        create(capacity_range=rng(3 * GIB, 2 * GIB)),
        INVALID,
        "capacity_range",
    ),
    Case("CreateVolume", "negative required", create(capacity_range=rng(-1)), INVALID, "capacity_range"),
    Case(
        "CreateVolume",
        "limit below the smallest volume",
        create(capacity_range=rng(1, GIB // 2)),
        grpc.StatusCode.OUT_OF_RANGE,
        "capacity_range",
    ),
    Case(
        "CreateVolume", "unknown parameter key", create(parameters={"color": "blue"}), INVALID, "parameters"
    ),
    Case(
        "CreateVolume",
        "unsupported fstype",
        create(parameters={"csi.storage.k8s.io/fstype": "ntfs"}),
        INVALID,
        "fstype",
    ),
    Case(
        "CreateVolume",
        "fstype in the capability",
        create(volume_capabilities=[cap(fs="ntfs")]),
        INVALID,
        "fs_type",
    ),
    Case(
        "CreateVolume",
        "unknown volume type",
        create(parameters={"type": "no-such-type"}),
        INVALID,
        "parameters[type]",
    ),
    Case(
        "CreateVolume", "very long parameter value", create(parameters={"type": LONG}), INVALID, "parameters"
    ),
    Case(
        "CreateVolume",
        "a volume id as the snapshot source",
        create(
            volume_content_source=lambda w: C.VolumeContentSource(
                snapshot=C.VolumeContentSource.SnapshotSource(snapshot_id=w.volume_id)
            )
        ),
        NOT_FOUND,
        "snapshot",
    ),
    Case(
        "CreateVolume",
        "a snapshot id as the volume source",
        create(
            volume_content_source=lambda w: C.VolumeContentSource(
                volume=C.VolumeContentSource.VolumeSource(volume_id=w.snapshot_id)
            )
        ),
        NOT_FOUND,
        "volume",
    ),
    # DeleteVolume
    Case("DeleteVolume", "missing volume_id", make(C.DeleteVolumeRequest), INVALID, "volume_id"),
    Case(
        "DeleteVolume",
        "very long volume_id",
        make(C.DeleteVolumeRequest, volume_id=LONG),
        INVALID,
        "volume_id",
    ),
    # Spec: an id that names no volume is already deleted -> OK; the snapshot it names stays.
    Case("DeleteVolume", "a snapshot id", make(C.DeleteVolumeRequest, volume_id=snap), OK, ""),
    Case("DeleteVolume", "a node id", make(C.DeleteVolumeRequest, volume_id=node), OK, ""),
    # ControllerPublishVolume
    Case(
        "ControllerPublishVolume",
        "missing volume_id",
        make(C.ControllerPublishVolumeRequest, node_id=node, volume_capability=cap()),
        INVALID,
        "volume_id",
    ),
    Case(
        "ControllerPublishVolume",
        "missing node_id",
        make(C.ControllerPublishVolumeRequest, volume_id=vol, volume_capability=cap()),
        INVALID,
        "node_id",
    ),
    Case(
        "ControllerPublishVolume",
        "missing capability",
        make(C.ControllerPublishVolumeRequest, volume_id=vol, node_id=node),
        INVALID,
        "volume_capability",
    ),
    Case(
        "ControllerPublishVolume",
        "very long node_id",
        make(C.ControllerPublishVolumeRequest, volume_id=vol, node_id=LONG, volume_capability=cap()),
        INVALID,
        "node_id",
    ),
    Case(
        "ControllerPublishVolume",
        "a snapshot id as volume_id",
        make(C.ControllerPublishVolumeRequest, volume_id=snap, node_id=node, volume_capability=cap()),
        NOT_FOUND,
        "volume_id",
    ),
    Case(
        "ControllerPublishVolume",
        "a volume id as node_id",
        make(C.ControllerPublishVolumeRequest, volume_id=vol, node_id=vol, volume_capability=cap()),
        NOT_FOUND,
        "node_id",
    ),
    Case(
        "ControllerPublishVolume",
        "read-only publish",
        make(
            C.ControllerPublishVolumeRequest,
            volume_id=vol,
            node_id=node,
            volume_capability=cap(),
            readonly=True,
        ),
        INVALID,
        "readonly",
    ),
    Case(
        "ControllerPublishVolume",
        "multi-node writer on a single-attach volume",
        make(
            C.ControllerPublishVolumeRequest,
            volume_id=vol,
            node_id=node,
            volume_capability=cap(Mode.MULTI_NODE_MULTI_WRITER),
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        "volume_capability",
    ),
    # ControllerUnpublishVolume
    Case(
        "ControllerUnpublishVolume",
        "missing volume_id",
        make(C.ControllerUnpublishVolumeRequest, node_id=node),
        INVALID,
        "volume_id",
    ),
    Case(
        "ControllerUnpublishVolume",
        "a snapshot id (nothing attached: OK)",
        make(C.ControllerUnpublishVolumeRequest, volume_id=snap, node_id=node),
        OK,
        "",
    ),
    # ValidateVolumeCapabilities
    Case(
        "ValidateVolumeCapabilities",
        "missing volume_id",
        make(C.ValidateVolumeCapabilitiesRequest, volume_capabilities=[cap()]),
        INVALID,
        "volume_id",
    ),
    Case(
        "ValidateVolumeCapabilities",
        "missing capabilities",
        make(C.ValidateVolumeCapabilitiesRequest, volume_id=vol),
        INVALID,
        "volume_capabilities",
    ),
    Case(
        "ValidateVolumeCapabilities",
        "a snapshot id",
        make(C.ValidateVolumeCapabilitiesRequest, volume_id=snap, volume_capabilities=[cap()]),
        NOT_FOUND,
        "volume_id",
    ),
    # ListVolumes / ListSnapshots
    Case(
        "ListVolumes",
        "invalid starting_token",
        make(C.ListVolumesRequest, starting_token="not-a-token"),
        grpc.StatusCode.ABORTED,
        "starting_token",
    ),
    Case(
        "ListVolumes",
        "negative max_entries",
        make(C.ListVolumesRequest, max_entries=-1),
        INVALID,
        "max_entries",
    ),
    Case(
        "ListSnapshots",
        "invalid starting_token",
        make(C.ListSnapshotsRequest, starting_token="z:nonsense"),
        grpc.StatusCode.ABORTED,
        "starting_token",
    ),
    Case(
        "ListSnapshots",
        "negative max_entries",
        make(C.ListSnapshotsRequest, max_entries=-5),
        INVALID,
        "max_entries",
    ),
    # GetCapacity
    Case(
        "GetCapacity",
        "unknown parameter key",
        make(C.GetCapacityRequest, parameters={"color": "blue"}),
        INVALID,
        "parameters",
    ),
    Case(
        "GetCapacity",
        "unknown access mode",
        make(C.GetCapacityRequest, volume_capabilities=[cap(Mode.UNKNOWN)]),
        INVALID,
        "volume_capabilities",
    ),
    # ControllerGetVolume
    Case(
        "ControllerGetVolume", "missing volume_id", make(C.ControllerGetVolumeRequest), INVALID, "volume_id"
    ),
    Case(
        "ControllerGetVolume",
        "a snapshot id",
        make(C.ControllerGetVolumeRequest, volume_id=snap),
        NOT_FOUND,
        "volume_id",
    ),
    Case(
        "ControllerGetVolume",
        "an id that names nothing",
        make(C.ControllerGetVolumeRequest, volume_id=NOT_OURS),
        NOT_FOUND,
        "volume_id",
    ),
    # ControllerExpandVolume
    Case(
        "ControllerExpandVolume",
        "missing volume_id",
        make(C.ControllerExpandVolumeRequest, capacity_range=rng(2 * GIB)),
        INVALID,
        "volume_id",
    ),
    Case(
        "ControllerExpandVolume",
        "missing capacity_range",
        make(C.ControllerExpandVolumeRequest, volume_id=vol),
        INVALID,
        "capacity_range",
    ),
    Case(
        "ControllerExpandVolume",
        "required above limit",
        make(C.ControllerExpandVolumeRequest, volume_id=vol, capacity_range=rng(3 * GIB, 2 * GIB)),
        INVALID,
        "capacity_range",
    ),
    Case(
        "ControllerExpandVolume",
        "a snapshot id",
        make(C.ControllerExpandVolumeRequest, volume_id=snap, capacity_range=rng(2 * GIB)),
        NOT_FOUND,
        "volume_id",
    ),
    Case(
        "ControllerExpandVolume",
        "unknown access mode",
        make(
            C.ControllerExpandVolumeRequest,
            volume_id=vol,
            capacity_range=rng(2 * GIB),
            volume_capability=cap(Mode.UNKNOWN),
        ),
        INVALID,
        "volume_capability",
    ),
    # ControllerModifyVolume
    Case(
        "ControllerModifyVolume",
        "missing volume_id",
        make(C.ControllerModifyVolumeRequest, mutable_parameters={"type": "standard"}),
        INVALID,
        "volume_id",
    ),
    Case(
        "ControllerModifyVolume",
        "no mutable_parameters",
        make(C.ControllerModifyVolumeRequest, volume_id=vol),
        INVALID,
        "mutable_parameters",
    ),
    Case(
        "ControllerModifyVolume",
        "unknown key",
        make(C.ControllerModifyVolumeRequest, volume_id=vol, mutable_parameters={"color": "blue"}),
        INVALID,
        "mutable_parameters",
    ),
    Case(
        "ControllerModifyVolume",
        "empty type",
        make(C.ControllerModifyVolumeRequest, volume_id=vol, mutable_parameters={"type": ""}),
        INVALID,
        "mutable_parameters[type]",
    ),
    Case(
        "ControllerModifyVolume",
        "bad migration policy",
        make(
            C.ControllerModifyVolumeRequest,
            volume_id=vol,
            mutable_parameters={"type": "standard", "migration-policy": "sometimes"},
        ),
        INVALID,
        "migration-policy",
    ),
    Case(
        "ControllerModifyVolume",
        "a snapshot id",
        make(C.ControllerModifyVolumeRequest, volume_id=snap, mutable_parameters={"type": "standard"}),
        NOT_FOUND,
        "volume_id",
    ),
    # CreateSnapshot
    Case(
        "CreateSnapshot", "missing name", make(C.CreateSnapshotRequest, source_volume_id=vol), INVALID, "name"
    ),
    Case(
        "CreateSnapshot",
        "missing source_volume_id",
        make(C.CreateSnapshotRequest, name="snap-bad"),
        INVALID,
        "source_volume_id",
    ),
    Case(
        "CreateSnapshot",
        "very long name",
        make(C.CreateSnapshotRequest, name=LONG, source_volume_id=vol),
        INVALID,
        "name",
    ),
    Case(
        "CreateSnapshot",
        "unknown parameter key",
        make(C.CreateSnapshotRequest, name="snap-bad", source_volume_id=vol, parameters={"color": "blue"}),
        INVALID,
        "parameters",
    ),
    Case(
        "CreateSnapshot",
        "bad type",
        make(C.CreateSnapshotRequest, name="snap-bad", source_volume_id=vol, parameters={"type": "tape"}),
        INVALID,
        "type",
    ),
    Case(
        "CreateSnapshot",
        "bad force-create",
        make(
            C.CreateSnapshotRequest,
            name="snap-bad",
            source_volume_id=vol,
            parameters={"force-create": "perhaps"},
        ),
        INVALID,
        "force-create",
    ),
    Case(
        "CreateSnapshot",
        "a node id as source",
        make(C.CreateSnapshotRequest, name="snap-bad", source_volume_id=node),
        NOT_FOUND,
        "source_volume_id",
    ),
    Case(
        "CreateSnapshot",
        "a snapshot id as source",
        make(C.CreateSnapshotRequest, name="snap-bad", source_volume_id=snap),
        NOT_FOUND,
        "source_volume_id",
    ),
    # DeleteSnapshot / GetSnapshot
    Case("DeleteSnapshot", "missing snapshot_id", make(C.DeleteSnapshotRequest), INVALID, "snapshot_id"),
    Case(
        "DeleteSnapshot",
        "very long snapshot_id",
        make(C.DeleteSnapshotRequest, snapshot_id=LONG),
        INVALID,
        "snapshot_id",
    ),
    Case(
        "DeleteSnapshot",
        "a volume id (names no snapshot: OK)",
        make(C.DeleteSnapshotRequest, snapshot_id=vol),
        OK,
        "",
    ),
    Case("GetSnapshot", "missing snapshot_id", make(C.GetSnapshotRequest), INVALID, "snapshot_id"),
    Case("GetSnapshot", "a volume id", make(C.GetSnapshotRequest, snapshot_id=vol), NOT_FOUND, "snapshot_id"),
]


@pytest.fixture(scope="module")
def quiet_cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    with EmulatorProcess(tmp_path_factory.mktemp("bad-input") / "cloud", op_seconds=0.02) as emulator:
        yield emulator


async def make_world(emulator: EmulatorProcess) -> World:
    async with member_client(emulator) as cloud:
        volume = await cloud.storage.create_volume("bad-input-volume", 1)
        await cloud.storage.wait_for_volume(volume.id, VolumeStatus.AVAILABLE, timeout_seconds=20)
        snapshot = await cloud.storage.create_snapshot(volume.id, "bad-input-snapshot")
        await cloud.storage.wait_for_snapshot(snapshot.id, timeout_seconds=20)
    return World(volume.id, snapshot.id, str(emulator.servers[0]["id"]))


async def unmake_world(emulator: EmulatorProcess, world: World) -> None:
    async with member_client(emulator) as cloud:
        await cloud.storage.delete_snapshot(world.snapshot_id)
        await cloud.storage.wait_for_snapshot_deleted(world.snapshot_id, timeout_seconds=20)
        await cloud.storage.delete_volume(world.volume_id)
        await cloud.storage.wait_for_volume_deleted(world.volume_id, timeout_seconds=20)


@pytest.fixture(scope="module")
def world(quiet_cloud: EmulatorProcess) -> Iterator[World]:
    """A volume, a snapshot and a node that every case may name; they must survive every case."""
    made = asyncio.run(make_world(quiet_cloud))
    try:
        yield made
        census_after = asyncio.run(census(quiet_cloud))
        assert census_after.volumes == (made.volume_id,) and census_after.snapshots == (made.snapshot_id,)
    finally:
        asyncio.run(unmake_world(quiet_cloud, made))


@pytest.fixture
async def ctl(quiet_cloud: EmulatorProcess, short_tmp: Path) -> AsyncIterator[InProcessController]:
    async with controller_on_socket(quiet_cloud, short_tmp) as controller:
        yield controller


@pytest.mark.parametrize("case", CASES, ids=[f"{c.rpc}-{c.what}" for c in CASES])
async def test_bad_input_is_refused_and_changes_nothing(
    case: Case, world: World, ctl: InProcessController, quiet_cloud: EmulatorProcess
) -> None:
    request = case.request(world)
    before = quiet_cloud.stats()
    code, message = OK, ""
    try:
        await getattr(ctl.stub, case.rpc)(request, timeout=30)
    except grpc.aio.AioRpcError as error:
        code, message = error.code(), error.details() or ""
    assert code == case.code, f"{case.rpc} {case.what}: {code.name}: {message}"
    assert case.fragment in message, f"the message does not name {case.fragment!r}: {message!r}"
    assert len(message) < 1024, "the message echoes the whole bad input"
    assert mutations(before, quiet_cloud.stats()) == {}, "a refused request changed the cloud"


async def test_the_table_covers_every_controller_rpc_that_takes_input() -> None:
    takes_input = {m.name for m in csi_pb2.DESCRIPTOR.services_by_name["Controller"].methods} - {
        "ControllerGetCapabilities"
    }
    assert takes_input <= {c.rpc for c in CASES}
