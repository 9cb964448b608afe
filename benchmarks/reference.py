"""A model of cloud-provider-openstack's cinder-csi-plugin waits, replayed against the emulator.

This is not that driver: it is a small poller that issues the same kind of request that starts
each operation and then polls the resource on that driver's schedule (check at once, then wait
1 s, growing x1.2 per step for attach, detach, volume creation and snapshots; x1.1 for
expansion), so its latency and API calls can be set beside ours on the same emulator run.
Token handling, lookups by name and the step limits of that driver are left out.
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


WAIT = Schedule(1.0, 1.2)      # attach, detach, creation, snapshots and backups
EXPAND = Schedule(1.0, 1.1)    # volume expansion


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
        body = {"volume": {"size": size_gib, "name": f"ref-{uuid.uuid4()}"}}
        volume = (await self._api.call("POST", self._api.volume_path("volumes"), body))["volume"]
        await poll(lambda: self._volume(volume["id"]), lambda v: v["status"] == "available", WAIT)
        return str(volume["id"])

    async def attach(self, volume_id: str, server_id: str) -> str:
        body = {"volumeAttachment": {"volumeId": volume_id}}
        await self._api.call("POST", f"/compute/v2.1/servers/{server_id}/os-volume_attachments", body)
        await poll(lambda: self._volume(volume_id), lambda v: v["status"] == "in-use", WAIT)
        return volume_id

    async def detach(self, volume_id: str, server_id: str) -> str:
        await self._api.call("DELETE", f"/compute/v2.1/servers/{server_id}/os-volume_attachments/{volume_id}")
        await poll(lambda: self._volume(volume_id), lambda v: v["status"] == "available", WAIT)
        return volume_id

    async def snapshot(self, volume_id: str) -> str:
        body = {"snapshot": {"volume_id": volume_id, "name": f"ref-{uuid.uuid4()}", "force": True}}
        snap = (await self._api.call("POST", self._api.volume_path("snapshots"), body))["snapshot"]
        path = self._api.volume_path(f"snapshots/{snap['id']}")
        await poll(lambda: self._api.call("GET", path),
                   lambda b: b["snapshot"]["status"] == "available", WAIT)
        return str(snap["id"])

    async def backup(self, volume_id: str) -> str:
        body = {"backup": {"volume_id": volume_id, "name": f"ref-{uuid.uuid4()}", "force": True}}
        backup = (await self._api.call("POST", self._api.volume_path("backups"), body))["backup"]
        path = self._api.volume_path(f"backups/{backup['id']}")
        await poll(lambda: self._api.call("GET", path), lambda b: b["backup"]["status"] == "available", WAIT)
        return str(backup["id"])

    async def expand(self, volume_id: str, new_size_gib: int) -> str:
        body = {"os-extend": {"new_size": new_size_gib}}
        await self._api.call("POST", self._api.volume_path(f"volumes/{volume_id}/action"), body)
        await poll(lambda: self._volume(volume_id),
                   lambda v: v["status"] == "available" and v["size"] == new_size_gib, EXPAND)
        return volume_id
