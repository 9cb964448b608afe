"""ControllerPublishVolume / ControllerUnpublishVolume's work: Compute API attachments, waited for."""

from __future__ import annotations

import logging

from csi_xloud.cloud import errors as cloud
from csi_xloud.cloud.compute import ComputeApi
from csi_xloud.cloud.models import Server, Volume, VolumeStatus
from csi_xloud.cloud.storage import StorageApi
from csi_xloud.controller.ids import is_storage_id
from csi_xloud.controller.volumes import Timeouts, fetch_volume
from csi_xloud.rpc.errors import FailedPrecondition, NotFound, ResourceExhausted
from csi_xloud.rpc.metrics import Metrics
from csi_xloud.validation import CapabilityNeeds, multi_node_refusal

log = logging.getLogger(__name__)

# publish_context keys the node plugin reads.
DEVICE_PATH_KEY = "device_path"
SIZE_GIB_KEY = "size_gib"


class Attacher:
    """Attaches volumes to nodes (Compute servers) and detaches them, idempotently."""

    def __init__(
        self, storage: StorageApi, compute: ComputeApi, timeouts: Timeouts, max_volumes_per_node: int,
        metrics: Metrics | None = None,
    ) -> None:
        self._storage = storage
        self._compute = compute
        self._timeouts = timeouts
        self._max_volumes_per_node = max_volumes_per_node
        self._metrics = metrics
        self._attached: dict[str, int] = {}  # node id -> volumes attached, as last counted
        if metrics is not None:
            metrics.attach_limit.set(max_volumes_per_node)

    async def publish(self, volume_id: str, node_id: str, needs: CapabilityNeeds) -> dict[str, str]:
        """Attach (or find attached) and return the publish_context."""
        volume = await fetch_volume(self._storage, volume_id)
        if not (node_id in volume.attached_server_ids and volume.status is VolumeStatus.IN_USE):
            volume = await self._attach_and_wait(volume, node_id, needs)
        return await self._publish_context(volume, node_id)

    async def _attach_and_wait(self, volume: Volume, node_id: str, needs: CapabilityNeeds) -> Volume:
        """Start the attachment unless it is on its way, and wait until the volume is in use there."""
        expect: str | None = None
        server = await self._server(node_id)
        if node_id not in volume.attached_server_ids:
            self._check_attachable(volume, server, needs)
            if await self._attach(volume, server):
                # The Compute API reserves the volume before it answers; in-use volumes (multiattach)
                # go to attaching instead.
                reserved = volume.status is VolumeStatus.AVAILABLE
                expect = (VolumeStatus.RESERVED if reserved else VolumeStatus.ATTACHING).value
        return await self._storage.wait_for_volume(
            volume.id,
            VolumeStatus.IN_USE,
            timeout_seconds=self._timeouts.attach_seconds,
            done=lambda v: node_id in v.attached_server_ids,
            expect=expect,
        )

    async def _server(self, node_id: str) -> Server:
        if not is_storage_id(node_id):
            raise NotFound(f"node_id {node_id!r} does not name a server")
        try:
            return await self._compute.get_server(node_id)
        except cloud.NotFound:
            raise NotFound(f"node_id {node_id}: no such server") from None

    @staticmethod
    def _check_attachable(volume: Volume, server: Server, needs: CapabilityNeeds) -> None:
        """Same zone, and attached nowhere else unless the volume is multiattach and the modes allow it."""
        if (
            volume.availability_zone
            and server.availability_zone
            and volume.availability_zone != server.availability_zone
        ):
            raise FailedPrecondition(
                f"volume {volume.id} is in zone {volume.availability_zone} but node {server.id} is in zone "
                f"{server.availability_zone}; volumes attach only within their zone"
            )
        refusal = multi_node_refusal(needs, volume.multiattach)
        if refusal is not None:
            raise FailedPrecondition(f"volume_capability: {refusal}")
        others = [s for s in volume.attached_server_ids if s != server.id]
        if others and not (needs.multi_node and volume.multiattach):
            raise FailedPrecondition(
                f"volume {volume.id} is already published to node {', '.join(others)} and is single-node"
            )

    async def _attach(self, volume: Volume, server: Server) -> bool:
        """Start the attachment (True), unless one is already on its way for this node (False).

        The server's own view lists its volumes, those still being attached too, so no separate
        look at its attachments is needed.
        """
        attached = server.attached_volume_ids
        if volume.id in attached:
            self._count(server.id, len(attached))
            return False
        self._count(server.id, len(attached))
        if len(attached) >= self._max_volumes_per_node:
            raise ResourceExhausted(
                f"node {server.id} already has {len(attached)} volumes attached, the most it may have "
                f"(--max-volumes-per-node {self._max_volumes_per_node}); detach one first"
            )
        await self._compute.attach_volume(server.id, volume.id)
        self._count(server.id, len(attached) + 1)
        log.info("attaching volume %s to node %s", volume.id, server.id)
        return True

    def _count(self, node_id: str, attached: int) -> None:
        """Record how many volumes a node has attached (for the node-near-its-limit alert)."""
        if self._metrics is not None:
            self._attached[node_id] = max(0, attached)
            self._metrics.node_attachments.labels(node_id).set(self._attached[node_id])

    async def _publish_context(self, volume: Volume, node_id: str) -> dict[str, str]:
        """The device Compute reported (a hint only: the node finds the disk by its serial) and the size."""
        context = {SIZE_GIB_KEY: str(volume.size_gib)}
        # The volume's own attachment entry names the device; ask Compute only when it does not.
        device = next((a.device for a in volume.attachments if a.server_id == node_id and a.device), None)
        if device is None:
            device = (await self._compute.get_attachment(node_id, volume.id)).device
        if device:
            context[DEVICE_PATH_KEY] = device
        return context

    async def unpublish(self, volume_id: str, node_id: str) -> None:
        """Detach from the node (all nodes when empty) and wait; gone volumes, nodes, attachments are OK."""
        if not is_storage_id(volume_id) or (node_id and not is_storage_id(node_id)):
            return  # Spec: cannot be found and can be regarded as unpublished -> 0 OK.
        try:
            volume = await self._storage.get_volume(volume_id)
        except cloud.NotFound:
            return
        nodes = [node_id] if node_id else list(volume.attached_server_ids)
        detaching = frozenset([node for node in nodes if await self._detach(volume.id, node)])
        if detaching:
            await self._wait_detached(volume.id, detaching)
            for node in detaching & self._attached.keys():
                self._count(node, self._attached[node] - 1)

    async def _detach(self, volume_id: str, node_id: str) -> bool:
        """Start detaching; False when there is nothing to wait for (not attached there, no such server)."""
        try:
            await self._compute.detach_volume(node_id, volume_id)
        except cloud.NotFound:
            return False
        log.info("detaching volume %s from node %s", volume_id, node_id)
        return True

    async def _wait_detached(self, volume_id: str, nodes: frozenset[str]) -> None:
        try:
            await self._storage.wait_for_volume(
                volume_id,
                VolumeStatus.AVAILABLE,
                VolumeStatus.IN_USE,
                timeout_seconds=self._timeouts.detach_seconds,
                expect=VolumeStatus.DETACHING.value,
                done=lambda v: (
                    not nodes.intersection(v.attached_server_ids) and v.status is not VolumeStatus.DETACHING
                ),
            )
        except cloud.NotFound:
            return
