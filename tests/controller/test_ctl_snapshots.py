"""CreateSnapshot, DeleteSnapshot, ListSnapshots and GetSnapshot on Storage snapshots and backups."""

from __future__ import annotations

import asyncio

import grpc

from csi_xloud._proto import csi_pb2
from tests.controller.harness import GIB, Harness, expect_code, unique, wait_gone

MISSING_ID = "5b0c7b43-0000-4000-8000-0000000000cc"


def _delete(snapshot_id: str) -> csi_pb2.DeleteSnapshotRequest:
    return csi_pb2.DeleteSnapshotRequest(snapshot_id=snapshot_id)


async def _list(ctl: Harness, **fields: object) -> csi_pb2.ListSnapshotsResponse:
    return await ctl.stub.ListSnapshots(csi_pb2.ListSnapshotsRequest(**fields))  # type: ignore[arg-type]


async def test_snapshot_does_not_block_and_becomes_ready_when_asked_again(ctl: Harness) -> None:
    volume = await ctl.create_volume(size_gib=2)
    name = unique("snap")
    first = await ctl.snapshot(volume.volume_id, name)
    assert first.source_volume_id == volume.volume_id and first.size_bytes == 2 * GIB
    assert first.creation_time.seconds > 0
    ready = await ctl.ready_snapshot(volume.volume_id, name)
    assert ready.snapshot_id == first.snapshot_id and ready.ready_to_use
    assert (await ctl.cloud.storage.get_snapshot(ready.snapshot_id)).raw_status == "available"
    again = await ctl.snapshot(volume.volume_id, name)
    assert again == ready


async def test_same_snapshot_name_for_another_volume_already_exists(ctl: Harness) -> None:
    volume, other = await ctl.create_volume(), await ctl.create_volume()
    name = unique("snap")
    await ctl.ready_snapshot(volume.volume_id, name)
    await expect_code(ctl.snapshot(other.volume_id, name), grpc.StatusCode.ALREADY_EXISTS, other.volume_id)


async def test_snapshot_of_a_missing_volume_is_not_found(ctl: Harness) -> None:
    for kind in ("snapshot", "backup"):
        for force in ("true", "false"):
            parameters = {"type": kind, "force-create": force}
            for missing in (MISSING_ID, "not-a-volume"):
                await expect_code(
                    ctl.snapshot(missing, **parameters), grpc.StatusCode.NOT_FOUND, "source_volume_id", missing
                )
    assert not await ctl.cloud.storage.list_all_backups()
    assert not (await ctl.cloud.storage.list_snapshots()).items


