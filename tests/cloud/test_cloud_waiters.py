"""The waiter's schedule, deadline, error statuses and cancellation, on a fake clock."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import random

import pytest

from csi_xloud.cloud.errors import CloudError, NotFound, RolledBack, WaitTimeout
from csi_xloud.cloud.waiters import Backoff, Rollback, StatusCheck, Waiter
from tests.cloud.fakes import FakeClock


class Resource:
    """A resource whose status changes at given moments of the fake clock."""

    def __init__(
        self, clock: FakeClock, timeline: list[tuple[float, str]], reason: str | None = None
    ) -> None:
        self.clock = clock
        self.start = clock.now
        self.timeline = timeline
        self.reason = reason
        self.polls: list[float] = []

    async def fetch(self) -> str:
        elapsed = self.clock.now - self.start
        self.polls.append(elapsed)
        status = self.timeline[0][1]
        for at, value in self.timeline:
            if elapsed >= at:
                status = value
        if status == "gone":
            raise NotFound("gone")
        return status

    def check(self, *wanted: str) -> StatusCheck[str]:
        async def reason_of(_: str) -> str | None:
            return self.reason

        return StatusCheck(
            status_of=lambda s: s,
            wanted=set(wanted),
            failed=lambda s: s.startswith("error"),
            reason_of=reason_of,
        )


def test_schedule_grows_by_factor_up_to_the_cap() -> None:
    delays = list(itertools.islice(Backoff(jitter=0).delays(), 30))
    assert delays[0] == pytest.approx(0.1)
    assert delays[1] == pytest.approx(0.125)
    assert all(b >= a for a, b in itertools.pairwise(delays))
    assert max(delays) == pytest.approx(5.0)
    assert delays[-1] == pytest.approx(5.0)


def test_jitter_stays_within_its_band() -> None:
    plain = list(itertools.islice(Backoff(jitter=0).delays(), 40))
    jittered = list(itertools.islice(Backoff(jitter=0.1).delays(random.Random(7)), 40))
    assert jittered != plain
    for base, value in zip(plain, jittered, strict=True):
        assert base * 0.9 <= value <= base * 1.1


@pytest.mark.parametrize(
    "bad",
    [
        {"initial_seconds": 0},
        {"factor": 0.5},
        {"max_seconds": 0.01},
        {"jitter": 1.0},
    ],
)
def test_bad_backoff_is_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Backoff(**bad)


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_latency_overshoot_stays_within_30_percent_plus_150_ms(seed: int) -> None:
    for step in range(1, 360):
        operation_seconds = 0.05 * 1.025**step  # 0.05 s to 6 minutes
        clock = FakeClock()
        resource = Resource(clock, [(0, "creating"), (operation_seconds, "available")])
        waiter = Waiter(clock, rng=random.Random(seed * 1000 + step))
        await waiter.wait_for_status(
            resource.fetch, resource.check("available"), timeout_seconds=900, what="volume v"
        )
        late = clock.now - resource.start - operation_seconds
        assert 0 <= late <= 0.3 * operation_seconds + 0.15, operation_seconds
        if operation_seconds >= 20:
            assert late <= 0.3 * operation_seconds, operation_seconds


@pytest.mark.parametrize(("operation_seconds", "max_polls"), [(1.0, 7), (10.0, 16), (60.0, 28), (300.0, 76)])
async def test_poll_count_grows_slowly(operation_seconds: float, max_polls: int) -> None:
    clock = FakeClock()
    resource = Resource(clock, [(0, "creating"), (operation_seconds, "available")])
    waiter = Waiter(clock, rng=random.Random(2))
    await waiter.wait_for_status(resource.fetch, resource.check("available"), timeout_seconds=900, what="v")
    assert len(resource.polls) <= max_polls


async def test_first_poll_is_immediate_and_done_resources_return_at_once() -> None:
    clock = FakeClock()
    resource = Resource(clock, [(0, "available")])
    result = await Waiter(clock).wait_for_status(
        resource.fetch, resource.check("available"), timeout_seconds=5, what="v"
    )
    assert result == "available"
    assert resource.polls == [0]
    assert clock.sleeps == []


async def test_error_status_raises_with_the_clouds_reason() -> None:
    clock = FakeClock()
    resource = Resource(clock, [(0, "creating"), (0.3, "error")], reason="No valid backend was found.")
    with pytest.raises(CloudError) as caught:
        await Waiter(clock).wait_for_status(
            resource.fetch, resource.check("available"), timeout_seconds=10, what="volume v1"
        )
    assert type(caught.value) is CloudError
    assert str(caught.value) == "volume v1 went to status error: No valid backend was found."


async def test_deadline_raises_wait_timeout_after_a_last_poll_at_the_deadline() -> None:
    clock = FakeClock()
    resource = Resource(clock, [(0, "creating")])
    with pytest.raises(WaitTimeout, match=r"volume v is still creating after 3 s"):
        await Waiter(clock, rng=random.Random(3)).wait_for_status(
            resource.fetch, resource.check("available"), timeout_seconds=3, what="volume v"
        )
    assert resource.polls[-1] == pytest.approx(3.0)
    assert clock.now - resource.start == pytest.approx(3.0)


async def test_a_resource_finishing_exactly_at_the_deadline_is_seen() -> None:
    clock = FakeClock()
    resource = Resource(clock, [(0, "creating"), (2.0, "available")])
    assert (
        await Waiter(clock).wait_for_status(
            resource.fetch, resource.check("available"), timeout_seconds=2.0, what="v"
        )
        == "available"
    )


async def test_extra_done_condition_keeps_waiting() -> None:
    clock = FakeClock()
    resource = Resource(clock, [(0, "available")])
    calls = iter([False, False, True])
    check: StatusCheck[str] = StatusCheck(
        status_of=lambda s: s, wanted={"available"}, failed=lambda s: False, done=lambda _: next(calls)
    )
    await Waiter(clock).wait_for_status(resource.fetch, check, timeout_seconds=5, what="v")
    assert len(resource.polls) == 3


async def test_wait_for_deletion_returns_on_not_found_and_fails_on_error_deleting() -> None:
    clock = FakeClock()
    resource = Resource(clock, [(0, "deleting"), (0.5, "gone")])
    await Waiter(clock).wait_for_deletion(resource.fetch, resource.check(), timeout_seconds=5, what="v")
    assert resource.polls[-1] >= 0.5

    broken = Resource(clock, [(0, "deleting"), (0.2, "error_deleting")], reason="backend refused")
    with pytest.raises(CloudError, match="went to status error_deleting: backend refused"):
        await Waiter(clock).wait_for_deletion(broken.fetch, broken.check(), timeout_seconds=5, what="v")


async def test_cancellation_stops_the_wait() -> None:
    clock = FakeClock()
    resource = Resource(clock, [(0, "creating")])
    task = asyncio.create_task(
        Waiter(clock).wait_for_status(
            resource.fetch, resource.check("available"), timeout_seconds=1e6, what="v"
        )
    )
    for _ in range(20):
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    polls = len(resource.polls)
    for _ in range(20):
        await asyncio.sleep(0)
    assert len(resource.polls) == polls


async def test_a_failing_reason_lookup_does_not_hide_the_error_status() -> None:
    clock = FakeClock()

    async def fetch() -> str:
        return "error"

    async def broken_reason(_: str) -> str | None:
        raise CloudError("messages API unavailable")

    check: StatusCheck[str] = StatusCheck(
        status_of=lambda s: s, wanted={"available"}, failed=lambda s: s == "error", reason_of=broken_reason
    )
    with pytest.raises(CloudError, match=r"^volume v went to status error$"):
        await Waiter(clock).wait_for_status(fetch, check, timeout_seconds=5, what="volume v")


async def _one_wait(
    waiter: Waiter, clock: FakeClock, seconds: float, what: str = "volume v", first: str = "creating"
) -> Resource:
    resource = Resource(clock, [(0, first), (seconds, "available")])
    await waiter.wait_for_status(resource.fetch, resource.check("available"), timeout_seconds=900, what=what)
    return resource


@pytest.mark.parametrize("operation_seconds", [2.0, 10.0, 60.0])
async def test_a_learned_transition_costs_few_polls_and_no_latency(operation_seconds: float) -> None:
    clock = FakeClock()
    waiter = Waiter(clock, rng=random.Random(5))
    untaught = [len((await _one_wait(waiter, clock, operation_seconds)).polls) for _ in range(3)]
    taught = await _one_wait(waiter, clock, operation_seconds)
    late = clock.now - taught.start - operation_seconds
    assert len(taught.polls) <= 5 < untaught[0], (untaught, taught.polls)
    assert 0 <= late <= 0.3 * operation_seconds + 0.15


async def test_a_faster_than_usual_operation_is_late_by_at_most_the_head_start() -> None:
    clock = FakeClock()
    waiter = Waiter(clock, rng=random.Random(6))
    for _ in range(3):
        await _one_wait(waiter, clock, 4.0)
    quick = await _one_wait(waiter, clock, 1.0)
    # The second poll waits for the head start: 0.85 of the median learned (each wait saw its 4 s
    # transition end at a poll a little later).
    assert 0.85 * 4.0 <= quick.polls[1] <= 0.85 * 4.0 * 1.2
    assert clock.now - quick.start == pytest.approx(quick.polls[1])  # seen at the look after it


async def test_learning_is_per_kind_and_per_transition() -> None:
    clock = FakeClock()
    waiter = Waiter(clock, rng=random.Random(7))
    for _ in range(3):
        await _one_wait(waiter, clock, 20.0, what="backup b")
    other_kind = await _one_wait(waiter, clock, 20.0, what="volume v")
    assert other_kind.polls[1] < 0.2  # nothing known of volumes yet
    # Another transition of backups starts from the quickest one known of backups (a guess).
    other_status = await _one_wait(waiter, clock, 20.0, what="backup b", first="restoring")
    assert 0.85 * 20.0 <= other_status.polls[1] <= 0.85 * 20.0 * 1.2


async def test_deletions_learn_too() -> None:
    clock = FakeClock()
    waiter = Waiter(clock, rng=random.Random(8))
    counts = []
    for _ in range(4):
        resource = Resource(clock, [(0, "deleting"), (3.0, "gone")])
        await waiter.wait_for_deletion(resource.fetch, resource.check(), timeout_seconds=60, what="volume v")
        counts.append(len(resource.polls))
    assert counts[-1] <= 5 < counts[0]


async def test_answers_slowed_by_the_cloud_teach_only_the_transitions_time() -> None:
    """Polls that took seconds to answer (retried 503s) do not make the transition look longer."""
    clock = FakeClock()
    waiter = Waiter(clock, rng=random.Random(9))
    for _ in range(3):
        resource = Resource(clock, [(0, "creating"), (1.0, "available")])

        async def slow_fetch(resource: Resource = resource) -> str:
            status = await resource.fetch()
            await clock.sleep(5.0)  # a burst of failures retried before this answer came
            return status

        await waiter.wait_for_status(
            slow_fetch, resource.check("available"), timeout_seconds=900, what="volume v"
        )
    taught = await _one_wait(waiter, clock, 1.0)
    assert taught.polls[1] < 1.5, taught.polls  # head start from about 1 s, not from the 6 s the waits took


def test_bad_learning_settings_are_refused() -> None:
    for bad in ({"head_start_fraction": 1.0}, {"learn_after": 0}, {"learn_after": 5, "remember": 2}):
        with pytest.raises(ValueError):
            Backoff(**bad)  # type: ignore[arg-type]


async def test_every_wait_is_measured_by_transition_and_outcome() -> None:
    """What the dashboard's wait panels and the stuck-transition alert read."""
    from csi_xloud.metrics import Metrics

    clock, metrics = FakeClock(), Metrics()
    waiter = Waiter(clock, rng=random.Random(1), metrics=metrics)

    def sample(name: str, **labels: str) -> float | None:
        return metrics.registry.get_sample_value(name, labels)

    created = Resource(clock, [(0, "creating"), (2.0, "available")])
    await waiter.wait_for_status(created.fetch, created.check("available"), timeout_seconds=10, what="volume a")
    stuck = Resource(clock, [(0, "attaching")])
    with pytest.raises(WaitTimeout):
        await waiter.wait_for_status(stuck.fetch, stuck.check("in-use"), timeout_seconds=3, what="volume b",
                                     expect="attaching")
    broken = Resource(clock, [(0, "deleting"), (0.2, "error_deleting")])
    with pytest.raises(CloudError):
        await waiter.wait_for_deletion(broken.fetch, broken.check(), timeout_seconds=5, what="snapshot c")
    done_at_once = Resource(clock, [(0, "available")])
    await waiter.wait_for_status(done_at_once.fetch, done_at_once.check("available"), timeout_seconds=5,
                                 what="volume d")

    wait = "csi_xloud_cloud_wait_duration_seconds"
    assert sample(f"{wait}_count", resource="volume", transition="creating", outcome="done") == 1
    assert sample(f"{wait}_sum", resource="volume", transition="creating", outcome="done") == pytest.approx(2.0, abs=0.7)
    assert sample(f"{wait}_count", resource="volume", transition="attaching", outcome="timeout") == 1
    assert sample(f"{wait}_sum", resource="volume", transition="attaching", outcome="timeout") == pytest.approx(3.0)
    assert sample(f"{wait}_count", resource="snapshot", transition="deleting->gone", outcome="failed") == 1
    assert sample(f"{wait}_count", resource="volume", transition="none", outcome="done") == 1
    for resource in ("volume", "snapshot"):
        assert sample("csi_xloud_cloud_waits_in_flight", resource=resource) == 0


