"""The CSI Node service: find the disk, format only a blank one, mount, publish, expand, report health.

RPCs validate, take the per-volume guard, call the OS layer and answer. The OS layer's named
errors pass through; the interceptor maps them to gRPC codes with rpc/errors.py (status_for).
Nothing here blocks the event loop: every system call that can hang on a sick disk or mount
(stat, statvfs, the size ioctl, mountinfo, mkdir) runs in a thread with a deadline (BlockingCalls).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import stat
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from csi_xloud import DEVICE_PATH_KEY, GIB, SIZE_GIB_KEY, TOPOLOGY_KEY
from csi_xloud._proto import csi_pb2, csi_pb2_grpc
from csi_xloud.inflight import InFlight
from csi_xloud.metrics import Metrics
from csi_xloud.osutil.blocking import BlockingCalls
from csi_xloud.osutil.devices import DeviceFinder
from csi_xloud.osutil.errors import DeviceHasData, MountConflict, NotResponding, PathNotAllowed
from csi_xloud.osutil.filesystem import FILESYSTEMS, Filesystems, FsKind, Signature, fs_kind
from csi_xloud.osutil.metadata import InstanceMetadata, MetadataReader
from csi_xloud.osutil.mounts import BROKEN_MOUNT_ERRNOS, MountEntry, Mounter, check_mount_options
from csi_xloud.osutil.paths import PathGuard
from csi_xloud.osutil.runner import CommandObserver, CommandResult, Runner
from csi_xloud.osutil.stats import Stats
from csi_xloud.rpc.errors import FailedPrecondition, InvalidArgument, NotFound
from csi_xloud.rpc.types import Context
from csi_xloud.validation import READ_ONLY_MODES, AccessMode, check_capabilities, check_fs_type, require

log = logging.getLogger(__name__)
T = TypeVar("T")
U = TypeVar("U")

_NodeCap = csi_pb2.NodeServiceCapability
_NODE_CAPABILITIES = (
    _NodeCap.RPC.STAGE_UNSTAGE_VOLUME,
    _NodeCap.RPC.EXPAND_VOLUME,
    _NodeCap.RPC.GET_VOLUME_STATS,
    _NodeCap.RPC.VOLUME_CONDITION,
    _NodeCap.RPC.SINGLE_NODE_MULTI_WRITER,
)
_Usage = csi_pb2.VolumeUsage
# Tools the node cannot work without; losetup is not one of them (only the tests make loop devices).
REQUIRED_TOOLS = tuple(
    dict.fromkeys(["blkid", "mount", "umount", *(tool for fs in FILESYSTEMS.values() for tool in fs.tools)])
)


@dataclass(frozen=True, slots=True)
class Access:
    """What a volume_capability asks of the node: a raw device, or a filesystem with mount flags."""

    block: bool
    fs: FsKind | None
    mount_flags: tuple[str, ...]
    read_only: bool
    # SINGLE_NODE_SINGLE_WRITER: published at one target at a time.
    single_writer: bool = False


@dataclass(frozen=True, slots=True)
class NodeTimeouts:
    """How long the node waits for devices to appear and to show their size."""

    stage_size_seconds: float = 10.0
    expand_size_seconds: float = 60.0


class NodeService(csi_pb2_grpc.NodeServicer):
    """Node RPCs on top of the OS layer; one guard key per volume, so different volumes run in parallel."""

    def __init__(
        self,
        *,
        runner: Runner,
        devices: DeviceFinder,
        filesystems: Filesystems,
        mounter: Mounter,
        stats: Stats,
        paths: PathGuard,
        metadata: MetadataReader,
        inflight: InFlight,
        node_id: str | None,
        availability_zone: str | None,
        max_volumes_per_node: int,
        timeouts: NodeTimeouts = NodeTimeouts(),
        blocking: BlockingCalls | None = None,
    ) -> None:
        self._runner = runner
        self._devices = devices
        self._fs = filesystems
        self._mounter = mounter
        self._stats = stats
        self._paths = paths
        self._metadata = metadata
        self._inflight = inflight
        self._node_id = node_id
        self._zone = availability_zone
        self._max_volumes = max_volumes_per_node
        self._timeouts = timeouts
        self._instance: InstanceMetadata | None = None
        self._blocking = blocking or BlockingCalls()

    async def readiness(self) -> str | None:
        """None when every tool the node runs is installed, else which are missing."""
        missing = [tool for tool in REQUIRED_TOOLS if self._runner.which(tool) is None]
        return f"node tools not installed: {', '.join(missing)}" if missing else None

    # --- NodeStageVolume / NodeUnstageVolume ------------------------------------------------

    async def NodeStageVolume(
        self, request: csi_pb2.NodeStageVolumeRequest, context: Context
    ) -> csi_pb2.NodeStageVolumeResponse:
        volume_id = require(request.volume_id, "volume_id")
        raw_staging = require_path(request.staging_target_path, "staging_target_path")
        access = _access(request, "volume_capability")
        min_bytes = _attached_size_bytes(request.publish_context)
        with self._inflight.guard(("volume", volume_id)):
            # The device is looked for while the staging path is checked; a bad path is reported first.
            staging, device = await _alongside(
                self._path(raw_staging, "staging_target_path"),
                self._device(volume_id, request.publish_context, min_bytes),
            )
            with self._inflight.guard(("device", str(device))):
                if access.fs is None:
                    # A raw block volume needs no staging: NodePublishVolume binds the device itself.
                    return csi_pb2.NodeStageVolumeResponse()
                await self._stage_filesystem(device, staging, access.fs, access.mount_flags)
        return csi_pb2.NodeStageVolumeResponse()

    async def _stage_filesystem(
        self, device: Path, staging: Path, fs: FsKind, flags: tuple[str, ...]
    ) -> None:
        # Independent steps at once, so they take the time of the slowest, the probe of what the device
        # holds. The probe stays the last look at the device before mkfs: nothing after it reads or
        # writes the device until mkfs does. (A staging folder made for a volume staged already is
        # the folder it is mounted on.)
        staged_look, read_only_look, probe, target_made = await asyncio.gather(
            self._mounter.find(staging),
            self._stats.device_read_only(device),
            self._fs.probe(device),
            self._blocking.call(staging, _make_target, staging, False),
            return_exceptions=True,
        )
        staged = _outcome(staged_look)
        if staged is not None:
            # Spec: staged already with the same arguments -> 0 OK; incompatible -> ALREADY_EXISTS.
            # Growing a staged volume is NodeExpandVolume's work, so a repeat never fails on it.
            _check_staged(staged, await self._stats.rdev(device), device, fs, staging)
            return
        writable = not _outcome(read_only_look)
        found = _outcome(probe)
        _outcome(target_made)
        formatted = await self._ensure_filesystem(device, fs, found, writable)
        if not formatted and writable and fs.grow_unmounted:
            await self._grow_unmounted_if_smaller(fs, device)
        options = [*fs.mount_options, *flags, *([] if writable else ["ro"])]
        await self._mounter.mount(device, staging, fs.name, options)
        if not formatted and writable and not fs.grow_unmounted:
            await self._grow_if_smaller(fs, device, staging)

    async def _ensure_filesystem(self, device: Path, fs: FsKind, found: Signature, writable: bool) -> bool:
        """Format a blank device (True); accept the asked filesystem (False); refuse anything else."""
        if found.blank:
            if not writable:
                raise FailedPrecondition(
                    f"{device} is blank but attached read-only, so it cannot be formatted"
                )
            await self._fs.make(device, fs, found)
            return True
        if found.type != fs.name or found.partition_table is not None:
            raise DeviceHasData(
                f"{device} holds {found.describe()}, but volume_capability.mount.fs_type is {fs.name}; "
                "the device was left untouched"
            )
        return False

    async def _grow_if_smaller(self, fs: FsKind, device: Path, mount: Path) -> int:
        """Grow the mounted filesystem when its device is larger (expanded, or restored from a snapshot)."""
        device_bytes = await self._stats.device_size_bytes(device)
        if await self._stats.device_read_only(device):
            return device_bytes
        if await self._fs.size_bytes(fs, device, mount) < device_bytes:
            await self._fs.grow(fs, device, mount)
        return device_bytes

    async def _grow_unmounted_if_smaller(self, fs: FsKind, device: Path) -> None:
        """Before the first mount, grow a filesystem restored from a smaller snapshot (needs no privilege)."""
        if await self._fs.size_bytes(fs, device, None) < await self._stats.device_size_bytes(device):
            await self._fs.grow_unmounted(fs, device)

    async def NodeUnstageVolume(
        self, request: csi_pb2.NodeUnstageVolumeRequest, context: Context
    ) -> csi_pb2.NodeUnstageVolumeResponse:
        volume_id = require(request.volume_id, "volume_id")
        staging = await self._path(request.staging_target_path, "staging_target_path")
        with self._inflight.guard(("volume", volume_id)):
            # Spec: not staged (or its device already gone) -> 0 OK; unmount needs no device.
            await self._mounter.unmount(staging)
        return csi_pb2.NodeUnstageVolumeResponse()

    # --- NodePublishVolume / NodeUnpublishVolume --------------------------------------------

    async def NodePublishVolume(
        self, request: csi_pb2.NodePublishVolumeRequest, context: Context
    ) -> csi_pb2.NodePublishVolumeResponse:
        volume_id = require(request.volume_id, "volume_id")
        staging = await self._path(request.staging_target_path, "staging_target_path")
        target = await self._path(request.target_path, "target_path")
        access = _access(request, "volume_capability")
        read_only = request.readonly or access.read_only
        with self._inflight.guard(("volume", volume_id)):
            if access.block:
                source = await self._device(volume_id, request.publish_context, 0)
            elif await self._mounter.find(staging) is None:
                raise FailedPrecondition(
                    f"staging_target_path {staging} is not staged; NodeStageVolume must come first"
                )
            else:
                source = staging
            published = await self._mounter.find(target)
            if published is not None:
                # Spec: published already and compatible -> 0 OK; incompatible -> ALREADY_EXISTS.
                await self._check_published(published, source, read_only, target)
                return csi_pb2.NodePublishVolumeResponse()
            if access.single_writer:
                await self._refuse_second_target(volume_id, source, (staging, target))
            await self._blocking.call(target, _make_target, target, access.block)
            # A read-only bind of a device node stops nothing but path writes: the kernel checks the
            # mount only for files. The kubelet grants the container read-only device access ("r").
            await self._mounter.bind(source, target, read_only)
        return csi_pb2.NodePublishVolumeResponse()

    async def _check_published(self, entry: MountEntry, source: Path, read_only: bool, target: Path) -> None:
        if (entry.device_number, entry.root) != await self._mounter.bind_identity(source):
            raise MountConflict(
                f"target_path {target} already has {entry.source}{entry.root} mounted, not {source}"
            )
        if entry.read_only != read_only:
            mode = "read-only" if entry.read_only else "read-write"
            raise MountConflict(
                f"target_path {target} is already published {mode}; readonly={read_only} asked"
            )

    async def _refuse_second_target(self, volume_id: str, source: Path, own: tuple[Path, ...]) -> None:
        """Spec: a SINGLE_NODE_SINGLE_WRITER volume is published once at a time; another target is
        9 FAILED_PRECONDITION (the CO exceeded the volume's capabilities)."""
        identity = await self._mounter.bind_identity(source)
        for entry in await self._mounter.entries():
            if (entry.device_number, entry.root) == identity and entry.mount_point not in own:
                raise FailedPrecondition(
                    f"volume {volume_id} has access mode SINGLE_NODE_SINGLE_WRITER and is already published "
                    f"at {entry.mount_point}; target_path can only be published after that one is unpublished"
                )

    async def NodeUnpublishVolume(
        self, request: csi_pb2.NodeUnpublishVolumeRequest, context: Context
    ) -> csi_pb2.NodeUnpublishVolumeResponse:
        volume_id = require(request.volume_id, "volume_id")
        target = await self._path(request.target_path, "target_path")
        with self._inflight.guard(("volume", volume_id)):
            await self._mounter.unmount(target)
            # Spec: the SP removes what it created at target_path; absent -> 0 OK.
            await self._blocking.call(target, _remove_target, target)
        return csi_pb2.NodeUnpublishVolumeResponse()

    # --- NodeGetVolumeStats -----------------------------------------------------------------

    async def NodeGetVolumeStats(
        self, request: csi_pb2.NodeGetVolumeStatsRequest, context: Context
    ) -> csi_pb2.NodeGetVolumeStatsResponse:
        require(request.volume_id, "volume_id")
        try:
            return await self._volume_stats(request)
        except NotResponding as exc:
            # A mount or disk that hangs is the volume's condition to report, not a failed call.
            return _stats_response([], str(exc))

    async def _volume_stats(
        self, request: csi_pb2.NodeGetVolumeStatsRequest
    ) -> csi_pb2.NodeGetVolumeStatsResponse:
        path = await self._volume_path(request.volume_path)
        if request.staging_target_path:
            await self._path(request.staging_target_path, "staging_target_path")
        await self._blocking.call(path, _require_existing, path, "volume_path")
        entry = await self._mounter.find(path)
        if entry is None:
            return _stats_response([], f"volume_path {path} is not mounted")
        try:
            mode = (await self._blocking.call(path, os.stat, path)).st_mode
        except OSError as exc:
            if exc.errno not in BROKEN_MOUNT_ERRNOS:
                raise
            return _stats_response([], f"volume_path {path} is a broken mount: {os.strerror(exc.errno)}")
        if stat.S_ISBLK(mode):
            return await self._block_stats(path)
        return await self._fs_stats(path, entry)

    async def _block_stats(self, path: Path) -> csi_pb2.NodeGetVolumeStatsResponse:
        if await self._stats.block_dir(path) is None:
            return _stats_response([], f"the device bound at {path} is gone")
        usage = [_Usage(unit=_Usage.BYTES, total=await self._stats.device_size_bytes(path))]
        return _stats_response(usage, None)

    async def _fs_stats(self, path: Path, entry: MountEntry) -> csi_pb2.NodeGetVolumeStatsResponse:
        try:
            fs = await self._stats.fs_usage(path)
        except OSError as exc:
            return _stats_response([], f"cannot read filesystem usage at {path}: {exc.strerror}")
        usage = [
            _Usage(unit=_Usage.BYTES, total=fs.total_bytes, used=fs.used_bytes, available=fs.available_bytes),
            _Usage(
                unit=_Usage.INODES, total=fs.total_inodes, used=fs.used_inodes, available=fs.available_inodes
            ),
        ]
        return _stats_response(usage, await self._fs_problem(entry))

    async def _fs_problem(self, entry: MountEntry) -> str | None:
        """What is wrong with a mounted filesystem: its device gone, or it turned read-only on its own."""
        device = Path(entry.source)
        if not device.is_absolute():
            return None
        if not await self._blocking.call(device, device.exists):
            return f"device {device} of the filesystem is gone"
        if entry.super_read_only and not await self._stats.device_read_only(device):
            # Our read-only publishes are read-only binds; a read-only superblock on a writable
            # device means the kernel stopped writes (errors=remount-ro) or someone remounted it.
            return f"filesystem on {device} is read-only although its device is writable"
        return None

    # --- NodeExpandVolume -------------------------------------------------------------------

    async def NodeExpandVolume(
        self, request: csi_pb2.NodeExpandVolumeRequest, context: Context
    ) -> csi_pb2.NodeExpandVolumeResponse:
        volume_id = require(request.volume_id, "volume_id")
        path = await self._volume_path(request.volume_path)
        if request.staging_target_path:
            await self._path(request.staging_target_path, "staging_target_path")
        required = _required_bytes(request.capacity_range)
        with self._inflight.guard(("volume", volume_id)):
            await self._blocking.call(path, _require_existing, path, "volume_path")
            if request.volume_capability.HasField("block") or await self._blocking.call(
                path, _is_block_device, path
            ):
                # A raw block volume has nothing to grow on the node: report the device's size.
                size = await self._devices.wait_for_size(path, required, self._timeouts.expand_size_seconds)
                return csi_pb2.NodeExpandVolumeResponse(capacity_bytes=size)
            size = await self._expand_filesystem(volume_id, path, required)
        return csi_pb2.NodeExpandVolumeResponse(capacity_bytes=size)

    async def _expand_filesystem(self, volume_id: str, path: Path, required: int) -> int:
        entry = await self._mounter.find(path)
        if entry is None:
            raise NotFound(f"volume_path {path} is not a mounted volume")
        if entry.fs_type not in FILESYSTEMS:
            raise FailedPrecondition(f"volume_path {path} holds {entry.fs_type}, which cannot be grown here")
        # The volume is mounted, so its disk is here: by its by-id name, else as the mount's source.
        device = await self._devices.lookup(volume_id) or Path(entry.source)
        if await self._stats.rdev(device) != entry.device_number:
            raise FailedPrecondition(
                f"volume_path {path} is not mounted from {device}, the disk of volume {volume_id}"
            )
        await self._devices.wait_for_size(device, required, self._timeouts.expand_size_seconds)
        return await self._grow_if_smaller(fs_kind(entry.fs_type), device, path)

    # --- NodeGetCapabilities / NodeGetInfo --------------------------------------------------

    async def NodeGetCapabilities(
        self, request: csi_pb2.NodeGetCapabilitiesRequest, context: Context
    ) -> csi_pb2.NodeGetCapabilitiesResponse:
        return csi_pb2.NodeGetCapabilitiesResponse(
            capabilities=[_NodeCap(rpc=_NodeCap.RPC(type=rpc)) for rpc in _NODE_CAPABILITIES]
        )

    async def NodeGetInfo(
        self, request: csi_pb2.NodeGetInfoRequest, context: Context
    ) -> csi_pb2.NodeGetInfoResponse:
        """Instance id and zone from the flags, else the config drive or metadata service.

        max_volumes_per_node defaults to 25 (config.DEFAULT_MAX_VOLUMES_PER_NODE): every virtio-blk
        disk takes a PCI slot of the instance's 32, and the root disk, NIC, balloon, serial, RNG and
        config drive already hold about 6, so 25 data disks attach reliably with room to spare.
        """
        node_id, zone = await self._identity()
        topology = csi_pb2.Topology(segments={TOPOLOGY_KEY: zone}) if zone else None
        return csi_pb2.NodeGetInfoResponse(
            node_id=node_id, max_volumes_per_node=self._max_volumes, accessible_topology=topology
        )

    async def _identity(self) -> tuple[str, str | None]:
        if self._node_id and self._zone:
            return self._node_id, self._zone
        if self._instance is None:
            self._instance = await self._metadata.read()
        return self._node_id or self._instance.instance_id, self._zone or self._instance.availability_zone

    # --- helpers ----------------------------------------------------------------------------

    async def _path(self, raw: str, field: str) -> Path:
        return await self._paths.check(require_path(raw, field), field)

    async def _volume_path(self, raw: str) -> Path:
        """volume_path of NodeGetVolumeStats and NodeExpandVolume, which name where a volume already is.

        Spec: "volume does not exist on the specified path" is NOT_FOUND. This plugin stages and
        publishes only at absolute paths inside the kubelet folder, so a path the guard refuses
        (relative, or leading out) holds none of its volumes; only an empty one is INVALID_ARGUMENT.
        """
        try:
            return await self._path(raw, "volume_path")
        except PathNotAllowed as exc:
            raise NotFound(f"the volume does not exist on volume_path: {exc}") from None

    async def _device(self, volume_id: str, publish_context: Mapping[str, str], min_bytes: int) -> Path:
        """The volume's block device, found by id first; Nova's device_path guess only as a last resort."""
        hint = publish_context.get(DEVICE_PATH_KEY)
        if hint and not hint.startswith("/"):
            raise InvalidArgument(
                f"publish_context[{DEVICE_PATH_KEY}] must be an absolute path, got {hint!r}"
            )
        device = await self._devices.find(volume_id, Path(hint) if hint else None)
        if min_bytes:
            await self._devices.wait_for_size(device, min_bytes, self._timeouts.stage_size_seconds)
        return device


def command_recorder(metrics: Metrics) -> CommandObserver:
    """Record each host command's time and whether it exited 0 (blkid's 2 means "no filesystem")."""

    def record(result: CommandResult) -> None:
        outcome = "ok" if result.returncode == 0 else "failed"
        metrics.node_commands.labels(os.path.basename(result.argv[0]), outcome).observe(result.seconds)

    return record


_RECANCEL_SECONDS = 0.05


async def _alongside(first: Awaitable[T], second: Awaitable[U]) -> tuple[T, U]:
    """Both at once; an error of the first is the one raised, and stops the second.

    The second is cancelled again until it ends: a cancellation can be lost (asyncio.wait_for
    returns the result of a future that finished as it was cancelled), and the second may be a
    device search that would otherwise go on for its whole timeout.
    """
    later = asyncio.ensure_future(second)
    try:
        done = await first
    except BaseException:
        while not later.done():
            later.cancel()
            await asyncio.wait([later], timeout=_RECANCEL_SECONDS)
        if not later.cancelled():
            later.exception()  # retrieved, so it is not reported as lost: the first error wins
        raise
    return done, await later


def _outcome(look: T | BaseException) -> T:
    """What one of several looks made at once found; its error, raised."""
    if isinstance(look, BaseException):
        raise look
    return look


def require_path(raw: str, field: str) -> str:
    if not raw:
        raise InvalidArgument(f"{field} is required")
    return raw


def _access(request: csi_pb2.NodeStageVolumeRequest | csi_pb2.NodePublishVolumeRequest, field: str) -> Access:
    if not request.HasField("volume_capability"):
        raise InvalidArgument(f"{field} is required")
    capability = request.volume_capability
    check_capabilities([capability], field)
    read_only = capability.access_mode.mode in READ_ONLY_MODES
    single = capability.access_mode.mode == AccessMode.SINGLE_NODE_SINGLE_WRITER
    if capability.HasField("block"):
        return Access(block=True, fs=None, mount_flags=(), read_only=read_only, single_writer=single)
    fs_type = check_fs_type(capability.mount.fs_type, f"{field}.mount.fs_type")
    flags = tuple(check_mount_options(capability.mount.mount_flags))
    return Access(
        block=False, fs=fs_kind(fs_type.value), mount_flags=flags, read_only=read_only, single_writer=single
    )


def _attached_size_bytes(publish_context: Mapping[str, str]) -> int:
    """publish_context[size_gib]: the volume's size at attach time (0 when the controller left it out)."""
    raw = publish_context.get(SIZE_GIB_KEY)
    if raw is None:
        return 0
    if not raw.isdigit() or int(raw) < 1:
        raise InvalidArgument(f"publish_context[{SIZE_GIB_KEY}] must be a positive whole number, got {raw!r}")
    return int(raw) * GIB


def _required_bytes(capacity: csi_pb2.CapacityRange) -> int:
    if capacity.required_bytes < 0 or capacity.limit_bytes < 0:
        raise InvalidArgument("capacity_range must not be negative")
    if capacity.limit_bytes and capacity.required_bytes > capacity.limit_bytes:
        raise InvalidArgument("capacity_range.required_bytes is larger than capacity_range.limit_bytes")
    return capacity.required_bytes


def _check_staged(entry: MountEntry, device_number: int, device: Path, fs: FsKind, staging: Path) -> None:
    if entry.device_number != device_number:
        raise MountConflict(f"staging_target_path {staging} already has {entry.source} mounted, not {device}")
    if entry.fs_type != fs.name:
        raise MountConflict(
            f"staging_target_path {staging} is mounted as {entry.fs_type}, "
            f"but volume_capability.mount.fs_type is {fs.name}"
        )


def _make_target(target: Path, file: bool) -> None:
    """A folder for a filesystem, an empty file for a block device; the kubelet made the parent."""
    if file:
        if target.is_dir():
            raise FailedPrecondition(f"target_path {target} is a folder; a block volume needs a file there")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.touch(mode=0o600, exist_ok=True)
    else:
        target.mkdir(parents=True, exist_ok=True)


def _remove_target(target: Path) -> None:
    """Remove the mount point we made; never anything with content (rmdir, not a recursive delete)."""
    with contextlib.suppress(FileNotFoundError):
        if target.is_dir() and not target.is_symlink():
            try:
                target.rmdir()
            except OSError as exc:
                if exc.errno != errno.ENOTEMPTY:
                    raise
                raise FailedPrecondition(
                    f"target_path {target} is not empty after unmount; left in place"
                ) from exc
        else:
            target.unlink()


def _require_existing(path: Path, field: str) -> None:
    """NotFound for a missing path; a broken mount exists (its lstat fails with ENOTCONN, not ENOENT)."""
    try:
        os.lstat(path)
    except FileNotFoundError:
        raise NotFound(f"{field} {path} does not exist") from None
    except OSError as exc:
        if exc.errno not in BROKEN_MOUNT_ERRNOS:
            raise


def _is_block_device(path: Path) -> bool:
    with contextlib.suppress(OSError):
        return stat.S_ISBLK(os.stat(path).st_mode)
    return False


def _stats_response(
    usage: list[csi_pb2.VolumeUsage], problem: str | None
) -> csi_pb2.NodeGetVolumeStatsResponse:
    condition = csi_pb2.VolumeCondition(abnormal=problem is not None, message=problem or "volume is healthy")
    return csi_pb2.NodeGetVolumeStatsResponse(usage=usage, volume_condition=condition)