def _made(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {key: n - before.get(key, 0) for key, n in after.items() if n != before.get(key, 0)}


async def test_a_first_create_snapshot_call_reads_only_what_it_answers_with(ctl: Harness) -> None:
    """The name look-up and the create; a backup is read back, since the cloud answers its create with
    the id alone. The source volume is not read first: the create's own 404 says it is missing."""
    volume = await ctl.create_volume()
    expected = {
        "snapshot": {"GET /volume/v3/{id}/snapshots/detail": 1, "POST /volume/v3/{id}/snapshots": 1},
        "backup": {
            "GET /volume/v3/{id}/backups/detail": 1,
            "POST /volume/v3/{id}/backups": 1,
            "GET /volume/v3/{id}/backups/{id}": 1,
        },
    }
    for kind, requests in expected.items():
        before = dict(ctl.emulator.stats()["requests"])
        first = await ctl.snapshot(volume.volume_id, type=kind)
        assert _made(before, ctl.emulator.stats()["requests"]) == requests, kind
        assert first.size_bytes == GIB and first.creation_time.seconds > 0
        assert first.source_volume_id == volume.volume_id


async def test_snapshot_of_an_attached_volume_needs_force_create(ctl: Harness) -> None:
    volume = await ctl.create_volume()
    await ctl.publish(volume.volume_id, "node-a")
    for kind in ("snapshot", "backup"):
        await expect_code(
            ctl.snapshot(volume.volume_id, type=kind, **{"force-create": "false"}),
            grpc.StatusCode.FAILED_PRECONDITION,
        )
    forced = await ctl.ready_snapshot(volume.volume_id)
    assert forced.ready_to_use
    backup = await ctl.ready_snapshot(volume.volume_id, type="backup")
    assert backup.ready_to_use


async def test_backups_are_snapshots_with_a_prefix_and_incrementals_build_on_the_last_one(
    ctl: Harness,
) -> None:
    volume = await ctl.create_volume()
    full = await ctl.ready_snapshot(volume.volume_id, type="backup", incremental="true")
    assert full.snapshot_id.startswith("backup:")
    full_id = full.snapshot_id.removeprefix("backup:")
    assert not (await ctl.cloud.storage.get_backup(full_id)).is_incremental  # nothing to build on yet
    incremental = await ctl.ready_snapshot(volume.volume_id, type="backup", incremental="true")
    incremental_id = incremental.snapshot_id.removeprefix("backup:")
    assert (await ctl.cloud.storage.get_backup(incremental_id)).is_incremental
    assert (await ctl.cloud.storage.get_backup(full_id)).has_dependent_backups
    await ctl.stub.DeleteSnapshot(_delete(incremental.snapshot_id))
    await wait_gone(lambda: ctl.cloud.storage.get_backup(incremental_id))
    await ctl.stub.DeleteSnapshot(_delete(full.snapshot_id))
    await wait_gone(lambda: ctl.cloud.storage.get_backup(full_id))


async def test_delete_snapshot_of_missing_ids_is_ok(ctl: Harness) -> None:
    for snapshot_id in (MISSING_ID, f"backup:{MISSING_ID}", "not a snapshot/"):
        await ctl.stub.DeleteSnapshot(_delete(snapshot_id))


async def test_delete_snapshot_removes_it(ctl: Harness) -> None:
    volume = await ctl.create_volume()
    snapshot = await ctl.ready_snapshot(volume.volume_id)
    await ctl.stub.DeleteSnapshot(_delete(snapshot.snapshot_id))
    await wait_gone(lambda: ctl.cloud.storage.get_snapshot(snapshot.snapshot_id))
    await ctl.stub.DeleteSnapshot(_delete(snapshot.snapshot_id))


async def test_get_snapshot_finds_snapshots_backups_and_plain_backup_ids(ctl: Harness) -> None:
    volume = await ctl.create_volume()
    snapshot = await ctl.ready_snapshot(volume.volume_id)
    backup = await ctl.ready_snapshot(volume.volume_id, type="backup")
    for item in (snapshot, backup):
        got = await ctl.stub.GetSnapshot(csi_pb2.GetSnapshotRequest(snapshot_id=item.snapshot_id))
        assert got.snapshot == item
    # An operator imports an existing backup by its plain Storage id.
    plain = backup.snapshot_id.removeprefix("backup:")
    imported = await ctl.stub.GetSnapshot(csi_pb2.GetSnapshotRequest(snapshot_id=plain))
    assert imported.snapshot.snapshot_id == backup.snapshot_id
    await expect_code(
        ctl.stub.GetSnapshot(csi_pb2.GetSnapshotRequest(snapshot_id=MISSING_ID)), grpc.StatusCode.NOT_FOUND
    )


async def test_list_snapshots_by_id_by_volume_and_in_pages(ctl: Harness) -> None:
    volume, other = await ctl.create_volume(), await ctl.create_volume()
    made = [
        await ctl.ready_snapshot(volume.volume_id),
        await ctl.ready_snapshot(volume.volume_id),
        await ctl.ready_snapshot(volume.volume_id, type="backup"),
        await ctl.ready_snapshot(other.volume_id, type="backup"),
    ]
    by_id = await _list(ctl, snapshot_id=made[2].snapshot_id)
    assert [e.snapshot for e in by_id.entries] == [made[2]]
    assert not (await _list(ctl, snapshot_id=MISSING_ID)).entries
    assert not (await _list(ctl, snapshot_id=made[2].snapshot_id, source_volume_id=other.volume_id)).entries
    by_volume = await _list(ctl, source_volume_id=volume.volume_id)
    assert {e.snapshot.snapshot_id for e in by_volume.entries} == {s.snapshot_id for s in made[:3]}
    seen: list[str] = []
    token = ""
    for _ in range(10):
        page = await _list(ctl, max_entries=1, starting_token=token)
        assert len(page.entries) <= 1
        seen.extend(e.snapshot.snapshot_id for e in page.entries)
        token = page.next_token
        if not token:
            break
    assert sorted(seen) == sorted(s.snapshot_id for s in made)


async def test_list_snapshots_with_a_bad_token_is_aborted(ctl: Harness) -> None:
    for token in ("nonsense", "s:../x", f"s:{MISSING_ID}", f"b:{MISSING_ID}"):
        await expect_code(_list(ctl, starting_token=token), grpc.StatusCode.ABORTED, "starting_token")
    await expect_code(_list(ctl, max_entries=-1), grpc.StatusCode.INVALID_ARGUMENT, "max_entries")


async def test_a_snapshot_that_fails_is_deleted_and_reported(ctl: Harness) -> None:
    volume = await ctl.create_volume()
    # The backend loses the volume's data: snapshots and backups of it fail in the cloud.
    (data_file,) = ctl.emulator.data_dir.rglob(f"{volume.volume_id}.img")
    data_file.unlink()
    try:
        for parameters in ({}, {"type": "backup"}):
            name = unique("snap")
            message = await _until_failed(ctl, volume.volume_id, name, parameters)
            assert "deleted" in message
            items = await (
                ctl.cloud.storage.find_backup_by_name(name)
                if parameters
                else ctl.cloud.storage.find_snapshot_by_name(name)
            )
            assert all(item.raw_status == "deleting" for item in items)
    finally:
        data_file.touch()


async def _until_failed(ctl: Harness, volume_id: str, name: str, parameters: dict[str, str]) -> str:
    for _ in range(200):
        try:
            snapshot = await ctl.snapshot(volume_id, name, **parameters)
        except grpc.aio.AioRpcError as exc:
            assert exc.code() == grpc.StatusCode.INTERNAL, exc.details()
            return exc.details() or ""
        assert not snapshot.ready_to_use
        await asyncio.sleep(0.02)
    raise AssertionError("the snapshot never failed")