def _with_rollback(check: StatusCheck[str], back_in: str, reason: str | None) -> StatusCheck[str]:
    async def seen(status: str) -> bool:
        return status == back_in

    async def why(_: str) -> str | None:
        if reason is None:
            raise CloudError("the reason could not be read")
        return reason

    return dataclasses.replace(check, rollback=Rollback("the attach to node n", seen, why))


async def test_a_change_the_cloud_undid_ends_the_wait_at_the_next_view() -> None:
    clock = FakeClock()
    resource = Resource(clock, [(0, "reserved"), (0.5, "available")])
    check = _with_rollback(resource.check("in-use"), "available", "compute_attach_volume: no device")
    with pytest.raises(RolledBack) as caught:
        await Waiter(clock, rng=random.Random(1)).wait_for_status(
            resource.fetch, check, timeout_seconds=120, what="volume v1", expect="reserved"
        )
    assert str(caught.value) == (
        "volume v1 is available again: the cloud undid the attach to node n: compute_attach_volume: no device"
    )
    assert resource.polls[-1] < 1.5  # the first view after the rollback, not the deadline


async def test_a_rolled_back_deletion_ends_the_wait_and_an_unreadable_reason_is_left_out() -> None:
    clock = FakeClock()
    resource = Resource(clock, [(0, "deleting"), (0.3, "available")])
    check = _with_rollback(resource.check(), "available", None)
    with pytest.raises(RolledBack, match=r"^volume v1 is available again: the cloud undid the attach to node n$"):
        await Waiter(clock).wait_for_deletion(resource.fetch, check, timeout_seconds=120, what="volume v1")
    assert resource.polls[-1] < 1.0


