"""Corner cases of sharing with a scripted cloud: clouds that count nothing or ignore the time filter."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from datetime import UTC, datetime, timedelta

import pytest

from csi_xloud.clock import SystemClock
from csi_xloud.cloud import sharedlookups
from csi_xloud.cloud.errors import Unavailable
from csi_xloud.cloud.models import Page, Volume
from csi_xloud.cloud.sharedlookups import SharedLookups
from csi_xloud.cloud.sharedpolls import SharedVolumePolls
from tests.cloud.test_cloud_shared_polls import AVAILABLE, Cloud, check, usual_waiter


class TimedCloud(Cloud):
    """The scripted cloud, with the cloud's times: created now, updated when the volume moved on."""

    def __init__(self, done_after: dict[str, float], ignores_time_filter: bool = False) -> None:
        super().__init__(done_after)
        self.wall = datetime.now(UTC)
        self.changes: list[datetime] = []
        self.ignores_time_filter = ignores_time_filter

    def volume(self, volume_id: str, status: str) -> Volume:
        updated = self.wall + timedelta(seconds=self.done_after[volume_id]) if status != self.first else None
        return dataclasses.replace(super().volume(volume_id, status), created_at=self.wall, updated_at=updated)

    async def changed_since(self, since: datetime, budget: int) -> list[Volume]:
        self.changes.append(since)
        await asyncio.sleep(0.002)
        views = [self.volume(v, s) for v in self.done_after if (s := self.status(v)) is not None]
        if self.ignores_time_filter:
            return views
        return [v for v in views if v.updated_at is not None and v.updated_at >= since]


async def wait_with_seen(cloud: TimedCloud, polls: SharedVolumePolls) -> None:
    waiter = usual_waiter()

    async def one(volume_id: str) -> None:
        seen = cloud.volume(volume_id, cloud.first)
        await waiter.wait_for_status(polls.of(volume_id, seen), check(AVAILABLE), timeout_seconds=10,
                                     what=f"volume {volume_id}", expect="creating")

    await asyncio.gather(*(one(v) for v in cloud.done_after))


async def test_volumes_that_moved_on_together_are_seen_in_one_list_not_one_get_each() -> None:
    cloud = TimedCloud({f"v{i}": 0.5 for i in range(30)})
    polls = SharedVolumePolls(cloud.get_one, cloud.list_in_status, SystemClock(), cloud.changed_since)
    started = time.monotonic()
    await wait_with_seen(cloud, polls)
    assert time.monotonic() - started <= 1.3 * 0.5 + 0.15
    assert len(cloud.gets) <= 3, cloud.gets
    assert 1 <= len(cloud.changes) == polls.changes_requests
    assert all(since == cloud.wall for since in cloud.changes)


async def test_a_cloud_that_ignores_the_time_filter_turns_the_change_lists_off() -> None:
    cloud = TimedCloud({f"v{i}": 0.3 + 0.01 * i for i in range(10)}, ignores_time_filter=True)
    polls = SharedVolumePolls(cloud.get_one, cloud.list_in_status, SystemClock(), cloud.changed_since)
    await wait_with_seen(cloud, polls)
    assert not polls.sharing_changes
    assert len(cloud.changes) == 1
    assert set(cloud.gets) == set(cloud.done_after)


class Pages:
    """A project of `size` named items served in pages of `page` items, with or without a count."""

    def __init__(self, size: int, page: int, counts: bool) -> None:
        self.names = [f"n{i}" for i in range(size)]
        self.page, self.counts = page, counts
        self.filtered: list[str] = []
        self.pages = 0

    async def find_one(self, name: str) -> list[str]:
        self.filtered.append(name)
        await asyncio.sleep(0.001)
        return [n for n in self.names if n == name]

    async def list_page(self, marker: str | None) -> Page[str]:
        self.pages += 1
        await asyncio.sleep(0.001)
        start = 0 if marker is None else self.names.index(marker) + 1
        items = tuple(self.names[start:start + self.page])
        more = start + self.page < len(self.names)
        return Page(items, items[-1] if more else None, len(self.names) if self.counts else None)


