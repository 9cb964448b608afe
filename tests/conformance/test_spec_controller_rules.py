"""The CSI v1.12.0 spec's MUST rules for the Controller service, one test per rule, against the emulator.

Each test quotes the rule it checks. Requests go through the real unix socket and interceptor.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest

from csi_xloud import TOPOLOGY_KEY
from csi_xloud._proto import csi_pb2
from tests.controller.harness import (
    GIB,
    AccessMode,
    Harness,
    expect_code,
    gib_range,
    mount_cap,
    unique,
    zone_requirement,
)

MISSING_ID = "5b0c7b43-0000-4000-8000-0000000000ee"
_RPC = csi_pb2.ControllerServiceCapability.RPC

# (RPC, request missing one REQUIRED field, the field the error must name)
MISSING_FIELDS: list[tuple[str, Any, str]] = [
    ("CreateVolume", csi_pb2.CreateVolumeRequest(volume_capabilities=[mount_cap()]), "name"),
    ("CreateVolume", csi_pb2.CreateVolumeRequest(name="x"), "volume_capabilities"),
    ("DeleteVolume", csi_pb2.DeleteVolumeRequest(), "volume_id"),
    (
        "ControllerPublishVolume",
        csi_pb2.ControllerPublishVolumeRequest(node_id="n", volume_capability=mount_cap()),
        "volume_id",
    ),
    (
        "ControllerPublishVolume",
        csi_pb2.ControllerPublishVolumeRequest(volume_id="v", volume_capability=mount_cap()),
        "node_id",
    ),
    (
        "ControllerPublishVolume",
        csi_pb2.ControllerPublishVolumeRequest(volume_id="v", node_id="n"),
        "volume_capability",
    ),
    ("ControllerUnpublishVolume", csi_pb2.ControllerUnpublishVolumeRequest(node_id="n"), "volume_id"),
    (
        "ValidateVolumeCapabilities",
        csi_pb2.ValidateVolumeCapabilitiesRequest(volume_capabilities=[mount_cap()]),
        "volume_id",
    ),
    (
        "ValidateVolumeCapabilities",
        csi_pb2.ValidateVolumeCapabilitiesRequest(volume_id="v"),
        "volume_capabilities",
    ),
    ("ControllerGetVolume", csi_pb2.ControllerGetVolumeRequest(), "volume_id"),
    ("CreateSnapshot", csi_pb2.CreateSnapshotRequest(name="s"), "source_volume_id"),
    ("CreateSnapshot", csi_pb2.CreateSnapshotRequest(source_volume_id="v"), "name"),
    ("DeleteSnapshot", csi_pb2.DeleteSnapshotRequest(), "snapshot_id"),
    ("GetSnapshot", csi_pb2.GetSnapshotRequest(), "snapshot_id"),
    (
        "ControllerExpandVolume",
        csi_pb2.ControllerExpandVolumeRequest(capacity_range=gib_range(2)),
        "volume_id",
    ),
    ("ControllerExpandVolume", csi_pb2.ControllerExpandVolumeRequest(volume_id="v"), "capacity_range"),
    (
        "ControllerModifyVolume",
        csi_pb2.ControllerModifyVolumeRequest(mutable_parameters={"type": "archive"}),
        "volume_id",
    ),
    ("ControllerModifyVolume", csi_pb2.ControllerModifyVolumeRequest(volume_id="v"), "mutable_parameters"),
]


@pytest.mark.parametrize(
    ("method", "request_", "field"), MISSING_FIELDS, ids=[f"{m}-{f}" for m, _, f in MISSING_FIELDS]
)
async def test_a_missing_required_field_is_invalid_argument_naming_it(
    ctl: Harness, method: str, request_: Any, field: str
) -> None:
    """Spec, Error Scheme: a required field missing -> 3 INVALID_ARGUMENT; ours names the field."""
    await expect_code(getattr(ctl.stub, method)(request_), grpc.StatusCode.INVALID_ARGUMENT, field)


async def test_every_advertised_capability_is_implemented(ctl: Harness) -> None:
    """Spec: a plugin MUST implement the RPCs of the capabilities it reports (never UNIMPLEMENTED)."""
    response = await ctl.stub.ControllerGetCapabilities(csi_pb2.ControllerGetCapabilitiesRequest())
    volume = await ctl.create_volume()
    stub, vid = ctl.stub, volume.volume_id
    probes: dict[int, list[Callable[[], Awaitable[Any]]]] = {
        _RPC.CREATE_DELETE_VOLUME: [
            lambda: stub.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=MISSING_ID))
        ],
        _RPC.PUBLISH_UNPUBLISH_VOLUME: [
            lambda: stub.ControllerUnpublishVolume(
                csi_pb2.ControllerUnpublishVolumeRequest(volume_id=MISSING_ID)
            )
        ],
        _RPC.LIST_VOLUMES: [lambda: stub.ListVolumes(csi_pb2.ListVolumesRequest())],
        _RPC.GET_CAPACITY: [lambda: stub.GetCapacity(csi_pb2.GetCapacityRequest())],
        _RPC.CREATE_DELETE_SNAPSHOT: [
            lambda: stub.DeleteSnapshot(csi_pb2.DeleteSnapshotRequest(snapshot_id=MISSING_ID))
        ],
        _RPC.LIST_SNAPSHOTS: [lambda: stub.ListSnapshots(csi_pb2.ListSnapshotsRequest())],
        _RPC.GET_VOLUME: [
            lambda: stub.ControllerGetVolume(csi_pb2.ControllerGetVolumeRequest(volume_id=vid))
        ],
        _RPC.GET_SNAPSHOT: [lambda: stub.GetSnapshot(csi_pb2.GetSnapshotRequest(snapshot_id=MISSING_ID))],
        _RPC.EXPAND_VOLUME: [
            lambda: stub.ControllerExpandVolume(
                csi_pb2.ControllerExpandVolumeRequest(volume_id=vid, capacity_range=gib_range(1))
            )
        ],
        _RPC.MODIFY_VOLUME: [
            lambda: stub.ControllerModifyVolume(
                csi_pb2.ControllerModifyVolumeRequest(volume_id=vid, mutable_parameters={"type": "standard"})
            )
        ],
    }
    for capability in response.capabilities:
        for probe in probes.get(capability.rpc.type, []):
            try:
                await probe()
            except grpc.aio.AioRpcError as exc:
                assert exc.code() != grpc.StatusCode.UNIMPLEMENTED, capability
    assert set(probes) <= {c.rpc.type for c in response.capabilities}


async def test_create_volume_repeated_answers_the_same(ctl: Harness) -> None:
    """Spec: CreateVolume MUST be idempotent; a compatible repeat of a name MUST reply 0 OK with the volume."""
    request = csi_pb2.CreateVolumeRequest(
        name=unique("pvc"), volume_capabilities=[mount_cap()], capacity_range=gib_range(1, 2)
    )
    first = await ctl.stub.CreateVolume(request)
    assert await ctl.stub.CreateVolume(request) == first


async def test_create_volume_incompatible_repeat_is_already_exists(ctl: Harness) -> None:
    """Spec: a volume with the name exists but is incompatible -> 6 ALREADY_EXISTS."""
    name = unique("pvc")
    await ctl.create_volume(name, size_gib=1)
    bigger = csi_pb2.CreateVolumeRequest(
        name=name, volume_capabilities=[mount_cap()], capacity_range=gib_range(4)
    )
    await expect_code(ctl.stub.CreateVolume(bigger), grpc.StatusCode.ALREADY_EXISTS)
    elsewhere = csi_pb2.CreateVolumeRequest(
        name=name,
        volume_capabilities=[mount_cap()],
        accessibility_requirements=zone_requirement(requisite=("zone-b",)),
    )
    await expect_code(ctl.stub.CreateVolume(elsewhere), grpc.StatusCode.ALREADY_EXISTS, "zone")


async def test_create_volume_honours_capacity_range_and_requisite_topology(ctl: Harness) -> None:
    """Spec: the volume MUST be at least required_bytes and not more than limit_bytes, in a requisite zone."""
    request = csi_pb2.CreateVolumeRequest(
        name=unique("pvc"),
        volume_capabilities=[mount_cap()],
        capacity_range=csi_pb2.CapacityRange(required_bytes=GIB // 2, limit_bytes=2 * GIB),
        accessibility_requirements=zone_requirement(requisite=("zone-b",)),
    )
    volume = (await ctl.stub.CreateVolume(request)).volume
    assert GIB // 2 <= volume.capacity_bytes <= 2 * GIB
    assert [t.segments[TOPOLOGY_KEY] for t in volume.accessible_topology] == ["zone-b"]


async def test_delete_volume_of_a_missing_id_is_ok_and_repeats_are_ok(ctl: Harness) -> None:
    """Spec: if the volume does not exist, DeleteVolume MUST reply 0 OK."""
    volume = await ctl.create_volume()
    for _ in range(2):
        await ctl.stub.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=volume.volume_id))
    await ctl.stub.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=MISSING_ID))


async def test_publish_repeated_answers_the_same_context(ctl: Harness) -> None:
    """Spec: already published to the node and compatible -> MUST reply 0 OK."""
    volume = await ctl.create_volume()
    assert await ctl.publish(volume.volume_id, "node-a") == await ctl.publish(volume.volume_id, "node-a")


async def test_publish_errors(ctl: Harness) -> None:
    """Spec: NOT_FOUND for an unknown volume or node; FAILED_PRECONDITION naming the node it is published at."""
    volume = await ctl.create_volume()
    for volume_id, node_id in ((MISSING_ID, ctl.node("node-a")), (volume.volume_id, MISSING_ID)):
        request = csi_pb2.ControllerPublishVolumeRequest(
            volume_id=volume_id, node_id=node_id, volume_capability=mount_cap()
        )
        await expect_code(ctl.stub.ControllerPublishVolume(request), grpc.StatusCode.NOT_FOUND)
    await ctl.publish(volume.volume_id, "node-a")
    await expect_code(
        ctl.publish(volume.volume_id, "node-b"), grpc.StatusCode.FAILED_PRECONDITION, ctl.node("node-a")
    )


async def test_unpublish_of_what_is_not_attached_is_ok(ctl: Harness) -> None:
    """Spec: not attached to the node -> MUST reply 0 OK; volume or node gone -> SHOULD reply 0 OK."""
    volume = await ctl.create_volume()
    for volume_id, node_id in (
        (volume.volume_id, ctl.node("node-a")),
        (MISSING_ID, ctl.node("node-a")),
        (volume.volume_id, MISSING_ID),
        (MISSING_ID, ""),
    ):
        await ctl.stub.ControllerUnpublishVolume(
            csi_pb2.ControllerUnpublishVolumeRequest(volume_id=volume_id, node_id=node_id)
        )


async def test_validate_confirms_only_supported_capabilities_and_missing_is_not_found(ctl: Harness) -> None:
    """Spec: confirmed only if all capabilities are supported; unknown volume -> 5 NOT_FOUND."""
    volume = await ctl.create_volume()
    multi_mount = csi_pb2.ValidateVolumeCapabilitiesRequest(
        volume_id=volume.volume_id,
        volume_capabilities=[mount_cap(), mount_cap(AccessMode.MULTI_NODE_MULTI_WRITER)],
    )
    assert not (await ctl.stub.ValidateVolumeCapabilities(multi_mount)).HasField("confirmed")
    missing = csi_pb2.ValidateVolumeCapabilitiesRequest(
        volume_id=MISSING_ID, volume_capabilities=[mount_cap()]
    )
    await expect_code(ctl.stub.ValidateVolumeCapabilities(missing), grpc.StatusCode.NOT_FOUND)


async def test_list_volumes_respects_max_entries_and_an_invalid_token_is_aborted(ctl: Harness) -> None:
    """Spec: MUST NOT return more than max_entries, MUST set next_token when more; bad token -> 10 ABORTED."""
    for _ in range(3):
        await ctl.create_volume()
    page = await ctl.stub.ListVolumes(csi_pb2.ListVolumesRequest(max_entries=2))
    assert len(page.entries) == 2 and page.next_token
    await expect_code(
        ctl.stub.ListVolumes(csi_pb2.ListVolumesRequest(starting_token="bogus token")),
        grpc.StatusCode.ABORTED,
    )


async def test_get_volume_of_a_missing_id_is_not_found(ctl: Harness) -> None:
    """Spec: ControllerGetVolume of a volume that no longer exists -> 5 NOT_FOUND."""
    await expect_code(
        ctl.stub.ControllerGetVolume(csi_pb2.ControllerGetVolumeRequest(volume_id=MISSING_ID)),
        grpc.StatusCode.NOT_FOUND,
    )


async def test_volume_condition_is_set_when_advertised(ctl: Harness) -> None:
    """Spec: with VOLUME_CONDITION, ControllerGetVolume MUST provide a non-empty volume_condition."""
    volume = await ctl.create_volume()
    got = await ctl.stub.ControllerGetVolume(csi_pb2.ControllerGetVolumeRequest(volume_id=volume.volume_id))
    assert got.status.HasField("volume_condition") and got.status.volume_condition.message


async def test_create_snapshot_repeated_answers_the_same_and_another_volume_is_already_exists(
    ctl: Harness,
) -> None:
    """Spec: CreateSnapshot MUST be idempotent; the name for another volume -> 6 ALREADY_EXISTS."""
    volume, other = await ctl.create_volume(), await ctl.create_volume()
    name = unique("snap")
    ready = await ctl.ready_snapshot(volume.volume_id, name)
    assert await ctl.snapshot(volume.volume_id, name) == ready
    await expect_code(ctl.snapshot(other.volume_id, name), grpc.StatusCode.ALREADY_EXISTS)


async def test_delete_snapshot_of_a_missing_id_is_ok_and_repeats_are_ok(ctl: Harness) -> None:
    """Spec: if the snapshot does not exist, DeleteSnapshot MUST reply 0 OK."""
    volume = await ctl.create_volume()
    snapshot = await ctl.ready_snapshot(volume.volume_id, type="backup")
    for snapshot_id in (snapshot.snapshot_id, snapshot.snapshot_id, MISSING_ID):
        await ctl.stub.DeleteSnapshot(csi_pb2.DeleteSnapshotRequest(snapshot_id=snapshot_id))


async def test_list_snapshots_of_a_missing_id_is_empty_and_an_invalid_token_is_aborted(ctl: Harness) -> None:
    """Spec: listing by a snapshot_id that names nothing is an empty list; invalid starting_token -> 10 ABORTED."""
    empty = await ctl.stub.ListSnapshots(csi_pb2.ListSnapshotsRequest(snapshot_id=MISSING_ID))
    assert not empty.entries
    await expect_code(
        ctl.stub.ListSnapshots(csi_pb2.ListSnapshotsRequest(starting_token="bogus")), grpc.StatusCode.ABORTED
    )


async def test_get_snapshot_of_a_missing_id_is_not_found(ctl: Harness) -> None:
    """Spec: GetSnapshot of a snapshot that no longer exists -> 5 NOT_FOUND."""
    await expect_code(
        ctl.stub.GetSnapshot(csi_pb2.GetSnapshotRequest(snapshot_id=MISSING_ID)), grpc.StatusCode.NOT_FOUND
    )


async def test_expand_repeated_or_to_a_smaller_size_is_ok_with_the_current_size(ctl: Harness) -> None:
    """Spec: ControllerExpandVolume MUST be idempotent; already at least the target SHOULD reply 0 OK."""
    volume = await ctl.create_volume()
    request = csi_pb2.ControllerExpandVolumeRequest(volume_id=volume.volume_id, capacity_range=gib_range(2))
    first = await ctl.stub.ControllerExpandVolume(request)
    assert await ctl.stub.ControllerExpandVolume(request) == first
    smaller = csi_pb2.ControllerExpandVolumeRequest(volume_id=volume.volume_id, capacity_range=gib_range(1))
    assert (await ctl.stub.ControllerExpandVolume(smaller)).capacity_bytes == 2 * GIB


async def test_expand_and_modify_of_a_missing_volume_are_not_found(ctl: Harness) -> None:
    """Spec: ControllerExpandVolume and ControllerModifyVolume of an unknown volume -> 5 NOT_FOUND."""
    await expect_code(
        ctl.stub.ControllerExpandVolume(
            csi_pb2.ControllerExpandVolumeRequest(volume_id=MISSING_ID, capacity_range=gib_range(2))
        ),
        grpc.StatusCode.NOT_FOUND,
    )
    await expect_code(
        ctl.stub.ControllerModifyVolume(
            csi_pb2.ControllerModifyVolumeRequest(
                volume_id=MISSING_ID, mutable_parameters={"type": "archive"}
            )
        ),
        grpc.StatusCode.NOT_FOUND,
    )


async def test_modify_repeated_is_ok_and_bad_parameters_change_nothing(ctl: Harness) -> None:
    """Spec: ControllerModifyVolume MUST be idempotent; INVALID_ARGUMENT MUST NOT have applied any change."""
    volume = await ctl.create_volume()
    request = csi_pb2.ControllerModifyVolumeRequest(
        volume_id=volume.volume_id, mutable_parameters={"type": "shared"}
    )
    for _ in range(2):
        await ctl.stub.ControllerModifyVolume(request)
    bad = csi_pb2.ControllerModifyVolumeRequest(
        volume_id=volume.volume_id, mutable_parameters={"type": "archive", "bogus": "1"}
    )
    await expect_code(ctl.stub.ControllerModifyVolume(bad), grpc.StatusCode.INVALID_ARGUMENT, "bogus")
    assert (await ctl.cloud.storage.get_volume(volume.volume_id)).volume_type == "shared"


async def test_secrets_are_accepted_and_never_echoed(ctl: Harness) -> None:
    """Spec, Secrets Requirements: secrets are OPTIONAL input; a plugin never returns them."""
    request = csi_pb2.CreateVolumeRequest(
        name=unique("pvc"), volume_capabilities=[mount_cap()], secrets={"password": "hunter2"}
    )
    response = await ctl.stub.CreateVolume(request)
    assert "hunter2" not in str(response)


async def test_a_second_call_for_a_busy_snapshot_name_is_aborted(ctl: Harness) -> None:
    """Spec: operation pending for the snapshot -> the plugin MAY reject secondary calls with 10 ABORTED."""
    volume = await ctl.create_volume()
    name = unique("snap")
    # The cloud answers the first call's name lookup slowly, so the second arrives while it is busy.
    ctl.emulator.set_faults([{"method": "GET", "path": r"/snapshots/detail$", "delay": 0.5, "count": 1}])
    first = asyncio.ensure_future(ctl.snapshot(volume.volume_id, name))
    await asyncio.sleep(0.2)
    await expect_code(ctl.snapshot(volume.volume_id, name), grpc.StatusCode.ABORTED, "in progress")
    created = await first
    assert (await ctl.snapshot(volume.volume_id, name)).snapshot_id == created.snapshot_id
