"""Look-ups by name shared between creates: one listing of the project serves every pending look-up.

CreateVolume and CreateSnapshot stay idempotent by looking their name up before they create. A
look-up on its own is one filtered request (`?name=N`), as before. Look-ups asked while a round of
requests is on its way wait for it to end, and are then served together: by one listing of the
project when that is worth it, else by their filtered requests. So a hundred creates at once cost
one or two listing requests instead of a hundred look-ups.

A listing is worth it when it takes fewer requests than the look-ups it serves and brings at most
50 items per look-up: a filtered request answers with the few items of its name, and a listing of a
thousand volumes for two names would spare one request at a high price for the cloud. To know, the
first page asks for the project's item count (`with_count`, Storage API 3.45), and the pages
answered tell the cloud's largest page (Cinder caps them at its osapi_max_limit, 1000 by default,
whatever `limit` asks). When the listing is not worth it, it stops after that first page and the
names are looked up one by one; the count is remembered, so later rounds of a big project go
straight to the filtered requests (one request more than before, once). A cloud that reports no
count is listed only while the project fits on one page; the first next link turns sharing off.

A look-up asked when no round started in the last ROUND_GAP goes at once: a create is a look-up,
a POST and a wait of seconds, so one caller's creates made one after another are never held.
Look-ups asked within the gap are gathered while they keep coming: the next round starts when
none was asked for QUIET, or at the end of the gap. A burst of creates that reach the controller
over a few hundred milliseconds is so served by a few listings, not by one per round trip (a few
milliseconds on a nearby cloud), while a handful asked together (the snapshotter calling again
for ten snapshots) is served as soon as the round before it ends.

A look-up is only served by requests sent after it began, so it sees every item made before it
was asked, as its own filtered request would.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from csi_xloud.cloud.models import Page
from csi_xloud.cloud.sharedpolls import settle

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(eq=False)
class _Pending(Generic[T]):
    name: str
    future: asyncio.Future[list[T]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class SharedLookups(Generic[T]):
    """Serves look-ups by exact name, batching those that arrive while a round is under way."""

    def __init__(
        self,
        find_one: Callable[[str], Awaitable[list[T]]],
        list_page: Callable[[str | None], Awaitable[Page[T]]],
        name_of: Callable[[T], str | None],
    ) -> None:
        self._find_one = find_one
        self._list_page = list_page
        self._name_of = name_of
        self._pending: list[_Pending[T]] = []
        self._round: asyncio.Task[None] | None = None
        self._last_start = -math.inf  # the event loop's time when the last round started
        self._last_asked = -math.inf  # ... and when the last look-up was asked
        # What the last listing taught: how many items the project holds (None: not yet known) and
        # how many items the cloud puts on a full page (its max page size, once a page was cut).
        self._size: int | None = None
        self._page_size: int | None = None
        self.sharing = True  # False once a cloud without counts had more than one page
        self.list_requests = 0  # listing pages requested (for tests)

    async def find(self, name: str) -> list[T]:
        """Every item named exactly `name`, from a request sent after this call began."""
        pending: _Pending[T] = _Pending(name)
        self._last_asked = asyncio.get_running_loop().time()
        self._pending.append(pending)
        if self._round is None or self._round.done():
            self._round = asyncio.ensure_future(self._serve_all())
        try:
            return await pending.future
        finally:
            if pending in self._pending:
                self._pending.remove(pending)

    def pages_needed(self) -> float:
        """How many requests a listing of the whole project is expected to take (inf when too many to try)."""
        if not self.sharing:
            return math.inf
        if self._size is None:
            return 1.0  # unknown: one page is tried, and tells
        return max(1, math.ceil(self._size / (self._page_size or REQUESTED_PAGE)))

    def _worth_listing(self, names: int) -> bool:
        """Whether one listing should serve `names` look-ups: fewer requests, and not too many items each."""
        if names < 2 or self.pages_needed() >= names:
            return False
        return self._size is None or self._size <= ITEMS_PER_NAME * names

    async def _serve_all(self) -> None:
        """Rounds until nobody waits: each takes every look-up pending when it starts."""
        loop = asyncio.get_running_loop()
        while self._pending:
            # A round started lately and look-ups keep coming: gather them, up to the gap.
            hold = self._gathering(loop.time())
            while hold > 0:
                await asyncio.sleep(hold)
                hold = self._gathering(loop.time())
            batch = [p for p in self._pending if not p.future.done()]
            self._pending = []
            if batch:
                self._last_start = loop.time()
                await self._serve(batch)

    def _gathering(self, now: float) -> float:
        """How long the next round still gathers look-ups (0: it starts now)."""
        return max(0.0, min(self._last_start + ROUND_GAP, self._last_asked + QUIET) - now)

    async def _serve(self, batch: list[_Pending[T]]) -> None:
        by_name: dict[str, list[_Pending[T]]] = {}
        for pending in batch:
            by_name.setdefault(pending.name, []).append(pending)
        try:
            if self._worth_listing(len(by_name)):
                listed = await self._listing(len(by_name))
                if listed is not None:
                    for name, members in by_name.items():
                        found = [item for item in listed if self._name_of(item) == name]
                        for member in members:
                            settle(member.future, list(found))
                    return
            await asyncio.gather(*(self._one(name, members) for name, members in by_name.items()))
        except BaseException as exc:
            for pending in batch:
                settle(pending.future, exc)
            if not isinstance(exc, Exception):
                raise

    async def _one(self, name: str, members: list[_Pending[T]]) -> None:
        answer: list[T] | Exception
        try:
            answer = await self._find_one(name)
        except Exception as exc:
            answer = exc
        for member in members:
            settle(member.future, list(answer) if isinstance(answer, list) else answer)

    async def _listing(self, names: int) -> list[T] | None:
        """Every item of the project, or None when that would take as many requests as `names` look-ups."""
        items: list[T] = []
        marker: str | None = None
        pages = 0
        while True:
            page = await self._list_page(marker)
            pages += 1
            self.list_requests += 1
            items.extend(page.items)
            if page.count is not None:
                self._size = page.count
            if page.next_marker is None or not page.items:
                if page.count is None:
                    self._size = len(items)
                return items
            self._page_size = max(self._page_size or 0, len(page.items))
            if page.count is None:
                self.sharing = False
                log.info("the Storage API does not count list items; look-ups by name are no longer shared")
                return None
            if pages == 1 and not self._worth_listing(names):
                return None
            marker = page.next_marker


# The least time between the starts of two rounds in a row (seconds): what a look-up asked just after
# a round started may wait, so that those asked in a burst share a listing.
ROUND_GAP = 0.05
# Look-ups within the gap are gathered until none was asked for this long (seconds).
QUIET = 0.005
# The page size asked for; the cloud may answer fewer per page (its own maximum).
REQUESTED_PAGE = 1000
# A listing serves look-ups only while it brings at most this many items per look-up: a filtered
# request answers with the few items of its name, so the cloud's work per look-up stays bounded.
ITEMS_PER_NAME = 50
