"""A stand-in for Kubernetes: drives the CSI sockets the way the sidecars and the kubelet do.

Same calls in the same order, the kubelet's path layout under a kubelet folder, and the
sidecars' habit of retrying ABORTED, UNAVAILABLE and DEADLINE_EXCEEDED with a growing
back-off. The demo and the end-to-end tests use it; nothing in the driver depends on it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import grpc

from csi_xloud import DRIVER_NAME, TOPOLOGY_KEY
from csi_xloud._proto import csi_pb2, csi_pb2_grpc

log = logging.getLogger(__name__)

T = TypeVar("T")
RETRYABLE = frozenset(
    {grpc.StatusCode.ABORTED, grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}
)
Mode = csi_pb2.VolumeCapability.AccessMode


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """The sidecars' exponential back-off, scaled down so a demo does not wait for nothing."""

    first_delay_seconds: float = 0.1
    factor: float = 2.0
    max_delay_seconds: float = 2.0
    max_attempts: int = 30
    call_timeout_seconds: float = 120.0


def mount_capability(fs_type: str = "ext4", mode: int = Mode.SINGLE_NODE_WRITER) -> csi_pb2.VolumeCapability:
    return csi_pb2.VolumeCapability(
        mount=csi_pb2.VolumeCapability.MountVolume(fs_type=fs_type),
        access_mode=Mode(mode=mode),  # type: ignore[arg-type]
    )


def block_capability(mode: int = Mode.SINGLE_NODE_WRITER) -> csi_pb2.VolumeCapability:
    return csi_pb2.VolumeCapability(
        block=csi_pb2.VolumeCapability.BlockVolume(),
        access_mode=Mode(mode=mode),  # type: ignore[arg-type]
    )


@dataclass(frozen=True, slots=True)
class KubeletPaths:
    """Where the kubelet asks a driver to stage and publish (the layout of Kubernetes 1.24+)."""

    root: Path

    def staging(self, volume_id: str, pv_name: str, block: bool) -> Path:
        if block:
            return self.root / "plugins/kubernetes.io/csi/volumeDevices/staging" / pv_name
        handle = hashlib.sha256(volume_id.encode()).hexdigest()
        return self.root / "plugins/kubernetes.io/csi" / DRIVER_NAME / handle / "globalmount"

    def target(self, pod_uid: str, pv_name: str, block: bool) -> Path:
        if block:
            return self.root / "plugins/kubernetes.io/csi/volumeDevices/publish" / pv_name / pod_uid
        return self.root / "pods" / pod_uid / "volumes/kubernetes.io~csi" / pv_name / "mount"


@dataclass
class NodeHandle:
    """One node plugin: its id, its socket and its kubelet folder."""

    node_id: str
    socket: Path
    kubelet: KubeletPaths
    zone: str | None = None


@dataclass
class PersistentVolume:
    """What Kubernetes keeps about a provisioned volume."""

    name: str
    volume_id: str
    capacity_bytes: int
    capability: csi_pb2.VolumeCapability
    zone: str | None
    volume_context: dict[str, str] = field(default_factory=dict)
    publish_context: dict[str, dict[str, str]] = field(default_factory=dict)  # node id -> context

    @property
    def block(self) -> bool:
        return self.capability.HasField("block")


