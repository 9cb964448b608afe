"""The GroupController over the emulator: group snapshots of volumes in no group, through transient groups."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import httpx
import pytest

from csi_xloud._proto import csi_pb2, csi_pb2_grpc
from csi_xloud.cloud import errors as cloud_errors
from csi_xloud.cloud.client import CloudClient
from csi_xloud.controller.groups import GROUP_DESCRIPTION, RELEASED_DESCRIPTION
from tests.controller.harness import Harness, cloud_client, expect_code, unique, wait_gone

GROUP_TYPE = {"group-type": "consistent"}


def _stub(ctl: Harness) -> csi_pb2_grpc.GroupControllerStub:
    assert ctl.groups is not None
    return ctl.groups


async def _take(
    ctl: Harness, volume_ids: list[str], name: str | None = None, **params: str
) -> csi_pb2.VolumeGroupSnapshot:
    request = csi_pb2.CreateVolumeGroupSnapshotRequest(
        name=name or unique("vgs"), source_volume_ids=volume_ids, parameters=params or GROUP_TYPE
    )
    return (await _stub(ctl).CreateVolumeGroupSnapshot(request)).group_snapshot


async def _delete(ctl: Harness, group_snapshot_id: str, snapshot_ids: list[str] | None = None) -> None:
    request = csi_pb2.DeleteVolumeGroupSnapshotRequest(
        group_snapshot_id=group_snapshot_id, snapshot_ids=snapshot_ids or []
    )
    await _stub(ctl).DeleteVolumeGroupSnapshot(request)


async def _get(
    ctl: Harness, group_snapshot_id: str, snapshot_ids: list[str] | None = None
) -> csi_pb2.VolumeGroupSnapshot:
    request = csi_pb2.GetVolumeGroupSnapshotRequest(
        group_snapshot_id=group_snapshot_id, snapshot_ids=snapshot_ids or []
    )
    return (await _stub(ctl).GetVolumeGroupSnapshot(request)).group_snapshot


@pytest.fixture
async def admin_http(ctl: Harness) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    """Admin calls on the Storage API (group types are the administrator's)."""
    admin: CloudClient = cloud_client(ctl.emulator, "xloud-emulator-admin")
    base = (await admin.auth.endpoint("volume")).rstrip("/")
    headers = {"X-Auth-Token": await admin.auth.token() or "", "OpenStack-API-Version": "volume 3.14"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=10) as http:
        yield http, base
    await admin.aclose()


async def test_two_volumes_snapshotted_together_and_left_as_they_were(ctl: Harness) -> None:
    first, second = await ctl.create_volume(), await ctl.create_volume(size_gib=2)
    ids = sorted([first.volume_id, second.volume_id])
    name = unique("vgs")
    taken = await _take(ctl, ids, name)
    assert taken.ready_to_use and taken.creation_time.seconds > 0
    assert sorted(s.source_volume_id for s in taken.snapshots) == ids
    assert all(s.group_snapshot_id == taken.group_snapshot_id and s.ready_to_use for s in taken.snapshots)
    for volume_id in ids:  # out of the group again
        assert (await ctl.cloud.storage.get_volume(volume_id)).group_id is None
    again = await _take(ctl, list(reversed(ids)), name)
    assert again == taken
    assert await _get(ctl, taken.group_snapshot_id, [s.snapshot_id for s in taken.snapshots]) == taken
    gsnaps = await ctl.cloud.groups.find_group_snapshots_by_name(name)
    assert [g.id for g in gsnaps] == [taken.group_snapshot_id]
    # A member is an ordinary CSI snapshot: shown with its group, restorable, not deletable alone.
    member = taken.snapshots[0]
    shown = (await ctl.stub.GetSnapshot(csi_pb2.GetSnapshotRequest(snapshot_id=member.snapshot_id))).snapshot
    assert shown.group_snapshot_id == taken.group_snapshot_id
    source = csi_pb2.VolumeContentSource(
        snapshot=csi_pb2.VolumeContentSource.SnapshotSource(snapshot_id=member.snapshot_id)
    )
    restored = await ctl.create_volume(size_gib=2, volume_content_source=source)
    assert restored.content_source.snapshot.snapshot_id == member.snapshot_id
    await expect_code(
        ctl.stub.DeleteSnapshot(csi_pb2.DeleteSnapshotRequest(snapshot_id=member.snapshot_id)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "DeleteVolumeGroupSnapshot",
    )
    group_id = gsnaps[0].group_id
    await _delete(ctl, taken.group_snapshot_id, [s.snapshot_id for s in taken.snapshots])
    for snapshot in taken.snapshots:
        await wait_gone(lambda s=snapshot.snapshot_id: ctl.cloud.storage.get_snapshot(s))
    await wait_gone(lambda: ctl.cloud.groups.get_group(group_id))
    await _delete(ctl, taken.group_snapshot_id)  # Spec: gone already -> OK
    await expect_code(_get(ctl, taken.group_snapshot_id), grpc.StatusCode.NOT_FOUND)


async def test_in_use_volumes_snapshotted_together(ctl: Harness) -> None:
    volumes = [await ctl.create_volume() for _ in range(2)]
    for volume in volumes:
        await ctl.publish(volume.volume_id, "node-a")
    taken = await _take(ctl, [v.volume_id for v in volumes])
    assert taken.ready_to_use and len(taken.snapshots) == 2
    for volume in volumes:
        after = await ctl.cloud.storage.get_volume(volume.volume_id)
        assert after.raw_status == "in-use" and after.group_id is None
    await _delete(ctl, taken.group_snapshot_id)


async def test_same_name_for_other_volumes_already_exists(ctl: Harness) -> None:
    first, second, third = [await ctl.create_volume() for _ in range(3)]
    name = unique("vgs")
    await _take(ctl, [first.volume_id, second.volume_id], name)
    await expect_code(
        _take(ctl, [first.volume_id, third.volume_id], name), grpc.StatusCode.ALREADY_EXISTS, third.volume_id
    )


async def test_snapshot_ids_that_do_not_match_are_refused(ctl: Harness) -> None:
    volume = await ctl.create_volume()
    taken = await _take(ctl, [volume.volume_id])
    await expect_code(
        _get(ctl, taken.group_snapshot_id, ["nope"]), grpc.StatusCode.INVALID_ARGUMENT, "snapshot_ids"
    )
    await expect_code(
        _delete(ctl, taken.group_snapshot_id, ["nope"]), grpc.StatusCode.INVALID_ARGUMENT, "snapshot_ids"
    )


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"group-type": "no-such-type"}, "no such group type"),
        ({"group-type": "default_cgsnapshot_type"}, "reserved"),
        ({"group-type": " "}, "parameters[group-type] is empty"),
        ({"group-type": "consistent", "type": "x"}, "unknown key 'type'"),
        ({"csi.storage.k8s.io/volumegroupsnapshot/name": "x"}, "no default group type"),
    ],
)
async def test_group_type_parameter_is_validated(ctl: Harness, params: dict[str, str], fragment: str) -> None:
    volume = await ctl.create_volume()
    await expect_code(_take(ctl, [volume.volume_id], **params), grpc.StatusCode.INVALID_ARGUMENT, fragment)
    assert await ctl.cloud.groups.list_groups() == []


