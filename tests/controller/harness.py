"""The controller under test: a ControllerService on a real CsiServer unix socket, over an emulator.

Shared by tests/controller and tests/conformance. One emulator serves a whole session (its
start costs a second); every test gets its own server, socket, cloud client and channel, and
leaves the cloud empty behind it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import grpc
import httpx

from csi_xloud import GIB, TOPOLOGY_KEY
from csi_xloud._proto import csi_pb2, csi_pb2_grpc
from csi_xloud.cloud import errors as cloud_errors
from csi_xloud.cloud.client import CloudClient
from csi_xloud.cloud.models import BackupStatus
from csi_xloud.cloud.settings import load_cloud_settings
from csi_xloud.config import Endpoint
from csi_xloud.controller.service import ControllerService
from csi_xloud.controller.volumes import Timeouts
from csi_xloud.emulator.process import EmulatorProcess
from csi_xloud.inflight import InFlight
from csi_xloud.metrics import Metrics
from csi_xloud.rpc.interceptors import CallInterceptor
from csi_xloud.rpc.server import CsiServer

OP_SECONDS = 0.05
SERVERS = "node-a,node-b,node-c@zone-b"
TEST_TIMEOUTS = Timeouts(
    create_seconds=20,
    delete_seconds=20,
    attach_seconds=20,
    detach_seconds=20,
    expand_seconds=20,
    retype_seconds=20,
    stuck_seconds=60,
)
R = TypeVar("R")
# Volume statuses the Storage API deletes from.
DELETABLE = frozenset({"available", "error", "error_extending", "error_restoring", "error_managing"})

AccessMode = csi_pb2.VolumeCapability.AccessMode


def mount_cap(mode: int = AccessMode.SINGLE_NODE_WRITER, fs_type: str = "ext4") -> csi_pb2.VolumeCapability:
    return csi_pb2.VolumeCapability(
        mount=csi_pb2.VolumeCapability.MountVolume(fs_type=fs_type), access_mode=AccessMode(mode=mode)
    )


def block_cap(mode: int = AccessMode.SINGLE_NODE_WRITER) -> csi_pb2.VolumeCapability:
    return csi_pb2.VolumeCapability(
        block=csi_pb2.VolumeCapability.BlockVolume(), access_mode=AccessMode(mode=mode)
    )


def gib_range(required_gib: int, limit_gib: int = 0) -> csi_pb2.CapacityRange:
    return csi_pb2.CapacityRange(required_bytes=required_gib * GIB, limit_bytes=limit_gib * GIB)


def zone_requirement(*preferred: str, requisite: tuple[str, ...] = ()) -> csi_pb2.TopologyRequirement:
    return csi_pb2.TopologyRequirement(
        preferred=[csi_pb2.Topology(segments={TOPOLOGY_KEY: z}) for z in preferred],
        requisite=[csi_pb2.Topology(segments={TOPOLOGY_KEY: z}) for z in requisite],
    )


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def start_emulator(data_dir: Path) -> EmulatorProcess:
    emulator = EmulatorProcess(data_dir, servers=SERVERS, op_seconds=OP_SECONDS)
    emulator.start()
    return emulator


class AdminApi:
    """Admin calls the client does not make (quotas, status resets), over plain HTTP with the admin cloud."""

    def __init__(self, admin: CloudClient) -> None:
        self._admin = admin
        self._http = httpx.AsyncClient(timeout=10)

    async def _url(self, path: str) -> str:
        return f"{(await self._admin.auth.endpoint('volume')).rstrip('/')}/{path}"

    async def _headers(self) -> dict[str, str]:
        return {"X-Auth-Token": await self._admin.auth.token() or "", "OpenStack-API-Version": "volume 3.50"}

    async def set_quota(self, **limits: int) -> None:
        project = await self._admin.auth.project_id()
        response = await self._http.put(
            await self._url(f"os-quota-sets/{project}"),
            json={"quota_set": limits},
            headers=await self._headers(),
        )
        response.raise_for_status()

    async def reset_status(self, volume_id: str, status: str) -> None:
        response = await self._http.post(
            await self._url(f"volumes/{volume_id}/action"),
            json={"os-reset_status": {"status": status}},
            headers=await self._headers(),
        )
        response.raise_for_status()

    async def create_type(self, name: str, extra_specs: dict[str, str]) -> str:
        response = await self._http.post(
            await self._url("types"),
            json={"volume_type": {"name": name, "extra_specs": extra_specs}},
            headers=await self._headers(),
        )
        response.raise_for_status()
        return str(response.json()["volume_type"]["id"])

    async def delete_type(self, type_id: str) -> None:
        response = await self._http.delete(await self._url(f"types/{type_id}"), headers=await self._headers())
        response.raise_for_status()

    async def reset_snapshot_status(self, snapshot_id: str, status: str) -> None:
        response = await self._http.post(
            await self._url(f"snapshots/{snapshot_id}/action"),
            json={"os-reset_status": {"status": status}},
            headers=await self._headers(),
        )
        response.raise_for_status()

    async def aclose(self) -> None:
        await self._http.aclose()


@dataclass
class Harness:
    """What a test talks to: the CSI stub, the emulator, and direct cloud access for checking."""

    stub: csi_pb2_grpc.ControllerStub
    emulator: EmulatorProcess
    cloud: CloudClient
    admin: AdminApi
    service: ControllerService
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    groups: csi_pb2_grpc.GroupControllerStub | None = None

    def node(self, name: str) -> str:
        return str(self.nodes[name]["id"])

    async def retry(self, call: Callable[[], Awaitable[R]], attempts: int = 400) -> R:
        """Call as a sidecar does: ABORTED (another call busy on the same key) is retried after a pause."""
        for attempt in range(attempts):
            try:
                return await call()
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.ABORTED or attempt == attempts - 1:
                    raise
                await asyncio.sleep(0.02)
        raise AssertionError("not reached")

    async def create_volume(
        self, name: str | None = None, size_gib: int = 1, **fields: Any
    ) -> csi_pb2.Volume:
        fields.setdefault("volume_capabilities", [mount_cap()])
        request = csi_pb2.CreateVolumeRequest(
            name=name or unique("pvc"), capacity_range=gib_range(size_gib), **fields
        )
        response = await self.stub.CreateVolume(request)
        return response.volume

    async def publish(
        self, volume_id: str, node: str, cap: csi_pb2.VolumeCapability | None = None
    ) -> dict[str, str]:
        response = await self.stub.ControllerPublishVolume(
            csi_pb2.ControllerPublishVolumeRequest(
                volume_id=volume_id, node_id=self.node(node), volume_capability=cap or mount_cap()
            )
        )
        return dict(response.publish_context)

    async def snapshot(self, volume_id: str, name: str | None = None, **parameters: str) -> csi_pb2.Snapshot:
        request = csi_pb2.CreateSnapshotRequest(
            source_volume_id=volume_id, name=name or unique("snap"), parameters=parameters
        )
        return (await self.stub.CreateSnapshot(request)).snapshot

    async def ready_snapshot(
        self, volume_id: str, name: str | None = None, **parameters: str
    ) -> csi_pb2.Snapshot:
        """CreateSnapshot repeated, as the snapshotter does, until ready_to_use."""
        name = name or unique("snap")
        for _ in range(400):
            snapshot = await self.snapshot(volume_id, name, **parameters)
            if snapshot.ready_to_use:
                return snapshot
            await asyncio.sleep(0.02)
        raise AssertionError(f"snapshot {name} never became ready")


async def expect_code(call: Awaitable[Any], code: grpc.StatusCode, *fragments: str) -> str:
    """Await a call that must fail with code; the message must hold every fragment. Returns the message."""
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        assert exc.code() == code, f"expected {code.name}, got {exc.code().name}: {exc.details()}"
        message = exc.details() or ""
        for fragment in fragments:
            assert fragment in message, f"{fragment!r} not in {message!r}"
        return message
    raise AssertionError(f"expected {code.name}, the call succeeded")


async def wait_gone(fetch: Callable[[], Awaitable[Any]], seconds: float = 10.0) -> None:
    """Poll until fetch raises the cloud's NotFound."""
    for _ in range(int(seconds / 0.02)):
        try:
            await fetch()
        except cloud_errors.NotFound:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("still there")


