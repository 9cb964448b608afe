"""What a sidecar sees when the cloud is slow or failing (the emulator's fault rules), and how its retry ends."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import grpc

from csi_xloud._proto import csi_pb2
from csi_xloud.cloud.models import VolumeStatus
from csi_xloud.emulator.process import EmulatorProcess
from tests.controller.harness import (
    TEST_TIMEOUTS,
    Harness,
    expect_code,
    gib_range,
    mount_cap,
    running_controller,
    unique,
)

VOLUME_PATH = r"/volume/v3/[^/]+/volumes/[0-9a-f-]{36}$"


def _request(name: str) -> csi_pb2.CreateVolumeRequest:
    return csi_pb2.CreateVolumeRequest(
        name=name, volume_capabilities=[mount_cap()], capacity_range=gib_range(1)
    )


async def test_a_slow_cloud_is_deadline_exceeded_and_the_retry_finds_the_volume(
    emulator: EmulatorProcess, short_tmp: Path
) -> None:
    # The cloud needs op_seconds (50 ms) to create a volume; this controller waits 1 ms only.
    impatient = dataclasses.replace(TEST_TIMEOUTS, create_seconds=0.001)
    async with running_controller(emulator, short_tmp, timeouts=impatient) as ctl:
        name = await _name_that_timed_out(ctl)
        (pending,) = await ctl.cloud.storage.find_volume_by_name(name)
        # The sidecar backs off before retrying; meanwhile the cloud finishes.
        await ctl.cloud.storage.wait_for_volume(pending.id, VolumeStatus.AVAILABLE, timeout_seconds=10)
        volume = (await ctl.stub.CreateVolume(_request(name))).volume
        assert volume.volume_id == pending.id
        assert [v.id for v in await ctl.cloud.storage.find_volume_by_name(name)] == [volume.volume_id]


async def _name_that_timed_out(ctl: Harness) -> str:
    """A CreateVolume that ran out of time (a loaded machine may answer the first poll late: try again)."""
    for _ in range(5):
        name = unique("pvc")
        try:
            await ctl.stub.CreateVolume(_request(name))
        except grpc.aio.AioRpcError as exc:
            assert exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED, exc.details()
            return name
    raise AssertionError("CreateVolume never ran out of time")


async def test_an_unavailable_cloud_is_unavailable_and_the_retry_creates_one_volume(ctl: Harness) -> None:
    name = unique("pvc")
    ctl.emulator.set_faults([{"method": "POST", "path": r"/volumes$", "status": 503, "count": 1}])
    await expect_code(ctl.stub.CreateVolume(_request(name)), grpc.StatusCode.UNAVAILABLE)
    volume = (await ctl.stub.CreateVolume(_request(name))).volume
    assert [v.id for v in await ctl.cloud.storage.find_volume_by_name(name)] == [volume.volume_id]


async def test_a_failed_detach_request_is_reported_and_the_retry_detaches(ctl: Harness) -> None:
    volume = await ctl.create_volume()
    await ctl.publish(volume.volume_id, "node-a")
    request = csi_pb2.ControllerUnpublishVolumeRequest(volume_id=volume.volume_id, node_id=ctl.node("node-a"))
    # Compute refuses the detach for now (409: the server is busy with another task).
    ctl.emulator.set_faults(
        [{"method": "DELETE", "path": r"/os-volume_attachments/", "status": 409, "count": 1}]
    )
    await expect_code(ctl.stub.ControllerUnpublishVolume(request), grpc.StatusCode.FAILED_PRECONDITION)
    assert (await ctl.cloud.storage.get_volume(volume.volume_id)).raw_status == "in-use"
    ctl.emulator.clear_faults()
    await ctl.stub.ControllerUnpublishVolume(request)
    assert (await ctl.cloud.storage.get_volume(volume.volume_id)).raw_status == "available"
