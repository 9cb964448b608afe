"""ListVolumes, ControllerGetVolume, GetCapacity, ValidateVolumeCapabilities, capabilities and readiness."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc

from csi_xloud._proto import csi_pb2
from csi_xloud.cloud.client import CloudClient
from csi_xloud.cloud.settings import load_cloud_settings
from csi_xloud.controller.service import ControllerService
from csi_xloud.emulator.process import EmulatorProcess, free_port
from csi_xloud.inflight import InFlight
from csi_xloud.metrics import Metrics
from tests.controller.harness import (
    GIB,
    AccessMode,
    Harness,
    block_cap,
    expect_code,
    mount_cap,
    running_controller,
)

MISSING_ID = "5b0c7b43-0000-4000-8000-0000000000dd"
_RPC = csi_pb2.ControllerServiceCapability.RPC


async def test_list_volumes_pages_and_reports_published_nodes(ctl: Harness) -> None:
    volumes = [await ctl.create_volume() for _ in range(5)]
    await ctl.publish(volumes[1].volume_id, "node-b")
    seen: dict[str, csi_pb2.ListVolumesResponse.Entry] = {}
    token = ""
    pages = 0
    while True:
        page = await ctl.stub.ListVolumes(csi_pb2.ListVolumesRequest(max_entries=2, starting_token=token))
        assert len(page.entries) <= 2
        pages += 1
        seen.update((e.volume.volume_id, e) for e in page.entries)
        token = page.next_token
        if not token:
            break
    assert pages >= 3
    assert set(seen) == {v.volume_id for v in volumes}
    assert list(seen[volumes[1].volume_id].status.published_node_ids) == [ctl.node("node-b")]
    assert not seen[volumes[0].volume_id].status.published_node_ids
    assert not seen[volumes[0].volume_id].status.volume_condition.abnormal
    everything = await ctl.stub.ListVolumes(csi_pb2.ListVolumesRequest())
    assert {e.volume.volume_id for e in everything.entries} == set(seen) and not everything.next_token


async def test_list_volumes_with_a_bad_token_is_aborted(ctl: Harness) -> None:
    await ctl.create_volume()
    for token in ("../../etc", MISSING_ID):
        await expect_code(
            ctl.stub.ListVolumes(csi_pb2.ListVolumesRequest(starting_token=token)),
            grpc.StatusCode.ABORTED,
            "starting_token",
        )
    await expect_code(
        ctl.stub.ListVolumes(csi_pb2.ListVolumesRequest(max_entries=-1)), grpc.StatusCode.INVALID_ARGUMENT
    )


async def test_get_volume_reports_condition_and_nodes(ctl: Harness) -> None:
    volume = await ctl.create_volume()
    await ctl.publish(volume.volume_id, "node-a")
    got = await ctl.stub.ControllerGetVolume(csi_pb2.ControllerGetVolumeRequest(volume_id=volume.volume_id))
    assert got.volume.volume_id == volume.volume_id and got.volume.capacity_bytes == GIB
    assert list(got.status.published_node_ids) == [ctl.node("node-a")]
    assert not got.status.volume_condition.abnormal
    assert "in-use" in got.status.volume_condition.message
    await expect_code(
        ctl.stub.ControllerGetVolume(csi_pb2.ControllerGetVolumeRequest(volume_id=MISSING_ID)),
        grpc.StatusCode.NOT_FOUND,
    )


async def test_a_volume_in_error_is_abnormal(ctl: Harness) -> None:
    volume = await ctl.create_volume()
    await ctl.admin.reset_status(volume.volume_id, "error_extending")
    got = await ctl.stub.ControllerGetVolume(csi_pb2.ControllerGetVolumeRequest(volume_id=volume.volume_id))
    assert got.status.volume_condition.abnormal
    assert "error_extending" in got.status.volume_condition.message


async def test_a_volume_stuck_in_a_transition_is_abnormal(emulator: EmulatorProcess, short_tmp: Path) -> None:
    later = datetime.now(UTC) + timedelta(hours=2)
    async with running_controller(emulator, short_tmp, now=lambda: later) as ctl:
        volume = await ctl.create_volume()
        await ctl.admin.reset_status(volume.volume_id, "detaching")
        got = await ctl.stub.ControllerGetVolume(
            csi_pb2.ControllerGetVolumeRequest(volume_id=volume.volume_id)
        )
        assert got.status.volume_condition.abnormal
        assert "stuck" in got.status.volume_condition.message
        await ctl.admin.reset_status(volume.volume_id, "available")
        healthy = await ctl.stub.ControllerGetVolume(
            csi_pb2.ControllerGetVolumeRequest(volume_id=volume.volume_id)
        )
        assert not healthy.status.volume_condition.abnormal


async def test_capacity_is_what_the_quota_leaves(ctl: Harness) -> None:
    await ctl.create_volume(size_gib=3)
    usage = await ctl.cloud.storage.get_quota_usage()
    item = usage.gigabytes
    assert item is not None
    expected = (item.limit - item.in_use - item.reserved) * GIB
    response = await ctl.stub.GetCapacity(csi_pb2.GetCapacityRequest(volume_capabilities=[mount_cap()]))
    assert response.available_capacity == expected
    assert response.minimum_volume_size.value == GIB
    assert not response.HasField("maximum_volume_size")


async def test_capacity_honours_the_per_type_quota_and_the_volume_size_limit(ctl: Harness) -> None:
    await ctl.admin.set_quota(gigabytes_archive=7, per_volume_gigabytes=50)
    try:
        await ctl.stub.CreateVolume(
            csi_pb2.CreateVolumeRequest(
                name="cap-archive",
                volume_capabilities=[mount_cap()],
                parameters={"type": "archive"},
                capacity_range=csi_pb2.CapacityRange(required_bytes=2 * GIB),
            )
        )
        response = await ctl.stub.GetCapacity(csi_pb2.GetCapacityRequest(parameters={"type": "archive"}))
        assert response.available_capacity == 5 * GIB
        assert response.maximum_volume_size.value == 50 * GIB
        overall = await ctl.stub.GetCapacity(csi_pb2.GetCapacityRequest())
        assert overall.available_capacity > 5 * GIB
    finally:
        await ctl.admin.set_quota(gigabytes_archive=-1, per_volume_gigabytes=-1)


async def test_capacity_with_a_bad_parameter_is_invalid(ctl: Harness) -> None:
    for parameters in ({"iops": "1"}, {"type": "gold"}):
        await expect_code(
            ctl.stub.GetCapacity(csi_pb2.GetCapacityRequest(parameters=parameters)),
            grpc.StatusCode.INVALID_ARGUMENT,
        )


async def test_validate_volume_capabilities(ctl: Harness) -> None:
    volume = await ctl.create_volume()
    single = csi_pb2.ValidateVolumeCapabilitiesRequest(
        volume_id=volume.volume_id,
        volume_capabilities=[mount_cap(), block_cap()],
        parameters={"type": "standard"},
    )
    answer = await ctl.stub.ValidateVolumeCapabilities(single)
    assert list(answer.confirmed.volume_capabilities) == list(single.volume_capabilities)
    assert dict(answer.confirmed.parameters) == {"type": "standard"}
    shared = csi_pb2.ValidateVolumeCapabilitiesRequest(
        volume_id=volume.volume_id, volume_capabilities=[block_cap(AccessMode.MULTI_NODE_MULTI_WRITER)]
    )
    refused = await ctl.stub.ValidateVolumeCapabilities(shared)
    assert not refused.HasField("confirmed") and "multiattach" in refused.message
    unknown_key = csi_pb2.ValidateVolumeCapabilitiesRequest(
        volume_id=volume.volume_id, volume_capabilities=[mount_cap()], parameters={"iops": "1"}
    )
    assert "iops" in (await ctl.stub.ValidateVolumeCapabilities(unknown_key)).message
    missing = csi_pb2.ValidateVolumeCapabilitiesRequest(
        volume_id=MISSING_ID, volume_capabilities=[mount_cap()]
    )
    await expect_code(ctl.stub.ValidateVolumeCapabilities(missing), grpc.StatusCode.NOT_FOUND)


async def test_capabilities_are_advertised_without_readonly_publish(ctl: Harness) -> None:
    response = await ctl.stub.ControllerGetCapabilities(csi_pb2.ControllerGetCapabilitiesRequest())
    kinds = {c.rpc.type for c in response.capabilities}
    assert _RPC.PUBLISH_READONLY not in kinds
    assert {
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
        _RPC.MODIFY_VOLUME,
        _RPC.GET_SNAPSHOT,
        _RPC.SINGLE_NODE_MULTI_WRITER,
    } == kinds


async def test_readiness_needs_a_reachable_cloud_that_accepts_us(emulator: EmulatorProcess) -> None:
    settings = load_cloud_settings("xloud-emulator", emulator.clouds_yaml, {})
    ready = ControllerService(CloudClient(settings, Metrics()), InFlight())
    try:
        assert await ready.readiness() is None
    finally:
        await ready.aclose()
    wrong_password = ControllerService(
        CloudClient(dataclasses.replace(settings, password="wrong"), Metrics()), InFlight()
    )
    unreachable = ControllerService(
        CloudClient(
            dataclasses.replace(settings, auth_url=f"http://127.0.0.1:{free_port()}/identity/v3"),
            Metrics(),
        ),
        InFlight(),
    )
    try:
        for service in (wrong_password, unreachable):
            reason = await service.readiness()
            assert reason is not None and "cloud not ready" in reason
    finally:
        await wrong_password.aclose()
        await unreachable.aclose()
