"""What the fault, load and bad-input tests share: an installation with knobs, a census of the cloud,
an in-process controller with short timeouts, and an orchestrator that retries as persistently as the
real sidecars do.

The benchmark (benchmarks/faults.py) imports this module too, so the CI-sized tests and the full-size
run exercise the same code.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import grpc
import httpx
import yaml

from csi_xloud._proto import csi_pb2_grpc
from csi_xloud.cloud.client import CloudClient
from csi_xloud.cloud.models import VolumeStatus
from csi_xloud.cloud.settings import load_cloud_settings
from csi_xloud.config import Endpoint
from csi_xloud.controller.service import ControllerService
from csi_xloud.controller.volumes import Timeouts
from csi_xloud.demo.cluster import Cluster, mounts_below
from csi_xloud.demo.orchestrator import NodeHandle, Orchestrator, RetryPolicy
from csi_xloud.emulator.process import EmulatorProcess, free_port, loop_devices_under
from csi_xloud.inflight import InFlight
from csi_xloud.metrics import Metrics
from csi_xloud.rpc.interceptors import CallInterceptor
from csi_xloud.rpc.server import CsiServer

T = TypeVar("T")
MEMBER_CLOUD = "xloud-emulator"
ADMIN_CLOUD = "xloud-emulator-admin"
# Every request the emulator counts that changes something (stats keys are "METHOD /template").
MUTATING_METHODS = ("POST", "PUT", "PATCH", "DELETE")
TOKEN_PATH = "POST /identity/v3/auth/tokens"
# Codes the real sidecars and kubelet come back with. csi-provisioner and the kubelet retry every
# failure with back-off (a "final" error only stops tracking); the Orchestrator retries only the three
# "in progress" codes, so the fault tests use this wider set where the cloud's 500 becomes INTERNAL.
PERSISTENT_RETRY = frozenset(
    {
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.INTERNAL,
    }
)


# -- counting what the cloud holds ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Census:
    """Every volume, snapshot, backup and attachment the emulator holds (ids; attachments as pairs)."""

    volumes: tuple[str, ...]
    snapshots: tuple[str, ...]
    backups: tuple[str, ...]
    attachments: tuple[tuple[str, str], ...]

    @property
    def total(self) -> int:
        return len(self.volumes) + len(self.snapshots) + len(self.backups) + len(self.attachments)

    def __str__(self) -> str:
        return (
            f"{len(self.volumes)} volumes, {len(self.snapshots)} snapshots, "
            f"{len(self.backups)} backups, {len(self.attachments)} attachments"
        )


def admin_client(emulator: EmulatorProcess) -> CloudClient:
    return CloudClient(load_cloud_settings(ADMIN_CLOUD, emulator.clouds_yaml, {}), Metrics())


def member_client(emulator: EmulatorProcess) -> CloudClient:
    return CloudClient(load_cloud_settings(MEMBER_CLOUD, emulator.clouds_yaml, {}), Metrics())


async def census(emulator: EmulatorProcess) -> Census:
    """Count at the emulator, with the admin cloud, across every project."""
    async with admin_client(emulator) as admin:
        storage = admin.storage
        volumes = await _all(
            lambda m: storage.list_volumes(limit=500, marker=m, filters={"all_tenants": "1"})
        )
        snapshots = await _all(lambda m: storage.list_snapshots(limit=500, marker=m))
        backups = await _all(lambda m: storage.list_backups(limit=500, marker=m))
        attachments = []
        for server in emulator.servers:
            for attachment in await admin.compute.list_attachments(str(server["id"])):
                attachments.append((attachment.server_id, attachment.volume_id))
    return Census(
        tuple(v.id for v in volumes),
        tuple(s.id for s in snapshots),
        tuple(b.id for b in backups),
        tuple(attachments),
    )


async def _all(fetch: Callable[[str | None], Awaitable[Any]]) -> list[Any]:
    items: list[Any] = []
    marker: str | None = None
    while True:
        page = await fetch(marker)
        items.extend(page.items)
        if not page.items or not page.next_marker:
            return items
        marker = page.next_marker


async def settled_census(emulator: EmulatorProcess, seconds: float = 10.0) -> Census:
    """The census once deletions in flight have finished (a deleting volume is still listed)."""
    deadline = time.monotonic() + seconds
    while True:
        found = await census(emulator)
        if found.total == 0 or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.1)


def mutations(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, int]:
    """Mutating API requests the cloud accepted between two /_emulator/stats answers (token requests
    excepted); one it refused (a create naming a missing volume: 404) changed nothing."""

    def accepted(stats: Mapping[str, Any]) -> dict[str, int]:
        refused = stats["refused"]
        return {key: n - refused.get(key, 0) for key, n in stats["requests"].items()}

    old, new = accepted(before), accepted(after)
    changed = {key: new[key] - old.get(key, 0) for key in new if new[key] != old.get(key, 0)}
    return {k: n for k, n in changed.items() if k.startswith(MUTATING_METHODS) and k != TOKEN_PATH}


def requests_between(before: Mapping[str, Any], after: Mapping[str, Any], key: str) -> int:
    return int(after["requests"].get(key, 0)) - int(before["requests"].get(key, 0))


# -- an installation with knobs ------------------------------------------------------------------


@dataclass
class FaultCluster(Cluster):
    """A Cluster whose emulator takes a token lifetime and whose controller reads its own clouds.yaml.

    `cloud_extra` goes into the controller's cloud entry (api_timeout, status_code_retries, cacert...),
    so the tests can shorten the cloud client's timeouts without touching the emulator's file.
    """

    token_ttl: float = 3600.0
    cloud_extra: dict[str, Any] = field(default_factory=dict)
    controller_cloud_yaml: Path | None = None
    # label ("controller", "node-<name>") -> port of its --metrics-address, when serve_metrics is set
    serve_metrics: bool = False
    metrics_ports: dict[str, int] = field(default_factory=dict)

    def _new_emulator(self) -> EmulatorProcess:
        return EmulatorProcess(
            self.data_dir / "cloud", servers=self.servers, op_seconds=self.op_seconds, token_ttl=self.token_ttl
        )

    def _controller_flags(self) -> list[str]:
        assert self.emulator is not None
        self.controller_cloud_yaml = write_controller_clouds(
            self.emulator, self.data_dir / "controller-clouds.yaml", self.cloud_extra
        )
        flags = ["--cloud", MEMBER_CLOUD, "--cloud-config", str(self.controller_cloud_yaml)]
        return flags + self._metrics_flags("controller")

    def _node_flags(self, server: dict[str, object], kubelet: Path) -> list[str]:
        return super()._node_flags(server, kubelet) + self._metrics_flags(f"node-{server['name']}")

    def _metrics_flags(self, label: str) -> list[str]:
        if not self.serve_metrics:
            return []
        self.metrics_ports[label] = free_port()
        return ["--metrics-address", f"127.0.0.1:{self.metrics_ports[label]}"]

    def logs(self) -> dict[str, str]:
        """Every process's log: the drivers' and the emulator's."""
        texts = {p.name: p.read_text(errors="replace") for p in (self.data_dir / "logs").glob("*.log")}
        emulator_log = self.data_dir / "cloud" / "emulator.log"
        if emulator_log.exists():
            texts["emulator"] = emulator_log.read_text(errors="replace")
        return texts


