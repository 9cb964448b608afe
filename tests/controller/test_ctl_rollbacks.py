"""Changes the cloud accepts and then undoes fail at once with the cloud's reason, not at the deadline.

Each test runs a controller with the driver's own (long) timeouts and makes the emulator undo one
change through its fault rules, as Compute rolls back a failed attach or detach and the scheduler
refuses an extend; the call must fail within FAST_SECONDS, and the retry once the fault is gone works.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any

import grpc
import pytest

from csi_xloud._proto import csi_pb2
from csi_xloud.controller.volumes import Timeouts
from csi_xloud.emulator.process import EmulatorProcess
from tests.controller.harness import Harness, expect_code, gib_range, running_controller, wait_gone

FAST_SECONDS = 5.0
INJECTED = "the backend failed (injected by a fault rule)"


@pytest.fixture
async def patient(emulator: EmulatorProcess, short_tmp: Path) -> AsyncIterator[Harness]:
    """A controller that would wait minutes for the cloud (the driver's default timeouts)."""
    async with running_controller(emulator, short_tmp, timeouts=Timeouts()) as harness:
        yield harness


async def fails_fast(call: Awaitable[Any], code: grpc.StatusCode, *fragments: str) -> str:
    started = time.monotonic()
    message = await expect_code(call, code, *fragments)
    elapsed = time.monotonic() - started
    assert elapsed < FAST_SECONDS, f"took {elapsed:.1f} s to fail: {message}"
    return message


def _unpublish(ctl: Harness, volume_id: str) -> csi_pb2.ControllerUnpublishVolumeRequest:
    return csi_pb2.ControllerUnpublishVolumeRequest(volume_id=volume_id, node_id=ctl.node("node-a"))


async def test_an_attach_compute_rolls_back_fails_at_once_with_the_instance_actions_reason(
    patient: Harness,
) -> None:
    volume = await patient.create_volume()
    patient.emulator.set_faults([{"method": "POST", "path": r"/os-volume_attachments$", "outcome": "error"}])

    message = await fails_fast(
        patient.publish(volume.volume_id, "node-a"), grpc.StatusCode.INTERNAL,
        "is available again", f"the attach to node {patient.node('node-a')}", INJECTED,
    )

    assert "compute_attach_volume" in message
    stored = await patient.cloud.storage.get_volume(volume.volume_id)
    assert (stored.raw_status, stored.attached_server_ids) == ("available", ())
    patient.emulator.clear_faults()
    assert await patient.publish(volume.volume_id, "node-a")
    assert (await patient.cloud.storage.get_volume(volume.volume_id)).raw_status == "in-use"


async def test_a_detach_compute_rolls_back_fails_at_once_with_the_instance_actions_reason(
    patient: Harness,
) -> None:
    volume = await patient.create_volume()
    await patient.publish(volume.volume_id, "node-a")
    patient.emulator.set_faults([{"method": "DELETE", "path": r"/os-volume_attachments/", "outcome": "error"}])

    await fails_fast(
        patient.stub.ControllerUnpublishVolume(_unpublish(patient, volume.volume_id)), grpc.StatusCode.INTERNAL,
        "is in-use again", "the detach from node(s)", "compute_detach_volume", INJECTED,
    )

    stored = await patient.cloud.storage.get_volume(volume.volume_id)
    assert (stored.raw_status, stored.attached_server_ids) == ("in-use", (patient.node("node-a"),))
    patient.emulator.clear_faults()
    await patient.stub.ControllerUnpublishVolume(_unpublish(patient, volume.volume_id))
    assert (await patient.cloud.storage.get_volume(volume.volume_id)).raw_status == "available"


@pytest.mark.parametrize("attached", [False, True], ids=["offline", "online"])
async def test_an_extend_the_scheduler_refuses_fails_at_once_with_the_user_message(
    patient: Harness, attached: bool
) -> None:
    volume = await patient.create_volume(size_gib=1)
    if attached:
        await patient.publish(volume.volume_id, "node-a")
    patient.emulator.set_faults([{"method": "POST", "path": r"/action$", "outcome": "refused"}])
    request = csi_pb2.ControllerExpandVolumeRequest(volume_id=volume.volume_id, capacity_range=gib_range(2))

    await fails_fast(
        patient.stub.ControllerExpandVolume(request), grpc.StatusCode.INTERNAL,
        "again: the cloud undid the extend to 2 GiB",
        "extend volume:Could not find any available weighted backend.",
    )

    stored = await patient.cloud.storage.get_volume(volume.volume_id)
    assert (stored.raw_status, stored.size_gib) == ("in-use" if attached else "available", 1)
    patient.emulator.clear_faults()
    assert (await patient.stub.ControllerExpandVolume(request)).capacity_bytes == 2 << 30


async def test_an_extend_the_backend_fails_ends_at_once_with_the_user_message(patient: Harness) -> None:
    volume = await patient.create_volume(size_gib=1)
    patient.emulator.set_faults([{"method": "POST", "path": r"/action$", "outcome": "error"}])
    request = csi_pb2.ControllerExpandVolumeRequest(volume_id=volume.volume_id, capacity_range=gib_range(2))

    await fails_fast(
        patient.stub.ControllerExpandVolume(request), grpc.StatusCode.INTERNAL,
        "went to status error_extending", "extend volume:Volume Driver failed to extend volume.",
    )


async def test_a_retype_the_cloud_rolls_back_fails_at_once_keeping_the_old_type(patient: Harness) -> None:
    volume = await patient.create_volume()
    patient.emulator.set_faults([{"method": "POST", "path": r"/action$", "outcome": "error"}])
    request = csi_pb2.ControllerModifyVolumeRequest(
        volume_id=volume.volume_id, mutable_parameters={"type": "archive", "migration-policy": "on-demand"}
    )

    await fails_fast(
        patient.stub.ControllerModifyVolume(request), grpc.StatusCode.FAILED_PRECONDITION,
        "kept type standard", "the cloud undid the retype to archive",
    )

    stored = await patient.cloud.storage.get_volume(volume.volume_id)
    assert (stored.raw_status, stored.volume_type) == ("available", "standard")
    patient.emulator.clear_faults()
    await patient.stub.ControllerModifyVolume(request)
    assert (await patient.cloud.storage.get_volume(volume.volume_id)).volume_type == "archive"


async def test_a_restore_ending_in_error_restoring_fails_at_once_and_leaves_no_volume(patient: Harness) -> None:
    source = await patient.create_volume()
    backup = await patient.ready_snapshot(source.volume_id, type="backup")
    patient.emulator.set_faults([{"method": "POST", "path": r"/volumes$", "outcome": "error"}])
    name = f"restored-{backup.snapshot_id[-8:]}"
    request = csi_pb2.CreateVolumeRequest(
        name=name,
        capacity_range=gib_range(1),
        volume_capabilities=[csi_pb2.VolumeCapability(
            mount=csi_pb2.VolumeCapability.MountVolume(fs_type="ext4"),
            access_mode=csi_pb2.VolumeCapability.AccessMode(
                mode=csi_pb2.VolumeCapability.AccessMode.SINGLE_NODE_WRITER
            ),
        )],
        volume_content_source=csi_pb2.VolumeContentSource(
            snapshot=csi_pb2.VolumeContentSource.SnapshotSource(snapshot_id=backup.snapshot_id)
        ),
    )

    await fails_fast(
        patient.stub.CreateVolume(request), grpc.StatusCode.INTERNAL, "went to status error_restoring",
        "it was deleted",
    )

    await patient.retry(lambda: _no_volume_named(patient, name))
    patient.emulator.clear_faults()
    restored = (await patient.stub.CreateVolume(request)).volume
    assert (await patient.cloud.storage.get_volume(restored.volume_id)).raw_status == "available"


async def _no_volume_named(ctl: Harness, name: str) -> None:
    left = [v for v in await ctl.cloud.storage.find_volume_by_name(name) if v.raw_status != "deleting"]
    assert left == [], left


async def test_a_volume_deletion_the_backend_refuses_fails_at_once_and_the_retry_deletes(
    patient: Harness,
) -> None:
    volume = await patient.create_volume()
    patient.emulator.set_faults([{"method": "DELETE", "path": r"/volumes/", "outcome": "refused"}])
    request = csi_pb2.DeleteVolumeRequest(volume_id=volume.volume_id)

    await fails_fast(
        patient.stub.DeleteVolume(request), grpc.StatusCode.INTERNAL, "is available again: the cloud undid the deletion"
    )

    assert (await patient.cloud.storage.get_volume(volume.volume_id)).raw_status == "available"
    patient.emulator.clear_faults()
    await patient.stub.DeleteVolume(request)
    await wait_gone(lambda: patient.cloud.storage.get_volume(volume.volume_id))


async def test_a_snapshot_deletion_the_backend_refuses_fails_at_once(patient: Harness) -> None:
    volume = await patient.create_volume()
    snapshot = await patient.ready_snapshot(volume.volume_id)
    patient.emulator.set_faults([{"method": "DELETE", "path": r"/snapshots/", "outcome": "refused"}])
    request = csi_pb2.DeleteSnapshotRequest(snapshot_id=snapshot.snapshot_id)

    await fails_fast(
        patient.stub.DeleteSnapshot(request), grpc.StatusCode.INTERNAL, "the cloud undid the deletion"
    )

    patient.emulator.clear_faults()
    await patient.stub.DeleteSnapshot(request)
    await wait_gone(lambda: patient.cloud.storage.get_snapshot(snapshot.snapshot_id))


async def test_a_backup_deletion_the_backup_service_fails_ends_at_once_with_its_reason(patient: Harness) -> None:
    volume = await patient.create_volume()
    backup = await patient.ready_snapshot(volume.volume_id, type="backup")
    patient.emulator.set_faults([{"method": "DELETE", "path": r"/backups/", "outcome": "error"}])
    request = csi_pb2.DeleteSnapshotRequest(snapshot_id=backup.snapshot_id)

    await fails_fast(
        patient.stub.DeleteSnapshot(request), grpc.StatusCode.INTERNAL, "went to status error", INJECTED
    )

    patient.emulator.clear_faults()
    await patient.stub.DeleteSnapshot(request)
    await wait_gone(lambda: patient.cloud.storage.get_backup(backup.snapshot_id.removeprefix("backup:")))
