"""Helpers of the node tests: loop devices over sparse files, kubelet paths, request builders."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest

from csi_xloud import DRIVER_NAME
from csi_xloud._proto import csi_pb2, csi_pb2_grpc
from csi_xloud.clock import SystemClock
from csi_xloud.config import Endpoint
from csi_xloud.inflight import InFlight
from csi_xloud.metrics import Metrics
from csi_xloud.node.service import NodeService, NodeTimeouts
from csi_xloud.osutil.blocking import BlockingCalls
from csi_xloud.osutil.devices import DeviceFinder, WaitPolicy
from csi_xloud.osutil.filesystem import Filesystems
from csi_xloud.osutil.libs import LibBlkid, LibcMount
from csi_xloud.osutil.metadata import MetadataReader
from csi_xloud.osutil.mounts import Mounter, parse_mountinfo
from csi_xloud.osutil.paths import PathGuard
from csi_xloud.osutil.runner import CommandResult, Runner
from csi_xloud.osutil.stats import Stats
from csi_xloud.rpc.interceptors import CallInterceptor
from csi_xloud.rpc.server import CsiServer

MIB = 1 << 20
AccessMode = csi_pb2.VolumeCapability.AccessMode
NODE_ID = "node-under-test"
ZONE = "zone-a"


def sh(*argv: str, stdin: bytes | None = None, ok_codes: tuple[int, ...] = (0,)) -> str:
    """Run a set-up command of a test; fail loudly with its stderr."""
    result = subprocess.run(argv, input=stdin, capture_output=True, check=False)
    if result.returncode not in ok_codes:
        raise AssertionError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.decode()}")
    return result.stdout.decode()


@dataclass
class Loop:
    """A loop device over a sparse file."""

    device: Path
    backing: Path
    rdev: int

    def grow(self, size_bytes: int) -> None:
        """Make the disk bigger, as a cloud resize does: a longer backing file, then a capacity re-read."""
        os.truncate(self.backing, size_bytes)
        sh("losetup", "-c", str(self.device))

    def checksum(self) -> str:
        digest = hashlib.sha256()
        with open(self.device, "rb") as disk:
            while chunk := disk.read(4 * MIB):
                digest.update(chunk)
        return digest.hexdigest()

    def is_ours(self) -> bool:
        """Whether the loop device is still attached to our backing file."""
        backing = Path(f"/sys/block/{self.device.name}/loop/backing_file")
        try:
            return backing.read_text().strip() == str(self.backing)
        except OSError:
            return False

    @property
    def size_bytes(self) -> int:
        return int(Path(f"/sys/dev/block/{os.major(self.rdev)}:{os.minor(self.rdev)}/size").read_text()) * 512


@dataclass
class Host:
    """A private corner of this machine for one test: disks, a by-id folder and a kubelet folder."""

    root: Path
    loops: list[Loop] = field(default_factory=list)

    @property
    def kubelet(self) -> Path:
        return self.root / "kubelet"

    @property
    def device_dir(self) -> Path:
        return self.root / "by-id"

    def disk(self, size_mib: int, volume_id: str | None = None) -> Loop:
        """A new loop device; with a volume id it also gets its virtio by-id name."""
        backing = self.root / f"disk-{len(self.loops)}.img"
        backing.touch()
        os.truncate(backing, size_mib * MIB)
        device = Path(sh("losetup", "-f", "--show", str(backing)).strip())
        loop = Loop(device, backing, os.stat(device).st_rdev)
        self.loops.append(loop)
        if volume_id is not None:
            self.link(volume_id, device)
        return loop

    def link(self, volume_id: str, device: Path, name: str = "virtio-{id20}") -> Path:
        link = self.device_dir / name.format(id20=volume_id[:20], id=volume_id)
        link.symlink_to(device)
        return link

    def staging(self, volume_id: str, block: bool = False) -> Path:
        """The kubelet's staging folder for a volume (the kubelet makes it before NodeStageVolume)."""
        if block:
            path = self.kubelet / "plugins/kubernetes.io/csi/volumeDevices/staging" / volume_id
        else:
            handle = hashlib.sha256(volume_id.encode()).hexdigest()
            path = self.kubelet / "plugins/kubernetes.io/csi" / DRIVER_NAME / handle / "globalmount"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def target(self, volume_id: str, pod: str = "pod-1", block: bool = False) -> Path:
        """A pod's publish path; the kubelet makes its parent, the driver the path itself."""
        if block:
            path = self.kubelet / "plugins/kubernetes.io/csi/volumeDevices/publish" / volume_id / pod
        else:
            path = self.kubelet / "pods" / pod / "volumes/kubernetes.io~csi" / volume_id / "mount"
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def cleanup(self) -> None:
        """Unmount what lies under our folder or comes from our disks (deepest first), detach our disks."""
        ours = {loop.rdev for loop in self.loops}
        for _ in range(10):
            entries = parse_mountinfo(Path("/proc/self/mountinfo").read_text())
            mine = [e for e in entries if e.mount_point.is_relative_to(self.root) or e.device_number in ours]
            if not mine:
                break
            for entry in reversed(mine):
                subprocess.run(["umount", "-l", str(entry.mount_point)], capture_output=True, check=False)
        for loop in self.loops:
            if not loop.is_ours():
                continue  # detached already: the number may belong to someone else by now
            # A read-only flag set with blockdev outlives the detach and would pass to the next user.
            subprocess.run(["blockdev", "--setrw", str(loop.device)], capture_output=True, check=False)
            subprocess.run(["losetup", "-d", str(loop.device)], capture_output=True, check=False)
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class Node:
    """A node service on a real unix socket, with the commands it ran."""

    host: Host
    service: NodeService
    stub: csi_pb2_grpc.NodeStub
    commands: list[CommandResult]
    socket: Path

    def ran(self, tool: str) -> list[CommandResult]:
        return [c for c in self.commands if c.argv[0] == tool]