def cloud_client(emulator: EmulatorProcess, name: str = "xloud-emulator") -> CloudClient:
    return CloudClient(load_cloud_settings(name, emulator.clouds_yaml, {}), Metrics())


@asynccontextmanager
async def running_controller(
    emulator: EmulatorProcess,
    socket_dir: Path,
    now: Callable[[], datetime] | None = None,
    max_volumes_per_node: int = 25,
    timeouts: Timeouts = TEST_TIMEOUTS,
) -> AsyncIterator[Harness]:
    """A controller on a unix socket in socket_dir; on the way out the cloud is emptied."""
    cloud = cloud_client(emulator)
    admin_client = cloud_client(emulator, "xloud-emulator-admin")
    admin = AdminApi(admin_client)
    metrics = Metrics()
    service = ControllerService(cloud_client(emulator), InFlight(), timeouts, now, max_volumes_per_node)
    server = CsiServer(
        Endpoint("unix", str(socket_dir / "csi.sock")),
        [
            lambda s: csi_pb2_grpc.add_ControllerServicer_to_server(service, s),
            lambda s: csi_pb2_grpc.add_GroupControllerServicer_to_server(service.group_service(), s),
        ],
        [CallInterceptor(metrics)],
        grace_seconds=1.0,
    )
    await server.start()
    channel = grpc.aio.insecure_channel(f"unix://{socket_dir / 'csi.sock'}")
    try:
        nodes = {str(s["name"]): s for s in emulator.servers}
        groups = csi_pb2_grpc.GroupControllerStub(channel)
        yield Harness(csi_pb2_grpc.ControllerStub(channel), emulator, cloud, admin, service, nodes, groups)
    finally:
        await channel.close()
        await server.stop(0)
        await service.aclose()
        try:
            await empty_cloud(cloud, [str(s["id"]) for s in emulator.servers])
        finally:
            emulator.clear_faults()
            await admin.aclose()
            await admin_client.aclose()
            await cloud.aclose()