async def test_a_cloud_without_counts_is_listed_only_while_it_fits_on_one_page() -> None:
    small = Pages(5, 10, counts=False)
    lookups = SharedLookups(small.find_one, small.list_page, lambda n: n)
    found = await asyncio.gather(*(lookups.find(n) for n in ["n1", "n4", "x"]))
    assert found == [["n1"], ["n4"], []] and small.pages == 1 and small.filtered == []

    big = Pages(25, 10, counts=False)
    lookups = SharedLookups(big.find_one, big.list_page, lambda n: n)
    found = await asyncio.gather(*(lookups.find(n) for n in ["n1", "n24", "x"]))
    assert found == [["n1"], ["n24"], []]
    assert big.pages == 1 and sorted(big.filtered) == ["n1", "n24", "x"]
    assert not lookups.sharing
    await asyncio.gather(*(lookups.find(n) for n in ["a", "b", "c"]))
    assert big.pages == 1 and len(big.filtered) == 6  # filtered from then on, no listing tried again


async def test_a_cancelled_look_up_leaves_the_others_served() -> None:
    pages = Pages(5, 10, counts=True)
    lookups = SharedLookups(pages.find_one, pages.list_page, lambda n: n)
    doomed = asyncio.ensure_future(lookups.find("n1"))
    kept = asyncio.ensure_future(lookups.find("n2"))
    await asyncio.sleep(0)
    doomed.cancel()
    assert await kept == ["n2"]
    assert doomed.cancelled()


async def test_a_listing_serves_look_ups_only_while_it_brings_at_most_50_items_each() -> None:
    project = Pages(120, 1000, counts=True)
    lookups = SharedLookups(project.find_one, project.list_page, lambda n: n)
    assert await asyncio.gather(lookups.find("n7"), lookups.find("x")) == [["n7"], []]
    assert project.pages == 1 and project.filtered == []  # the first listing tells the size
    await asyncio.gather(lookups.find("a"), lookups.find("b"))  # 120 items for 2 names: filtered
    assert project.pages == 1 and project.filtered == ["a", "b"]
    await asyncio.gather(*(lookups.find(n) for n in ("c", "d", "e")))  # 40 each: listed
    assert project.pages == 2 and len(project.filtered) == 2


async def asked_after(lookups: SharedLookups[str], delay: float, name: str) -> list[str]:
    """A look-up asked `delay` seconds from now, as a create reaching the controller then would."""
    await asyncio.sleep(delay)
    return await lookups.find(name)


async def test_look_ups_that_keep_coming_during_rounds_are_gathered_into_a_few() -> None:
    project = Pages(5, 10, counts=True)
    lookups = SharedLookups(project.find_one, project.list_page, lambda n: n)

    # Fifty look-ups, one every 2 ms: each round trip takes 1 ms, so without the gap nearly every
    # look-up would be a round of its own.
    found = await asyncio.gather(*(asked_after(lookups, 0.002 * i, f"n{i}") for i in range(50)))
    assert found == [[f"n{i}"] if i < 5 else [] for i in range(50)]
    assert project.pages + len(project.filtered) <= 6, (project.pages, project.filtered)


async def test_a_look_up_is_held_only_while_others_keep_coming(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sharedlookups, "ROUND_GAP", 0.3)
    project = Pages(5, 10, counts=True)
    lookups = SharedLookups(project.find_one, project.list_page, lambda n: n)
    assert await lookups.find("n0") == ["n0"]
    started = time.monotonic()
    assert await lookups.find("n1") == ["n1"]  # right after a round, but alone: not held for the gap
    assert time.monotonic() - started < 0.15
    await asyncio.sleep(0.35)

    # One at once, then one every 2 ms for 0.2 s: gathered while they keep coming, into one round.
    found = await asyncio.gather(*(asked_after(lookups, 0.002 * i, f"m{i}") for i in range(100)))
    assert all(f == [] for f in found)
    assert project.filtered == ["n0", "n1", "m0"] and project.pages <= 2, (project.filtered, project.pages)


async def test_a_failed_list_of_changes_leaves_each_volume_to_its_own_get() -> None:
    cloud = TimedCloud({f"v{i}": 0.3 for i in range(10)})

    async def broken(since: datetime, budget: int) -> list[Volume]:
        cloud.changes.append(since)
        raise Unavailable("the list failed")

    polls = SharedVolumePolls(cloud.get_one, cloud.list_in_status, SystemClock(), broken)
    await wait_with_seen(cloud, polls)
    assert cloud.changes and set(cloud.gets) == set(cloud.done_after)
