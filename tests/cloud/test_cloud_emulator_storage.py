"""The Storage API calls against the emulator over real HTTP."""

from __future__ import annotations

import uuid

import pytest

from csi_xloud.cloud.client import CloudClient
from csi_xloud.cloud.errors import CloudError, Conflict, NotFound, QuotaExceeded
from csi_xloud.cloud.models import BackupStatus, SnapshotStatus, VolumeStatus
from tests.cloud.conftest import MakeClient

WAIT = 20.0


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def new_volume(client: CloudClient, size_gib: int = 1, **kwargs: object) -> str:
    volume = await client.storage.create_volume(unique("vol"), size_gib, **kwargs)  # type: ignore[arg-type]
    await client.storage.wait_for_volume(volume.id, VolumeStatus.AVAILABLE, timeout_seconds=WAIT)
    return volume.id


async def test_readiness_and_versions(client: CloudClient) -> None:
    assert await client.readiness() is None
    volume_range = await client.storage.versions()
    assert volume_range.max is not None and str(volume_range.max).startswith("3.")
    compute_range = await client.compute.versions()
    assert compute_range.max is not None and compute_range.max.major == 2


async def test_volume_create_find_metadata_and_delete(client: CloudClient) -> None:
    name = unique("pvc")
    created = await client.storage.create_volume(
        name, 1, metadata={"csi.storage.k8s.io/pvc/name": "data"}, description="test volume"
    )
    assert created.status in (VolumeStatus.CREATING, VolumeStatus.AVAILABLE)
    volume = await client.storage.wait_for_volume(created.id, VolumeStatus.AVAILABLE, timeout_seconds=WAIT)
    assert volume.size_gib == 1 and volume.name == name
    assert volume.metadata["csi.storage.k8s.io/pvc/name"] == "data"
    assert volume.availability_zone and volume.volume_type
    assert [v.id for v in await client.storage.find_volume_by_name(name)] == [volume.id]
    assert await client.storage.find_volume_by_name(unique("absent")) == []

    merged = await client.storage.update_volume_metadata(volume.id, {"k": "v"})
    assert merged["k"] == "v" and merged["csi.storage.k8s.io/pvc/name"] == "data"

    await client.storage.delete_volume(volume.id)
    await client.storage.wait_for_volume_deleted(volume.id, timeout_seconds=WAIT)
    with pytest.raises(NotFound):
        await client.storage.get_volume(volume.id)
    with pytest.raises(NotFound):
        await client.storage.delete_volume(volume.id)


async def test_list_pages_with_markers(client: CloudClient) -> None:
    ids = {await new_volume(client) for _ in range(3)}
    seen: list[str] = []
    marker = None
    while True:
        page = await client.storage.list_volumes(limit=2, marker=marker)
        assert len(page.items) <= 2
        seen.extend(v.id for v in page.items)
        if page.next_marker is None:
            break
        marker = page.next_marker
    assert ids <= set(seen)
    assert len(seen) == len(set(seen))
    with pytest.raises(NotFound):
        await client.storage.list_volumes(marker=str(uuid.uuid4()))


async def test_extend_and_retype(client: CloudClient) -> None:
    volume_id = await new_volume(client)
    await client.storage.extend_volume(volume_id, 2)
    volume = await client.storage.wait_for_volume(
        volume_id, VolumeStatus.AVAILABLE, timeout_seconds=WAIT, done=lambda v: v.size_gib == 2
    )
    assert volume.size_gib == 2
    with pytest.raises(CloudError, match="greater than current size"):
        await client.storage.extend_volume(volume_id, 2)

    types = await client.storage.list_types()
    other = next(t for t in types if t.name != volume.volume_type)
    await client.storage.retype_volume(volume_id, other.name, migration_policy="on-demand")
    retyped = await client.storage.wait_for_volume(
        volume_id, VolumeStatus.AVAILABLE, timeout_seconds=WAIT, done=lambda v: v.volume_type == other.name
    )
    assert retyped.volume_type == other.name
    with pytest.raises(NotFound):
        await client.storage.retype_volume(volume_id, "no-such-type")


async def test_types_by_name_or_id_with_extra_specs(client: CloudClient) -> None:
    types = await client.storage.list_types()
    assert types
    first = types[0]
    assert await client.storage.get_type(first.name) == first
    assert (await client.storage.get_type(first.id)).name == first.name
    assert any(t.extra_specs for t in types)
    with pytest.raises(NotFound):
        await client.storage.get_type("no-such-type")


async def test_quota_usage_and_limits(client: CloudClient) -> None:
    before = await client.storage.get_quota_usage()
    volume_id = await new_volume(client, 2)
    after = await client.storage.get_quota_usage()
    assert before.gigabytes is not None and after.gigabytes is not None
    assert after.gigabytes.in_use == before.gigabytes.in_use + 2
    volume = await client.storage.get_volume(volume_id)
    assert volume.volume_type is not None
    per_type = after.gigabytes_for_type(volume.volume_type)
    assert per_type is not None and per_type.in_use >= 2
    limits = await client.storage.get_limits()
    assert limits.max_total_volume_gigabytes == after.gigabytes.limit