async def _expected_wait(waiter: Waiter, clock: FakeClock, seconds: float, first: str = "creating",
                         what: str = "volume v") -> Resource:
    """A wait started by the caller's own request, which left the resource in `first`."""
    resource = Resource(clock, [(0, first), (seconds, "available")])
    await waiter.wait_for_status(resource.fetch, resource.check("available"), timeout_seconds=900, what=what,
                                 expect=first)
    return resource


@pytest.mark.parametrize(("operation_seconds", "most_looks"), [(0.3, 1), (2.0, 3), (10.0, 8), (60.0, 18)])
async def test_a_first_wait_on_a_transition_just_started_looks_as_the_reference_driver(
    operation_seconds: float, most_looks: int,
) -> None:
    """Looks at 0.4 s, 1 s, then gaps from 1.2 s growing x1.2: never more than cinder-csi-plugin's
    schedule (at once, then 1 s growing x1.2) needs to see the same operation end."""
    clock = FakeClock()
    waiter = Waiter(clock, rng=random.Random(11))
    first = await _expected_wait(waiter, clock, operation_seconds)
    assert first.polls[:3] == pytest.approx([0.4, 1.0, 2.2][: len(first.polls[:3])])
    reference, at, gap = [0.0], 0.0, 1.0
    while at < operation_seconds:
        at, gap = at + gap, min(5.0, gap * 1.2)
        reference.append(at)
    assert len(first.polls) == most_looks <= len(reference), first.polls
    assert clock.now - first.start <= max(reference[-1], 0.4) + 1e-9