async def test_bad_requests_are_refused(ctl: Harness) -> None:
    volume = await ctl.create_volume()
    stub = _stub(ctl)
    for request, fragment in [
        (csi_pb2.CreateVolumeGroupSnapshotRequest(source_volume_ids=[volume.volume_id]), "name"),
        (csi_pb2.CreateVolumeGroupSnapshotRequest(name="x"), "source_volume_ids"),
        (
            csi_pb2.CreateVolumeGroupSnapshotRequest(name="x", source_volume_ids=[volume.volume_id] * 2),
            "more than once",
        ),
    ]:
        await expect_code(stub.CreateVolumeGroupSnapshot(request), grpc.StatusCode.INVALID_ARGUMENT, fragment)
    missing = "5b0c7b43-0000-4000-8000-0000000000dd"
    await expect_code(_take(ctl, [volume.volume_id, missing]), grpc.StatusCode.NOT_FOUND, missing)
    assert await ctl.cloud.groups.list_groups() == []


async def test_private_group_type_is_for_administrators_only(
    ctl: Harness, admin_http: tuple[httpx.AsyncClient, str]
) -> None:
    http, _ = admin_http
    made = await http.post(
        "group_types", json={"group_type": {"name": unique("private"), "is_public": False}}
    )
    gtype = made.json()["group_type"]
    try:
        volume = await ctl.create_volume()
        for value in (gtype["name"], gtype["id"]):
            await expect_code(
                _take(ctl, [volume.volume_id], **{"group-type": value}),
                grpc.StatusCode.INVALID_ARGUMENT,
                "administrators only",
            )
    finally:
        await http.delete(f"group_types/{gtype['id']}")


