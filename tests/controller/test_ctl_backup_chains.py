"""Backup chains delete in any order: a full backup incrementals build on leaves CSI at once, the cloud later.

The Storage API refuses to delete a backup while incremental backups depend on it (400, as the
recorded Cinder answers). DeleteSnapshot answers OK all the same: the backup is marked deleted, no
CSI call sees it any more, and the cloud's copy goes as soon as nothing depends on it, when its
dependents are deleted or when a controller starts. Nothing is ever left behind.
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import grpc
import pytest

from csi_xloud._proto import csi_pb2
from csi_xloud.cloud.errors import Conflict
from csi_xloud.controller.ids import DELETED_METADATA_KEY
from csi_xloud.demo.cluster import DriverProcess
from csi_xloud.emulator.process import EmulatorProcess
from tests.controller.harness import (
    Harness,
    expect_code,
    gib_range,
    mount_cap,
    running_controller,
    unique,
    wait_gone,
)

ORDERS = list(itertools.permutations(range(3)))


def _storage_id(snapshot_id: str) -> str:
    return snapshot_id.removeprefix("backup:")


async def _chain(ctl: Harness, volume_id: str) -> list[str]:
    """A full backup and two incrementals, each building on the one before; their CSI snapshot ids."""
    chain = [
        (await ctl.ready_snapshot(volume_id, type="backup", incremental="true")).snapshot_id for _ in range(3)
    ]
    backups = [await ctl.cloud.storage.get_backup(_storage_id(s)) for s in chain]
    assert [b.is_incremental for b in backups] == [False, True, True]
    assert [b.has_dependent_backups for b in backups] == [True, True, False]
    return chain


async def _listed(ctl: Harness, volume_id: str) -> set[str]:
    response = await ctl.stub.ListSnapshots(csi_pb2.ListSnapshotsRequest(source_volume_id=volume_id))
    return {entry.snapshot.snapshot_id for entry in response.entries}


async def _expect_gone_for_csi(ctl: Harness, snapshot_id: str) -> None:
    await expect_code(
        ctl.stub.GetSnapshot(csi_pb2.GetSnapshotRequest(snapshot_id=snapshot_id)), grpc.StatusCode.NOT_FOUND
    )
    by_id = await ctl.stub.ListSnapshots(csi_pb2.ListSnapshotsRequest(snapshot_id=snapshot_id))
    assert list(by_id.entries) == []
    restore = csi_pb2.CreateVolumeRequest(
        name=unique("restore"),
        capacity_range=gib_range(1),
        volume_capabilities=[mount_cap()],
        volume_content_source=csi_pb2.VolumeContentSource(
            snapshot=csi_pb2.VolumeContentSource.SnapshotSource(snapshot_id=snapshot_id)
        ),
    )
    await expect_code(ctl.stub.CreateVolume(restore), grpc.StatusCode.NOT_FOUND)
    await ctl.stub.DeleteSnapshot(csi_pb2.DeleteSnapshotRequest(snapshot_id=snapshot_id))  # again: still OK


@pytest.mark.parametrize("order", ORDERS, ids=["-".join(map(str, o)) for o in ORDERS])
async def test_a_chain_of_three_backups_deletes_in_any_order_leaving_nothing(
    ctl: Harness, order: tuple[int, ...]
) -> None:
    volume = await ctl.create_volume()
    chain = await _chain(ctl, volume.volume_id)
    deleted: list[str] = []
    for index in order:
        await ctl.stub.DeleteSnapshot(csi_pb2.DeleteSnapshotRequest(snapshot_id=chain[index]))
        deleted.append(chain[index])
        await _expect_gone_for_csi(ctl, chain[index])
        assert await _listed(ctl, volume.volume_id) == set(chain) - set(deleted)
        # A cloud copy is kept exactly while a later link of the chain is still wanted.
        wanted = [i for i, s in enumerate(chain) if s not in deleted]
        needed = {_storage_id(s) for s in chain[: max(wanted, default=0)]} | {_storage_id(chain[i]) for i in wanted}
        in_cloud = {b.id for b in await ctl.cloud.storage.list_all_backups(volume.volume_id)}
        assert in_cloud == needed
        for backup_id in in_cloud & {_storage_id(s) for s in deleted}:
            assert DELETED_METADATA_KEY in (await ctl.cloud.storage.get_backup(backup_id)).metadata
    assert await ctl.cloud.storage.list_all_backups(volume.volume_id) == []


async def test_the_cloud_refuses_deleting_a_backup_others_depend_on(ctl: Harness) -> None:
    volume = await ctl.create_volume()
    chain = await _chain(ctl, volume.volume_id)
    with pytest.raises(Conflict, match="Incremental backups exist for this backup"):
        await ctl.cloud.storage.delete_backup(_storage_id(chain[0]))


async def test_a_controller_start_removes_marked_backups_whose_dependents_went_another_way(
    emulator: EmulatorProcess, short_tmp: Path
) -> None:
    async with running_controller(emulator, short_tmp) as first:
        volume = await first.create_volume()
        chain = await _chain(first, volume.volume_id)
        await first.stub.DeleteSnapshot(csi_pb2.DeleteSnapshotRequest(snapshot_id=chain[0]))
        await first.stub.DeleteSnapshot(csi_pb2.DeleteSnapshotRequest(snapshot_id=chain[1]))
        # The last incremental is deleted behind the driver's back (an operator, another tool).
        storage = first.cloud.storage
        await storage.delete_backup(_storage_id(chain[2]))
        await storage.wait_for_backup_deleted(_storage_id(chain[2]), timeout_seconds=20)
        left = {b.id for b in await storage.list_all_backups(volume.volume_id)}
        assert left == {_storage_id(chain[0]), _storage_id(chain[1])}

        async with running_controller(emulator, short_tmp / "second") as second:
            await second.service.sweep_deleted_backups()
            assert await second.cloud.storage.list_all_backups(volume.volume_id) == []


async def test_the_driver_process_sweeps_at_start(emulator: EmulatorProcess, short_tmp: Path) -> None:
    """`csi-xloud driver --mode controller` starts the sweep itself once it serves."""
    async with running_controller(emulator, short_tmp) as ctl:
        volume = await ctl.create_volume()
        full, middle, last = await _chain(ctl, volume.volume_id)
        await ctl.stub.DeleteSnapshot(csi_pb2.DeleteSnapshotRequest(snapshot_id=middle))  # marked: last needs it
        storage = ctl.cloud.storage
        await storage.delete_backup(_storage_id(last))  # behind the driver's back: nothing reaps the middle
        await storage.wait_for_backup_deleted(_storage_id(last), timeout_seconds=20)
        assert {b.id for b in await storage.list_all_backups(volume.volume_id)} == {
            _storage_id(full), _storage_id(middle)
        }

        socket = short_tmp / "driver" / "csi.sock"
        argv = [
            sys.executable, "-m", "csi_xloud", "driver", "--mode", "controller", "--endpoint", f"unix://{socket}",
            "--cloud", "xloud-emulator", "--cloud-config", str(emulator.clouds_yaml),
        ]
        driver = DriverProcess("controller", socket, argv, short_tmp / "driver.log")
        driver.start()
        try:
            driver.wait_for_socket()
            await wait_gone(lambda: storage.get_backup(_storage_id(middle)), seconds=20)
        finally:
            driver.stop()
        assert [b.id for b in await storage.list_all_backups(volume.volume_id)] == [_storage_id(full)]
