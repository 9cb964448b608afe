"""Create, Get and DeleteVolumeGroupSnapshot's work on Storage groups and group snapshots.

The Storage API snapshots volumes together through a group: the volumes of one group (of one
group type, on one backend) get one group snapshot, a member snapshot per volume. A volume is in at
most one group at a time, and the driver's volumes are in none, so each group snapshot gets a group
of its own, named like it and marked as ours by its description:

1. find the group by name, or make it (the class's group type, the volumes' types and zone);
2. put the volumes in (one left in another of our groups by a failed or interrupted try is taken
   out of that one first; a group someone else made is never touched);
3. find the group snapshot by name, or take it, and wait until it is available;
4. take the volumes out again, so they are as they were. The group stays, empty, as long as its
   group snapshot: the cloud deletes no group that has snapshots. In the first window after
   start-up, the group is emptied once more when the window is over: a request of a killed
   predecessor adding the volumes may land after step 4.

Each step finds what an earlier try did by name, so a retry after an error, a timeout or a crash
goes on from where the last one stopped; a create whose answer was lost is waited for as
LateRequests says. Two group snapshots sharing a volume do not interleave: the RPC holds every
volume's in-flight key, so the second is ABORTED and retried by the CO.

The CSI group snapshot id is the Storage group snapshot id; its member snapshots are ordinary
Storage snapshots (CSI snapshot id = Storage snapshot id) that carry it. Deleting marks the group
as released, deletes the group snapshot (the cloud deletes the members with it), then the group;
a released group that a crash left behind is deleted by the next DeleteVolumeGroupSnapshot.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from csi_xloud.cloud import errors as cloud
from csi_xloud.cloud.groups import Group, GroupsApi, GroupSnapshot, GroupStatus, GroupType
from csi_xloud.cloud.models import Snapshot, SnapshotStatus, Volume, VolumeStatus
from csi_xloud.cloud.storage import StorageApi
from csi_xloud.controller.ids import is_storage_id
from csi_xloud.controller.late import LateRequests, keep_the_first
from csi_xloud.controller.volumes import Timeouts, fetch_volume
from csi_xloud.rpc.errors import (
    AlreadyExists,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from csi_xloud.validation import GroupSnapshotParameters

log = logging.getLogger(__name__)

GROUP_DESCRIPTION = "csi-xloud: holds volumes while they are snapshotted together"
RELEASED_DESCRIPTION = "csi-xloud: its group snapshot is deleted; the group goes next"
OUR_DESCRIPTIONS = frozenset({GROUP_DESCRIPTION, RELEASED_DESCRIPTION})
# Every Cinder has this group type (made by its database migrations); groups of it are refused.
RESERVED_GROUP_TYPE = "default_cgsnapshot_type"
SNAPSHOTTABLE = frozenset({VolumeStatus.AVAILABLE, VolumeStatus.IN_USE})
GONE = frozenset({GroupStatus.DELETING, GroupStatus.DELETED, GroupStatus.ERROR_DELETING})


@dataclass(frozen=True, slots=True)
class NewGroupSnapshot:
    """A validated CreateVolumeGroupSnapshot request."""

    name: str
    source_volume_ids: tuple[str, ...]
    parameters: GroupSnapshotParameters


@dataclass(frozen=True, slots=True)
class TakenGroupSnapshot:
    """A group snapshot and its member snapshots."""

    group_snapshot: GroupSnapshot
    members: tuple[Snapshot, ...]

    @property
    def ready(self) -> bool:
        """Every member is available (so is the group snapshot)."""
        return self.group_snapshot.status is GroupStatus.AVAILABLE and all(
            m.status is SnapshotStatus.AVAILABLE for m in self.members
        )


def is_ours(group: Group) -> bool:
    """A group this driver made (and may change or delete)."""
    return group.description in OUR_DESCRIPTIONS


class GroupSnapshotter:
    """Takes, finds and deletes group snapshots of volumes that are in no group of their own."""

    def __init__(
        self, storage: StorageApi, groups: GroupsApi, timeouts: Timeouts, late: LateRequests
    ) -> None:
        self._storage = storage
        self._groups = groups
        self._timeouts = timeouts
        self._late = late

    # -- create -----------------------------------------------------------------------------------

    async def create(self, request: NewGroupSnapshot) -> TakenGroupSnapshot:
        """The group snapshot with this name, taken if there is none; ALREADY_EXISTS for other volumes'."""
        key = ("group-snapshot", request.name)
        existing = await self._find_group_snapshot(request.name)
        if existing is not None:
            self._late.forget(key)
            return await self._finish(existing, request)
        self._late.refuse_while_in_flight(key, f"group snapshot {request.name!r}")
        volumes = await self._source_volumes(request.source_volume_ids)
        group_type = await self._group_type(request.parameters)
        group = await self._group_for(request.name, volumes, group_type)
        try:
            await self._gather(group, volumes)
            gsnap = await self._groups.create_group_snapshot(group.id, request.name)
        except (cloud.CloudError, FailedPrecondition) as exc:
            if isinstance(exc, cloud.CloudError) and exc.may_still_land:
                self._late.note(key)
            else:
                # Spec: no group snapshot was cut, so nothing may be left: the volumes go back.
                await self._undo(group)
            raise
        log.debug(
            "snapshotting volumes %s together as group snapshot %s",
            ", ".join(v.id for v in volumes),
            gsnap.id,
        )
        return await self._finish(gsnap, request)

    async def _finish(self, gsnap: GroupSnapshot, request: NewGroupSnapshot) -> TakenGroupSnapshot:
        """Wait until the group snapshot is available, check its members, take the volumes out again."""
        if gsnap.status.is_error:
            raise await self._discard(gsnap)
        if gsnap.status is not GroupStatus.AVAILABLE:
            # Waited for first: the cloud records the member snapshots just after the group snapshot.
            try:
                gsnap = await self._groups.wait_for_group_snapshot(
                    gsnap.id, timeout_seconds=self._timeouts.create_seconds
                )
            except cloud.WaitTimeout:
                raise
            except cloud.CloudError:
                raise await self._discard(await self._groups.get_group_snapshot(gsnap.id)) from None
        members = await self._groups.member_snapshots(gsnap.id)
        if sorted(m.volume_id for m in members) != sorted(request.source_volume_ids):
            raise AlreadyExists(
                f"group snapshot {request.name!r} already exists for volumes "
                f"{', '.join(sorted(m.volume_id for m in members))}, not for source_volume_ids "
                f"{', '.join(sorted(request.source_volume_ids))}"
            )
        await self._empty(gsnap.group_id)
        self._late.after_create(lambda: self._settle(request.name))
        return TakenGroupSnapshot(gsnap, tuple(sorted(members, key=lambda m: m.volume_id)))

    async def _settle(self, name: str) -> None:
        """Once a predecessor's requests can no longer land: no duplicate, and the volumes out again.

        A predecessor killed while its request adding the volumes was in flight leaves that request
        to land late, after this process took the volumes out: they would stay in the group, and a
        volume in a group cannot be deleted.
        """
        gsnap = await self._find_group_snapshot(name)
        if gsnap is None:
            return
        try:
            await self._empty(gsnap.group_id)
        except FailedPrecondition as exc:
            raise Unavailable(f"group {gsnap.group_id} keeps its volumes for now: {exc.message}") from exc

    async def _find_group_snapshot(self, name: str) -> GroupSnapshot | None:
        found = await self._groups.find_group_snapshots_by_name(name)
        live = [s for s in found if s.status not in GONE]
        return await keep_the_first(live, self._remove_group_snapshot, "group snapshot")

    async def _remove_group_snapshot(self, gsnap: GroupSnapshot) -> None:
        await self._groups.delete_group_snapshot(gsnap.id)

    async def _discard(self, gsnap: GroupSnapshot) -> Internal:
        """Delete a failed group snapshot (the CO's retry starts afresh) and free its volumes."""
        try:
            await self._groups.delete_group_snapshot(gsnap.id)
            await self._groups.wait_for_group_snapshot_deleted(
                gsnap.id, timeout_seconds=self._timeouts.delete_seconds
            )
        except cloud.NotFound:
            pass
        await self._empty(gsnap.group_id)
        return Internal(f"group snapshot {gsnap.id} went to status {gsnap.raw_status}; it was deleted")

    async def _source_volumes(self, volume_ids: Sequence[str]) -> list[Volume]:
        volumes = [await fetch_volume(self._storage, v, "source_volume_ids") for v in volume_ids]
        for volume in volumes:
            if volume.status not in SNAPSHOTTABLE:
                raise FailedPrecondition(
                    f"source_volume_ids: volume {volume.id} is {volume.raw_status}; "
                    "only available or in-use volumes can be snapshotted"
                )
        zones = sorted({v.availability_zone or "" for v in volumes})
        if len(zones) > 1:
            raise FailedPrecondition(
                f"source_volume_ids: the volumes are in zones {', '.join(zones)}; a group snapshot "
                "needs them in one zone"
            )
        return volumes

    async def _group_type(self, parameters: GroupSnapshotParameters) -> GroupType:
        """The class's group type, else the cloud's default one; refused when there is none to use."""
        if parameters.group_type is None:
            found = await self._groups.default_group_type()
            if found is None:
                raise InvalidArgument(
                    "parameters[group-type] is not set and the cloud has no default group type; name "
                    "one of the cloud's group types in the VolumeGroupSnapshotClass"
                )
        else:
            found = await self._named_group_type(parameters.group_type)
        if found.name == RESERVED_GROUP_TYPE:
            raise InvalidArgument(
                f"parameters[group-type] {found.name!r} is reserved by the cloud for consistency "
                "groups moved to groups and cannot hold new groups; name another group type"
            )
        return found

    async def _named_group_type(self, name_or_id: str) -> GroupType:
        for group_type in await self._groups.list_group_types():
            if name_or_id in (group_type.id, group_type.name):
                return group_type
        if is_storage_id(name_or_id):
            try:
                return await self._groups.get_group_type(name_or_id)
            except cloud.NotFound:
                pass
        raise InvalidArgument(
            f"parameters[group-type] {name_or_id!r}: no such group type visible to this project "
            "(private group types are for administrators only)"
        )

    async def _volume_type_ids(self, volumes: Sequence[Volume]) -> list[str]:
        type_ids = set()
        for volume in volumes:
            if volume.volume_type_id:
                type_ids.add(volume.volume_type_id)
            elif volume.volume_type:
                type_ids.add((await self._storage.get_type(volume.volume_type)).id)
            else:
                raise FailedPrecondition(f"source_volume_ids: volume {volume.id} has no volume type")
        return sorted(type_ids)

    async def _group_for(self, name: str, volumes: Sequence[Volume], group_type: GroupType) -> Group:
        """Our group with this name, fit for these volumes; made when missing."""
        type_ids = await self._volume_type_ids(volumes)
        group = await self._find_group(name)
        if group is not None and (
            group.group_type_id != group_type.id or not set(type_ids) <= set(group.volume_type_ids)
        ):
            # An earlier try with other parameters made it, and no group snapshot came of it.
            await self._remove_group(group)
            await self._groups.wait_for_group_deleted(group.id, timeout_seconds=self._timeouts.delete_seconds)
            group = None
        if group is None:
            group = await self._make_group(name, group_type, type_ids, volumes[0].availability_zone)
        if group.status is not GroupStatus.AVAILABLE and not group.status.is_error:
            try:
                group = await self._groups.wait_for_group(
                    group.id, timeout_seconds=self._timeouts.create_seconds
                )
            except cloud.WaitTimeout:
                raise
            except cloud.CloudError:
                group = await self._groups.get_group(group.id)
        if group.status.is_error:
            await self._remove_group(group)
            raise FailedPrecondition(
                f"the cloud could not place a group of group type {group_type.name} for volume types "
                f"{', '.join(type_ids)} (group {group.id} went to {group.raw_status}; it was deleted): "
                "these volumes cannot be snapshotted together"
            )
        return group

    async def _find_group(self, name: str) -> Group | None:
        found = [
            g for g in await self._groups.find_groups_by_name(name) if is_ours(g) and g.status not in GONE
        ]
        return await keep_the_first(found, self._remove_group, "group")

    async def _make_group(
        self, name: str, group_type: GroupType, type_ids: list[str], zone: str | None
    ) -> Group:
        key = ("group", name)
        self._late.refuse_while_in_flight(key, f"group {name!r}")
        try:
            group = await self._groups.create_group(
                name, group_type.id, type_ids, availability_zone=zone, description=GROUP_DESCRIPTION
            )
        except cloud.NotFound as exc:
            raise InvalidArgument(f"parameters[group-type] {group_type.name!r}: {exc}") from exc
        except cloud.CloudError as exc:
            if exc.may_still_land:
                self._late.note(key)
            raise
        log.debug("made group %s (group type %s) for group snapshot %r", group.id, group_type.name, name)
        self._late.after_create(lambda: self._find_group(name))
        return group

    async def _undo(self, group: Group) -> None:
        """After a failed try, best effort: the volumes out of the group, the group deleted."""
        try:
            await self._remove_group(group)
        except (cloud.CloudError, FailedPrecondition) as exc:
            log.warning(
                "group %s stays after the failed group snapshot (the next try reuses it): %s", group.id, exc
            )

    async def _remove_group(self, group: Group) -> None:
        """Take the volumes out of one of our groups and delete it (refused while it has group snapshots)."""
        await self._empty(group.id)
        await self._groups.delete_group(group.id)

    async def _gather(self, group: Group, volumes: Sequence[Volume]) -> None:
        """Exactly these volumes in the group."""
        wanted = {v.id for v in volumes}
        inside = set(await self._groups.group_volume_ids(group.id))
        for volume in volumes:
            if volume.group_id and volume.group_id != group.id:
                await self._take_out(volume)
        add, remove = sorted(wanted - inside), sorted(inside - wanted)
        if add or remove:
            await self._change(group.id, add, remove)

    async def _change(self, group_id: str, add: Sequence[str], remove: Sequence[str]) -> None:
        """Add and remove volumes and wait; the cloud's refusal means they cannot be grouped."""
        await self._groups.wait_for_group(group_id, timeout_seconds=self._timeouts.create_seconds)
        try:
            await self._groups.update_group(group_id, add=add, remove=remove)
        except cloud.BadRequest as exc:
            raise FailedPrecondition(f"the volumes cannot be snapshotted together: {exc}") from exc
        await self._groups.wait_for_group(group_id, timeout_seconds=self._timeouts.create_seconds)

    async def _take_out(self, volume: Volume) -> None:
        """Take a volume out of the group it is in, when that group is ours."""
        assert volume.group_id is not None
        try:
            other = await self._groups.get_group(volume.group_id)
        except cloud.NotFound:
            return
        if not is_ours(other):
            raise FailedPrecondition(
                f"volume {volume.id} is in group {other.id} ({other.name!r}), which this driver did not "
                "make; a volume can be in one group only"
            )
        log.warning("taking volume %s out of group %s, left there by an earlier try", volume.id, other.id)
        try:
            await self._change(other.id, (), (volume.id,))
        except FailedPrecondition as exc:
            raise Unavailable(f"volume {volume.id} is still held by group {other.id}: {exc.message}") from exc

    async def _empty(self, group_id: str) -> None:
        """Take every volume out of one of our groups."""
        try:
            inside = await self._groups.group_volume_ids(group_id)
        except cloud.NotFound:
            return
        if inside:
            await self._change(group_id, (), inside)

    async def release_volume(self, volume: Volume) -> None:
        """Before a volume is deleted: take it out of the group of ours an interrupted try left it in."""
        if volume.group_id:
            await self._take_out(volume)

    # -- get and delete ---------------------------------------------------------------------------

    async def get(self, group_snapshot_id: str, snapshot_ids: Sequence[str]) -> TakenGroupSnapshot:
        """The group snapshot and its members; NOT_FOUND when it does not exist."""
        found = await self._lookup(group_snapshot_id)
        if found is None:
            raise NotFound(f"group_snapshot_id {group_snapshot_id}: no such group snapshot")
        taken = TakenGroupSnapshot(found, tuple(await self._members(found, snapshot_ids)))
        return taken

    async def delete(self, group_snapshot_id: str, snapshot_ids: Sequence[str]) -> None:
        """Delete the group snapshot with its members, then its group; a missing one is already deleted."""
        gsnap = await self._lookup(group_snapshot_id)
        if gsnap is not None:
            await self._members(gsnap, snapshot_ids)
            await self._delete(gsnap)
        await self._sweep()

    async def _lookup(self, group_snapshot_id: str) -> GroupSnapshot | None:
        if not is_storage_id(group_snapshot_id):
            return None
        try:
            return await self._groups.get_group_snapshot(group_snapshot_id)
        except cloud.NotFound:
            return None

    async def _members(self, gsnap: GroupSnapshot, snapshot_ids: Sequence[str]) -> list[Snapshot]:
        """The member snapshots; INVALID_ARGUMENT when the CO names others."""
        members = sorted(await self._groups.member_snapshots(gsnap.id), key=lambda m: m.volume_id)
        if snapshot_ids and sorted(snapshot_ids) != sorted(m.id for m in members):
            raise InvalidArgument(
                f"snapshot_ids {', '.join(sorted(snapshot_ids))} are not the snapshots of group snapshot "
                f"{gsnap.id} ({', '.join(sorted(m.id for m in members))})"
            )
        return members

    async def _delete(self, gsnap: GroupSnapshot) -> None:
        group = await self._our_group(gsnap.group_id)
        if group is not None and group.description != RELEASED_DESCRIPTION:
            await self._groups.update_group(group.id, description=RELEASED_DESCRIPTION)
        if gsnap.status is not GroupStatus.DELETING:
            try:
                await self._groups.delete_group_snapshot(gsnap.id)
            except cloud.BadRequest as exc:
                raise FailedPrecondition(f"group snapshot {gsnap.id} cannot be deleted now: {exc}") from exc
            except cloud.NotFound:
                pass
        await self._groups.wait_for_group_snapshot_deleted(
            gsnap.id, timeout_seconds=self._timeouts.delete_seconds
        )
        log.debug("deleted group snapshot %s", gsnap.id)
        if group is not None:
            await self._drop(group.id, wait=True)

    async def _our_group(self, group_id: str) -> Group | None:
        try:
            group = await self._groups.get_group(group_id)
        except cloud.NotFound:
            return None
        return group if is_ours(group) else None

    async def _drop(self, group_id: str, *, wait: bool) -> None:
        """Delete one of our released groups; one that still has group snapshots stays for later."""
        try:
            await self._empty(group_id)
            await self._groups.delete_group(group_id)
            if wait:
                await self._groups.wait_for_group_deleted(
                    group_id, timeout_seconds=self._timeouts.delete_seconds
                )
        except cloud.NotFound:
            return
        except cloud.BadRequest as exc:
            log.debug("group %s stays for now: %s", group_id, exc)

    async def _sweep(self) -> None:
        """Delete released groups an interrupted DeleteVolumeGroupSnapshot left behind (best effort)."""
        try:
            await self._sweep_released()
        except cloud.CloudError as exc:
            # Housekeeping: the group snapshot itself is gone, so the call still succeeds; next time then.
            log.warning("could not look for released groups to delete: %s", exc)

    async def _sweep_released(self) -> None:
        for group in await self._groups.list_groups():
            released = group.description == RELEASED_DESCRIPTION and group.status not in GONE
            if released and not await self._groups.list_group_snapshots(group_id=group.id):
                await self._drop(group.id, wait=False)