async def test_volumes_on_two_backends_cannot_be_snapshotted_together(ctl: Harness) -> None:
    ssd = await ctl.create_volume(parameters={"type": "standard"})
    hdd = await ctl.create_volume(parameters={"type": "archive"})
    await expect_code(
        _take(ctl, [ssd.volume_id, hdd.volume_id]),
        grpc.StatusCode.FAILED_PRECONDITION,
        "cannot be snapshotted together",
    )
    for group in await ctl.cloud.groups.list_groups():  # the failed group is being deleted
        await wait_gone(lambda g=group.id: ctl.cloud.groups.get_group(g))
    for volume in (ssd, hdd):
        assert (await ctl.cloud.storage.get_volume(volume.volume_id)).group_id is None


async def test_overlapping_group_snapshots_take_turns(ctl: Harness) -> None:
    first, shared, last = [await ctl.create_volume() for _ in range(3)]
    results = await asyncio.gather(
        ctl.retry(lambda: _take(ctl, [first.volume_id, shared.volume_id], "vgs-left")),
        ctl.retry(lambda: _take(ctl, [shared.volume_id, last.volume_id], "vgs-right")),
    )
    assert all(r.ready_to_use and len(r.snapshots) == 2 for r in results)
    assert results[0].group_snapshot_id != results[1].group_snapshot_id
    for volume in (first, shared, last):
        assert (await ctl.cloud.storage.get_volume(volume.volume_id)).group_id is None


async def test_a_volume_left_in_our_group_by_an_interrupted_try_is_taken_back(ctl: Harness) -> None:
    volume, other = await ctl.create_volume(), await ctl.create_volume()
    groups = ctl.cloud.groups
    gtype = next(t for t in await groups.list_group_types() if t.name == "consistent")
    standard = (await ctl.cloud.storage.get_volume(volume.volume_id)).volume_type_id
    assert standard is not None
    left = await groups.create_group(unique("vgs"), gtype.id, [standard], description=GROUP_DESCRIPTION)
    await groups.wait_for_group(left.id, timeout_seconds=10)
    await groups.update_group(left.id, add=[volume.volume_id, other.volume_id])
    await groups.wait_for_group(left.id, timeout_seconds=10)
    taken = await _take(ctl, [volume.volume_id])
    assert [s.source_volume_id for s in taken.snapshots] == [volume.volume_id]
    assert (await ctl.cloud.storage.get_volume(volume.volume_id)).group_id is None
    # DeleteVolume takes a volume out of such a group too (the cloud deletes no volume in a group).
    await ctl.stub.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=other.volume_id))
    await wait_gone(lambda: ctl.cloud.storage.get_volume(other.volume_id))


async def test_a_volume_in_a_group_of_someone_else_is_refused(ctl: Harness) -> None:
    volume = await ctl.create_volume()
    groups = ctl.cloud.groups
    gtype = next(t for t in await groups.list_group_types() if t.name == "consistent")
    standard = (await ctl.cloud.storage.get_volume(volume.volume_id)).volume_type_id
    assert standard is not None
    theirs = await groups.create_group("app-group", gtype.id, [standard])
    await groups.wait_for_group(theirs.id, timeout_seconds=10)
    await groups.update_group(theirs.id, add=[volume.volume_id])
    await groups.wait_for_group(theirs.id, timeout_seconds=10)
    await expect_code(_take(ctl, [volume.volume_id]), grpc.StatusCode.FAILED_PRECONDITION, "did not make")
    assert (await ctl.cloud.storage.get_volume(volume.volume_id)).group_id == theirs.id


async def test_a_released_group_left_by_an_interrupted_delete_is_removed_later(ctl: Harness) -> None:
    volume = await ctl.create_volume()
    taken = await _take(ctl, [volume.volume_id])
    groups = ctl.cloud.groups
    gsnap = await groups.get_group_snapshot(taken.group_snapshot_id)
    # What a controller killed between the group snapshot's deletion and the group's leaves behind.
    await groups.update_group(gsnap.group_id, description=RELEASED_DESCRIPTION)
    await groups.delete_group_snapshot(gsnap.id)
    await groups.wait_for_group_snapshot_deleted(gsnap.id, timeout_seconds=10)
    await _delete(ctl, taken.group_snapshot_id)
    await wait_gone(lambda: groups.get_group(gsnap.group_id))


