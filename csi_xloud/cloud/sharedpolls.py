"""Many waits on volumes served by one list request per status, instead of one request each.

A wait believes its volume is in some transitional status (`creating`, `reserved`, `extending`,
`deleting`...). When one wait's view falls due, one `GET /volumes/detail?status=S` answers it
and every other wait on a volume believed in S whose view is at least half due. A volume found in
the list is still in S; one missing from it has moved on (or is gone), and only that volume is
then fetched on its own. So with n volumes in the same transition the cloud sees one list request
per tick plus one request per volume that changed, where n separate waits would send n requests
per tick; with a single wait, a list would buy nothing, so it is fetched on its own as before.

Serving a wait early costs no request and never makes it later; a wait is never served later
than its own schedule says.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from csi_xloud.clock import Clock
from csi_xloud.cloud.models import Volume
from csi_xloud.deadline import CALL_DEADLINE

log = logging.getLogger(__name__)

# How much of a wait's delay may be cut short when a shared list request passes by.
EARLY_SHARE = 0.5


@dataclass(eq=False)
class _Member:
    volume_id: str
    early: float  # may be served from this moment on
    future: asyncio.Future[Volume] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class SharedVolumePolls:
    """Serves the views of waits on volumes, one list request per status for all due waits."""

    def __init__(
        self,
        get_one: Callable[[str], Awaitable[Volume]],
        list_in_status: Callable[[str], Awaitable[list[Volume]]],
        clock: Clock,
    ) -> None:
        self._get_one = get_one
        self._list_in_status = list_in_status
        self._clock = clock
        self._waiting: dict[str, list[_Member]] = {}
        self._rounds: dict[str, asyncio.Task[None]] = {}
        self.list_requests = 0  # how many shared list requests were sent (for tests and metrics)
        # False once the cloud has answered a list with volumes of other statuses: it ignores the
        # filter, so every list would page through the whole project; waits then poll on their own.
        self.sharing = True

    def of(self, volume_id: str) -> VolumeViews:
        """The views of one volume, for the waiter."""
        return VolumeViews(self, volume_id)

    async def view(self, volume_id: str, delay: float, believed: str | None) -> Volume:
        """A view of the volume `delay` seconds from now at the latest."""
        if believed is None or not self.sharing:
            if delay > 0:
                await self._clock.sleep(delay)
            return await self._get_one(volume_id)
        member = _Member(volume_id, self._clock.monotonic() + (1 - EARLY_SHARE) * delay)
        members = self._waiting.setdefault(believed, [])
        members.append(member)
        try:
            await self._until(member.future, delay)
            while not member.future.done():
                await self._round(believed, member.future)
            return member.future.result()
        finally:
            self._forget(believed, member)

    async def _until(self, future: asyncio.Future[Volume], delay: float) -> None:
        """Sleep for `delay`, or less when a shared round serves the future first."""
        if delay <= 0:
            return
        sleeper = asyncio.ensure_future(self._clock.sleep(delay))
        either: list[asyncio.Future[Any]] = [sleeper, future]
        try:
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sleeper

    async def _round(self, status: str, future: asyncio.Future[Volume]) -> None:
        """Join the round under way for this status, or start one; returns when it has served the
        future or is over."""
        task = self._rounds.get(status)
        if task is None:
            task = asyncio.ensure_future(self._serve(status))
            self._rounds[status] = task
            task.add_done_callback(lambda _: self._rounds.pop(status, None))
        # asyncio.wait cancels neither: one caller giving up must not cancel the request serving others.
        either: list[asyncio.Future[Any]] = [task, future]
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)

    async def _serve(self, status: str) -> None:
        """Serve every wait on `status` that may be served now: one list, then the volumes that moved on."""
        CALL_DEADLINE.set(None)  # the round serves many calls, not only the one that started it
        now = self._clock.monotonic()
        members = self._waiting.get(status, [])
        taken = [m for m in members if m.early <= now and not m.future.done()]
        chosen = set(taken)
        left = [m for m in members if m not in chosen]
        if left:
            self._waiting[status] = left
        else:
            self._waiting.pop(status, None)
        try:
            by_volume: dict[str, list[_Member]] = {}
            for member in taken:
                by_volume.setdefault(member.volume_id, []).append(member)
            found: dict[str, Volume] = {}
            if len(by_volume) > 1 and self.sharing:
                self.list_requests += 1
                listed = await self._list_in_status(status)
                found = {v.id: v for v in listed if v.id in by_volume}
                if any(v.raw_status != status for v in listed):
                    self.sharing = False
                    log.warning("the Storage API ignores the status filter of volume lists; "
                                "waits on volumes poll each volume on their own from now on")
            for volume_id, view in found.items():
                for member in by_volume[volume_id]:
                    _settle(member.future, view)
            # A volume missing from the list has moved on to another status, or is gone. Each wait
            # has its answer as soon as its own volume's does, not when the last of the round's has.
            await asyncio.gather(*(
                self._fetch(volume_id, members) for volume_id, members in by_volume.items()
                if volume_id not in found
            ))
        except BaseException as exc:
            for member in taken:
                _settle(member.future, exc)
            if not isinstance(exc, Exception):
                raise

    async def _fetch(self, volume_id: str, members: list[_Member]) -> None:
        view: Volume | Exception
        try:
            view = await self._get_one(volume_id)
        except Exception as exc:
            view = exc
        for member in members:
            _settle(member.future, view)

    def _forget(self, status: str, member: _Member) -> None:
        members = self._waiting.get(status)
        if members is not None and member in members:
            members.remove(member)
            if not members:
                del self._waiting[status]
        if not member.future.done():
            member.future.cancel()


def _settle(future: asyncio.Future[Volume], answer: Volume | BaseException) -> None:
    if future.done():
        return
    if isinstance(answer, asyncio.CancelledError):
        future.cancel()
    elif isinstance(answer, BaseException):
        future.set_exception(answer)
    else:
        future.set_result(answer)


class VolumeViews:
    """One volume's views through the shared polls (the waiter's view source)."""

    def __init__(self, polls: SharedVolumePolls, volume_id: str) -> None:
        self._polls = polls
        self._volume_id = volume_id

    async def view(self, delay: float, believed: str | None) -> Volume:
        return await self._polls.view(self._volume_id, delay, believed)
