"""DeleteVolume, ControllerExpandVolume and ControllerModifyVolume's work on existing volumes."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from csi_xloud.cloud import errors as cloud
from csi_xloud.cloud.models import Volume, VolumeStatus
from csi_xloud.cloud.storage import StorageApi
from csi_xloud.cloud.waiters import Rollback
from csi_xloud.controller.deadnodes import StaleAttachments
from csi_xloud.controller.ids import is_storage_id
from csi_xloud.controller.volumes import Timeouts, fetch_volume, has_type, resolve_type
from csi_xloud.deadline import within_call
from csi_xloud.rpc.errors import Aborted, FailedPrecondition, Internal, InvalidArgument
from csi_xloud.validation import MigrationPolicy, MutableParameters

log = logging.getLogger(__name__)

SETTLED = (VolumeStatus.AVAILABLE, VolumeStatus.IN_USE)
# Statuses the cloud leaves on its own and refuses to delete in; then those DeleteVolume can act on
# once it has (delete, refuse because attached, or wait for a deletion already under way).
BUSY = frozenset(
    {
        VolumeStatus.CREATING,
        VolumeStatus.DOWNLOADING,
        VolumeStatus.RESTORING_BACKUP,
        VolumeStatus.EXTENDING,
        VolumeStatus.RETYPING,
        VolumeStatus.RESERVED,
        VolumeStatus.BACKING_UP,
    }
)
DECIDED = (
    *SETTLED,
    VolumeStatus.ERROR,
    VolumeStatus.ERROR_RESTORING,
    VolumeStatus.ERROR_EXTENDING,
    VolumeStatus.ERROR_MANAGING,
    VolumeStatus.ERROR_BACKING_UP,
    VolumeStatus.DELETING,
)


class VolumeChanges:
    """Deletes, grows and retypes volumes, each waiting until the cloud is done."""

    def __init__(
        self,
        storage: StorageApi,
        timeouts: Timeouts,
        stale: StaleAttachments,
        release: Callable[[Volume], Awaitable[None]] | None = None,
    ) -> None:
        self._storage = storage
        self._timeouts = timeouts
        self._stale = stale
        # Takes a volume out of the group an interrupted group snapshot left it in (the cloud
        # deletes no volume that is in a group).
        self._release = release

    async def delete(self, volume_id: str) -> None:
        """Delete and wait until gone; a missing volume is already deleted."""
        if not is_storage_id(volume_id):
            return  # Spec: "If a volume ... does not exist ..., the Plugin MUST reply 0 OK."
        try:
            volume = await self._settled(await self._storage.get_volume(volume_id))
            volume = await self._stale.remove_all_if_gone(volume)
            await self._check_deletable(volume)
            if volume.group_id and self._release is not None:
                await self._release(volume)
            if volume.status is not VolumeStatus.DELETING:
                await self._start_delete(volume)
            await self._storage.wait_for_volume_deleted(
                volume_id, timeout_seconds=self._timeouts.delete_seconds, expect=VolumeStatus.DELETING.value
            )
        except cloud.NotFound:
            return
        log.debug("deleted volume %s", volume_id)

    async def _settled(self, volume: Volume) -> Volume:
        """The volume once the cloud is done with its transition, waited for within the call's deadline.

        A volume still being created, restored, grown or retyped cannot be deleted yet, and the spec's
        DeleteVolume has no error for that: wait, and answer ABORTED (an operation is pending on the
        volume, the CO retries) only when the deadline comes first.
        """
        if volume.status not in BUSY:
            return volume
        budget = within_call(self._timeouts.delete_seconds, time.monotonic())
        try:
            return await self._storage.wait_for_volume(
                volume.id, *DECIDED, timeout_seconds=budget, expect=volume.raw_status
            )
        except cloud.WaitTimeout:
            raise Aborted(
                f"volume {volume.id} is still {volume.raw_status} after {budget:.0f} s; the cloud refuses to "
                "delete it until it is done: call DeleteVolume again"
            ) from None

    async def _start_delete(self, volume: Volume) -> None:
        """Ask for deletion; a volume a failed deletion left behind is retried, and its failure explained."""
        try:
            await self._storage.delete_volume(volume.id)
        except (cloud.Conflict, cloud.BadRequest) as exc:
            if volume.status is not VolumeStatus.ERROR_DELETING:
                raise
            reason = await self._storage.volume_error_reason(volume.id) or str(exc)
            raise Internal(
                f"volume {volume.id} is in status error_deleting ({reason}); an operator must clean it up"
            ) from exc

    async def _check_deletable(self, volume: Volume) -> None:
        """Attached volumes and volumes with snapshots stay; the message says what holds them."""
        if volume.attached_server_ids:
            servers = ", ".join(volume.attached_server_ids)
            raise FailedPrecondition(
                f"volume {volume.id} is attached to node(s) {servers}; unpublish it first"
            )
        snapshots = (await self._storage.list_snapshots(volume_id=volume.id, limit=20)).items
        if snapshots:
            ids = ", ".join(s.id for s in snapshots)
            raise FailedPrecondition(
                f"volume {volume.id} has snapshots ({ids}); delete them before the volume"
            )

    async def expand(self, volume_id: str, new_size_gib: int) -> Volume:
        """Grow to new_size_gib (online when attached) and wait; a big enough volume is left alone."""
        volume = await fetch_volume(self._storage, volume_id)
        if volume.size_gib >= new_size_gib and volume.status in SETTLED:
            return volume  # Spec: already larger than or equal to the target -> 0 OK.
        if volume.status is not VolumeStatus.EXTENDING:
            if volume.status not in SETTLED:
                raise FailedPrecondition(
                    f"volume {volume_id} is {volume.raw_status}; it can grow when available"
                )
            online = volume.status is VolumeStatus.IN_USE
            await self._storage.extend_volume(volume_id, new_size_gib, online=online)
            log.debug(
                "extending volume %s to %d GiB (%s)",
                volume_id,
                new_size_gib,
                "online" if online else "offline",
            )
        return await self._storage.wait_for_volume(
            volume_id,
            *SETTLED,
            timeout_seconds=self._timeouts.expand_seconds,
            done=lambda v: v.size_gib >= new_size_gib,
            expect=VolumeStatus.EXTENDING.value,
            rollback=self._extend_rollback(new_size_gib),
            seen=volume,
        )

    def _extend_rollback(self, new_size_gib: int) -> Rollback[Volume]:
        """An extend the cloud refuses after accepting it (no room on the backend) settles at the old size."""

        async def undone(volume: Volume) -> bool:
            return volume.status in SETTLED and volume.size_gib < new_size_gib

        return Rollback(f"the extend to {new_size_gib} GiB", undone, self._reason)

    async def _reason(self, volume: Volume) -> str | None:
        return await self._storage.volume_error_reason(volume.id)

    async def modify(self, volume_id: str, change: MutableParameters) -> None:
        """Retype to the requested type and wait until done; the same type again is a no-op."""
        volume = await fetch_volume(self._storage, volume_id)
        if change.volume_type is None:
            return
        volume_type = await resolve_type(self._storage, change.volume_type, "mutable_parameters[type]")
        if has_type(volume, volume_type):
            return
        if volume.status is not VolumeStatus.RETYPING:
            if volume.status not in SETTLED:
                raise FailedPrecondition(
                    f"volume {volume_id} is {volume.raw_status}; it can be retyped when available"
                )
            await self._storage.retype_volume(
                volume_id, volume_type.name, migration_policy=change.migration_policy
            )
            log.debug("retyping volume %s to %s (%s)", volume_id, volume_type.name, change.migration_policy)
        settled = await self._storage.wait_for_volume(
            volume_id,
            *SETTLED,
            timeout_seconds=self._timeouts.retype_seconds,
            expect=VolumeStatus.RETYPING.value,
        )
        if not has_type(settled, volume_type):
            raise await self._retype_refused(settled, volume_type.name, change.migration_policy)

    async def _retype_refused(self, volume: Volume, type_name: str, policy: MigrationPolicy) -> Exception:
        """The cloud settled the volume with its old type: it refused or rolled the retype back."""
        reason = await self._reason(volume)
        detail = f" ({reason})" if reason else ""
        if policy is MigrationPolicy.NEVER:
            return InvalidArgument(
                f"mutable_parameters: volume {volume.id} cannot become {type_name} without moving its data, "
                f"and migration-policy is never{detail}"
            )
        return FailedPrecondition(
            f"volume {volume.id} kept type {volume.volume_type}; the cloud undid the retype to {type_name}"
            f"{detail}"
        )
