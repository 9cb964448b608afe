"""Many waits on volumes served by one list request per status, instead of one request each.

A wait believes its volume is in some transitional status (`creating`, `reserved`, `extending`,
`deleting`...). When one wait's view falls due, one `GET /volumes/detail?status=S` answers it
and every other wait on a volume believed in S whose view is at least half due. A volume found in
the list is still in S; one missing from it has moved on (or is gone), and only that volume is
then fetched on its own. So with n volumes in the same transition the cloud sees one list request
per tick plus one request per volume that changed, where n separate waits would send n requests
per tick; with a single wait, a list would buy nothing, so it is fetched on its own as before.

When several volumes of a round have moved on, they are not fetched one by one either: one
`GET /volumes/detail?updated_at=gte:T` (Storage API 3.60) lists every volume changed since T, and
only the volumes it does not show (deleted ones, or more changes than a few pages hold) are
fetched on their own. T is the oldest of the moved volumes' last-seen times: the newest time the
status list that last showed one of them held (nothing it showed changed later than the cloud
read it), else the volume's own updated_at or created_at. So many
creates finishing together cost two list requests per tick, not one request each.

Volumes that entered a status together leave it together: when a list shows some volumes moved
on, every volume it still shows in the status that entered it after one of them is looked at again
when, by that one's time, it should be done (its lag behind that one, 0.1 s at least), unless its
own schedule comes first. Such a look follows only a list that showed progress, no sooner than
0.1 s after it, and is one more: should it find the volume still in the status, the wait's own
schedule stands as it was. A hundred creates whose requests left over 70 ms are then all seen
within 0.1 s of the last one's end, instead of the stragglers at the next tick of their
schedules, a quarter of the operation's time later.

Serving a wait early costs no request and never makes it later; a wait is never served later
than its own schedule says. Every view a wait gets comes from a request sent after it asked.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from csi_xloud.clock import Clock
from csi_xloud.cloud.models import Volume
from csi_xloud.deadline import CALL_DEADLINE

log = logging.getLogger(__name__)

R = TypeVar("R")

# How much of a wait's delay may be cut short when a shared list request passes by.
EARLY_SHARE = 0.5
# A volume left behind by peers that entered its status before it: looked at again after its lag
# behind the latest of them plus COHORT_SLACK, and no sooner than COHORT_MIN_GAP.
COHORT_MIN_GAP = 0.1
COHORT_SLACK = 0.05


@dataclass(eq=False)
class _Member:
    volume_id: str
    early: float  # may be served from this moment on
    since: datetime | None  # the cloud's time of the volume's last view, when known
    entered: float  # when its wait first believed it in this status (the client's clock)
    future: asyncio.Future[Volume] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class SharedVolumePolls:
    """Serves the views of waits on volumes, one list request per status for all due waits."""

    def __init__(
        self,
        get_one: Callable[[str], Awaitable[Volume]],
        list_in_status: Callable[[str], Awaitable[list[Volume]]],
        clock: Clock,
        list_changed_since: Callable[[datetime, int], Awaitable[list[Volume] | None]] | None = None,
    ) -> None:
        self._get_one = get_one
        self._list_in_status = list_in_status
        self._list_changed_since = list_changed_since
        self._clock = clock
        self._waiting: dict[str, list[_Member]] = {}
        self._rounds: dict[str, asyncio.Task[None]] = {}
        self.list_requests = 0  # how many shared list requests were sent (for tests and metrics)
        # False once the cloud has answered a list with volumes of other statuses: it ignores the
        # filter, so every list would page through the whole project; waits then poll on their own.
        self.sharing = True
        # False once the cloud has answered a time-filtered list with volumes outside it.
        self.sharing_changes = True
        self.changes_requests = 0  # how many lists of changed volumes were sent (for tests)
        # Volume id -> the newest cloud time shown by the last status list that showed it unchanged.
        self._listed_since: dict[str, datetime] = {}
        # Volume id -> (status, when its next view is due): peers that entered the status before it
        # have left it (see the module's docstring).
        self._soon: dict[str, tuple[str, float]] = {}
        self.cohort_looks = 0  # how many views came sooner by their peers' time (for tests)

    @property
    def clock(self) -> Clock:
        return self._clock

    def of(self, volume_id: str, seen: Volume | None = None) -> VolumeViews:
        """The views of one volume, for the waiter; `seen` is the caller's latest view of it."""
        return VolumeViews(self, volume_id, seen)

    async def view(
        self, volume_id: str, delay: float, believed: str | None, since: datetime | None = None,
        entered: float | None = None,
    ) -> Volume:
        """A view of the volume `delay` seconds from now at the latest; `entered` is when its wait first
        believed it in `believed` (now when not given)."""
        if believed is None or not self.sharing:
            if delay > 0:
                await self._clock.sleep(delay)
            return await self._get_one(volume_id)
        now = self._clock.monotonic()
        due = now + delay
        entered = now if entered is None else entered
        while True:
            own = max(0.0, due - now)
            soon = self._soon.pop(volume_id, None)
            sooner = min(own, soon[1] - now) if soon is not None and soon[0] == believed else own
            self.cohort_looks += sooner < own
            view = await self._member_view(volume_id, max(0.0, sooner), believed, since, entered)
            now = self._clock.monotonic()
            if sooner >= own or view.raw_status != believed or now >= due:
                return view
            # The look its peers' time asked for found it still in the status: the wait's own
            # schedule stands, as if that look had not been made.

    async def _member_view(
        self, volume_id: str, delay: float, believed: str, since: datetime | None, entered: float,
    ) -> Volume:
        since = _later(since, self._listed_since.pop(volume_id, None))
        member = _Member(volume_id, self._clock.monotonic() + (1 - EARLY_SHARE) * delay, since, entered)
        members = self._waiting.setdefault(believed, [])
        members.append(member)
        try:
            await self._until(member.future, delay)
            while not member.future.done():
                await self._round(believed, member.future)
            return member.future.result()
        finally:
            self._forget(believed, member)
            if not member.future.done() or member.future.cancelled() or member.future.exception():
                self._listed_since.pop(volume_id, None)
                self._soon.pop(volume_id, None)

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
                # Nothing in the answer changed later than the cloud read it, so a volume seen here
                # that moves on later is updated no earlier than the newest time the answer shows.
                horizon = max((t for v in listed if (t := _last_change(v)) is not None), default=None)
                if horizon is not None:
                    self._listed_since.update(dict.fromkeys(found, horizon))
            # A volume missing from the list has moved on to another status, or is gone.
            moved = {v: members for v, members in by_volume.items() if v not in found}
            if found and moved:
                self._expect_soon(status, [m for v in found for m in by_volume[v]],
                                  [m.entered for members in moved.values() for m in members])
            for volume_id, view in found.items():
                for member in by_volume[volume_id]:
                    settle(member.future, view)
            for volume_id, view in (await self._changed(moved)).items():
                for member in moved.pop(volume_id):
                    settle(member.future, view)
            # Each wait has its answer as soon as its own volume's does, not when the last one's has.
            await asyncio.gather(*(self._fetch(volume_id, members) for volume_id, members in moved.items()))
        except BaseException as exc:
            for member in taken:
                settle(member.future, exc)
            if not isinstance(exc, Exception):
                raise

    def _expect_soon(self, status: str, still: list[_Member], moved_entered: list[float]) -> None:
        """Due times for the volumes a list still shows in `status` that entered it after a volume the
        list shows moved on: the latest such peer took at most until now, so each should be done by
        now plus its lag behind that peer."""
        now = self._clock.monotonic()
        self._soon = {v: due for v, due in self._soon.items() if due[1] > now}  # none outlives its due time
        entries = sorted(moved_entered)
        for member in still:
            ahead = bisect.bisect_right(entries, member.entered)
            if ahead == 0:
                continue  # it entered the status before every volume that left it: no peer to go by
            lag = member.entered - entries[ahead - 1]
            self._soon[member.volume_id] = (status, now + max(COHORT_MIN_GAP, lag + COHORT_SLACK))

    async def _changed(self, moved: dict[str, list[_Member]]) -> dict[str, Volume]:
        """Views of moved-on volumes from one list of the volumes changed since the oldest was seen."""
        stamps = [m.since for members in moved.values() for m in members if m.since is not None]
        if len(moved) < 2 or not stamps or not self.sharing_changes or self._list_changed_since is None:
            return {}
        since = min(stamps)
        self.changes_requests += 1
        try:
            listed = await self._list_changed_since(since, len(moved))
        except Exception as exc:  # each volume is then fetched on its own, and fails on its own
            log.debug("listing the volumes changed since %s failed: %s", since, exc)
            return {}
        if listed is None:
            self.sharing_changes = False
            return {}
        if any(v.updated_at is None or v.updated_at < since for v in listed):
            self.sharing_changes = False
            log.warning("the Storage API ignores the updated_at filter of volume lists; "
                        "volumes that moved on are fetched on their own from now on")
            return {}
        return {v.id: v for v in listed if v.id in moved}

    async def _fetch(self, volume_id: str, members: list[_Member]) -> None:
        view: Volume | Exception
        try:
            view = await self._get_one(volume_id)
        except Exception as exc:
            view = exc
        for member in members:
            settle(member.future, view)

    def _forget(self, status: str, member: _Member) -> None:
        members = self._waiting.get(status)
        if members is not None and member in members:
            members.remove(member)
            if not members:
                del self._waiting[status]
        if not member.future.done():
            member.future.cancel()


