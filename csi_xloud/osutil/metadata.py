"""Who this instance is: its id and zone, from the config drive or else the metadata service."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from csi_xloud.osutil.blocking import BlockingCalls
from csi_xloud.osutil.errors import MetadataUnavailable, OsUtilError
from csi_xloud.osutil.filesystem import Filesystems
from csi_xloud.osutil.mounts import Mounter

log = logging.getLogger(__name__)

CONFIG_DRIVE_LABEL = "config-2"
# Where udev links every labelled filesystem by its label; looked at before any device is probed.
BY_LABEL_DIR = Path("/dev/disk/by-label")
META_DATA_PATH = "openstack/latest/meta_data.json"


@dataclass(frozen=True, slots=True)
class InstanceMetadata:
    """The parts of meta_data.json the node needs."""

    instance_id: str
    availability_zone: str | None

    @classmethod
    def from_json(cls, data: Any, where: str) -> InstanceMetadata:
        if not isinstance(data, dict) or not isinstance(data.get("uuid"), str) or not data["uuid"]:
            raise MetadataUnavailable(f"{where} has no instance uuid")
        zone = data.get("availability_zone")
        zone = zone if isinstance(zone, str) and zone else None
        return cls(instance_id=data["uuid"], availability_zone=zone)


class MetadataReader:
    """Reads meta_data.json from a config drive when one is attached, else over HTTP."""

    def __init__(
        self,
        filesystems: Filesystems,
        mounter: Mounter,
        metadata_url: str,
        *,
        label: str = CONFIG_DRIVE_LABEL,
        by_label_dir: Path = BY_LABEL_DIR,
        http_timeout_seconds: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        blocking: BlockingCalls | None = None,
    ) -> None:
        self._filesystems = filesystems
        self._mounter = mounter
        self._url = f"{metadata_url.rstrip('/')}/{META_DATA_PATH}"
        self._label = label
        self._by_label_dir = by_label_dir
        self._timeout = http_timeout_seconds
        self._transport = transport
        self._blocking = blocking or BlockingCalls()

    async def read(self) -> InstanceMetadata:
        """The config drive's answer when there is a readable one, else the metadata service's."""
        try:
            found = await self.from_config_drive()
        except (OsUtilError, OSError, ValueError) as exc:
            log.warning("config drive unreadable (%s); asking the metadata service", exc)
            found = None
        return found if found is not None else await self.from_metadata_service()

    async def from_config_drive(self) -> InstanceMetadata | None:
        """Mount the first filesystem labelled config-2 read-only in a temporary folder and read it."""
        device = await self._config_drive()
        if device is None:
            return None
        signature = await self._filesystems.probe(device)
        if signature.type is None:
            raise OsUtilError(f"config drive {device} lost its filesystem while being read")
        folder = Path(tempfile.mkdtemp(prefix="csi-xloud-config-drive-"))
        try:
            await self._mounter.mount(device, folder, signature.type, ["ro"])
            try:
                text = await self._blocking.call(device, (folder / META_DATA_PATH).read_text)
            finally:
                await self._mounter.unmount(folder)
        finally:
            os.rmdir(folder)
        log.info("read instance metadata from config drive %s", device)
        return InstanceMetadata.from_json(json.loads(text), f"config drive {device}")

    async def _config_drive(self) -> Path | None:
        """The config drive's device: udev's by-label link when there is one, else a scan of every device.

        The scan probes each block device in turn (seconds on a host with many disks), so it runs
        only when udev has no link, e.g. in a container without /run/udev.
        """
        link = self._by_label_dir / self._label
        linked = await asyncio.to_thread(_resolved_block_device, link)
        if linked is not None:
            return linked
        devices = await self._filesystems.find_by_label(self._label)
        return devices[0] if devices else None

    async def from_metadata_service(self) -> InstanceMetadata:
        try:
            async with httpx.AsyncClient(timeout=self._timeout, transport=self._transport) as client:
                response = await client.get(self._url)
                response.raise_for_status()
                data = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise MetadataUnavailable(f"metadata service {self._url}: {exc}") from exc
        log.info("read instance metadata from %s", self._url)
        return InstanceMetadata.from_json(data, self._url)


def _resolved_block_device(link: Path) -> Path | None:
    """Where a udev link points when that is a block device; None when there is no such link."""
    try:
        target = link.resolve(strict=True)
        return target if stat.S_ISBLK(target.stat().st_mode) else None
    except (OSError, RuntimeError):
        return None
