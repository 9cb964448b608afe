"""An emulated cloud over real HTTP on 127.0.0.1, and clients built from the clouds.yaml it writes."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from csi_xloud.cloud.client import CloudClient
from csi_xloud.cloud.errors import CloudError
from csi_xloud.cloud.http import HttpTuning
from csi_xloud.cloud.models import VolumeStatus
from csi_xloud.cloud.settings import CloudSettings, load_cloud_settings
from csi_xloud.emulator.process import EmulatorProcess
from csi_xloud.metrics import Metrics

MakeClient = Callable[..., CloudClient]


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorProcess]:
    """One emulator per test module (op-seconds 0.1), stopped and cleaned even when tests fail."""
    data_dir = Path(tempfile.mkdtemp(prefix="csx-cloud-"))
    try:
        with EmulatorProcess(data_dir / "cloud", op_seconds=0.1) as emu:
            yield emu
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def emulator_settings(emu: EmulatorProcess, cloud: str = "xloud-emulator", **tuning: Any) -> CloudSettings:
    settings = load_cloud_settings(cloud, emu.clouds_yaml, {}, search_paths=[])
    return dataclasses.replace(settings, tuning=HttpTuning(**tuning)) if tuning else settings


@pytest.fixture
async def make_client(emulator: EmulatorProcess) -> AsyncIterator[MakeClient]:
    """Build clients on the module's emulator; faults are cleared and clients closed afterwards."""
    made: list[CloudClient] = []

    def build(cloud: str = "xloud-emulator", metrics: Metrics | None = None, **tuning: Any) -> CloudClient:
        client = CloudClient(emulator_settings(emulator, cloud, **tuning), metrics or Metrics())
        made.append(client)
        return client

    try:
        yield build
    finally:
        emulator.clear_faults()
        for client in made:
            await client.aclose()
        await purge(emulator)


async def purge(emu: EmulatorProcess) -> None:
    """Delete every backup, snapshot and volume of the project, so tests do not fill its quotas."""
    async with CloudClient(emulator_settings(emu), Metrics()) as client:
        storage = client.storage
        for _ in range(10):
            backups = (await storage.list_backups()).items
            if not backups:
                break
            for backup in backups:
                if not backup.has_dependent_backups and backup.status != "deleting":
                    with contextlib.suppress(CloudError):
                        await storage.delete_backup(backup.id)
            await asyncio.sleep(0.3)
        for volume in (await storage.list_volumes()).items:
            for attachment in volume.attachments:
                with contextlib.suppress(CloudError):
                    await client.compute.detach_volume(attachment.server_id, volume.id)
        for volume in (await storage.list_volumes()).items:
            with contextlib.suppress(CloudError):
                await storage.wait_for_volume(
                    volume.id, VolumeStatus.AVAILABLE, VolumeStatus.ERROR, timeout_seconds=10
                )
                await storage.delete_volume(volume.id, cascade=True)
        for volume in (await storage.list_volumes()).items:
            with contextlib.suppress(CloudError):
                await storage.wait_for_volume_deleted(volume.id, timeout_seconds=10)


@pytest.fixture
async def client(make_client: MakeClient) -> CloudClient:
    return make_client()