async def test_a_group_snapshot_whose_request_failed_is_retried_into_one(ctl: Harness) -> None:
    volumes = [await ctl.create_volume() for _ in range(2)]
    ids = [v.volume_id for v in volumes]
    name = unique("vgs")
    ctl.emulator.set_faults([{"method": "POST", "path": "/group_snapshots$", "status": 503, "count": 5}])
    await expect_code(_take(ctl, ids, name), grpc.StatusCode.UNAVAILABLE)
    ctl.emulator.clear_faults()
    taken = await _take(ctl, ids, name)
    assert taken.ready_to_use
    assert len(await ctl.cloud.groups.find_group_snapshots_by_name(name)) == 1
    assert len(await ctl.cloud.groups.find_groups_by_name(name)) == 1


async def test_a_group_snapshot_that_fails_in_the_cloud_is_cleaned_up(ctl: Harness) -> None:
    volume = await ctl.create_volume()
    name = unique("vgs")
    ctl.emulator.set_faults([{"method": "POST", "path": "/group_snapshots$", "outcome": "error"}])
    await expect_code(_take(ctl, [volume.volume_id], name), grpc.StatusCode.INTERNAL, "it was deleted")
    assert await ctl.cloud.groups.find_group_snapshots_by_name(name) == []
    assert (await ctl.cloud.storage.get_volume(volume.volume_id)).group_id is None
    taken = await _take(ctl, [volume.volume_id], name)  # the CO's retry starts afresh
    assert taken.ready_to_use


async def test_capabilities(ctl: Harness) -> None:
    response = await _stub(ctl).GroupControllerGetCapabilities(
        csi_pb2.GroupControllerGetCapabilitiesRequest()
    )
    kinds = [c.rpc.type for c in response.capabilities]
    assert kinds == [csi_pb2.GroupControllerServiceCapability.RPC.CREATE_DELETE_GET_VOLUME_GROUP_SNAPSHOT]


async def test_unknown_group_snapshot(ctl: Harness) -> None:
    missing = "5b0c7b43-0000-4000-8000-0000000000ee"
    await expect_code(_get(ctl, missing), grpc.StatusCode.NOT_FOUND, missing)
    await expect_code(_get(ctl, "not an id!"), grpc.StatusCode.NOT_FOUND)
    await _delete(ctl, missing)
    await expect_code(_delete(ctl, ""), grpc.StatusCode.INVALID_ARGUMENT, "group_snapshot_id")
    with pytest.raises(cloud_errors.NotFound):
        await ctl.cloud.groups.get_group_snapshot(missing)


async def test_a_group_snapshot_over_quota_leaves_nothing_behind(ctl: Harness) -> None:
    volumes = [await ctl.create_volume() for _ in range(2)]
    await ctl.admin.set_quota(snapshots=1)
    try:
        await expect_code(_take(ctl, [v.volume_id for v in volumes]), grpc.StatusCode.RESOURCE_EXHAUSTED)
    finally:
        await ctl.admin.set_quota(snapshots=-1)
    for volume in volumes:
        assert (await ctl.cloud.storage.get_volume(volume.volume_id)).group_id is None
    for group in await ctl.cloud.groups.list_groups():
        await wait_gone(lambda g=group.id: ctl.cloud.groups.get_group(g))


async def test_members_are_listed_with_their_group_snapshot(ctl: Harness) -> None:
    volume = await ctl.create_volume()
    taken = await _take(ctl, [volume.volume_id])
    member = taken.snapshots[0].snapshot_id
    listed = await ctl.stub.ListSnapshots(csi_pb2.ListSnapshotsRequest(snapshot_id=member))
    assert [e.snapshot.group_snapshot_id for e in listed.entries] == [taken.group_snapshot_id]
    by_volume = await ctl.stub.ListSnapshots(csi_pb2.ListSnapshotsRequest(source_volume_id=volume.volume_id))
    assert [e.snapshot.group_snapshot_id for e in by_volume.entries] == [taken.group_snapshot_id]
