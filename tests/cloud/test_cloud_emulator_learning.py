"""Over real HTTP: the waiter learns how long a create takes and polls less from then on."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from csi_xloud.cloud.client import CloudClient
from csi_xloud.cloud.models import VolumeStatus
from csi_xloud.emulator.process import EmulatorProcess
from csi_xloud.metrics import Metrics
from tests.cloud.conftest import emulator_settings

POLL = "GET /volume/v3/{id}/volumes/{id}"


async def test_after_one_create_the_next_cost_fewer_polls(short_tmp: Path) -> None:
    with EmulatorProcess(short_tmp / "cloud", op_seconds=1.0) as emulator:
        async with CloudClient(emulator_settings(emulator), Metrics()) as client:
            polls, seconds = [], []
            for _ in range(4):
                before = emulator.stats()["requests"].get(POLL, 0)
                volume = await client.storage.create_volume(f"learn-{uuid.uuid4().hex[:8]}", 1)
                started = time.monotonic()
                await client.storage.wait_for_volume(volume.id, VolumeStatus.AVAILABLE, timeout_seconds=30)
                seconds.append(time.monotonic() - started)
                polls.append(emulator.stats()["requests"].get(POLL, 0) - before)
                await client.storage.delete_volume(volume.id)
    # The first (a wait with no expectation, polling from 0.1 s growing x1.25) teaches the next ones
    # their head start: first from its time alone, from the fourth on from the median of three.
    assert max(polls[1:]) <= 3 < polls[0], polls
    assert seconds[3] <= 1.3 * 1.0 + 0.15, seconds  # as quick to notice as before



def _requests(emulator: EmulatorProcess) -> int:
    return sum(emulator.stats()["requests"].values())


async def test_a_fresh_clients_first_waits_cost_no_more_than_the_reference_schedule(short_tmp: Path) -> None:
    """A controller just started: its first create is looked at after 0.4 s, 1 s and 2.2 s (cinder-csi-plugin
    looks at once, at 1 s and at 2.2 s), and its first extend starts from what the create took."""
    with EmulatorProcess(short_tmp / "cloud", op_seconds=1.5) as emulator:
        async with CloudClient(emulator_settings(emulator), Metrics()) as client:
            volume = await client.storage.create_volume(f"first-{uuid.uuid4().hex[:8]}", 1)
            before, started = _requests(emulator), time.monotonic()
            await client.storage.wait_for_volume(volume.id, VolumeStatus.AVAILABLE, timeout_seconds=30,
                                                 expect=volume.raw_status, seen=volume)
            create_looks, create_seconds = _requests(emulator) - before, time.monotonic() - started
            await client.storage.extend_volume(volume.id, 2)
            before, started = _requests(emulator), time.monotonic()
            await client.storage.wait_for_volume(volume.id, VolumeStatus.AVAILABLE, timeout_seconds=30,
                                                 expect=VolumeStatus.EXTENDING.value)
            extend_looks, extend_seconds = _requests(emulator) - before, time.monotonic() - started
            await client.storage.delete_volume(volume.id)
    assert create_looks == 3 and 2.2 <= create_seconds <= 2.6, (create_looks, create_seconds)
    # The extend's head start is 0.85 of the create's 2.2 s: seen at its first or second look.
    assert extend_looks <= 2 and extend_seconds <= 1.3 * 1.5 + 0.15, (extend_looks, extend_seconds)