def build_service(
    host: Host,
    commands: list[CommandResult],
    *,
    node_id: str | None = NODE_ID,
    zone: str | None = ZONE,
    metadata_url: str = "http://127.0.0.1:9",
    config_drive_label: str = "csx-no-such-label",
    device_wait_seconds: float = 1.0,
    runner: Runner | None = None,
    device_dir: Path | None = None,
    blocking: BlockingCalls | None = None,
    by_label_dir: Path | None = None,
    in_process: bool = True,
) -> NodeService:
    """The node service as the driver builds it: with `in_process`, probes with libblkid and mounts
    with mount(2) (else runs blkid and mount, as where those libraries are missing)."""
    runner = runner or Runner(observers=[commands.append])
    blocking = blocking or BlockingCalls()
    stats = Stats(blocking=blocking)
    mounter = Mounter(runner, blocking=blocking, libc=LibcMount.load() if in_process else None)
    filesystems = Filesystems(runner, LibBlkid.load() if in_process else None)
    wait = WaitPolicy(timeout_seconds=device_wait_seconds, first_delay_seconds=0.05, max_delay_seconds=0.2)
    return NodeService(
        runner=runner,
        devices=DeviceFinder(
            runner, stats, SystemClock(), device_dir or host.device_dir, wait=wait, blocking=blocking
        ),
        filesystems=filesystems,
        mounter=mounter,
        stats=stats,
        paths=PathGuard(host.kubelet, blocking),
        metadata=MetadataReader(
            filesystems, mounter, metadata_url, label=config_drive_label,
            by_label_dir=by_label_dir or host.root / "by-label", blocking=blocking,
        ),
        inflight=InFlight(),
        node_id=node_id,
        availability_zone=zone,
        max_volumes_per_node=25,
        timeouts=NodeTimeouts(stage_size_seconds=0.3, expand_size_seconds=1.0),
        blocking=blocking,
    )


async def serve(service: NodeService, socket: Path) -> CsiServer:
    server = CsiServer(
        Endpoint("unix", str(socket)),
        [lambda s: csi_pb2_grpc.add_NodeServicer_to_server(service, s)],
        [CallInterceptor(Metrics())],
        1.0,
    )
    await server.start()
    return server


def new_volume_id() -> str:
    return str(uuid.uuid4())


def mount_capability(
    fs_type: str = "ext4", mode: int = AccessMode.SINGLE_NODE_WRITER, flags: tuple[str, ...] = ()
) -> csi_pb2.VolumeCapability:
    return csi_pb2.VolumeCapability(
        mount=csi_pb2.VolumeCapability.MountVolume(fs_type=fs_type, mount_flags=list(flags)),
        access_mode=AccessMode(mode=mode),  # type: ignore[arg-type]
    )


def block_capability(mode: int = AccessMode.SINGLE_NODE_WRITER) -> csi_pb2.VolumeCapability:
    return csi_pb2.VolumeCapability(
        block=csi_pb2.VolumeCapability.BlockVolume(),
        access_mode=AccessMode(mode=mode),  # type: ignore[arg-type]
    )


def stage_request(
    volume_id: str,
    staging: Path,
    capability: csi_pb2.VolumeCapability | None = None,
    publish_context: dict[str, str] | None = None,
) -> csi_pb2.NodeStageVolumeRequest:
    return csi_pb2.NodeStageVolumeRequest(
        volume_id=volume_id,
        staging_target_path=str(staging),
        volume_capability=capability or mount_capability(),
        publish_context=publish_context or {},
    )


def publish_request(
    volume_id: str,
    staging: Path,
    target: Path,
    capability: csi_pb2.VolumeCapability | None = None,
    readonly: bool = False,
) -> csi_pb2.NodePublishVolumeRequest:
    return csi_pb2.NodePublishVolumeRequest(
        volume_id=volume_id,
        staging_target_path=str(staging),
        target_path=str(target),
        volume_capability=capability or mount_capability(),
        readonly=readonly,
    )


async def rpc_error(call: object) -> grpc.aio.AioRpcError:
    """Await a call that must fail and return its error."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    return caught.value


def mounted_at(path: Path) -> bool:
    return any(e.mount_point == path for e in parse_mountinfo(Path("/proc/self/mountinfo").read_text()))


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