async def empty_cloud(cloud: CloudClient, server_ids: list[str]) -> None:
    """Detach and delete everything the test left: backups (incrementals first), snapshots, volumes."""
    storage, compute = cloud.storage, cloud.compute
    await _empty_groups(cloud)
    for server_id in server_ids:
        for attachment in await compute.list_attachments(server_id):
            await _quietly(compute.detach_volume(server_id, attachment.volume_id))
    for _ in range(200):
        backups = list((await storage.list_backups()).items)
        snapshots = list((await storage.list_snapshots()).items)
        volumes = list((await storage.list_volumes()).items)
        if not (backups or snapshots or volumes):
            return
        await _delete_round(cloud, backups, snapshots, volumes)
        await asyncio.sleep(OP_SECONDS)
    raise AssertionError("the cloud could not be emptied after the test")


async def _empty_groups(cloud: CloudClient) -> None:
    """Group snapshots (their member snapshots go with them), then groups with their volumes taken out."""
    groups = cloud.groups
    for gsnap in await groups.list_group_snapshots():
        await _quietly(groups.delete_group_snapshot(gsnap.id))
        await _quietly(groups.wait_for_group_snapshot_deleted(gsnap.id, timeout_seconds=20))
    for group in await groups.list_groups():
        inside = await groups.group_volume_ids(group.id)
        if inside:
            await _quietly(groups.wait_for_group(group.id, timeout_seconds=20))
            await _quietly(groups.update_group(group.id, remove=inside))
            await _quietly(groups.wait_for_group(group.id, timeout_seconds=20))
        await _quietly(groups.delete_group(group.id))
        await _quietly(groups.wait_for_group_deleted(group.id, timeout_seconds=20))


async def _delete_round(
    cloud: CloudClient, backups: list[Any], snapshots: list[Any], volumes: list[Any]
) -> None:
    storage = cloud.storage
    for backup in backups:
        if not backup.has_dependent_backups and backup.status in (BackupStatus.AVAILABLE, BackupStatus.ERROR):
            await _quietly(storage.delete_backup(backup.id))
    for snapshot in snapshots:
        if snapshot.raw_status in ("available", "error"):
            await _quietly(storage.delete_snapshot(snapshot.id))
    if snapshots:
        return
    for volume in volumes:
        if volume.raw_status in DELETABLE and not volume.attachments:
            await _quietly(storage.delete_volume(volume.id))


async def _quietly(call: Awaitable[None]) -> None:
    """Cleanup tolerates races with the cloud's own transitions; the loop tries again."""
    try:
        await call
    except Exception:  # retried by the caller's loop
        return


def session_emulator(tmp_root: Path) -> Iterator[EmulatorProcess]:
    emulator = start_emulator(tmp_root / "cloud")
    try:
        yield emulator
    finally:
        emulator.stop()