def settle(future: asyncio.Future[R], answer: R | BaseException) -> None:
    """Give a shared round's answer to one waiter, unless it has one already (or gave up)."""
    if future.done():
        return
    if isinstance(answer, asyncio.CancelledError):
        future.cancel()
    elif isinstance(answer, BaseException):
        future.set_exception(answer)
    else:
        future.set_result(answer)


def _later(one: datetime | None, other: datetime | None) -> datetime | None:
    if one is None or other is None:
        return one or other
    return max(one, other)


def _last_change(volume: Volume) -> datetime | None:
    """When the cloud last changed the volume, by its own clock."""
    return volume.updated_at or volume.created_at


class VolumeViews:
    """One volume's views through the shared polls (the waiter's view source); remembers the last."""

    def __init__(self, polls: SharedVolumePolls, volume_id: str, seen: Volume | None = None) -> None:
        self._polls = polls
        self._volume_id = volume_id
        self._last = seen
        self._believed: str | None = None
        self._entered = 0.0  # when this wait first believed the volume in _believed

    async def view(self, delay: float, believed: str | None) -> Volume:
        since = _last_change(self._last) if self._last is not None else None
        if believed != self._believed:
            self._believed, self._entered = believed, self._polls.clock.monotonic()
        self._last = await self._polls.view(self._volume_id, delay, believed, since, self._entered)
        return self._last
