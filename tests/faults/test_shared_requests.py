"""Shared look-ups and polls under load, over real HTTP: few requests per create, no rule given up.

A hundred CreateVolume calls at once, behind the default rate limit, are counted at the emulator
(GET /_emulator/stats); and creates whose look-ups by name are served together still keep the
late-create rule: a create that lands after its retry leaves one volume per name.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from csi_xloud.controller.volumes import Timeouts
from csi_xloud.demo.orchestrator import RetryPolicy, mount_capability
from csi_xloud.emulator.process import EmulatorProcess
from tests.controller.harness import AdminApi
from tests.faults.lateproxy import LateProxy, LateRule, late_proxy
from tests.faults.lifecycle import GIB
from tests.faults.support import (
    Sidecars,
    admin_client,
    controller_on_socket,
    member_client,
    sidecars_through_proxy,
)

IN_FLIGHT = 100
OP_SECONDS = 1.0
LATE_SECONDS = 2.5


@pytest.fixture(scope="module")
def busy_cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    with EmulatorProcess(tmp_path_factory.mktemp("shared") / "cloud", op_seconds=OP_SECONDS) as emulator:
        yield emulator


async def unlimited_quotas(emulator: EmulatorProcess) -> None:
    async with admin_client(emulator) as admin:
        api = AdminApi(admin)
        try:
            await api.set_quota(volumes=-1, gigabytes=-1, snapshots=-1, backups=-1)
        finally:
            await api.aclose()


@pytest.fixture
async def sidecars(busy_cloud: EmulatorProcess, short_tmp: Path) -> AsyncIterator[Sidecars]:
    """A fresh (cold) controller with the client's default settings: 50 requests/s."""
    await unlimited_quotas(busy_cloud)
    timeouts = Timeouts(create_seconds=60, delete_seconds=60)
    async with (
        controller_on_socket(busy_cloud, short_tmp, timeouts=timeouts) as ctl,
        Sidecars(ctl.socket, {}, RetryPolicy(max_attempts=30, call_timeout_seconds=120)) as co,
    ):
        yield co


async def test_a_hundred_creates_at_once_cost_at_most_one_and_a_half_requests_each(
    busy_cloud: EmulatorProcess, sidecars: Sidecars
) -> None:
    before = busy_cloud.stats()
    pvs = await asyncio.gather(*(sidecars.provision(GIB, mount_capability()) for _ in range(IN_FLIGHT)))
    after = busy_cloud.stats()
    spent = int(after["total"]) - int(before["total"])
    posts = after["requests"].get("POST /volume/v3/{id}/volumes", 0) - before["requests"].get(
        "POST /volume/v3/{id}/volumes", 0)
    await asyncio.gather(*(sidecars.delete(pv) for pv in pvs))
    assert len({pv.volume_id for pv in pvs}) == IN_FLIGHT and posts == IN_FLIGHT
    assert spent <= 1.5 * IN_FLIGHT, f"{spent} requests for {IN_FLIGHT} creates: {after['requests']}"


@pytest.fixture
async def behind_proxy(busy_cloud: EmulatorProcess, short_tmp: Path) -> AsyncIterator[tuple[Sidecars, LateProxy]]:
    await unlimited_quotas(busy_cloud)
    async with late_proxy(busy_cloud.url) as (proxy, base), sidecars_through_proxy(busy_cloud, base, short_tmp) as co:
        yield co, proxy


async def test_a_late_create_among_shared_look_ups_leaves_one_volume_per_name(
    busy_cloud: EmulatorProcess, behind_proxy: tuple[Sidecars, LateProxy]
) -> None:
    co, proxy = behind_proxy
    # The first create to leave is delivered after the client gave up on it (api_timeout 1 s);
    # its retries look the name up together with the other creates' look-ups.
    proxy.rules.append(LateRule("POST", re.compile(r"/volumes$"), LATE_SECONDS))
    names = [f"pvc-shared-{i}" for i in range(12)]
    pvs = await asyncio.gather(*(co.provision(GIB, mount_capability(), name=n) for n in names))
    await proxy.drain()
    async with member_client(busy_cloud) as cloud:
        await asyncio.sleep(OP_SECONDS)
        listed = (await cloud.storage.list_volumes()).items
    await asyncio.gather(*(co.delete(pv) for pv in pvs))
    assert proxy.delivered_late == 1 and co.retries["CreateVolume UNAVAILABLE"] >= 1
    per_name = Counter(v.name for v in listed)
    assert per_name == Counter(names), per_name
    assert {v.id for v in listed} == {pv.volume_id for pv in pvs}