async def test_over_quota_is_quota_exceeded(client: CloudClient) -> None:
    with pytest.raises(QuotaExceeded, match="quota"):
        await client.storage.create_volume(unique("huge"), 100000)


async def test_snapshot_clone_and_restore(client: CloudClient) -> None:
    volume_id = await new_volume(client)
    name = unique("snap")
    snapshot = await client.storage.create_snapshot(volume_id, name, metadata={"owner": "test"})
    snapshot = await client.storage.wait_for_snapshot(snapshot.id, timeout_seconds=WAIT)
    assert snapshot.status is SnapshotStatus.AVAILABLE and snapshot.volume_id == volume_id
    assert [s.id for s in await client.storage.find_snapshot_by_name(name)] == [snapshot.id]
    page = await client.storage.list_snapshots(volume_id=volume_id)
    assert [s.id for s in page.items] == [snapshot.id]

    with pytest.raises(Conflict, match="snapshots"):
        await client.storage.delete_volume(volume_id)
    from_snapshot = await new_volume(client, snapshot_id=snapshot.id)
    assert (await client.storage.get_volume(from_snapshot)).snapshot_id == snapshot.id
    clone = await new_volume(client, 2, source_volid=volume_id)
    assert (await client.storage.get_volume(clone)).source_volume_id == volume_id

    await client.storage.delete_snapshot(snapshot.id)
    await client.storage.wait_for_snapshot_deleted(snapshot.id, timeout_seconds=WAIT)
    with pytest.raises(NotFound):
        await client.storage.get_snapshot(snapshot.id)


async def test_backups_full_incremental_restore(client: CloudClient) -> None:
    volume_id = await new_volume(client)
    full = await client.storage.create_backup(volume_id, unique("full"))
    full = await client.storage.wait_for_backup(full.id, timeout_seconds=WAIT)
    assert full.status is BackupStatus.AVAILABLE and not full.is_incremental
    await client.storage.wait_for_volume(volume_id, VolumeStatus.AVAILABLE, timeout_seconds=WAIT)
    incremental = await client.storage.create_backup(
        volume_id, unique("incr"), incremental=True, metadata={"kind": "incr"}
    )
    incremental = await client.storage.wait_for_backup(incremental.id, timeout_seconds=WAIT)
    assert incremental.is_incremental and incremental.metadata == {"kind": "incr"}
    assert (await client.storage.get_backup(full.id)).has_dependent_backups
    assert {b.id for b in (await client.storage.list_backups(volume_id=volume_id)).items} == {
        full.id,
        incremental.id,
    }
    assert [b.id for b in await client.storage.find_backup_by_name(incremental.name)] == [incremental.id]

    with pytest.raises(Conflict, match="Incremental backups exist"):
        await client.storage.delete_backup(full.id)

    restore = await client.storage.restore_backup(incremental.id, name=unique("restored"))
    restored = await client.storage.wait_for_volume(
        restore.volume_id, VolumeStatus.AVAILABLE, timeout_seconds=WAIT
    )
    assert restored.size_gib == 1
    await client.storage.wait_for_backup(incremental.id, timeout_seconds=WAIT)
    await client.storage.delete_backup(incremental.id)
    await client.storage.wait_for_backup_deleted(incremental.id, timeout_seconds=WAIT)
    await client.storage.delete_backup(full.id)
    await client.storage.wait_for_backup_deleted(full.id, timeout_seconds=WAIT)


async def test_volume_from_backup_needs_its_microversion(client: CloudClient) -> None:
    volume_id = await new_volume(client)
    backup = await client.storage.create_backup(volume_id, unique("bk"))
    await client.storage.wait_for_backup(backup.id, timeout_seconds=WAIT)
    restored = await new_volume(client, backup_id=backup.id)
    assert (await client.storage.get_volume(restored)).status is VolumeStatus.AVAILABLE


async def test_error_status_ends_the_wait(make_client: MakeClient) -> None:
    member, admin = make_client(), make_client("xloud-emulator-admin")
    volume_id = await new_volume(member)
    await admin.storage.reset_volume_status(volume_id, VolumeStatus.ERROR)
    with pytest.raises(CloudError, match=f"volume {volume_id} went to status error") as caught:
        await member.storage.wait_for_volume(volume_id, VolumeStatus.IN_USE, timeout_seconds=WAIT)
    assert type(caught.value) is CloudError
    # A member may not reset statuses.
    with pytest.raises(CloudError) as refused:
        await member.storage.reset_volume_status(volume_id, VolumeStatus.AVAILABLE)
    assert refused.value.status == 403


async def test_admin_qos_specs(make_client: MakeClient) -> None:
    admin = make_client("xloud-emulator-admin")
    specs = await admin.storage.list_qos_specs()
    for spec in specs:
        assert (await admin.storage.get_qos_spec(spec.id)).name == spec.name

