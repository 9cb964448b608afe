"""ControllerPublishVolume / ControllerUnpublishVolume's work: Compute API attachments, waited for.

Attachments to servers that are gone or shut off are handled as controller.deadnodes describes:
unpublishing from a gone server succeeds (its leftover Storage attachment is removed), and a
single-node volume still attached to a gone or stopped server is freed from it before it is
published elsewhere; a volume is never taken from a server that may still run.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable

from csi_xloud import DEVICE_PATH_KEY, SIZE_GIB_KEY
from csi_xloud.clock import Clock, SystemClock
from csi_xloud.cloud import errors as cloud
from csi_xloud.cloud.compute import ComputeApi
from csi_xloud.cloud.models import Attachment, Server, ServerStatus, Volume, VolumeStatus
from csi_xloud.cloud.storage import StorageApi
from csi_xloud.cloud.waiters import Rollback
from csi_xloud.controller.deadnodes import NodeState, NodeStates, StaleAttachments
from csi_xloud.controller.ids import is_storage_id
from csi_xloud.controller.volumes import Timeouts, fetch_volume
from csi_xloud.metrics import Metrics
from csi_xloud.rpc.errors import Aborted, FailedPrecondition, NotFound, ResourceExhausted
from csi_xloud.validation import CapabilityNeeds, multi_node_refusal

log = logging.getLogger(__name__)

# Compute names a server's boot disk first (vda, sda, hda, xvda); volumes it attaches later get the
# following letters, also on servers that boot from an image onto a local disk.
ROOT_DEVICE = re.compile(r"^/dev/(?:[vsh]|xv)da$")
# Where a volume rests when no attachment is on its way in or out.
SETTLED = (VolumeStatus.AVAILABLE, VolumeStatus.IN_USE)


class Attacher:
    """Attaches volumes to nodes (Compute servers) and detaches them, idempotently."""

    def __init__(
        self,
        storage: StorageApi,
        compute: ComputeApi,
        timeouts: Timeouts,
        max_volumes_per_node: int,
        metrics: Metrics | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._storage = storage
        self._compute = compute
        self._timeouts = timeouts
        self._max_volumes_per_node = max_volumes_per_node
        self._metrics = metrics
        self._attached: dict[str, int] = {}  # node id -> volumes attached, as last counted
        if metrics is not None:
            metrics.attach_limit.set(max_volumes_per_node)
        self._clock = clock or SystemClock()
        self._states = NodeStates(compute)
        self._stale = StaleAttachments(storage, self._states, timeouts.detach_seconds)
        # (volume id, server id) -> when this controller began waiting for that detach (monotonic):
        # the bound on a detach holds across the sidecar's retries.
        self._detaching_since: dict[tuple[str, str], float] = {}
        # (volume id, server id) -> the Compute request that started the detach being waited for.
        self._detach_requests: dict[tuple[str, str], str | None] = {}

    async def publish(self, volume_id: str, node_id: str, needs: CapabilityNeeds) -> dict[str, str]:
        """Attach (or find attached) and return the publish_context."""
        volume = await fetch_volume(self._storage, volume_id)
        if not (node_id in volume.attached_server_ids and volume.status is VolumeStatus.IN_USE):
            volume = await self._attach_and_wait(volume, node_id, needs)
        return await self._publish_context(volume, node_id)

    async def _attach_and_wait(self, volume: Volume, node_id: str, needs: CapabilityNeeds) -> Volume:
        """Start the attachment unless it is on its way, and wait until the volume is in use there."""
        expect: str | None = None
        started: Attachment | None = None
        server = await self._server(node_id)
        if node_id not in volume.attached_server_ids:
            self._check_placement(volume, server, needs)
            statuses: dict[str, str] = {}
            if not (needs.multi_node and volume.multiattach):
                volume, statuses = await self._free_from_dead_nodes(volume, node_id)
            self._check_single_node(volume, server, needs, statuses)
            started = await self._attach(volume, server)
            if started is not None:
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
            rollback=Rollback(
                f"the attach to node {node_id}",
                lambda v: self._attach_undone(v, node_id),
                self._action_reason(node_id, started.request_id if started else None),
            ),
            seen=volume,
        )

    async def _attach_undone(self, volume: Volume, node_id: str) -> bool:
        """Settled without the node, and the server no longer lists the volume: Compute rolled it back.

        The volume alone cannot tell: the Storage API lists only finished attachments, and a multiattach
        volume stays in-use while another node's attachment is on its way.
        """
        if node_id in volume.attached_server_ids or volume.status not in SETTLED:
            return False
        server = await self._compute.get_server(node_id)
        return volume.id not in server.attached_volume_ids

    def _action_reason(
        self, node_id: str, request_id: str | None
    ) -> Callable[[Volume], Awaitable[str | None]] | None:
        """Reads why the Compute request failed from its instance action, when we know the request."""
        if request_id is None:
            return None
        return lambda _volume: self._compute.action_failure(node_id, request_id)

    async def _server(self, node_id: str) -> Server:
        if not is_storage_id(node_id):
            raise NotFound(f"node_id {node_id!r} does not name a server")
        try:
            return await self._compute.get_server(node_id)
        except cloud.NotFound:
            raise NotFound(f"node_id {node_id}: no such server") from None

    @staticmethod
    def _check_placement(volume: Volume, server: Server, needs: CapabilityNeeds) -> None:
        """Same zone, and a multiattach volume when the access mode spans nodes."""
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

    @staticmethod
    def _check_single_node(
        volume: Volume, server: Server, needs: CapabilityNeeds, statuses: dict[str, str]
    ) -> None:
        """Attached nowhere else, unless the volume is multiattach and the modes allow it."""
        others = [s for s in dict.fromkeys(volume.attached_server_ids) if s != server.id]
        if others and not (needs.multi_node and volume.multiattach):
            named = ", ".join(f"{s} (server {statuses[s]})" if statuses.get(s) else s for s in others)
            raise FailedPrecondition(
                f"volume {volume.id} is already published to node {named} and is single-node; it is "
                "detached by itself only from a node whose server is deleted or shut off"
            )

    async def _free_from_dead_nodes(self, volume: Volume, node_id: str) -> tuple[Volume, dict[str, str]]:
        """Detach from other nodes whose servers are gone or stopped; the statuses of the live others."""
        live: dict[str, str] = {}
        for other in dict.fromkeys(volume.attached_server_ids):
            if other == node_id:
                continue
            state, status = await self._states.state(other)
            if state is NodeState.GONE:
                volume = await self._stale.remove(volume, other)
            elif state is NodeState.STOPPED:
                log.warning("volume %s is attached to stopped node %s; detaching it first", volume.id, other)
                if await self._detach(volume, other):
                    await self._wait_detached(volume.id, frozenset([other]))
                volume = await fetch_volume(self._storage, volume.id)
            else:
                live[other] = status
        return volume, live

    async def _attach(self, volume: Volume, server: Server) -> Attachment | None:
        """Start the attachment, unless one is already on its way for this node (None).

        The server's own view lists its volumes, those still being attached too, so no separate
        look at its attachments is needed.
        """
        attached = server.attached_volume_ids
        if volume.id in attached:
            self._count(server.id, len(attached))
            return None
        self._count(server.id, len(attached))
        if len(attached) >= self._max_volumes_per_node:
            count = await self._data_volume_count(server)
            self._count(server.id, count)
            if count >= self._max_volumes_per_node:
                raise ResourceExhausted(
                    f"node {server.id} already has {count} volumes attached besides its boot disk, the "
                    f"most it may have (--max-volumes-per-node {self._max_volumes_per_node}, as NodeGetInfo "
                    "reports); detach one first"
                )
        attachment = await self._compute.attach_volume(server.id, volume.id)
        self._count(server.id, len(attached) + 1)
        log.debug("attaching volume %s to node %s", volume.id, server.id)
        return attachment

    def _count(self, node_id: str, attached: int) -> None:
        """Record how many volumes a node has attached (for the node-near-its-limit alert)."""
        if self._metrics is not None:
            self._attached[node_id] = max(0, attached)
            self._metrics.node_attachments.labels(node_id).set(self._attached[node_id])

    async def _data_volume_count(self, server: Server) -> int:
        """How many volumes are attached to the server, its boot disk not counted.

        NodeGetInfo's max_volumes_per_node is what the scheduler counts against: this driver's
        volumes on the node, never the boot disk. The server's own view does not say which volume
        is its boot disk, so this look at its attachments is made only when the count matters.
        """
        attachments = await self._compute.list_attachments(server.id)
        return sum(1 for a in attachments if not ROOT_DEVICE.match(a.device or ""))

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
        nodes = [node_id] if node_id else list(dict.fromkeys(volume.attached_server_ids))
        detaching = frozenset([node for node in nodes if await self._detach(volume, node)])
        if detaching:
            await self._wait_detached(volume.id, detaching)
            for node in detaching & self._attached.keys():
                self._count(node, self._attached[node] - 1)

    async def _detach(self, volume: Volume, node_id: str) -> bool:
        """Start detaching; False when there is nothing to wait for (not attached there, server gone)."""
        try:
            request_id = await self._compute.detach_volume(node_id, volume.id)
        except cloud.NotFound:
            self._detach_requests.pop((volume.id, node_id), None)  # Compute has nothing left to roll back
            waiting = await self._not_attached(volume, node_id)
        except cloud.Conflict as exc:
            waiting = await self._detach_refused(volume.id, node_id, exc)
        else:
            log.debug("detaching volume %s from node %s", volume.id, node_id)
            self._detaching_since.pop((volume.id, node_id), None)  # a new detach: its bound starts now
            self._detach_requests[(volume.id, node_id)] = request_id
            return True
        if not waiting:
            self._detaching_since.pop((volume.id, node_id), None)
        return waiting

    async def _not_attached(self, volume: Volume, node_id: str) -> bool:
        """Compute has no such attachment: done, unless the Storage API still lists one.

        A gone server's leftover attachment is removed (the server can no longer use the disk);
        with a live server the Storage API is waited for, as it may lag behind Compute.
        """
        if node_id not in volume.attached_server_ids:
            return False
        if (await self._states.state(node_id))[0] is NodeState.GONE:
            await self._stale.remove(volume, node_id)
            return False
        return True

    async def _detach_refused(self, volume_id: str, node_id: str, exc: cloud.Conflict) -> bool:
        """Compute refused the detach: one under way is waited for; otherwise say why and what to do."""
        try:
            volume = await self._storage.get_volume(volume_id)
        except cloud.NotFound:
            return False
        if volume.status is VolumeStatus.DETACHING:
            return True
        if node_id not in volume.attached_server_ids and volume.status is not VolumeStatus.RESERVED:
            return False
        if volume.status in (VolumeStatus.RESERVED, VolumeStatus.ATTACHING):
            raise Aborted(f"volume {volume_id} is {volume.raw_status}; it can be detached once that ends")
        _, status = await self._states.state(node_id)
        advice = ""
        if status == ServerStatus.ERROR:
            advice = (
                "; Compute does not detach volumes from a server in ERROR: repair the server (or reset "
                "its state) or delete it, then the detach is retried"
            )
        raise FailedPrecondition(
            f"volume {volume_id} cannot be detached from node {node_id} (server {status or 'unknown'}): "
            f"{exc.message}{advice}"
        )

    async def _wait_detached(self, volume_id: str, nodes: frozenset[str]) -> None:
        """Wait until the volume left the nodes, within detach_seconds of the first wait for it."""
        now = self._clock.monotonic()
        started = min(self._detaching_since.setdefault((volume_id, node), now) for node in nodes)
        remaining = started + self._timeouts.detach_seconds - now
        try:
            if remaining <= 0:
                raise cloud.WaitTimeout(f"volume {volume_id} outlasted its detach bound")
            await self._storage.wait_for_volume(
                volume_id,
                VolumeStatus.AVAILABLE,
                VolumeStatus.IN_USE,
                timeout_seconds=remaining,
                expect=VolumeStatus.DETACHING.value,
                done=lambda v: _detached(v, nodes),
                rollback=self._detach_rollback(volume_id, nodes),
            )
        except cloud.NotFound:
            pass
        except cloud.RolledBack:
            for node in nodes:
                self._forget_detach(volume_id, node)
            raise
        except cloud.WaitTimeout:
            stuck = await self._stuck(volume_id, nodes, started)
            if stuck is not None:
                raise stuck from None
        for node in nodes:
            self._forget_detach(volume_id, node)

    def _forget_detach(self, volume_id: str, node_id: str) -> None:
        self._detaching_since.pop((volume_id, node_id), None)
        self._detach_requests.pop((volume_id, node_id), None)

    def _detach_rollback(self, volume_id: str, nodes: frozenset[str]) -> Rollback[Volume] | None:
        """A detach Compute rolls back leaves the volume in-use, still attached to the node.

        Only detaches started by this call are judged so: a volume the Storage API still shows
        attached after Compute dropped it is waited for, as the Storage API may lag behind.
        """
        keys = [(volume_id, node) for node in nodes if (volume_id, node) in self._detach_requests]
        requests = {node: self._detach_requests[(volume, node)] for volume, node in keys}
        if not requests:
            return None

        async def undone(volume: Volume) -> bool:
            return volume.status in SETTLED and bool(requests.keys() & set(volume.attached_server_ids))

        async def reason(volume: Volume) -> str | None:
            node = next(n for n in volume.attached_server_ids if n in requests)
            request_id = requests[node]
            return None if request_id is None else await self._compute.action_failure(node, request_id)

        return Rollback(f"the detach from node(s) {', '.join(sorted(requests))}", undone, reason)

    async def _stuck(
        self, volume_id: str, nodes: frozenset[str], started: float
    ) -> FailedPrecondition | None:
        """The error for a detach past its bound (volume, servers, state, what to do); None once done."""
        try:
            volume = await self._storage.get_volume(volume_id)
        except cloud.NotFound:
            return None
        if _detached(volume, nodes):
            return None
        servers = ", ".join(sorted(nodes))
        elapsed = self._clock.monotonic() - started
        return FailedPrecondition(
            f"volume {volume_id} is still {volume.raw_status} from server {servers} after {elapsed:.0f} s "
            f"(a detach may take {self._timeouts.detach_seconds:g} s): the cloud has not finished it. "
            "Check the server's hypervisor and the Compute and Storage logs; once the server no longer "
            f"uses the disk, an admin can end the detach with `openstack volume set --state available "
            f"--detached {volume_id}`, and the next retry succeeds"
        )


def _detached(volume: Volume, nodes: frozenset[str]) -> bool:
    """Whether the volume has left every one of the nodes and no detach is under way."""
    return not nodes.intersection(volume.attached_server_ids) and volume.status is not VolumeStatus.DETACHING
