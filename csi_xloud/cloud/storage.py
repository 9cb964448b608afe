"""The Storage API (Cinder v3): volumes, snapshots, backups, types, quotas and limits."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

from csi_xloud.cloud.errors import NotFound
from csi_xloud.cloud.http import Answer, ServiceHttp
from csi_xloud.cloud.models import (
    ApiVersion,
    AvailabilityZone,
    Backup,
    BackupRestore,
    BackupStatus,
    Json,
    Limits,
    Page,
    QosSpec,
    QuotaUsage,
    Snapshot,
    SnapshotStatus,
    VersionRange,
    Volume,
    VolumeStatus,
    VolumeType,
)
from csi_xloud.cloud.sharedlookups import REQUESTED_PAGE, SharedLookups
from csi_xloud.cloud.sharedpolls import SharedVolumePolls
from csi_xloud.cloud.versions import Feature, MicroversionPicker
from csi_xloud.cloud.waiters import Rollback, StatusCheck, Waiter

T = TypeVar("T")

V3_0 = ApiVersion(3, 0)
# What each feature needs (required) and the version whose answers carry the most (preferred).
CREATE_FROM_BACKUP = Feature("create a volume from a backup", ApiVersion(3, 47))
VOLUME_SHOW = Feature("show volumes", V3_0, ApiVersion(3, 63))  # 3.63 adds volume_type_id
ONLINE_EXTEND = Feature("extend an attached (in-use) volume", ApiVersion(3, 42))
OFFLINE_EXTEND = Feature("extend a volume", V3_0)
SNAPSHOT_FORCED = Feature("snapshot an in-use volume", V3_0, ApiVersion(3, 66))
# From 3.66 an in-use volume is always snapshotted and force=false is refused, so we stay below it.
SNAPSHOT_UNFORCED = Feature("snapshot an available volume only", V3_0, ApiVersion(3, 65))
BACKUP_METADATA = Feature("store metadata on a backup", ApiVersion(3, 43))
BACKUP_SHOW = Feature("show backups", V3_0, ApiVersion(3, 45))
# Messages came in 3.3, but until 3.5 Cinder ignores the filter, sort and limit: every message of the
# project comes back, newest first, whatever resource it is about.
MESSAGES = Feature("read user messages about one resource", ApiVersion(3, 5))
DEFAULT_TYPE = Feature("show the default volume type", ApiVersion(3, 62))
ATTACHMENTS = Feature("manage volume attachments", ApiVersion(3, 27))
SNAPSHOT_SHOW = Feature("show snapshots", V3_0, ApiVersion(3, 14))  # 3.14 adds group_snapshot_id
PLAIN = Feature("basic volume calls", V3_0)
LIST_COUNT = Feature("count the items of a list (with_count)", ApiVersion(3, 45))
SNAPSHOT_LIST = Feature("list snapshots", V3_0, ApiVersion(3, 45))
TIME_FILTERS = Feature("filter volume lists by time", ApiVersion(3, 60))


class StorageApi:
    """Calls of the Storage API; every method is one request unless it says otherwise."""

    def __init__(self, http: ServiceHttp, waiter: Waiter) -> None:
        self._http = http
        self._waiter = waiter
        self._versions = MicroversionPicker(http, "volume")
        self.shared_polls = SharedVolumePolls(
            self.get_volume, self._volumes_in_status, waiter.clock, self._volumes_changed_since
        )
        self.volume_names = SharedLookups(self._volumes_named, self._volumes_counted, lambda v: v.name)
        self.snapshot_names = SharedLookups(
            self._snapshots_named, self._snapshots_counted, lambda s: s.name
        )
        self.backup_names = SharedLookups(self._backups_named, self._backups_counted, lambda b: b.name)

    # -- versions -------------------------------------------------------------------------------

    async def versions(self) -> VersionRange:
        """The microversion range the Storage API supports (discovered once, then cached)."""
        return await self._versions.range()

    # -- volumes --------------------------------------------------------------------------------

    async def create_volume(
        self,
        name: str,
        size_gib: int,
        *,
        volume_type: str | None = None,
        availability_zone: str | None = None,
        snapshot_id: str | None = None,
        source_volid: str | None = None,
        backup_id: str | None = None,
        metadata: Mapping[str, str] | None = None,
        multiattach: bool = False,
        description: str | None = None,
    ) -> Volume:
        """Start creating a volume (status `creating`); never retried blindly: look it up by name instead."""
        body: dict[str, Any] = {"name": name, "size": size_gib}
        optional = {
            "volume_type": volume_type, "availability_zone": availability_zone, "snapshot_id": snapshot_id,
            "source_volid": source_volid, "backup_id": backup_id, "description": description,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        if metadata:
            body["metadata"] = dict(metadata)
        if multiattach:
            body["multiattach"] = True
        feature = CREATE_FROM_BACKUP if backup_id else VOLUME_SHOW
        answer = await self._post("volumes", {"volume": body}, feature, idempotent=False)
        return Volume.from_api(answer.field("volume"))

    async def get_volume(self, volume_id: str) -> Volume:
        """One volume; NotFound when it does not exist."""
        answer = await self._get(f"volumes/{volume_id}", VOLUME_SHOW)
        return Volume.from_api(answer.field("volume"))

    async def find_volume_by_name(self, name: str) -> list[Volume]:
        """Every volume with exactly this name (names are not unique in the Storage API).

        Look-ups made at the same time share requests (see sharedlookups).
        """
        return await self.volume_names.find(name)

    async def _volumes_named(self, name: str) -> list[Volume]:
        items = await self._all_pages(lambda m: self._volume_page({"name": name}, REQUESTED_PAGE, m))
        return [v for v in items if v.name == name]

    async def _volumes_counted(self, marker: str | None) -> Page[Volume]:
        """One page of every volume of the project, with the count when the cloud can give it."""
        return await self._volume_page(await self._count_filter(), REQUESTED_PAGE, marker)

    async def _count_filter(self) -> dict[str, str]:
        return {"with_count": "true"} if await self._versions.supports(LIST_COUNT) else {}

    async def _volumes_in_status(self, status: str) -> list[Volume]:
        """Every volume of the project in one status (all pages)."""
        return await self._all_pages(
            lambda marker: self._volume_page({"status": status}, REQUESTED_PAGE, marker)
        )

    async def _volumes_changed_since(self, since: datetime, budget: int) -> list[Volume] | None:
        """Volumes updated at or after `since` (the cloud's clock), listing at most about `budget` pages.

        None when the cloud cannot filter by time (before 3.60). The listing stops after its first
        page when the whole of it would take `budget` requests or more: the caller then fetches on
        their own the volumes it did not find.
        """
        if not await self._versions.supports(TIME_FILTERS):
            return None
        stamp = since.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds")
        filters = {"updated_at": f"gte:{stamp}", **await self._count_filter()}
        items: list[Volume] = []
        marker: str | None = None
        while True:
            page = await self._volume_page(filters, REQUESTED_PAGE, marker)
            items.extend(page.items)
            if page.next_marker is None or not page.items:
                return items
            pages = math.ceil(page.count / len(page.items)) if page.count is not None else math.inf
            if pages >= budget:
                return items
            marker = page.next_marker

    async def list_volumes(
        self, *, limit: int | None = None, marker: str | None = None,
        filters: Mapping[str, str] | None = None,
    ) -> Page[Volume]:
        """One page of volumes with details, oldest first; NotFound when the marker is unknown."""
        return await self._volume_page(dict(filters or {}), limit, marker)

    async def delete_volume(self, volume_id: str, *, cascade: bool = False) -> None:
        """Start deleting a volume; NotFound when already gone, Conflict while attached or with snapshots."""
        params = {"cascade": "true"} if cascade else None
        await self._http.request("DELETE", f"volumes/{volume_id}", params=params,
                                 microversion=await self._pick(PLAIN))

    async def extend_volume(self, volume_id: str, new_size_gib: int, *, online: bool = False) -> None:
        """Start growing a volume; `online` (attached volume) needs microversion 3.42."""
        feature = ONLINE_EXTEND if online else OFFLINE_EXTEND
        await self._action(volume_id, {"os-extend": {"new_size": new_size_gib}}, feature)

    async def retype_volume(self, volume_id: str, new_type: str, *, migration_policy: str = "never") -> None:
        """Start changing a volume's type; `on-demand` lets the cloud move the data to another backend."""
        body = {"os-retype": {"new_type": new_type, "migration_policy": migration_policy}}
        await self._action(volume_id, body, PLAIN)

    async def update_volume_metadata(self, volume_id: str, metadata: Mapping[str, str]) -> dict[str, str]:
        """Merge keys into a volume's metadata; returns the whole metadata afterwards."""
        answer = await self._http.request(
            "POST", f"volumes/{volume_id}/metadata", json={"metadata": dict(metadata)},
            microversion=await self._pick(PLAIN), idempotent=True,
        )
        return {str(k): str(v) for k, v in answer.field("metadata").items()}

    async def reset_volume_status(self, volume_id: str, status: VolumeStatus) -> None:
        """Force a volume's status (admin only: Forbidden otherwise), to recover one stuck in a transition."""
        await self._action(volume_id, {"os-reset_status": {"status": str(status)}}, PLAIN)

    async def delete_attachment(self, attachment_id: str) -> None:
        """Remove one of a volume's attachments in the Storage API alone; NotFound when already gone.

        Compute is not told: only for an attachment whose server Compute no longer has.
        """
        await self._http.request(
            "DELETE", f"attachments/{attachment_id}", microversion=await self._pick(ATTACHMENTS)
        )

    async def volume_error_reason(self, volume_id: str) -> str | None:
        """The newest user message the cloud left about a resource (why it went to error), if any."""
        if not await self._versions.supports(MESSAGES):
            return None
        try:
            answer = await self._http.request(
                "GET", "messages",
                params={"resource_uuid": volume_id, "sort": "created_at:desc", "limit": "1"},
                microversion=await self._pick(MESSAGES),
            )
        except NotFound:
            return None
        messages = [
            m for m in answer.body.get("messages") or () if str(m.get("resource_uuid") or "") == volume_id
        ]
        if not messages:
            return None
        newest = max(messages, key=lambda m: str(m.get("created_at") or ""))
        return str(newest.get("user_message") or "") or None

    # -- snapshots ------------------------------------------------------------------------------

    async def create_snapshot(
        self, volume_id: str, name: str, *, force: bool = False, metadata: Mapping[str, str] | None = None,
        description: str | None = None,
    ) -> Snapshot:
        """Start a snapshot; `force` allows an in-use volume (Conflict without it)."""
        body: dict[str, Any] = {"volume_id": volume_id, "name": name}
        if metadata:
            body["metadata"] = dict(metadata)
        if description is not None:
            body["description"] = description
        version = await self._pick(SNAPSHOT_FORCED if force else SNAPSHOT_UNFORCED)
        if force or version < ApiVersion(3, 66):
            body["force"] = force
        answer = await self._http.request("POST", "snapshots", json={"snapshot": body}, microversion=version,
                                          idempotent=False)
        return Snapshot.from_api(answer.field("snapshot"))

    async def get_snapshot(self, snapshot_id: str) -> Snapshot:
        """One snapshot; NotFound when it does not exist."""
        answer = await self._get(f"snapshots/{snapshot_id}", SNAPSHOT_SHOW)
        return Snapshot.from_api(answer.field("snapshot"))

    async def find_snapshot_by_name(self, name: str) -> list[Snapshot]:
        """Every snapshot with exactly this name; look-ups made at the same time share requests."""
        return await self.snapshot_names.find(name)

    async def _snapshots_named(self, name: str) -> list[Snapshot]:
        items = await self._all_pages(
            lambda m: self.list_snapshots(limit=REQUESTED_PAGE, marker=m, name=name)
        )
        return [s for s in items if s.name == name]

    async def _snapshots_counted(self, marker: str | None) -> Page[Snapshot]:
        params = _page_params(REQUESTED_PAGE, marker, await self._count_filter())
        answer = await self._get("snapshots/detail", SNAPSHOT_LIST, params)
        return _page(answer, "snapshots", Snapshot.from_api)

    async def list_snapshots(
        self, *, limit: int | None = None, marker: str | None = None, volume_id: str | None = None,
        name: str | None = None,
    ) -> Page[Snapshot]:
        """One page of snapshots with details, optionally of one volume."""
        params = _page_params(limit, marker, {"volume_id": volume_id, "name": name})
        answer = await self._get("snapshots/detail", SNAPSHOT_SHOW, params)
        return _page(answer, "snapshots", Snapshot.from_api)

    async def delete_snapshot(self, snapshot_id: str) -> None:
        """Start deleting a snapshot; NotFound when already gone."""
        await self._http.request("DELETE", f"snapshots/{snapshot_id}", microversion=await self._pick(PLAIN))

    # -- backups --------------------------------------------------------------------------------

    async def create_backup(
        self, volume_id: str, name: str, *, incremental: bool = False, force: bool = False,
        snapshot_id: str | None = None, container: str | None = None,
        metadata: Mapping[str, str] | None = None, description: str | None = None,
    ) -> Backup:
        """Start a backup (full, or incremental on the volume's last one); `force` allows an in-use volume."""
        body: dict[str, Any] = {"volume_id": volume_id, "name": name, "incremental": incremental,
                                "force": force}
        optional = {"snapshot_id": snapshot_id, "container": container, "description": description}
        body.update({k: v for k, v in optional.items() if v is not None})
        if metadata:
            body["metadata"] = dict(metadata)
        feature = BACKUP_METADATA if metadata else PLAIN
        answer = await self._post("backups", {"backup": body}, feature, idempotent=False)
        backup = answer.field("backup")
        # The create answer holds only id, name and links; the caller gets the full view.
        return await self.get_backup(str(backup["id"]))

    async def get_backup(self, backup_id: str) -> Backup:
        """One backup; NotFound when it does not exist."""
        answer = await self._get(f"backups/{backup_id}", BACKUP_SHOW)
        return Backup.from_api(answer.field("backup"))

    async def find_backup_by_name(self, name: str) -> list[Backup]:
        """Every backup with exactly this name; look-ups made at the same time share requests."""
        return await self.backup_names.find(name)

    async def _backups_named(self, name: str) -> list[Backup]:
        items = await self._all_pages(lambda m: self.list_backups(limit=REQUESTED_PAGE, marker=m, name=name))
        return [b for b in items if b.name == name]

    async def _backups_counted(self, marker: str | None) -> Page[Backup]:
        params = _page_params(REQUESTED_PAGE, marker, await self._count_filter())
        answer = await self._get("backups/detail", BACKUP_SHOW, params)
        return _page(answer, "backups", Backup.from_api)

    async def list_backups(
        self, *, limit: int | None = None, marker: str | None = None, volume_id: str | None = None,
        name: str | None = None,
    ) -> Page[Backup]:
        """One page of backups with details, optionally of one volume."""
        params = _page_params(limit, marker, {"volume_id": volume_id, "name": name})
        answer = await self._get("backups/detail", BACKUP_SHOW, params)
        return _page(answer, "backups", Backup.from_api)

    async def list_all_backups(self, volume_id: str | None = None) -> list[Backup]:
        """Every backup of the project (all pages), optionally of one volume."""
        return await self._all_pages(lambda m: self.list_backups(limit=1000, marker=m, volume_id=volume_id))

    async def set_backup_metadata(self, backup_id: str, metadata: Mapping[str, str]) -> dict[str, str]:
        """Replace a backup's metadata (3.43); returns what the backup holds afterwards."""
        answer = await self._http.request(
            "PUT", f"backups/{backup_id}", json={"backup": {"metadata": dict(metadata)}},
            microversion=await self._pick(BACKUP_METADATA), idempotent=True,
        )
        return {str(k): str(v) for k, v in (answer.field("backup").get("metadata") or {}).items()}

    async def delete_backup(self, backup_id: str) -> None:
        """Start deleting a backup; NotFound when gone, Conflict while incremental backups depend on it."""
        await self._http.request("DELETE", f"backups/{backup_id}", microversion=await self._pick(PLAIN))

    async def restore_backup(
        self, backup_id: str, *, volume_id: str | None = None, name: str | None = None,
    ) -> BackupRestore:
        """Start restoring a backup into an existing volume, or into a new one named `name`."""
        body: dict[str, Any] = {}
        if volume_id is not None:
            body["volume_id"] = volume_id
        if name is not None:
            body["name"] = name
        answer = await self._post(f"backups/{backup_id}/restore", {"restore": body}, PLAIN, idempotent=False)
        return BackupRestore.from_api(answer.field("restore"))

    # -- types, qos, quotas, limits --------------------------------------------------------------

    async def list_types(self) -> list[VolumeType]:
        """Every volume type visible to the project, with extra specs."""
        answer = await self._get("types", PLAIN)
        return [VolumeType.from_api(t) for t in answer.body.get("volume_types") or ()]

    async def get_type(self, name_or_id: str) -> VolumeType:
        """A volume type by id or by name (the API shows types by id only); NotFound when neither matches."""
        for volume_type in await self.list_types():
            if name_or_id in (volume_type.id, volume_type.name):
                return volume_type
        # Private types are not listed to a project that has access to them, but can be shown by id.
        answer = await self._get(f"types/{name_or_id}", PLAIN)
        return VolumeType.from_api(answer.field("volume_type"))

    async def default_type(self) -> VolumeType | None:
        """The type a volume gets when none is named, or None when the cloud cannot say (before 3.62)."""
        if not await self._versions.supports(DEFAULT_TYPE):
            return None
        try:
            answer = await self._get("types/default", DEFAULT_TYPE)
        except NotFound:
            return None
        return VolumeType.from_api(answer.field("volume_type"))

    async def list_availability_zones(self) -> list[AvailabilityZone]:
        """The Storage API's availability zones and whether each takes new volumes."""
        answer = await self._get("os-availability-zone", PLAIN)
        return [AvailabilityZone.from_api(z) for z in answer.body.get("availabilityZoneInfo") or ()]

    async def list_qos_specs(self) -> list[QosSpec]:
        """Every QoS spec (admin only in most clouds: Forbidden otherwise)."""
        answer = await self._get("qos-specs", PLAIN)
        return [QosSpec.from_api(q) for q in answer.body.get("qos_specs") or ()]

    async def get_qos_spec(self, qos_id: str) -> QosSpec:
        """One QoS spec by id."""
        answer = await self._get(f"qos-specs/{qos_id}", PLAIN)
        return QosSpec.from_api(answer.field("qos_specs"))

    async def get_quota_usage(self, project_id: str | None = None) -> QuotaUsage:
        """The project's quota set with usage (limit, in_use, reserved per resource)."""
        project = project_id or await self._http.project_id()
        answer = await self._get(f"os-quota-sets/{project}", PLAIN, {"usage": "true"})
        return QuotaUsage.from_api(answer.field("quota_set"))

    async def get_limits(self) -> Limits:
        """The project's absolute limits."""
        answer = await self._get("limits", PLAIN)
        return Limits.from_api(answer.field("limits"))

    # -- waiting --------------------------------------------------------------------------------

    async def wait_for_volume(
        self, volume_id: str, *wanted: VolumeStatus, timeout_seconds: float,
        done: Callable[[Volume], bool] | None = None, expect: str | None = None,
        rollback: Rollback[Volume] | None = None, seen: Volume | None = None,
    ) -> Volume:
        """Poll a volume until a wanted status (and `done`); CloudError with the reason on error.

        `expect` is the status the caller's own request has just left the volume in; polls of many
        volumes in the same status share one list request. `rollback` tells when the cloud undid the
        change (RolledBack at once, not at the deadline). `seen` is the caller's latest view of the
        volume (the create's answer), whose time lets a shared list find it once it moves on.
        """
        check: StatusCheck[Volume] = StatusCheck(
            status_of=lambda v: v.raw_status, wanted={str(s) for s in wanted},
            failed=_volume_failed(wanted), reason_of=lambda v: self.volume_error_reason(v.id), done=done,
            rollback=rollback,
        )
        return await self._waiter.wait_for_status(
            self.shared_polls.of(volume_id, seen), check, timeout_seconds=timeout_seconds,
            what=f"volume {volume_id}", expect=expect,
        )

    async def wait_for_volume_deleted(
        self, volume_id: str, *, timeout_seconds: float, expect: str | None = None,
    ) -> None:
        """Poll until the volume is gone; CloudError when it goes to error_deleting."""
        check: StatusCheck[Volume] = StatusCheck(
            status_of=lambda v: v.raw_status, wanted=(), failed=lambda s: s == VolumeStatus.ERROR_DELETING,
            reason_of=lambda v: self.volume_error_reason(v.id),
            # A volume the backend finds busy goes back to available.
            rollback=Rollback("the deletion", _settled_in(VolumeStatus.AVAILABLE, VolumeStatus.IN_USE),
                              lambda v: self.volume_error_reason(v.id)),
        )
        await self._waiter.wait_for_deletion(
            self.shared_polls.of(volume_id), check, timeout_seconds=timeout_seconds,
            what=f"volume {volume_id}", expect=expect,
        )

    async def wait_for_snapshot(
        self, snapshot_id: str, *wanted: SnapshotStatus, timeout_seconds: float,
    ) -> Snapshot:
        """Poll a snapshot until a wanted status (available unless told); CloudError on another error."""
        wanted_values = {str(s) for s in wanted or (SnapshotStatus.AVAILABLE,)}
        check: StatusCheck[Snapshot] = StatusCheck(
            status_of=lambda s: s.raw_status, wanted=wanted_values,
            failed=lambda s: s.startswith("error") and s not in wanted_values,
            reason_of=lambda s: self.volume_error_reason(s.id),
        )
        return await self._waiter.wait_for_status(
            lambda: self.get_snapshot(snapshot_id), check, timeout_seconds=timeout_seconds,
            what=f"snapshot {snapshot_id}",
        )

    async def wait_for_snapshot_deleted(self, snapshot_id: str, *, timeout_seconds: float) -> None:
        """Poll until the snapshot is gone; CloudError when it goes to error_deleting."""
        check: StatusCheck[Snapshot] = StatusCheck(
            status_of=lambda s: s.raw_status, wanted=(), failed=lambda s: s == SnapshotStatus.ERROR_DELETING,
            reason_of=lambda s: self.volume_error_reason(s.id),
            # A snapshot the backend finds busy goes back to available.
            rollback=Rollback("the deletion", _settled_in(SnapshotStatus.AVAILABLE),
                              lambda s: self.volume_error_reason(s.id)),
        )
        await self._waiter.wait_for_deletion(
            lambda: self.get_snapshot(snapshot_id), check, timeout_seconds=timeout_seconds,
            what=f"snapshot {snapshot_id}",
        )

    async def wait_for_backup_deleted(self, backup_id: str, *, timeout_seconds: float) -> None:
        """Poll until the backup is gone; CloudError with its fail_reason when its deletion fails.

        The backup service leaves a backup it failed to delete in `error` (error_deleting is
        never set, though the status exists).
        """
        check: StatusCheck[Backup] = StatusCheck(
            status_of=lambda b: b.raw_status, wanted=(),
            failed=lambda s: s in (BackupStatus.ERROR, BackupStatus.ERROR_DELETING), reason_of=_backup_reason,
        )
        await self._waiter.wait_for_deletion(
            lambda: self.get_backup(backup_id), check, timeout_seconds=timeout_seconds,
            what=f"backup {backup_id}",
        )

    async def wait_for_backup(self, backup_id: str, *wanted: BackupStatus, timeout_seconds: float) -> Backup:
        """Poll a backup until a wanted status (available unless told); CloudError with its fail_reason."""
        wanted_values = {str(s) for s in wanted or (BackupStatus.AVAILABLE,)}
        check: StatusCheck[Backup] = StatusCheck(
            status_of=lambda b: b.raw_status, wanted=wanted_values,
            failed=lambda s: s.startswith("error") and s not in wanted_values, reason_of=_backup_reason,
        )
        return await self._waiter.wait_for_status(
            lambda: self.get_backup(backup_id), check, timeout_seconds=timeout_seconds,
            what=f"backup {backup_id}",
        )

    # -- helpers --------------------------------------------------------------------------------

    async def _pick(self, feature: Feature) -> ApiVersion:
        return await self._versions.pick(feature)

    async def _get(self, path: str, feature: Feature, params: Mapping[str, str] | None = None) -> Answer:
        return await self._http.request("GET", path, params=params, microversion=await self._pick(feature))

    async def _post(self, path: str, body: Json, feature: Feature, *, idempotent: bool) -> Answer:
        return await self._http.request("POST", path, json=body, microversion=await self._pick(feature),
                                        idempotent=idempotent)

    async def _action(self, volume_id: str, body: Json, feature: Feature) -> None:
        # Volume actions change state and answer 400 when repeated, so they are not retried blindly.
        await self._post(f"volumes/{volume_id}/action", body, feature, idempotent=False)

    async def _volume_page(
        self, filters: dict[str, str], limit: int | None, marker: str | None,
    ) -> Page[Volume]:
        params = _page_params(limit, marker, {"sort": "created_at:asc", **filters})
        answer = await self._get("volumes/detail", VOLUME_SHOW, params)
        return _page(answer, "volumes", Volume.from_api)

    @staticmethod
    async def _all_pages(fetch: Callable[[str | None], Awaitable[Page[T]]]) -> list[T]:
        items: list[T] = []
        marker: str | None = None
        while True:
            page = await fetch(marker)
            items.extend(page.items)
            if page.next_marker is None or not page.items:
                return items
            marker = page.next_marker


async def _backup_reason(backup: Backup) -> str | None:
    return backup.fail_reason


def _settled_in(*statuses: StrEnum) -> Callable[[Volume | Snapshot], Awaitable[bool]]:
    """Seen when the resource is in one of these statuses."""
    values = {str(s) for s in statuses}

    async def seen(resource: Volume | Snapshot) -> bool:
        return resource.raw_status in values

    return seen


def _volume_failed(wanted: tuple[VolumeStatus, ...]) -> Callable[[str], bool]:
    """Error statuses end a wait, unless the caller waits for exactly that status."""
    wanted_values = {str(s) for s in wanted}
    return lambda status: status.startswith("error") and status not in wanted_values


def _page_params(limit: int | None, marker: str | None, extra: Mapping[str, str | None]) -> dict[str, str]:
    params = {k: v for k, v in extra.items() if v is not None}
    if limit is not None:
        params["limit"] = str(limit)
    if marker is not None:
        params["marker"] = marker
    return params


def _page(answer: Answer, key: str, build: Callable[[Json], T]) -> Page[T]:
    """A page, the marker of the next one (from the `<key>_links` next link) and the count, if any."""
    items = tuple(build(item) for item in answer.body.get(key) or ())
    raw_count = answer.body.get("count")
    count = raw_count if isinstance(raw_count, int) and not isinstance(raw_count, bool) else None
    for link in answer.body.get(f"{key}_links") or ():
        if link.get("rel") == "next":
            markers = parse_qs(urlsplit(str(link.get("href") or "")).query).get("marker")
            if markers and items:
                return Page(items, markers[0], count)
    return Page(items, None, count)
