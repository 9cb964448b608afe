"""Attachments to servers that are gone or stopped: told apart from live ones, and cleaned up.

A node's server can be deleted (or its Compute delete can fail half-way) while the Storage API still
lists the volume as attached to it, and a shut-off server keeps its volumes attached. Kubernetes then
wants the volume elsewhere. What the driver may do depends on the server:

- gone (Compute answers 404): nothing can use the disk; the Storage attachment is deleted directly,
  since Compute no longer knows the server to detach from.
- stopped (SHUTOFF, SOFT_DELETED): no guest runs; Compute detaches from it as usual.
- anything else (ACTIVE, BUILD, ERROR, ...): a guest may be writing; the driver never takes its
  volumes away.
"""

from __future__ import annotations

import logging
from enum import StrEnum

from csi_xloud.cloud import errors as cloud
from csi_xloud.cloud.compute import ComputeApi
from csi_xloud.cloud.models import ServerStatus, Volume, VolumeStatus
from csi_xloud.cloud.storage import StorageApi
from csi_xloud.controller.ids import is_storage_id

log = logging.getLogger(__name__)

STOPPED_STATUSES = frozenset({ServerStatus.SHUTOFF.value, ServerStatus.SOFT_DELETED.value})


class NodeState(StrEnum):
    """What the driver may do with a server's volumes."""

    LIVE = "live"
    STOPPED = "stopped"
    GONE = "gone"


class NodeStates:
    """Asks Compute which servers exist and whether they run."""

    def __init__(self, compute: ComputeApi) -> None:
        self._compute = compute

    async def state(self, server_id: str) -> tuple[NodeState, str]:
        """The server's state and its Compute status ("" when gone)."""
        if not is_storage_id(server_id):
            return NodeState.GONE, ""
        try:
            server = await self._compute.get_server(server_id)
        except cloud.NotFound:
            return NodeState.GONE, ""
        if server.status == ServerStatus.DELETED:
            return NodeState.GONE, server.status
        if server.status in STOPPED_STATUSES:
            return NodeState.STOPPED, server.status
        return NodeState.LIVE, server.status

    async def live(self, server_ids: tuple[str, ...]) -> tuple[str, ...]:
        """Those of server_ids that Compute still has (one request each)."""
        return tuple([s for s in server_ids if (await self.state(s))[0] is not NodeState.GONE])

    async def existing(self) -> frozenset[str]:
        """Every server id of the project, for checking many volumes at once."""
        return await self._compute.list_server_ids()


class StaleAttachments:
    """Deletes a volume's Storage attachments to servers Compute no longer has, and waits for it."""

    def __init__(self, storage: StorageApi, states: NodeStates, timeout_seconds: float) -> None:
        self._storage = storage
        self._states = states
        self._timeout_seconds = timeout_seconds

    async def remove(self, volume: Volume, server_id: str) -> Volume:
        """Delete the volume's attachments to server_id (a gone server) and return the volume after."""
        for attachment in volume.attachments:
            if attachment.server_id != server_id or attachment.attachment_id is None:
                continue
            try:
                await self._storage.delete_attachment(attachment.attachment_id)
            except cloud.NotFound:
                continue
            log.warning(
                "removed attachment %s of volume %s to server %s, which no longer exists",
                attachment.attachment_id,
                volume.id,
                server_id,
            )
        return await self._storage.wait_for_volume(
            volume.id,
            VolumeStatus.AVAILABLE,
            VolumeStatus.IN_USE,
            timeout_seconds=self._timeout_seconds,
            done=lambda v: server_id not in v.attached_server_ids,
        )

    async def remove_all_if_gone(self, volume: Volume) -> Volume:
        """When every server the volume is attached to is gone, its attachments are removed."""
        servers = volume.attached_server_ids
        if not servers:
            return volume
        for server_id in servers:
            if (await self._states.state(server_id))[0] is not NodeState.GONE:
                return volume
        for server_id in dict.fromkeys(servers):
            volume = await self.remove(volume, server_id)
        return volume