def write_controller_clouds(emulator: EmulatorProcess, path: Path, extra: Mapping[str, Any]) -> Path:
    """The emulator's member cloud with extra settings, private to its owner as credentials must be."""
    document = yaml.safe_load(emulator.clouds_yaml.read_text())
    entry = dict(document["clouds"][MEMBER_CLOUD])
    entry.update(extra)
    text = yaml.safe_dump({"clouds": {MEMBER_CLOUD: entry}}, sort_keys=False)
    path.touch(mode=0o600)
    path.write_text(text)
    return path


@contextlib.asynccontextmanager
async def sidecars_through_proxy(emulator: EmulatorProcess, base: str, folder: Path) -> AsyncIterator[Sidecars]:
    """An in-process controller whose cloud calls go through the proxy at base, and sidecars for it."""
    settings = load_cloud_settings(MEMBER_CLOUD, proxied_clouds_yaml(emulator, base, folder), {})
    async with (
        controller_on_socket(emulator, folder, cloud=CloudClient(settings, Metrics())) as ctl,
        Sidecars(ctl.socket, {}, RetryPolicy(max_attempts=30)) as co,
    ):
        yield co
    await remove_everything(emulator)


def proxied_clouds_yaml(emulator: EmulatorProcess, base: str, folder: Path, api_timeout: float = 1.0) -> Path:
    """The member cloud with every endpoint through a proxy at base, and a short api_timeout."""
    entry = dict(yaml.safe_load(emulator.clouds_yaml.read_text())["clouds"][MEMBER_CLOUD])
    project = entry["auth"]["project_id"]
    entry["auth"] = {**entry["auth"], "auth_url": f"{base}/identity/v3"}
    entry.update(
        block_storage_endpoint_override=f"{base}/volume/v3/{project}",
        compute_endpoint_override=f"{base}/compute/v2.1",
        api_timeout=api_timeout,
    )
    path = folder / f"proxied-{uuid.uuid4().hex[:8]}.yaml"
    path.touch(mode=0o600)
    path.write_text(yaml.safe_dump({"clouds": {MEMBER_CLOUD: entry}}))
    return path


async def remove_everything(emulator: EmulatorProcess) -> None:
    """What a failing test left: detach, then delete every volume; then the census must be empty."""
    async with member_client(emulator) as cloud:
        for server in emulator.servers:
            for attachment in await cloud.compute.list_attachments(str(server["id"])):
                await cloud.compute.detach_volume(str(server["id"]), attachment.volume_id)
        for volume in (await cloud.storage.list_volumes()).items:
            await cloud.storage.wait_for_volume(
                volume.id, VolumeStatus.AVAILABLE, timeout_seconds=20, done=lambda v: not v.attachments
            )
            await cloud.storage.delete_volume(volume.id)
    left = await settled_census(emulator)
    assert left.total == 0, f"could not empty the cloud: {left}"


