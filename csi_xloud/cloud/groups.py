"""The Storage API's generic volume groups: group types (3.11), groups (3.13), group snapshots (3.14)."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from csi_xloud.cloud.errors import NotFound
from csi_xloud.cloud.http import Answer, ServiceHttp
from csi_xloud.cloud.models import ApiVersion, Json, Snapshot, enum_value, parse_time
from csi_xloud.cloud.versions import Feature, MicroversionPicker
from csi_xloud.cloud.waiters import StatusCheck, Waiter

GROUP_TYPES = Feature("read group types", ApiVersion(3, 11))
# 3.14 adds group_snapshot_id and source_group_id to groups, and group snapshots themselves.
GROUPS = Feature("use volume groups", ApiVersion(3, 13), ApiVersion(3, 14))
GROUP_VOLUMES = Feature("list a group's volumes", ApiVersion(3, 25))
GROUP_SNAPSHOTS = Feature("snapshot volume groups", ApiVersion(3, 14))
# A member may filter snapshots by group_snapshot_id before 3.33 only (later it is refused as an
# unknown filter), and snapshot bodies carry group_snapshot_id from 3.14.
MEMBER_SNAPSHOTS = Feature("list a group snapshot's snapshots", ApiVersion(3, 14), ApiVersion(3, 14))


def _opt_str(raw: object) -> str | None:
    return None if raw is None or raw == "" else str(raw)


class GroupStatus(StrEnum):
    CREATING = "creating"
    AVAILABLE = "available"
    UPDATING = "updating"
    DELETING = "deleting"
    DELETED = "deleted"
    IN_USE = "in-use"
    ERROR = "error"
    ERROR_DELETING = "error_deleting"
    UNKNOWN = "unknown"

    @property
    def is_error(self) -> bool:
        return self.value.startswith("error")


@dataclass(frozen=True, slots=True)
class GroupType:
    """A group type; group_specs are shown to administrators only."""

    id: str
    name: str
    description: str | None = None
    is_public: bool = True
    group_specs: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_api(cls, body: Json) -> GroupType:
        return cls(
            id=str(body["id"]),
            name=str(body.get("name") or ""),
            description=_opt_str(body.get("description")),
            is_public=bool(body.get("is_public", True)),
            group_specs={str(k): str(v) for k, v in (body.get("group_specs") or {}).items()},
        )


@dataclass(frozen=True, slots=True)
class Group:
    """A generic volume group."""

    id: str
    name: str
    status: GroupStatus
    group_type_id: str
    volume_type_ids: tuple[str, ...] = ()
    availability_zone: str | None = None
    description: str | None = None
    created_at: datetime | None = None
    raw_status: str = ""

    @classmethod
    def from_api(cls, body: Json) -> Group:
        raw_status = str(body.get("status") or "")
        return cls(
            id=str(body["id"]),
            name=str(body.get("name") or ""),
            status=enum_value(GroupStatus, raw_status),
            group_type_id=str(body.get("group_type") or ""),
            volume_type_ids=tuple(str(t) for t in body.get("volume_types") or ()),
            availability_zone=_opt_str(body.get("availability_zone")),
            description=_opt_str(body.get("description")),
            created_at=parse_time(body.get("created_at")),
            raw_status=raw_status,
        )


@dataclass(frozen=True, slots=True)
class GroupSnapshot:
    """A group snapshot: one member snapshot per volume of its group."""

    id: str
    name: str
    status: GroupStatus
    group_id: str
    group_type_id: str
    description: str | None = None
    created_at: datetime | None = None
    raw_status: str = ""

    @classmethod
    def from_api(cls, body: Json) -> GroupSnapshot:
        raw_status = str(body.get("status") or "")
        return cls(
            id=str(body["id"]),
            name=str(body.get("name") or ""),
            status=enum_value(GroupStatus, raw_status),
            group_id=str(body.get("group_id") or ""),
            group_type_id=str(body.get("group_type_id") or ""),
            description=_opt_str(body.get("description")),
            created_at=parse_time(body.get("created_at")),
            raw_status=raw_status,
        )


class GroupsApi:
    """Calls on group types, groups and group snapshots; each is one request unless it says otherwise."""

    def __init__(self, http: ServiceHttp, waiter: Waiter) -> None:
        self._http = http
        self._waiter = waiter
        self._versions = MicroversionPicker(http, "volume")

    # -- group types ------------------------------------------------------------------------------

    async def list_group_types(self) -> list[GroupType]:
        """Every group type the project may use (private ones are listed to administrators only)."""
        answer = await self._get("group_types", GROUP_TYPES)
        return [GroupType.from_api(t) for t in answer.body.get("group_types") or ()]

    async def default_group_type(self) -> GroupType | None:
        """The cloud's default group type, or None when it has none."""
        try:
            answer = await self._get("group_types/default", GROUP_TYPES)
        except NotFound:
            return None
        return GroupType.from_api(answer.field("group_type"))

    async def get_group_type(self, group_type_id: str) -> GroupType:
        """One group type by id; NotFound when it does not exist or is not visible."""
        answer = await self._get(f"group_types/{group_type_id}", GROUP_TYPES)
        return GroupType.from_api(answer.field("group_type"))

    # -- groups -----------------------------------------------------------------------------------

    async def create_group(
        self,
        name: str,
        group_type_id: str,
        volume_type_ids: Collection[str],
        *,
        availability_zone: str | None = None,
        description: str | None = None,
    ) -> Group:
        """Start creating a group (status `creating`); never retried blindly: look it up by name instead."""
        body: dict[str, Any] = {
            "name": name,
            "group_type": group_type_id,
            "volume_types": sorted(volume_type_ids),
        }
        if availability_zone:
            body["availability_zone"] = availability_zone
        if description is not None:
            body["description"] = description
        answer = await self._http.request(
            "POST", "groups", json={"group": body}, microversion=await self._pick(GROUPS), idempotent=False
        )
        return await self.get_group(str(answer.field("group")["id"]))

    async def get_group(self, group_id: str) -> Group:
        """One group; NotFound when it does not exist."""
        answer = await self._get(f"groups/{group_id}", GROUPS)
        return Group.from_api(answer.field("group"))

    async def list_groups(self) -> list[Group]:
        """Every group of the project."""
        answer = await self._get("groups/detail", GROUPS)
        return [Group.from_api(b) for b in answer.body.get("groups") or ()]

    async def group_volume_ids(self, group_id: str) -> list[str]:
        """The ids of the volumes in a group; NotFound when the group does not exist."""
        answer = await self._get(f"groups/{group_id}", GROUP_VOLUMES, {"list_volume": "True"})
        return [str(v) for v in answer.field("group").get("volumes") or ()]

    async def find_groups_by_name(self, name: str) -> list[Group]:
        """Every group of the project with exactly this name."""
        return [g for g in await self.list_groups() if g.name == name]

    async def update_group(
        self,
        group_id: str,
        *,
        add: Iterable[str] = (),
        remove: Iterable[str] = (),
        description: str | None = None,
    ) -> None:
        """Start adding and removing volumes (status `updating`), or change the description at once."""
        body: dict[str, Any] = {}
        if add:
            body["add_volumes"] = ",".join(add)
        if remove:
            body["remove_volumes"] = ",".join(remove)
        if description is not None:
            body["description"] = description
        # A repeated add or remove is refused (nothing left to change), so no blind retries.
        await self._http.request(
            "PUT",
            f"groups/{group_id}",
            json={"group": body},
            microversion=await self._pick(GROUPS),
            idempotent=False,
        )

    async def delete_group(self, group_id: str, *, delete_volumes: bool = False) -> None:
        """Start deleting a group (and its volumes with `delete_volumes`); NotFound when already gone."""
        body = {"delete": {"delete-volumes": delete_volumes}}
        await self._http.request(
            "POST",
            f"groups/{group_id}/action",
            json=body,
            microversion=await self._pick(GROUPS),
            idempotent=False,
        )

    # -- group snapshots --------------------------------------------------------------------------

    async def create_group_snapshot(
        self, group_id: str, name: str, *, description: str | None = None
    ) -> GroupSnapshot:
        """Start a group snapshot (status `creating`); never retried blindly: look it up by name instead."""
        body: dict[str, Any] = {"group_id": group_id, "name": name}
        if description is not None:
            body["description"] = description
        answer = await self._http.request(
            "POST",
            "group_snapshots",
            json={"group_snapshot": body},
            microversion=await self._pick(GROUP_SNAPSHOTS),
            idempotent=False,
        )
        return await self.get_group_snapshot(str(answer.field("group_snapshot")["id"]))

    async def get_group_snapshot(self, group_snapshot_id: str) -> GroupSnapshot:
        """One group snapshot; NotFound when it does not exist."""
        answer = await self._get(f"group_snapshots/{group_snapshot_id}", GROUP_SNAPSHOTS)
        return GroupSnapshot.from_api(answer.field("group_snapshot"))

    async def list_group_snapshots(self, *, group_id: str | None = None) -> list[GroupSnapshot]:
        """Every group snapshot of the project (of one group)."""
        params = {"group_id": group_id} if group_id else None
        answer = await self._get("group_snapshots/detail", GROUP_SNAPSHOTS, params)
        found = [GroupSnapshot.from_api(b) for b in answer.body.get("group_snapshots") or ()]
        return [s for s in found if group_id is None or s.group_id == group_id]

    async def find_group_snapshots_by_name(self, name: str) -> list[GroupSnapshot]:
        """Every group snapshot of the project with exactly this name."""
        return [s for s in await self.list_group_snapshots() if s.name == name]

    async def member_snapshots(self, group_snapshot_id: str) -> list[Snapshot]:
        """The snapshots a group snapshot holds, one per volume."""
        answer = await self._get(
            "snapshots/detail", MEMBER_SNAPSHOTS, {"group_snapshot_id": group_snapshot_id}
        )
        found = [Snapshot.from_api(s) for s in answer.body.get("snapshots") or ()]
        return [s for s in found if s.group_snapshot_id == group_snapshot_id]

    async def delete_group_snapshot(self, group_snapshot_id: str) -> None:
        """Start deleting a group snapshot and its member snapshots; NotFound when already gone."""
        await self._http.request(
            "DELETE", f"group_snapshots/{group_snapshot_id}", microversion=await self._pick(GROUP_SNAPSHOTS)
        )

    # -- waiting ----------------------------------------------------------------------------------

    async def wait_for_group(self, group_id: str, *, timeout_seconds: float) -> Group:
        """Poll a group until available; CloudError when it goes to error."""
        check: StatusCheck[Group] = StatusCheck(
            status_of=lambda g: g.raw_status,
            wanted={GroupStatus.AVAILABLE.value},
            failed=lambda s: s.startswith("error"),
        )
        return await self._waiter.wait_for_status(
            lambda: self.get_group(group_id),
            check,
            timeout_seconds=timeout_seconds,
            what=f"group {group_id}",
        )

    async def wait_for_group_deleted(self, group_id: str, *, timeout_seconds: float) -> None:
        """Poll until the group is gone; CloudError when it goes to error_deleting."""
        check: StatusCheck[Group] = StatusCheck(
            status_of=lambda g: g.raw_status,
            wanted=(),
            failed=lambda s: s == GroupStatus.ERROR_DELETING,
        )
        await self._waiter.wait_for_deletion(
            lambda: self.get_group(group_id),
            check,
            timeout_seconds=timeout_seconds,
            what=f"group {group_id}",
        )

    async def wait_for_group_snapshot(
        self, group_snapshot_id: str, *, timeout_seconds: float
    ) -> GroupSnapshot:
        """Poll a group snapshot until available; CloudError when it goes to error."""
        check: StatusCheck[GroupSnapshot] = StatusCheck(
            status_of=lambda s: s.raw_status,
            wanted={GroupStatus.AVAILABLE.value},
            failed=lambda s: s.startswith("error"),
        )
        return await self._waiter.wait_for_status(
            lambda: self.get_group_snapshot(group_snapshot_id),
            check,
            timeout_seconds=timeout_seconds,
            what=f"group-snapshot {group_snapshot_id}",
        )

    async def wait_for_group_snapshot_deleted(
        self, group_snapshot_id: str, *, timeout_seconds: float
    ) -> None:
        """Poll until the group snapshot is gone; CloudError when it goes to error_deleting."""
        check: StatusCheck[GroupSnapshot] = StatusCheck(
            status_of=lambda s: s.raw_status,
            wanted=(),
            failed=lambda s: s == GroupStatus.ERROR_DELETING,
        )
        await self._waiter.wait_for_deletion(
            lambda: self.get_group_snapshot(group_snapshot_id),
            check,
            timeout_seconds=timeout_seconds,
            what=f"group-snapshot {group_snapshot_id}",
        )

    # -- helpers ----------------------------------------------------------------------------------

    async def _pick(self, feature: Feature) -> ApiVersion:
        return await self._versions.pick(feature)

    async def _get(self, path: str, feature: Feature, params: dict[str, str] | None = None) -> Answer:
        return await self._http.request("GET", path, params=params, microversion=await self._pick(feature))
