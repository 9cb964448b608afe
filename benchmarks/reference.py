"""A model of cloud-provider-openstack's cinder-csi-plugin waits, replayed against the emulator.

This is not that driver: it is a small poller that issues the same kind of request that starts
each operation and then polls the resource on that driver's schedule (check at once, then wait
1 s, growing x1.2 per step for attach, detach and snapshots; x1.1 for its volume status waits,
creation and expansion), so its latency and API calls can be set beside ours on the same emulator
run.
The look-ups that driver makes before starting an operation are modelled as one request each (a
search by name before creating a volume, a snapshot or a backup; the server and the volume before
attaching; the volume before expanding); token requests and its step limits are left out.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

from benchmarks.common import CloudApi


@dataclass(frozen=True, slots=True)
class Schedule:
    first_seconds: float
    factor: float


WAIT = Schedule(1.0, 1.2)        # attach, detach, snapshots and backups
OPERATION = Schedule(1.0, 1.1)   # a volume reaching a status: creation, expansion


async def poll(fetch: Callable[[], Awaitable[Any]], done: Callable[[Any], bool], schedule: Schedule,
               timeout_seconds: float = 900.0) -> None:
    """Check at once, then after each delay of the schedule, until done."""
    delay, deadline = schedule.first_seconds, time.monotonic() + timeout_seconds
    while not done(await fetch()):
        if time.monotonic() > deadline:
            raise TimeoutError("the reference poller gave up")
        await asyncio.sleep(delay)
        delay *= schedule.factor


class ReferenceModel:
    """One operation at a time as the modelled driver does it; returns the new resource's id."""

    def __init__(self, api: CloudApi) -> None:
        self._api = api

    async def _volume(self, volume_id: str) -> dict[str, Any]:
        body = await self._api.call("GET", self._api.volume_path(f"volumes/{volume_id}"))
        return cast(dict[str, Any], body["volume"])

    async def create_volume(self, size_gib: int = 1) -> str:
        name = f"ref-{uuid.uuid4()}"
        await self._api.call("GET", self._api.volume_path(f"volumes/detail?name={name}"))
        body = {"volume": {"size": size_gib, "name": name}}
        volume = (await self._api.call("POST", self._api.volume_path("volumes"), body))["volume"]
        await poll(lambda: self._volume(volume["id"]), lambda v: v["status"] == "available", OPERATION)
        return str(volume["id"])

    async def attach(self, volume_id: str, server_id: str) -> str:
        await self._api.call("GET", f"/compute/v2.1/servers/{server_id}")
        await self._volume(volume_id)
        body = {"volumeAttachment": {"volumeId": volume_id}}
        await self._api.call("POST", f"/compute/v2.1/servers/{server_id}/os-volume_attachments", body)
        await poll(lambda: self._volume(volume_id), lambda v: v["status"] == "in-use", WAIT)
        return volume_id

    async def detach(self, volume_id: str, server_id: str) -> str:
        await self._api.call("DELETE", f"/compute/v2.1/servers/{server_id}/os-volume_attachments/{volume_id}")
        await poll(lambda: self._volume(volume_id), lambda v: v["status"] == "available", WAIT)
        return volume_id

    async def snapshot(self, volume_id: str) -> str:
        name = f"ref-{uuid.uuid4()}"
        await self._api.call("GET", self._api.volume_path(f"snapshots/detail?name={name}"))
        body = {"snapshot": {"volume_id": volume_id, "name": name, "force": True}}
        snap = (await self._api.call("POST", self._api.volume_path("snapshots"), body))["snapshot"]
        path = self._api.volume_path(f"snapshots/{snap['id']}")
        await poll(lambda: self._api.call("GET", path),
                   lambda b: b["snapshot"]["status"] == "available", WAIT)
        return str(snap["id"])

    async def backup(self, volume_id: str) -> str:
        name = f"ref-{uuid.uuid4()}"
        await self._api.call("GET", self._api.volume_path(f"backups/detail?name={name}"))
        body = {"backup": {"volume_id": volume_id, "name": name, "force": True}}
        backup = (await self._api.call("POST", self._api.volume_path("backups"), body))["backup"]
        path = self._api.volume_path(f"backups/{backup['id']}")
        await poll(lambda: self._api.call("GET", path), lambda b: b["backup"]["status"] == "available", WAIT)
        return str(backup["id"])

    async def expand(self, volume_id: str, new_size_gib: int) -> str:
        await self._volume(volume_id)
        body = {"os-extend": {"new_size": new_size_gib}}
        await self._api.call("POST", self._api.volume_path(f"volumes/{volume_id}/action"), body)
        await poll(lambda: self._volume(volume_id),
                   lambda v: v["status"] == "available" and v["size"] == new_size_gib, OPERATION)
        return volume_id