@contextlib.contextmanager
def installation(prefix: str, **options: Any) -> Iterator[FaultCluster]:
    """A FaultCluster in a fresh folder; on the way out nothing may be left mounted or attached."""
    data_dir = Path(tempfile.mkdtemp(prefix=prefix))
    cluster = FaultCluster(data_dir, **options)
    try:
        with cluster:
            yield cluster
    finally:
        leftovers = mounts_below(data_dir), loop_devices_under(data_dir)
        shutil.rmtree(data_dir, ignore_errors=True)
        assert leftovers == ([], []), f"left behind: mounts {leftovers[0]}, loop devices {leftovers[1]}"


# -- the sidecars' persistence -------------------------------------------------------------------


class Sidecars(Orchestrator):
    """The Orchestrator, retrying as the real sidecars do (every listed code), and counting retries."""

    def __init__(
        self,
        controller_socket: Path,
        nodes: Mapping[str, NodeHandle],
        policy: RetryPolicy | None = None,
        retry_codes: frozenset[grpc.StatusCode] = PERSISTENT_RETRY,
    ) -> None:
        super().__init__(controller_socket, nodes, policy, retry_codes=retry_codes)

    async def __aenter__(self) -> Sidecars:
        return self

    @property
    def retry_total(self) -> int:
        return sum(self.retries.values())


# -- an in-process controller with short timeouts ------------------------------------------------

SHORT_TIMEOUTS = Timeouts(
    create_seconds=3.0,
    delete_seconds=10.0,
    attach_seconds=10.0,
    detach_seconds=10.0,
    expand_seconds=10.0,
    retype_seconds=10.0,
    stuck_seconds=1.0,
)


@dataclass
class InProcessController:
    """A ControllerService on a real unix socket over the emulator; `stub` talks to it."""

    socket: Path
    stub: csi_pb2_grpc.ControllerStub
    service: ControllerService
    metrics: Metrics


@contextlib.asynccontextmanager
async def controller_on_socket(
    emulator: EmulatorProcess,
    socket_dir: Path,
    timeouts: Timeouts = SHORT_TIMEOUTS,
    cloud: CloudClient | None = None,
) -> AsyncIterator[InProcessController]:
    """The controller over `cloud` (default: the emulator's member cloud)."""
    metrics = Metrics()
    service = ControllerService(cloud or member_client(emulator), InFlight(), timeouts)
    socket = socket_dir / "controller.sock"
    server = CsiServer(
        Endpoint("unix", str(socket)),
        [
            lambda s: csi_pb2_grpc.add_ControllerServicer_to_server(service, s),
            lambda s: csi_pb2_grpc.add_GroupControllerServicer_to_server(service.group_service(), s),
        ],
        [CallInterceptor(metrics)],
        grace_seconds=1.0,
    )
    await server.start()
    channel = grpc.aio.insecure_channel(f"unix://{socket}")
    try:
        yield InProcessController(socket, csi_pb2_grpc.ControllerStub(channel), service, metrics)
    finally:
        await channel.close(None)
        await server.stop(0)
        await service.aclose()


# -- admin actions the driver never takes ---------------------------------------------------------


class Operator:
    """An operator's admin calls over plain HTTP: status resets of volumes and snapshots."""

    def __init__(self, emulator: EmulatorProcess) -> None:
        self._admin = admin_client(emulator)
        self._http = httpx.AsyncClient(timeout=10)

    async def __aenter__(self) -> Operator:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._http.aclose()
        await self._admin.aclose()

    async def reset(self, kind: str, resource_id: str, status: str) -> None:
        """os-reset_status on `volumes` or `snapshots`."""
        base = (await self._admin.auth.endpoint("volume")).rstrip("/")
        response = await self._http.post(
            f"{base}/{kind}/{resource_id}/action",
            json={"os-reset_status": {"status": status}},
            headers={
                "X-Auth-Token": await self._admin.auth.token() or "",
                "OpenStack-API-Version": "volume 3.50",
            },
        )
        response.raise_for_status()


async def wait_for_request(emulator: EmulatorProcess, key: str, baseline: int, seconds: float = 20.0) -> None:
    """Until the emulator has counted more than baseline requests of this key."""
    deadline = time.monotonic() + seconds
    while int(emulator.stats()["requests"].get(key, 0)) <= baseline:
        if time.monotonic() > deadline:
            raise AssertionError(f"the cloud never saw {key}")
        await asyncio.sleep(0.02)


def count(emulator: EmulatorProcess, key: str) -> int:
    return int(emulator.stats()["requests"].get(key, 0))


def is_root() -> bool:
    return os.geteuid() == 0
