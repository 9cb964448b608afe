"""Waits on many volumes share one list request per status; on the real clock, with a scripted cloud."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import pytest

from csi_xloud.clock import SystemClock
from csi_xloud.cloud.errors import NotFound, Unavailable
from csi_xloud.cloud.models import Volume, VolumeStatus
from csi_xloud.cloud.sharedpolls import SharedVolumePolls
from csi_xloud.cloud.waiters import Backoff, StatusCheck, Waiter


def usual_waiter() -> Waiter:
    """A waiter whose first waits keep the usual schedule: these tests time the sharing against it (the
    first-wait schedule of a controller just started is tested with the waiter itself)."""
    return Waiter(SystemClock(), Backoff(first_look_seconds=None))

AVAILABLE = VolumeStatus.AVAILABLE.value


class Cloud:
    """Volumes that leave their first status at given moments; counts the requests made of it."""

    def __init__(self, done_after: dict[str, float], first: str = "creating", last: str | None = AVAILABLE):
        self.start = time.monotonic()
        self.done_after = done_after
        self.first, self.last = first, last
        self.gets: list[str] = []
        self.lists: list[str] = []
        self.list_error: Exception | None = None
        self.slow_gets: dict[str, float] = {}
        self.ignores_filter = False

    def status(self, volume_id: str) -> str | None:
        moved = time.monotonic() - self.start >= self.done_after[volume_id]
        return self.last if moved else self.first

    def volume(self, volume_id: str, status: str) -> Volume:
        return dataclasses.replace(Volume.from_api({"id": volume_id, "size": 1}), raw_status=status)

    async def get_one(self, volume_id: str) -> Volume:
        self.gets.append(volume_id)
        await asyncio.sleep(self.slow_gets.get(volume_id, 0.002))
        status = self.status(volume_id)
        if status is None:
            raise NotFound(f"volume {volume_id} could not be found")
        return self.volume(volume_id, status)

    async def list_in_status(self, status: str) -> list[Volume]:
        self.lists.append(status)
        await asyncio.sleep(0.002)
        if self.list_error is not None:
            raise self.list_error
        if self.ignores_filter:
            return [self.volume(v, s) for v in self.done_after if (s := self.status(v)) is not None]
        return [self.volume(v, status) for v in self.done_after if self.status(v) == status]


def polls_for(cloud: Cloud) -> SharedVolumePolls:
    return SharedVolumePolls(cloud.get_one, cloud.list_in_status, SystemClock())


def check(*wanted: str) -> StatusCheck[Volume]:
    return StatusCheck(status_of=lambda v: v.raw_status, wanted=set(wanted), failed=lambda s: s.startswith("error"))


async def wait_all(cloud: Cloud, polls: SharedVolumePolls, waiter: Waiter) -> dict[str, float]:
    """Wait for every volume at once; how long after its own finish each wait noticed it."""

    async def one(volume_id: str) -> float:
        await waiter.wait_for_status(polls.of(volume_id), check(AVAILABLE), timeout_seconds=10,
                                     what=f"volume {volume_id}", expect="creating")
        return time.monotonic() - cloud.start

    seen = await asyncio.gather(*(one(v) for v in cloud.done_after))
    return dict(zip(cloud.done_after, seen, strict=True))


async def test_a_single_wait_fetches_its_volume_on_its_own() -> None:
    cloud = Cloud({"v1": 0.3})
    polls = polls_for(cloud)
    seen = await wait_all(cloud, polls, usual_waiter())
    assert cloud.lists == []
    assert set(cloud.gets) == {"v1"} and 2 <= len(cloud.gets) <= 8
    assert seen["v1"] <= 1.3 * 0.3 + 0.15


async def test_thirty_waits_cost_one_list_per_tick_and_one_get_per_volume() -> None:
    cloud = Cloud({f"v{i}": 0.6 for i in range(30)})
    polls = polls_for(cloud)
    seen = await wait_all(cloud, polls, usual_waiter())
    # Thirty separate waits would each poll about 8 times to see a 0.6 s operation (240 requests).
    assert len(cloud.lists) <= 12, cloud.lists
    assert len(cloud.gets) <= 40, len(cloud.gets)
    assert polls.list_requests == len(cloud.lists)
    assert all(cloud.lists[i] == "creating" for i in range(len(cloud.lists)))
    assert max(seen.values()) <= 1.3 * 0.6 + 0.15, seen


async def test_no_wait_is_served_later_than_its_own_schedule() -> None:
    done_after = {f"v{i}": 0.2 + 0.02 * i for i in range(20)}
    cloud = Cloud(done_after)
    seen = await wait_all(cloud, polls_for(cloud), usual_waiter())
    for volume_id, at in seen.items():
        assert at >= done_after[volume_id]
        assert at <= 1.3 * done_after[volume_id] + 0.15, (volume_id, at)


async def test_a_volume_gone_from_the_list_and_the_cloud_ends_its_deletion_wait() -> None:
    cloud = Cloud({"v1": 0.25, "v2": 0.35, "v3": 0.5}, first="deleting", last=None)
    polls = polls_for(cloud)
    waiter = usual_waiter()
    deleting: StatusCheck[Volume] = StatusCheck(status_of=lambda v: v.raw_status, wanted=(),
                                                failed=lambda s: s == "error_deleting")
    await asyncio.gather(*(
        waiter.wait_for_deletion(polls.of(v), deleting, timeout_seconds=5, what=f"volume {v}", expect="deleting")
        for v in cloud.done_after
    ))
    assert cloud.lists and set(cloud.lists) == {"deleting"}
    assert time.monotonic() - cloud.start <= 1.3 * 0.5 + 0.15


async def test_a_failed_list_fails_every_wait_it_was_serving() -> None:
    cloud = Cloud({f"v{i}": 5.0 for i in range(5)})
    cloud.list_error = Unavailable("volume service answered 503")
    polls = polls_for(cloud)
    waiter = usual_waiter()
    results = await asyncio.gather(*(
        waiter.wait_for_status(polls.of(v), check(AVAILABLE), timeout_seconds=5, what=f"volume {v}",
                               expect="creating")
        for v in cloud.done_after
    ), return_exceptions=True)
    assert all(isinstance(r, Unavailable) for r in results), results
    assert polls._waiting == {}  # nothing left behind


async def test_a_cancelled_wait_leaves_the_others_served_and_nothing_behind() -> None:
    cloud = Cloud({f"v{i}": 0.5 for i in range(6)})
    polls = polls_for(cloud)
    waiter = usual_waiter()
    tasks = {
        v: asyncio.ensure_future(waiter.wait_for_status(
            polls.of(v), check(AVAILABLE), timeout_seconds=5, what=f"volume {v}", expect="creating"))
        for v in cloud.done_after
    }
    await asyncio.sleep(0.25)
    tasks["v0"].cancel()
    with pytest.raises(asyncio.CancelledError):
        await tasks["v0"]
    done = await asyncio.gather(*(t for v, t in tasks.items() if v != "v0"))
    assert {v.raw_status for v in done} == {AVAILABLE}
    assert polls._waiting == {} and polls._rounds == {}


async def test_a_wrong_belief_costs_one_get_and_the_right_status_is_seen() -> None:
    cloud = Cloud({f"v{i}": 0.4 for i in range(4)}, first="attaching", last=VolumeStatus.IN_USE.value)
    polls = polls_for(cloud)
    waiter = usual_waiter()
    # The caller believes the volumes are reserved; they are attaching.
    await asyncio.gather(*(
        waiter.wait_for_status(polls.of(v), check(VolumeStatus.IN_USE.value), timeout_seconds=5,
                               what=f"volume {v}", expect="reserved")
        for v in cloud.done_after
    ))
    assert cloud.lists[0] == "reserved"
    assert "attaching" in cloud.lists


async def test_each_wait_is_answered_when_its_own_volume_is_not_after_the_whole_round() -> None:
    cloud = Cloud({f"v{i}": 0.3 for i in range(6)})
    cloud.slow_gets["v0"] = 1.0  # its look, once it has left the list, takes a second
    seen = await wait_all(cloud, polls_for(cloud), usual_waiter())
    assert seen["v0"] >= 1.0
    assert all(at <= 1.3 * 0.3 + 0.15 for v, at in seen.items() if v != "v0"), seen


async def test_a_cloud_that_ignores_the_status_filter_turns_sharing_off() -> None:
    cloud = Cloud({f"v{i}": 0.2 + 0.1 * i for i in range(4)})
    cloud.ignores_filter = True
    polls = polls_for(cloud)
    seen = await wait_all(cloud, polls, usual_waiter())
    assert not polls.sharing
    # Lists go on only until one answer holds a volume of another status (the first to leave
    # `creating` does so at 0.2 s, by the second list); the waits poll on their own from then on.
    assert len(cloud.lists) <= 2, cloud.lists
    assert all(at <= 1.3 * cloud.done_after[v] + 0.15 for v, at in seen.items()), seen


async def _two_entered_apart(cloud: Cloud, polls: SharedVolumePolls) -> dict[str, tuple[float, int]]:
    """v1 enters `creating` now and v2 50 ms later; both are looked at once (0.3 s) and, still creating,
    asked again a second later. How long after its own end each wait sees its volume, in how many views."""

    async def wait(volume_id: str, lag: float) -> tuple[float, int]:
        await asyncio.sleep(lag)
        views = polls.of(volume_id)
        view = await views.view(0.3 - lag, "creating")
        count = 1
        while view.raw_status == "creating":
            view = await views.view(1.0, "creating")
            count += 1
        return time.monotonic() - cloud.start - cloud.done_after[volume_id], count

    first, second = await asyncio.gather(wait("v1", 0.0), wait("v2", 0.05))
    return {"v1": first, "v2": second}


async def test_a_volume_left_behind_by_a_peer_that_entered_before_it_is_looked_at_by_its_time() -> None:
    # v1 is done by the shared look at 0.3 s; v2, which entered 50 ms after it, a moment after that
    # look. By v1's time v2 is due 50 ms after the look: it is seen about 0.1 s later, not a second.
    cloud = Cloud({"v1": 0.25, "v2": 0.32})
    polls = polls_for(cloud)
    late, _ = (await _two_entered_apart(cloud, polls))["v2"]
    assert late <= 0.5, late
    assert polls._soon == {}  # the due time was used up


async def test_a_look_by_the_peers_time_that_finds_no_change_leaves_the_wait_its_own_schedule() -> None:
    # v2 is slower than its peer: the look by v1's time (about 0.4 s) still finds it creating. The
    # wait is not told: its own look a second after the first comes as it would have, and sees it done.
    cloud = Cloud({"v1": 0.25, "v2": 0.6})
    polls = polls_for(cloud)
    late, views = (await _two_entered_apart(cloud, polls))["v2"]
    assert views == 2, views
    assert 0.5 <= late <= 0.9, late
    # The list at 0.3 s and v1's own look once it had left it; v2's look at 0.4 s and its own at 1.3 s.
    assert (len(cloud.lists), cloud.gets) == (1, ["v1", "v2", "v2"])


async def test_a_volume_that_entered_before_every_peer_done_keeps_its_own_schedule() -> None:
    # v2 entered 50 ms after v1 and is done first: v1 entered earlier, so v2's end says nothing of v1's.
    cloud = Cloud({"v1": 0.32, "v2": 0.28})
    late, _ = (await _two_entered_apart(cloud, polls_for(cloud)))["v1"]
    assert late >= 0.9, late