async def test_a_wait_not_started_by_the_caller_keeps_the_quick_schedule() -> None:
    clock = FakeClock()
    waiter = Waiter(clock, rng=random.Random(12))
    retry = await _one_wait(waiter, clock, 1.0)
    assert retry.polls[:2] == pytest.approx([0.0, 0.1], rel=0.11)


async def test_a_guess_too_long_is_halved_by_each_wait_that_shows_it() -> None:
    clock = FakeClock()
    waiter = Waiter(clock, rng=random.Random(13))
    create = await _expected_wait(waiter, clock, 20.0)  # creates take 20 s: extends are guessed from that
    created = clock.now - create.start
    took = []
    for _ in range(4):
        resource = await _expected_wait(waiter, clock, 2.0, first="extending")  # but extends take 2 s
        took.append(clock.now - resource.start)
    # The first three found it done at their first look (0.85 of the guess) and halved the guess:
    # 17.7 s, 7.5 s, 3.2 s, then 1.4 s, before the 2 s.
    assert took[0] == pytest.approx(0.85 * created) and took[1] == pytest.approx(0.85 * took[0] / 2)
    assert took[2] == pytest.approx(0.85 * took[1] / 2) and took[3] <= 1.3 * 2.0 + 0.1, took
    # Those three taught no time; the fourth saw the 2 s, and its own time leads from then on.
    fifth = await _expected_wait(waiter, clock, 2.0, first="extending")
    assert 0.85 * 2.0 <= fifth.polls[0] <= 0.85 * 2.0 * 1.3 and len(fifth.polls) <= 3


