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


async def test_after_three_creates_the_fourth_costs_fewer_polls(short_tmp: Path) -> None:
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
    assert polls[3] <= 3 < min(polls[:3]), polls
    assert seconds[3] <= 1.3 * 1.0 + 0.15, seconds  # as quick to notice as before