class Orchestrator:
    """Provision, attach, stage, publish, snapshot, expand, modify, and undo, as Kubernetes would."""

    def __init__(
        self,
        controller_socket: Path,
        nodes: Mapping[str, NodeHandle],
        policy: RetryPolicy | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        retry_codes: frozenset[grpc.StatusCode] = RETRYABLE,
    ) -> None:
        self._policy = policy or RetryPolicy()
        self._sleep = sleep
        self._retry_codes = retry_codes
        # "<rpc> <code>" -> how many times a call was retried after that code.
        self.retries: Counter[str] = Counter()
        self._controller_channel = grpc.aio.insecure_channel(f"unix://{controller_socket}")
        self.controller = csi_pb2_grpc.ControllerStub(self._controller_channel)
        self.groups = csi_pb2_grpc.GroupControllerStub(self._controller_channel)
        self.controller_identity = csi_pb2_grpc.IdentityStub(self._controller_channel)
        self.nodes = dict(nodes)
        self._node_channels = {
            nid: grpc.aio.insecure_channel(f"unix://{n.socket}") for nid, n in nodes.items()
        }
        self.node_stubs = {
            nid: csi_pb2_grpc.NodeStub(channel) for nid, channel in self._node_channels.items()
        }
        self.calls: dict[str, int] = {}

    async def close(self) -> None:
        await self._controller_channel.close(None)
        for channel in self._node_channels.values():
            await channel.close(None)

    async def __aenter__(self) -> Orchestrator:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def call(self, name: str, rpc: Callable[..., Awaitable[T]], request: object) -> T:
        """One CSI call, retried on the codes the sidecars retry, with their back-off."""
        delay = self._policy.first_delay_seconds
        for attempt in range(1, self._policy.max_attempts + 1):
            self.calls[name] = self.calls.get(name, 0) + 1
            try:
                return await rpc(request, timeout=self._policy.call_timeout_seconds)
            except grpc.aio.AioRpcError as error:
                if error.code() not in self._retry_codes or attempt == self._policy.max_attempts:
                    raise
                self.retries[f"{name} {error.code().name}"] += 1
                log.info("%s: %s (%s); retrying in %.2fs", name, error.code().name, error.details(), delay)
            await self._sleep(delay)
            delay = min(delay * self._policy.factor, self._policy.max_delay_seconds)
        raise AssertionError("unreachable")

    async def wait_ready(self, timeout_seconds: float = 30.0) -> None:
        """Probe every socket until it answers ready, as the liveness probe and registrar do."""
        stubs = [self.controller_identity] + [
            csi_pb2_grpc.IdentityStub(c) for c in self._node_channels.values()
        ]
        deadline = asyncio.get_running_loop().time() + timeout_seconds
        for stub in stubs:
            while True:
                try:
                    response = await stub.Probe(csi_pb2.ProbeRequest(), timeout=5)
                    if not response.HasField("ready") or response.ready.value:
                        break
                except grpc.aio.AioRpcError:
                    pass
                if asyncio.get_running_loop().time() > deadline:
                    raise TimeoutError("the driver did not become ready")
                await asyncio.sleep(0.1)

    # --- csi-provisioner -------------------------------------------------------------------

    async def provision(
        self,
        size_bytes: int,
        capability: csi_pb2.VolumeCapability,
        *,
        parameters: Mapping[str, str] | None = None,
        source: csi_pb2.VolumeContentSource | None = None,
        zone: str | None = None,
        pvc: tuple[str, str] = ("default", "data"),
        name: str | None = None,
    ) -> PersistentVolume:
        """CreateVolume as the provisioner sends it for a PVC, with --extra-create-metadata."""
        pv_name = name or f"pvc-{uuid.uuid4()}"
        params = {
            **(parameters or {}),
            "csi.storage.k8s.io/pvc/name": pvc[1],
            "csi.storage.k8s.io/pvc/namespace": pvc[0],
            "csi.storage.k8s.io/pv/name": pv_name,
        }
        request = csi_pb2.CreateVolumeRequest(
            name=pv_name,
            capacity_range=csi_pb2.CapacityRange(required_bytes=size_bytes),
            volume_capabilities=[capability],
            parameters=params,
            volume_content_source=source,
        )
        if zone:
            segment = csi_pb2.Topology(segments={TOPOLOGY_KEY: zone})
            request.accessibility_requirements.requisite.append(segment)
            request.accessibility_requirements.preferred.append(segment)
        response = await self.call("CreateVolume", self.controller.CreateVolume, request)
        volume = response.volume
        zones = [t.segments.get(TOPOLOGY_KEY) for t in volume.accessible_topology]
        return PersistentVolume(
            name=pv_name,
            volume_id=volume.volume_id,
            capacity_bytes=volume.capacity_bytes,
            capability=capability,
            zone=zones[0] if zones else None,
            volume_context=dict(volume.volume_context),
        )

    async def delete(self, pv: PersistentVolume) -> None:
        await self.call(
            "DeleteVolume", self.controller.DeleteVolume, csi_pb2.DeleteVolumeRequest(volume_id=pv.volume_id)
        )

    # --- csi-attacher --------------------------------------------------------------------

    async def attach(self, pv: PersistentVolume, node_id: str, readonly: bool = False) -> dict[str, str]:
        request = csi_pb2.ControllerPublishVolumeRequest(
            volume_id=pv.volume_id,
            node_id=node_id,
            volume_capability=pv.capability,
            readonly=readonly,
            volume_context=pv.volume_context,
        )
        response = await self.call(
            "ControllerPublishVolume", self.controller.ControllerPublishVolume, request
        )
        pv.publish_context[node_id] = dict(response.publish_context)
        return pv.publish_context[node_id]

    async def detach(self, pv: PersistentVolume, node_id: str) -> None:
        request = csi_pb2.ControllerUnpublishVolumeRequest(volume_id=pv.volume_id, node_id=node_id)
        await self.call("ControllerUnpublishVolume", self.controller.ControllerUnpublishVolume, request)
        pv.publish_context.pop(node_id, None)

    # --- kubelet ---------------------------------------------------------------------------

    async def stage(self, pv: PersistentVolume, node_id: str) -> Path:
        node = self.nodes[node_id]
        staging = node.kubelet.staging(pv.volume_id, pv.name, pv.block)
        staging.mkdir(parents=True, exist_ok=True)  # the kubelet makes the staging folder
        request = csi_pb2.NodeStageVolumeRequest(
            volume_id=pv.volume_id,
            publish_context=pv.publish_context.get(node_id, {}),
            staging_target_path=str(staging),
            volume_capability=pv.capability,
            volume_context=pv.volume_context,
        )
        await self.call("NodeStageVolume", self.node_stubs[node_id].NodeStageVolume, request)
        return staging

    async def unstage(self, pv: PersistentVolume, node_id: str) -> None:
        staging = self.nodes[node_id].kubelet.staging(pv.volume_id, pv.name, pv.block)
        request = csi_pb2.NodeUnstageVolumeRequest(volume_id=pv.volume_id, staging_target_path=str(staging))
        await self.call("NodeUnstageVolume", self.node_stubs[node_id].NodeUnstageVolume, request)

    async def publish(self, pv: PersistentVolume, node_id: str, pod_uid: str, readonly: bool = False) -> Path:
        node = self.nodes[node_id]
        target = node.kubelet.target(pod_uid, pv.name, pv.block)
        target.parent.mkdir(
            parents=True, exist_ok=True
        )  # the kubelet makes the parent; the driver the target
        request = csi_pb2.NodePublishVolumeRequest(
            volume_id=pv.volume_id,
            publish_context=pv.publish_context.get(node_id, {}),
            staging_target_path=str(node.kubelet.staging(pv.volume_id, pv.name, pv.block)),
            target_path=str(target),
            volume_capability=pv.capability,
            readonly=readonly,
            volume_context={
                **pv.volume_context,
                "csi.storage.k8s.io/pod.uid": pod_uid,
                "csi.storage.k8s.io/ephemeral": "false",
            },
        )
        await self.call("NodePublishVolume", self.node_stubs[node_id].NodePublishVolume, request)
        return target

    async def unpublish(self, pv: PersistentVolume, node_id: str, pod_uid: str) -> None:
        target = self.nodes[node_id].kubelet.target(pod_uid, pv.name, pv.block)
        request = csi_pb2.NodeUnpublishVolumeRequest(volume_id=pv.volume_id, target_path=str(target))
        await self.call("NodeUnpublishVolume", self.node_stubs[node_id].NodeUnpublishVolume, request)

    async def volume_stats(
        self, pv: PersistentVolume, node_id: str, pod_uid: str
    ) -> csi_pb2.NodeGetVolumeStatsResponse:
        node = self.nodes[node_id]
        request = csi_pb2.NodeGetVolumeStatsRequest(
            volume_id=pv.volume_id,
            volume_path=str(node.kubelet.target(pod_uid, pv.name, pv.block)),
            staging_target_path=str(node.kubelet.staging(pv.volume_id, pv.name, pv.block)),
        )
        return await self.call("NodeGetVolumeStats", self.node_stubs[node_id].NodeGetVolumeStats, request)

    # --- csi-snapshotter -------------------------------------------------------------------

    async def snapshot(
        self,
        pv: PersistentVolume,
        parameters: Mapping[str, str] | None = None,
        name: str | None = None,
        poll_seconds: float = 0.2,
        timeout_seconds: float = 300.0,
        poll_factor: float = 1.0,
        max_poll_seconds: float = 5.0,
    ) -> csi_pb2.Snapshot:
        """CreateSnapshot, then the same call again until ready_to_use, as the snapshotter polls.

        The pause between calls starts at poll_seconds and grows by poll_factor up to max_poll_seconds.
        """
        request = csi_pb2.CreateSnapshotRequest(
            source_volume_id=pv.volume_id,
            name=name or f"snapshot-{uuid.uuid4()}",
            parameters=dict(parameters or {}),
        )
        deadline = asyncio.get_running_loop().time() + timeout_seconds
        while True:
            response = await self.call("CreateSnapshot", self.controller.CreateSnapshot, request)
            if response.snapshot.ready_to_use:
                return response.snapshot
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"snapshot {response.snapshot.snapshot_id} never became ready")
            await self._sleep(poll_seconds)
            poll_seconds = min(poll_seconds * poll_factor, max(max_poll_seconds, poll_seconds))

    async def delete_snapshot(self, snapshot_id: str) -> None:
        request = csi_pb2.DeleteSnapshotRequest(snapshot_id=snapshot_id)
        await self.call("DeleteSnapshot", self.controller.DeleteSnapshot, request)

    async def group_snapshot(
        self,
        pvs: Sequence[PersistentVolume],
        parameters: Mapping[str, str] | None = None,
        name: str | None = None,
        poll_seconds: float = 0.2,
        timeout_seconds: float = 300.0,
    ) -> csi_pb2.VolumeGroupSnapshot:
        """CreateVolumeGroupSnapshot, again until ready_to_use, as csi-snapshotter does."""
        request = csi_pb2.CreateVolumeGroupSnapshotRequest(
            name=name or f"groupsnapshot-{uuid.uuid4()}",
            source_volume_ids=[pv.volume_id for pv in pvs],
            parameters=dict(parameters or {}),
        )
        deadline = asyncio.get_running_loop().time() + timeout_seconds
        while True:
            response = await self.call(
                "CreateVolumeGroupSnapshot", self.groups.CreateVolumeGroupSnapshot, request
            )
            if response.group_snapshot.ready_to_use:
                return response.group_snapshot
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(
                    f"group snapshot {response.group_snapshot.group_snapshot_id} never became ready"
                )
            await self._sleep(poll_seconds)

    async def delete_group_snapshot(self, group: csi_pb2.VolumeGroupSnapshot) -> None:
        """DeleteVolumeGroupSnapshot with the member snapshot ids, as the snapshotter sends them."""
        request = csi_pb2.DeleteVolumeGroupSnapshotRequest(
            group_snapshot_id=group.group_snapshot_id, snapshot_ids=[s.snapshot_id for s in group.snapshots]
        )
        await self.call("DeleteVolumeGroupSnapshot", self.groups.DeleteVolumeGroupSnapshot, request)

    # --- csi-resizer and the kubelet's part of expansion --------------------------------------

    async def expand(
        self, pv: PersistentVolume, new_size_bytes: int, published: tuple[str, str] | None
    ) -> int:
        """ControllerExpandVolume, then NodeExpandVolume on the node where it is published if asked."""
        request = csi_pb2.ControllerExpandVolumeRequest(
            volume_id=pv.volume_id,
            capacity_range=csi_pb2.CapacityRange(required_bytes=new_size_bytes),
            volume_capability=pv.capability,
        )
        response = await self.call("ControllerExpandVolume", self.controller.ControllerExpandVolume, request)
        pv.capacity_bytes = response.capacity_bytes
        if response.node_expansion_required and published is not None:
            node_id, pod_uid = published
            kubelet = self.nodes[node_id].kubelet
            node_request = csi_pb2.NodeExpandVolumeRequest(
                volume_id=pv.volume_id,
                volume_path=str(kubelet.target(pod_uid, pv.name, pv.block)),
                staging_target_path=str(kubelet.staging(pv.volume_id, pv.name, pv.block)),
                capacity_range=csi_pb2.CapacityRange(required_bytes=new_size_bytes),
                volume_capability=pv.capability,
            )
            node_response = await self.call(
                "NodeExpandVolume", self.node_stubs[node_id].NodeExpandVolume, node_request
            )
            return node_response.capacity_bytes or response.capacity_bytes
        return response.capacity_bytes

    async def modify(self, pv: PersistentVolume, mutable_parameters: Mapping[str, str]) -> None:
        """ControllerModifyVolume, as the resizer sends it for a new VolumeAttributesClass."""
        request = csi_pb2.ControllerModifyVolumeRequest(
            volume_id=pv.volume_id, mutable_parameters=dict(mutable_parameters)
        )
        await self.call("ControllerModifyVolume", self.controller.ControllerModifyVolume, request)