async def test_a_transitions_own_waits_are_no_guess() -> None:
    """A wait that finds it done at the first look after its own time's head start teaches that time."""
    clock = FakeClock()
    waiter = Waiter(clock, rng=random.Random(15))
    await _expected_wait(waiter, clock, 10.0)  # seen at 12.9 s, the first schedule's look after 10 s
    second = await _expected_wait(waiter, clock, 10.0)
    assert len(second.polls) == 1  # its head start, 0.85 x 12.9 s, is past the 10 s
    third = await _expected_wait(waiter, clock, 10.0)
    assert third.polls[0] == pytest.approx(0.85 * 0.85 * 12.92, rel=0.01)  # the shortest of the two


async def test_a_transition_never_seen_starts_from_the_quickest_one_of_its_resource() -> None:
    clock = FakeClock()
    waiter = Waiter(clock, rng=random.Random(14))
    await _expected_wait(waiter, clock, 3.0)
    await _expected_wait(waiter, clock, 60.0, first="restoring-backup")
    extend = await _expected_wait(waiter, clock, 3.0, first="extending")
    # The create was seen at 3.64 s: an extend's head start is 0.85 of that.
    assert extend.polls[0] == pytest.approx(0.85 * 3.64) and len(extend.polls) <= 3
    backup = await _expected_wait(waiter, clock, 3.0, first="creating", what="backup b")
    assert backup.polls[0] == pytest.approx(0.4)  # nothing known of backups: a first wait
