"""Connections reset (TCP RST) under the controller's cloud client, through a proxy in front of the
emulator: before a request reaches the cloud, and after the cloud acted but before the answer arrived.
With the sidecar's retries each call ends in the right state with exactly one resource."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from csi_xloud.demo.orchestrator import mount_capability
from csi_xloud.emulator.process import EmulatorProcess
from tests.faults.lifecycle import GIB
from tests.faults.resetproxy import ResetProxy, ResetRule, reset_proxy
from tests.faults.support import (
    Sidecars,
    census,
    member_client,
    sidecars_through_proxy,
)

CREATE = re.compile(rb"POST /volume/v3/[^ ]*/volumes HTTP")
POLL = re.compile(rb"GET /volume/v3/[^ ]*/volumes/[0-9a-f-]{36} HTTP")
ATTACH = re.compile(rb"POST /compute/v2.1/servers/[^ ]*/os-volume_attachments HTTP")
DETACH = re.compile(rb"DELETE /compute/v2.1/servers/[^ ]*/os-volume_attachments/")
DELETE = re.compile(rb"DELETE /volume/v3/[^ ]*/volumes/")
SNAPSHOT = re.compile(rb"POST /volume/v3/[^ ]*/snapshots HTTP")


@pytest.fixture(scope="module")
def cloud_behind(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    with EmulatorProcess(tmp_path_factory.mktemp("resets") / "cloud", op_seconds=0.05) as emulator:
        yield emulator


@pytest.fixture
async def behind_proxy(
    cloud_behind: EmulatorProcess, short_tmp: Path
) -> AsyncIterator[tuple[Sidecars, ResetProxy]]:
    async with reset_proxy(cloud_behind.port) as (proxy, base), sidecars_through_proxy(cloud_behind, base, short_tmp) as co:
        yield co, proxy


async def names(emulator: EmulatorProcess, name: str) -> list[str]:
    async with member_client(emulator) as cloud:
        return [v.id for v in await cloud.storage.find_volume_by_name(name)]


@pytest.mark.parametrize("after_answer", [False, True], ids=["before-the-cloud", "after-the-cloud-acted"])
async def test_resets_during_a_volume_life(
    cloud_behind: EmulatorProcess, behind_proxy: tuple[Sidecars, ResetProxy], after_answer: bool
) -> None:
    co, proxy = behind_proxy
    node = str(cloud_behind.servers[0]["id"])
    proxy.rules.extend(
        ResetRule(pattern, after_answer, count) for pattern, count in ((CREATE, 1), (POLL, 2), (ATTACH, 1))
    )
    name = f"pvc-reset-{after_answer}"
    pv = await co.provision(GIB, mount_capability(), name=name)
    assert await names(cloud_behind, name) == [pv.volume_id], "a reset create made a second volume"
    await co.attach(pv, node)
    assert (await census(cloud_behind)).attachments == ((node, pv.volume_id),)
    proxy.rules.extend(ResetRule(pattern, after_answer) for pattern in (DETACH, DELETE))
    await co.detach(pv, node)
    await co.delete(pv)
    assert proxy.resets == 6, f"{proxy.resets} resets; the rules did not all bite"
    assert co.retry_total >= 1


async def test_a_snapshot_whose_answer_is_lost_is_found_by_the_retry(
    cloud_behind: EmulatorProcess, behind_proxy: tuple[Sidecars, ResetProxy]
) -> None:
    co, proxy = behind_proxy
    pv = await co.provision(GIB, mount_capability(), name="pvc-reset-snap")
    proxy.rules.append(ResetRule(SNAPSHOT, after_answer=True))
    snapshot = await co.snapshot(pv, name="snap-reset")
    assert proxy.resets == 1
    assert (await census(cloud_behind)).snapshots == (snapshot.snapshot_id,)
    await co.delete_snapshot(snapshot.snapshot_id)
    await co.delete(pv)
