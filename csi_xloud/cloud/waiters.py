"""Polling a resource until it reaches a wanted status, with exponential backoff and a deadline.

Why this schedule: an asynchronous operation that finishes at time T after the
wait began is seen at the first poll after T. With delays growing by a factor
``f`` from ``d0`` the gap between polls near T is about ``(f - 1) * T + d0``,
so the wait overshoots the operation by at most that. ``f = 1.25``,
``d0 = 0.1 s`` and ±10 % jitter keep the overshoot under 30 % of T plus
0.15 s (about one initial step): a 0.4 s create is seen by 0.6 s, a 10 s one
by 11 s.
The number of polls grows only with log(T): 7 for a 1 s operation, 16 for
10 s, 27 for 60 s. The gap is capped at 5 s, reached near T = 20 s, so long
operations (backups, migrations) cost at most one request per 5 s and are
still seen within 5.5 s, under 30 % of T. The first poll is immediate (an
idempotent retry often finds the resource already done), unless the caller has
just started the transition itself and says which status it left the resource
in: then the first poll waits like any later one. Jitter spreads the
polls of many concurrent waits; the client's token bucket bounds their sum.

Learning: a cloud takes about the same time for the same kind of transition (a
volume `creating`, `attaching`, `extending`...). Once a waiter has seen a kind
finish a few times, it waits `head_start_fraction` of that kind's median time
before its second poll and only then starts the schedule above, so a 2 s create
costs 3 to 4 polls instead of 9 while still being seen within the same bound
(a faster than usual operation is seen at most that fraction of the median late).

Before a transition has been seen three times, the shortest of its own waits stands in for the
median. A transition never seen starts from a guess: the quickest one of the same resource (an
extend guessed from creates: a volume backend's operations take the same order of time; a backup's
hour never stands in for a volume's attach). A wait that finds the resource done at its first look
after a guess's head start has shown the guess too long: the guess becomes half that wait's time,
and the wait teaches nothing else (only that the transition was shorter).

First waits: a transition the caller has just started and nothing is known of (a controller that has
just started) is looked at after 0.4 s, then 1 s after it began, then at gaps growing from 1.2 s by
x1.2 up to the cap. That is cinder-csi-plugin's schedule (1 s growing x1.2, after a look at once,
which a transition just started does not need) with that look moved to 0.4 s: no more requests than
that driver for any operation time, and a 0.3 s operation still seen within 0.4 s. The price is
latency for those first waits only: an operation of 1.1 s is seen at 2.2 s. A wait without `expect`
(a retry finding a transition begun earlier, whose end may be near) keeps the schedule above.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import statistics
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Iterator
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from csi_xloud.clock import Clock
from csi_xloud.cloud.errors import CloudError, NotFound, RolledBack, WaitTimeout
from csi_xloud.metrics import Metrics

R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)


@dataclass(frozen=True, slots=True)
class Backoff:
    """The delays between polls: initial, growing by factor, capped, each jittered by ±jitter."""

    initial_seconds: float = 0.1
    factor: float = 1.25
    max_seconds: float = 5.0
    jitter: float = 0.1
    # Of a transition's median time, how much to wait before the second poll once it is known
    # from `learn_after` finished waits (0 turns learning off); the last `remember` count.
    head_start_fraction: float = 0.85
    learn_after: int = 3
    remember: int = 32
    # A transition just started that nothing is known of: the first look, the second (both from the
    # start), then gaps from the second growing by first_factor (see the module's docstring). None:
    # such waits keep the usual schedule.
    first_look_seconds: float | None = 0.4
    second_look_seconds: float = 1.0
    first_factor: float = 1.2

    def __post_init__(self) -> None:
        if self.initial_seconds <= 0 or self.factor < 1 or self.max_seconds < self.initial_seconds:
            raise ValueError("backoff needs initial > 0, factor >= 1 and max >= initial")
        if not 0 <= self.jitter < 1:
            raise ValueError("backoff jitter must be in [0, 1)")
        if not 0 <= self.head_start_fraction < 1 or self.learn_after < 1 or self.remember < self.learn_after:
            raise ValueError("backoff needs 0 <= head_start_fraction < 1 and remember >= learn_after >= 1")
        first = self.first_look_seconds
        if (first is not None and not 0 < first < self.second_look_seconds) or self.first_factor < 1:
            raise ValueError("backoff needs 0 < first_look_seconds < second_look_seconds, first_factor >= 1")

    def delays(self, rng: random.Random | None = None) -> Iterator[float]:
        """The endless sequence of delays (jitter drawn from rng; none without one)."""
        delay = self.initial_seconds
        while True:
            spread = rng.uniform(-self.jitter, self.jitter) if rng is not None and self.jitter else 0.0
            yield delay * (1 + spread)
            delay = min(self.max_seconds, delay * self.factor)

    def first_delays(self, first_look: float) -> Iterator[float]:
        """The delays of a first wait on a transition just started (no jitter: they are few and far apart)."""
        yield first_look
        yield self.second_look_seconds - first_look
        delay = self.second_look_seconds * self.first_factor
        while True:
            yield min(self.max_seconds, delay)
            delay *= self.first_factor


@dataclass(frozen=True, slots=True)
class Rollback(Generic[R]):
    """How a wait tells that the cloud undid the change it waits for, and why the cloud did.

    An attach Compute rolls back leaves the volume available again, an extend the scheduler refuses
    leaves it at its old size: the status is a settled one, so without this the wait would go on
    until its deadline.
    """

    change: str  # what was undone, for the error: "the attach to server X"
    # The resource is back where it was before the change (may confirm with a request of its own).
    seen: Callable[[R], Awaitable[bool]]
    reason: Callable[[R], Awaitable[str | None]] | None = None


@dataclass(frozen=True, slots=True)
class StatusCheck(Generic[R]):
    """How to read a resource: its status, the statuses to wait for and those that end the wait as failed."""

    status_of: Callable[[R], str]
    wanted: Collection[str]
    failed: Callable[[str], bool]
    # The cloud's reason for a failed resource (e.g. a backup's fail_reason or the volume's last message).
    reason_of: Callable[[R], Awaitable[str | None]] | None = None
    # Extra condition on the resource besides its status (e.g. "no attachment to server X left").
    done: Callable[[R], bool] | None = None
    rollback: Rollback[R] | None = None


class Views(Protocol[R_co]):
    """Where a wait gets each fresh view of its resource."""

    async def view(self, delay: float, believed: str | None) -> R_co:
        """A view taken `delay` seconds from now at the latest (sooner when a shared poll passes by).

        `believed` is the status the resource had at the last view, or that the request which started
        the transition leaves it in; None when nothing is known yet.
        """
        ...


class Polled(Generic[R]):
    """Views of one resource, each its own request after the delay."""

    def __init__(self, fetch: Callable[[], Awaitable[R]], clock: Clock) -> None:
        self._fetch = fetch
        self._clock = clock

    async def view(self, delay: float, believed: str | None) -> R:
        if delay > 0:
            await self._clock.sleep(delay)
        return await self._fetch()


class Waiter:
    """Polls with backoff until a wanted status, a failed one or the deadline; honours cancellation."""

    def __init__(
        self, clock: Clock, backoff: Backoff | None = None, rng: random.Random | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._clock = clock
        self._metrics = metrics
        self._backoff = backoff or Backoff()
        self._rng = rng if rng is not None else random.Random()
        # (resource kind, transitional status) -> how long recent waits for it took.
        self._took: dict[tuple[str, str], deque[float]] = {}
        # (resource kind, transitional status) never seen -> a guess a wait showed too long, halved.
        self._guesses: dict[tuple[str, str], float] = {}

    @property
    def clock(self) -> Clock:
        return self._clock

    async def wait_for_status(
        self,
        fetch: Callable[[], Awaitable[R]] | Views[R],
        check: StatusCheck[R],
        *,
        timeout_seconds: float,
        what: str,
        expect: str | None = None,
    ) -> R:
        """The resource once its status is wanted; CloudError if it fails, RolledBack if the cloud undid
        the change, WaitTimeout at the deadline.

        `expect` is the transitional status the request that started the wait has just left the
        resource in: the first look then waits like any later one instead of coming at once.
        """
        wait = self._Wait(self, fetch, timeout_seconds, what, expect, "")
        with wait.measured():
            while True:
                resource = await wait.next_view()
                status = check.status_of(resource)
                if status in check.wanted and (check.done is None or check.done(resource)):
                    wait.learn()
                    return resource
                if check.failed(status):
                    raise await self._failure(resource, status, check, what)
                if check.rollback is not None and await check.rollback.seen(resource):
                    raise await self._rolled_back(resource, status, check.rollback, what)
                wait.saw(status)

    async def wait_for_deletion(
        self,
        fetch: Callable[[], Awaitable[R]] | Views[R],
        check: StatusCheck[R],
        *,
        timeout_seconds: float,
        what: str,
        expect: str | None = None,
    ) -> None:
        """Return once fetch raises NotFound; CloudError if the resource reaches a failed status,
        RolledBack if the cloud undid the deletion."""
        wait = self._Wait(self, fetch, timeout_seconds, what, expect, "->gone")
        with wait.measured():
            while True:
                try:
                    resource = await wait.next_view()
                except NotFound:
                    wait.learn()
                    return
                status = check.status_of(resource)
                if check.failed(status):
                    raise await self._failure(resource, status, check, what)
                if check.rollback is not None and await check.rollback.seen(resource):
                    raise await self._rolled_back(resource, status, check.rollback, what)
                wait.saw(status)

    class _Wait(Generic[R]):
        """One wait's schedule: when the next view is due, what was last seen, what it teaches."""

        def __init__(
            self, waiter: Waiter, fetch: Callable[[], Awaitable[R]] | Views[R], timeout_seconds: float,
            what: str, expect: str | None, suffix: str,
        ) -> None:
            self._waiter = waiter
            self._views: Views[R] = Polled(fetch, waiter._clock) if callable(fetch) else fetch
            self._timeout = timeout_seconds
            self._what = what
            self._kind = what.split(" ", 1)[0]
            self._suffix = suffix
            self._started = waiter._clock.monotonic()
            self._delays = waiter._backoff.delays(waiter._rng)
            self._believed = expect
            self._expected = expect is not None
            self._key: tuple[str, str] | None = None
            self._delay = 0.0
            self._stalled = 0.0
            self._looks = 0
            # Which look waited for a guess's head start (not something learned); 0: none.
            self._guessed_look = 0
            if expect is not None:
                self.saw(expect)

        async def next_view(self) -> R:
            asked = self._waiter._clock.monotonic()
            self._looks += 1
            try:
                return await self._views.view(self._delay, self._believed)
            finally:
                # Time a view took beyond its delay is the cloud slow to answer (failures retried,
                # throttling), not the transition: it is left out of what the wait teaches.
                self._stalled += max(0.0, self._waiter._clock.monotonic() - asked - self._delay)

        def saw(self, status: str) -> None:
            """The resource is still `status`: when is the next view due (WaitTimeout past the deadline)."""
            if self._key is None:
                self._key = (self._kind, status + self._suffix)
                head_start, guessed = self._waiter._head_start(self._key)
                backoff = self._waiter._backoff
                first_wait = self._expected and not head_start and backoff.head_start_fraction > 0
                if first_wait and backoff.first_look_seconds is not None:
                    self._delays = backoff.first_delays(backoff.first_look_seconds)
                delay = max(next(self._delays), head_start)
                self._guessed_look = self._looks + 1 if guessed else 0
            else:
                delay = next(self._delays)
            self._believed = status
            self._delay = self._waiter._next_delay(
                delay, self._started, self._timeout, f"{self._what} is still {status}"
            )

        def learn(self) -> None:
            if self._guessed_look and self._looks == self._guessed_look and self._key is not None:
                self._waiter._guessed_too_long(self._key, self._started + self._stalled)
                return
            self._waiter._learn(self._key, self._started + self._stalled)

        @contextlib.contextmanager
        def measured(self) -> Iterator[None]:
            """Count the wait as in flight, then record how long it took, per transition and outcome."""
            metrics = self._waiter._metrics
            if metrics is None:
                yield
                return
            in_flight = metrics.waits_in_flight.labels(self._kind)
            in_flight.inc()
            outcome = "failed"
            try:
                yield
                outcome = "done"
            except WaitTimeout:
                outcome = "timeout"
                raise
            except asyncio.CancelledError:
                outcome = "cancelled"
                raise
            finally:
                in_flight.dec()
                # A wait that found the resource done at its first look saw no transition.
                transition = self._key[1] if self._key is not None else "none"
                elapsed = self._waiter._clock.monotonic() - self._started
                metrics.wait_seconds.labels(self._kind, transition, outcome).observe(elapsed)

    def _head_start(self, key: tuple[str, str]) -> tuple[float, bool]:
        """How long to wait before the second poll, and whether that rests on a guess: a share of this
        transition's median time once known, of its shortest before that, else of a guess."""
        fraction = self._backoff.head_start_fraction
        own = self._took.get(key)
        if own:
            # Seen once or twice: the shortest so far (each is when a look saw it done, so a little long).
            learned = len(own) >= self._backoff.learn_after
            return fraction * (statistics.median(own) if learned else min(own)), False
        guess = self._guesses.get(key)
        if guess is None:
            # No record of this transition: the quickest one of the same resource.
            resource = key[0]
            known = [statistics.median(t) for (kind, _), t in self._took.items() if t and kind == resource]
            known += [seconds for (kind, _), seconds in self._guesses.items() if kind == resource]
            guess = min(known, default=None)
        if guess is None or fraction == 0:
            return 0.0, False
        return fraction * guess, True

    def _guessed_too_long(self, key: tuple[str, str], started: float) -> None:
        """A wait found the resource done at its first look after a guess's head start: halve the guess."""
        self._guesses[key] = (self._clock.monotonic() - started) / 2

    def _learn(self, key: tuple[str, str] | None, started: float) -> None:
        """Remember how long a transition took (waits that found the resource done at once teach nothing)."""
        if key is None:
            return
        took = self._took.setdefault(key, deque(maxlen=self._backoff.remember))
        took.append(self._clock.monotonic() - started)

    def _next_delay(self, delay: float, started: float, timeout_seconds: float, state: str) -> float:
        """How long until the next view, or WaitTimeout when the deadline has come."""
        now = self._clock.monotonic()
        # After a head start the schedule goes on from where the elapsed time puts it: the gap the
        # backoff reaches after t seconds is about (factor - 1) * t.
        delay = max(delay, min(self._backoff.max_seconds, (self._backoff.factor - 1) * (now - started)))
        remaining = started + timeout_seconds - now
        if remaining <= 0:
            raise WaitTimeout(f"{state} after {timeout_seconds:g} s")
        # The last view lands on the deadline itself, so a resource finishing just in time is seen.
        return min(delay, remaining)

    @staticmethod
    async def _rolled_back(resource: R, status: str, rollback: Rollback[R], what: str) -> RolledBack:
        reason = await _reason(rollback.reason, resource)
        detail = f": {reason}" if reason else ""
        return RolledBack(f"{what} is {status} again: the cloud undid {rollback.change}{detail}")

    @staticmethod
    async def _failure(resource: R, status: str, check: StatusCheck[R], what: str) -> CloudError:
        reason = await _reason(check.reason_of, resource)
        detail = f": {reason}" if reason else ""
        return CloudError(f"{what} went to status {status}{detail}")


async def _reason(read: Callable[[R], Awaitable[str | None]] | None, resource: R) -> str | None:
    """The cloud's reason, when it gives one; reading it failing leaves the status to speak alone."""
    if read is None:
        return None
    try:
        return await read(resource)
    except CloudError:
        return None
