"""Over real HTTP: look-ups by name made at once share one listing, and never cost more than alone."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from csi_xloud.cloud.client import CloudClient
from csi_xloud.cloud.errors import CloudError
from csi_xloud.cloud.models import Volume, VolumeStatus
from csi_xloud.emulator.process import EmulatorProcess
from csi_xloud.metrics import Metrics
from tests.cloud.conftest import emulator_settings

LIST = "GET /volume/v3/{id}/volumes/detail"
PAGE = 2  # the emulator's max page size here, so a few volumes make a many-page project


@pytest.fixture(scope="module")
def small_pages(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    with EmulatorProcess(tmp_path_factory.mktemp("lookups") / "cloud", op_seconds=0.05,
                         max_page_size=PAGE) as emulator:
        yield emulator


def lists(emulator: EmulatorProcess) -> int:
    return int(emulator.stats()["requests"].get(LIST, 0))


async def make_volumes(client: CloudClient, count: int) -> list[Volume]:
    return [await client.storage.create_volume(f"have-{uuid.uuid4().hex[:8]}", 1) for _ in range(count)]


async def test_many_look_ups_at_once_share_the_listing_of_a_small_project(short_tmp: Path) -> None:
    with EmulatorProcess(short_tmp / "cloud", op_seconds=0.05) as emulator:
        async with CloudClient(emulator_settings(emulator), Metrics()) as client:
            existing = await make_volumes(client, 3)
            twin = await client.storage.create_volume(existing[0].name or "", 1)  # names are not unique
            names = [v.name or "" for v in existing] + [f"new-{i}" for i in range(97)]
            before = lists(emulator)
            found = await asyncio.gather(*(client.storage.find_volume_by_name(n) for n in names))
            spent = lists(emulator) - before
    assert {v.id for v in found[0]} == {existing[0].id, twin.id}
    assert [[v.id for v in f] for f in found[1:3]] == [[existing[1].id], [existing[2].id]]
    assert all(f == [] for f in found[3:])
    # All hundred were asked before the first request left: one listing serves them all.
    assert spent == 1, spent
    assert client.storage.volume_names.list_requests == 1


async def test_look_ups_that_arrive_over_a_while_share_a_few_listings(short_tmp: Path) -> None:
    with EmulatorProcess(short_tmp / "cloud", op_seconds=0.05) as emulator:
        async with CloudClient(emulator_settings(emulator), Metrics()) as client:
            existing = (await make_volumes(client, 1))[0]
            names = [existing.name or "", *(f"new-{i}" for i in range(59))]

            async def asked_after(delay: float, name: str) -> list[Volume]:
                await asyncio.sleep(delay)
                return await client.storage.find_volume_by_name(name)

            before = lists(emulator)
            # Sixty creates reaching the controller over 180 ms, as a burst of PVCs does.
            found = await asyncio.gather(*(asked_after(0.003 * i, n) for i, n in enumerate(names)))
            spent = lists(emulator) - before
    assert [v.id for v in found[0]] == [existing.id] and all(f == [] for f in found[1:])
    # A round every 50 ms at most: about four, where a round per round trip took one each.
    assert spent <= 7, spent


async def test_a_lone_look_up_sends_its_single_filtered_request(short_tmp: Path) -> None:
    with EmulatorProcess(short_tmp / "cloud", op_seconds=0.05) as emulator:
        async with CloudClient(emulator_settings(emulator), Metrics()) as client:
            volume = (await make_volumes(client, 1))[0]
            before = lists(emulator)
            assert [v.id for v in await client.storage.find_volume_by_name(volume.name or "")] == [volume.id]
            assert await client.storage.find_volume_by_name("nobody") == []
            assert lists(emulator) - before == 2
    assert client.storage.volume_names.list_requests == 0


async def test_a_project_of_many_pages_is_listed_only_when_that_is_cheaper(
    small_pages: EmulatorProcess,
) -> None:
    async with CloudClient(emulator_settings(small_pages), Metrics()) as client:
        storage = client.storage
        volumes = await make_volumes(client, 5 * PAGE - 1)  # 5 pages (the quota allows 10 volumes)
        last = volumes[-1]
        # Four look-ups at once. Listing would take 5 requests, so the first page (which brings the
        # count) is all it tries before the four go filtered: once, one request more than alone.
        before = lists(small_pages)
        await asyncio.gather(*(storage.find_volume_by_name(f"x-{i}") for i in range(4)))
        assert lists(small_pages) - before == 4 + 1
        # Now the size is known: four more cost four requests, exactly as without sharing.
        before = lists(small_pages)
        await asyncio.gather(*(storage.find_volume_by_name(f"y-{i}") for i in range(4)))
        assert lists(small_pages) - before == 4
        # Twenty at once: five pages serve them all, the last page too.
        before = lists(small_pages)
        names = [last.name or "", *(f"z-{i}" for i in range(19))]
        found = await asyncio.gather(*(storage.find_volume_by_name(n) for n in names))
        assert lists(small_pages) - before == 5
        assert [v.id for v in found[0]] == [last.id]
        assert all(f == [] for f in found[1:])
        late_name = f"late-{uuid.uuid4().hex[:8]}"
        pending = [asyncio.ensure_future(storage.find_volume_by_name(f"w-{i}")) for i in range(3)]
        await asyncio.sleep(0)
        made = await storage.create_volume(late_name, 1)
        # Made before this look-up was asked, so it is found, though a round was already under way.
        assert [v.id for v in await storage.find_volume_by_name(late_name)] == [made.id]
        await asyncio.gather(*pending)
        await storage.wait_for_volume(made.id, VolumeStatus.AVAILABLE, timeout_seconds=30)  # deletable
        await asyncio.gather(*(storage.delete_volume(v.id) for v in [*volumes, made]))


async def test_a_failed_request_fails_only_the_look_ups_it_serves(small_pages: EmulatorProcess) -> None:
    async with CloudClient(emulator_settings(small_pages, retry_seconds=0), Metrics()) as client:
        storage = client.storage
        small_pages.set_faults([{"method": "GET", "path": "volumes/detail", "status": 400, "count": 1}])
        try:
            answers = await asyncio.gather(*(storage.find_volume_by_name(f"f-{i}") for i in range(4)),
                                           return_exceptions=True)
        finally:
            small_pages.clear_faults()
        # The round's first page met the fault: the four look-ups it served fail, nothing else.
        assert all(isinstance(a, CloudError) for a in answers), answers
        assert await storage.find_volume_by_name("after") == []
