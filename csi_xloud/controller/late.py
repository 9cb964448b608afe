"""Creates whose request may still reach the cloud: a retry waits for them instead of creating twice.

Cinder has no idempotency token. When a create request leaves this host and no answer comes
back (a timeout, a connection lost mid-request), the cloud may still act on it after the CO's
retry has looked for the name, found nothing and created another: two volumes, one leaked. So
a retry for such a name answers UNAVAILABLE until the request can no longer be in flight, and
only then creates again; if the late request landed meanwhile, the retry finds it by name.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Hashable, Sequence
from datetime import datetime
from typing import Protocol, TypeVar

from csi_xloud.clock import Clock
from csi_xloud.cloud import errors as cloud
from csi_xloud.deadline import CALL_DEADLINE
from csi_xloud.rpc.errors import Unavailable

log = logging.getLogger(__name__)

_SWEEP_TRIES = 10
_SWEEP_PAUSE_SECONDS = 2.0


class LateRequests:
    """Keys (such as ("volume", name)) of creates whose answer was lost, and until when to wait."""

    def __init__(self, clock: Clock, window_seconds: float) -> None:
        self._clock = clock
        self._window_seconds = window_seconds
        self._until: dict[Hashable, float] = {}
        self._started = clock.monotonic()
        self._sweeps: set[asyncio.Task[None]] = set()

    def after_create(self, sweep: Callable[[], Awaitable[object]]) -> None:
        """Call after a create; while our predecessor's requests may still land, look again later.

        A controller that restarts (a crash, a leader change) cannot know what its predecessor
        sent. A create the predecessor sent may land after this process made the same name
        anew; so each create made in the first window after start-up is checked once more when
        the window is over, and a late duplicate is removed by `sweep` (which finds by name).
        """
        left = self._started + self._window_seconds - self._clock.monotonic()
        if left > 0:
            task = asyncio.get_running_loop().create_task(self._sweep_after(left + 1.0, sweep))
            self._sweeps.add(task)
            task.add_done_callback(self._sweeps.discard)

    async def _sweep_after(self, delay: float, sweep: Callable[[], Awaitable[object]]) -> None:
        CALL_DEADLINE.set(None)  # the call that started the check has long answered
        await self._clock.sleep(delay)
        for _ in range(_SWEEP_TRIES):
            try:
                await sweep()
                return
            except (Unavailable, cloud.CloudError) as exc:
                log.debug("late-duplicate check will retry: %s", exc)
                await self._clock.sleep(_SWEEP_PAUSE_SECONDS)
        log.warning("gave up checking for a late duplicate after %d tries", _SWEEP_TRIES)

    async def aclose(self) -> None:
        """Stop the pending checks (the process is going away)."""
        for task in list(self._sweeps):
            task.cancel()
        await asyncio.gather(*self._sweeps, return_exceptions=True)

    def note(self, key: Hashable) -> None:
        """A create for key was sent and its answer lost."""
        self._until[key] = self._clock.monotonic() + self._window_seconds

    def forget(self, key: Hashable) -> None:
        """The create for key is settled (found by name, or given up)."""
        self._until.pop(key, None)

    def refuse_while_in_flight(self, key: Hashable, what: str) -> None:
        """Raise UNAVAILABLE while an earlier create for key may still land; else allow a new one."""
        until = self._until.get(key)
        if until is None:
            return
        left = until - self._clock.monotonic()
        if left <= 0:
            del self._until[key]
            return
        raise Unavailable(
            f"an earlier request to create {what} got no answer and may still reach the cloud; "
            f"not creating another for {math.ceil(left)}s more (retry later)"
        )


class Named(Protocol):
    """A cloud resource found by name: a volume, snapshot or backup."""

    @property
    def id(self) -> str: ...

    @property
    def created_at(self) -> datetime | None: ...


T = TypeVar("T", bound=Named)


async def keep_the_first(found: Sequence[T], remove: Callable[[T], Awaitable[None]], what: str) -> T | None:
    """The first-made of several resources with one name; the later ones, duplicates, are removed.

    A create that landed late (after its client gave up, or after the controller restarted)
    makes a second resource with the name. The first one is the one the CO was given, so it
    stays. A duplicate the cloud will not delete yet (still being made) answers UNAVAILABLE,
    and the CO's retry tries again, so nothing is reported done while a duplicate remains.
    """
    if len(found) < 2:
        return found[0] if found else None
    first, *later = sorted(found, key=lambda item: (item.created_at is None, item.created_at or datetime.min))
    busy = []
    for duplicate in later:
        try:
            await remove(duplicate)
            log.warning(
                "removed %s %s: a duplicate of %s made by a late create request", what, duplicate.id, first.id
            )
        except (cloud.Conflict, cloud.BadRequest):
            busy.append(duplicate.id)
        except cloud.NotFound:
            pass
    if busy:
        raise Unavailable(
            f"{what} {', '.join(busy)} duplicate {first.id} and cannot be removed yet; retry later"
        )
    return first
