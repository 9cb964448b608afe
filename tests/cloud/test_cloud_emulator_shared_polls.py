"""Over real HTTP: ten creates waited for at once cost one list per tick, not ten polls."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

from csi_xloud.cloud.client import CloudClient
from csi_xloud.cloud.models import VolumeStatus
from csi_xloud.emulator.process import EmulatorProcess
from csi_xloud.metrics import Metrics
from tests.cloud.conftest import emulator_settings

POLL = "GET /volume/v3/{id}/volumes/{id}"
LIST = "GET /volume/v3/{id}/volumes/detail"


async def test_ten_waits_share_their_polls(short_tmp: Path) -> None:
    with EmulatorProcess(short_tmp / "cloud", op_seconds=1.0) as emulator:
        async with CloudClient(emulator_settings(emulator), Metrics()) as client:
            storage = client.storage
            created = [await storage.create_volume(f"share-{uuid.uuid4().hex[:8]}", 1) for _ in range(10)]
            before = dict(emulator.stats()["requests"])
            started = time.monotonic()
            settled = await asyncio.gather(*(
                storage.wait_for_volume(v.id, VolumeStatus.AVAILABLE, timeout_seconds=30, expect=v.raw_status)
                for v in created
            ))
            took = time.monotonic() - started
            after = emulator.stats()["requests"]
            polls = after.get(POLL, 0) - before.get(POLL, 0)
            lists = after.get(LIST, 0) - before.get(LIST, 0)
            await asyncio.gather(*(storage.delete_volume(v.id) for v in created))
    assert {v.status for v in settled} == {VolumeStatus.AVAILABLE}
    # Separate waits would cost about 7 polls each (70); shared, one list per tick of the volumes
    # still `creating`, and one of those changed since, for the volumes that have left it.
    assert polls <= 4, polls
    assert 1 <= lists <= 20, lists
    assert lists == storage.shared_polls.list_requests + storage.shared_polls.changes_requests
    assert storage.shared_polls.changes_requests >= 1
    assert took <= 1.3 * 1.0 + 0.3, took


async def test_creates_made_one_after_another_are_looked_at_by_their_peers_time(short_tmp: Path) -> None:
    # Made one after another, the volumes finish one after another: the shared look that sees the
    # first ones done sets the others due by the first ones' time, and every wait still ends well.
    with EmulatorProcess(short_tmp / "cloud", op_seconds=1.0) as emulator:
        async with CloudClient(emulator_settings(emulator), Metrics()) as client:
            storage = client.storage

            async def create_and_wait(index: int) -> VolumeStatus:
                await asyncio.sleep(0.03 * index)
                volume = await storage.create_volume(f"peers-{uuid.uuid4().hex[:8]}", 1)
                settled = await storage.wait_for_volume(
                    volume.id, VolumeStatus.AVAILABLE, timeout_seconds=30, expect=volume.raw_status)
                await storage.delete_volume(volume.id)
                return settled.status

            statuses = await asyncio.gather(*(create_and_wait(i) for i in range(10)))
    assert set(statuses) == {VolumeStatus.AVAILABLE}
    assert storage.shared_polls.cohort_looks >= 1
