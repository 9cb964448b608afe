"""`csi-xloud demo`: the whole life of a volume, as Kubernetes drives it, on one machine.

It starts the emulator (two servers in one zone), a controller and a node plugin per server,
then walks volumes through provisioning, attach, format, data, snapshots, group snapshots of two
mounted volumes, clones, online expansion, backups, retype, moves between nodes and raw block
use, checking the data at every turn. It prints each step with its time and a summary, exits
non-zero on any failure, and leaves no process, mount or loop device behind.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TextIO, TypeVar

from csi_xloud import GIB
from csi_xloud._proto import csi_pb2
from csi_xloud.demo.orchestrator import (
    Orchestrator,
    PersistentVolume,
    block_capability,
    mount_capability,
)
from csi_xloud.osutil.filesystem import can_grow_mounted_ext4

if TYPE_CHECKING:  # the CLI loads this module for its flags; the cluster machinery only when run
    from csi_xloud.demo.cluster import Cluster

MIB = 1 << 20
# The emulator's group type for group snapshots (a real cloud names its own).
GROUP_SNAPSHOT_PARAMETERS = {"group-type": "consistent"}
T = TypeVar("T")


@dataclass
class StepResult:
    number: int
    title: str
    seconds: float
    ok: bool
    detail: str = ""


@dataclass
class Report:
    """Prints each step as it ends and a summary table at the end."""

    out: TextIO
    results: list[StepResult] = field(default_factory=list)

    async def step(self, title: str, action: Callable[[], Awaitable[T]]) -> T:
        number = len(self.results) + 1
        self.out.write(f"[{number:2d}] {title} ...")
        self.out.flush()
        started = time.monotonic()
        try:
            value = await action()
        except BaseException as exc:
            seconds = time.monotonic() - started
            self.results.append(StepResult(number, title, seconds, False, f"{type(exc).__name__}: {exc}"))
            self.out.write(f" FAILED after {seconds:.2f}s: {type(exc).__name__}: {exc}\n")
            raise
        seconds = time.monotonic() - started
        detail = value if isinstance(value, str) else ""
        self.results.append(StepResult(number, title, seconds, True, detail))
        self.out.write(f" ok {seconds:.2f}s{f' ({detail})' if detail else ''}\n")
        self.out.flush()
        return value

    def summary(self) -> str:
        width = max((len(r.title) for r in self.results), default=10)
        lines = [f"{'#':>3}  {'step':<{width}}  {'seconds':>8}  result", "-" * (width + 26)]
        for r in self.results:
            lines.append(f"{r.number:>3}  {r.title:<{width}}  {r.seconds:8.2f}  {'ok' if r.ok else 'FAILED'}")
        total = sum(r.seconds for r in self.results)
        passed = sum(r.ok for r in self.results)
        lines.append("-" * (width + 26))
        lines.append(f"{passed}/{len(self.results)} steps passed in {total:.1f}s")
        return "\n".join(lines)


def write_files(
    root: Path, count: int = 4, size_bytes: int = 2 * MIB, prefix: str = "file"
) -> dict[str, str]:
    """Write files of random data and return their sha256 sums, synced to the device."""
    sums = {}
    for index in range(count):
        data = os.urandom(size_bytes)
        path = root / f"{prefix}-{index}.bin"
        with path.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        sums[path.name] = hashlib.sha256(data).hexdigest()
    return sums


def verify_files(root: Path, sums: dict[str, str]) -> str:
    for name, expected in sums.items():
        actual = hashlib.sha256((root / name).read_bytes()).hexdigest()
        if actual != expected:
            raise AssertionError(f"{name}: checksum {actual[:12]} differs from {expected[:12]}")
    return f"{len(sums)} files verified"


def filesystem_bytes(path: Path) -> int:
    stats = os.statvfs(path)
    return stats.f_blocks * stats.f_frsize


class Walk:
    """The demo's story, step by step, over one orchestrator."""

    def __init__(
        self, co: Orchestrator, report: Report, node_a: str, node_b: str, fs_type: str = "ext4"
    ) -> None:
        self.fs_type = fs_type
        self.co = co
        self.report = report
        self.node_a = node_a
        self.node_b = node_b
        self.volumes: list[PersistentVolume] = []
        self.snapshots: list[str] = []
        self.group_snapshots: list[csi_pb2.VolumeGroupSnapshot] = []

    async def mount_on(self, pv: PersistentVolume, node: str) -> tuple[str, Path]:
        """Attach, stage and publish for a new pod; returns the pod uid and the mount path."""
        pod = str(uuid.uuid4())
        await self.co.attach(pv, node)
        await self.co.stage(pv, node)
        return pod, await self.co.publish(pv, node, pod)

    async def release(self, pv: PersistentVolume, node: str, pod: str) -> None:
        await self.co.unpublish(pv, node, pod)
        await self.co.unstage(pv, node)
        await self.co.detach(pv, node)

    async def provision(
        self,
        size_gib: int,
        capability: csi_pb2.VolumeCapability | None = None,
        source: csi_pb2.VolumeContentSource | None = None,
    ) -> PersistentVolume:
        """A new PVC of the main volume's filesystem (or the given capability), remembered for deletion."""
        pv = await self.co.provision(
            size_gib * GIB, capability or mount_capability(self.fs_type), source=source
        )
        self.volumes.append(pv)
        return pv

    async def run(self) -> None:
        step = self.report.step
        co, a, b = self.co, self.node_a, self.node_b
        fs = self.fs_type
        pv = await step(
            f"provision a 1 GiB {fs} volume", lambda: self.provision(1, capability=mount_capability(fs))
        )
        await step("attach it to node A", lambda: co.attach(pv, a))
        await step(f"stage it on node A (mkfs.{fs}, mount)", lambda: co.stage(pv, a))
        pod = str(uuid.uuid4())
        mount = await step("publish it into a pod", lambda: co.publish(pv, a, pod))
        sums = await step("write files and record checksums", lambda: asyncio.to_thread(write_files, mount))

        snap = await step("take a snapshot", lambda: co.snapshot(pv, {"type": "snapshot"}))
        self.snapshots.append(snap.snapshot_id)
        restored = await step(
            "restore the snapshot into a new volume",
            lambda: self.provision(1, source=_snapshot_source(snap.snapshot_id)),
        )

        async def verify_copy(copy: PersistentVolume) -> str:
            copy_pod, copy_mount = await self.mount_on(copy, a)
            try:
                return await asyncio.to_thread(verify_files, copy_mount, sums)
            finally:
                await self.release(copy, a, copy_pod)

        await step("mount the restored volume and verify checksums", lambda: verify_copy(restored))
        clone = await step("clone the volume", lambda: self.provision(1, source=_volume_source(pv.volume_id)))
        await step("mount the clone and verify checksums", lambda: verify_copy(clone))
        await self.group_snapshot_steps(pv, mount, sums)

        async def expand() -> str:
            before = filesystem_bytes(mount)
            await co.expand(pv, 2 * GIB, published=(a, pod))
            after = filesystem_bytes(mount)
            if after <= before:
                raise AssertionError(f"filesystem did not grow ({before} -> {after} bytes)")
            verify_files(mount, sums)
            return f"filesystem {before / GIB:.2f} -> {after / GIB:.2f} GiB, data intact"

        await step("expand online to 2 GiB while mounted", expand)

        full = await step("take a full backup", lambda: co.snapshot(pv, {"type": "backup"}, poll_seconds=0.3))
        self.snapshots.append(full.snapshot_id)
        more = await step(
            "write more files", lambda: asyncio.to_thread(write_files, mount, 2, 2 * MIB, "later")
        )
        sums = {**sums, **more}
        incr = await step(
            "take an incremental backup",
            lambda: co.snapshot(pv, {"type": "backup", "incremental": "true"}, poll_seconds=0.3),
        )
        self.snapshots.append(incr.snapshot_id)
        from_backup = await step(
            "restore the incremental backup into a new volume",
            lambda: self.provision(2, source=_snapshot_source(incr.snapshot_id)),
        )
        await step("mount the restored backup and verify checksums", lambda: verify_copy(from_backup))

        await step("retype the volume to archive while attached", lambda: co.modify(pv, {"type": "archive"}))
        await step("verify the data after the retype", lambda: asyncio.to_thread(verify_files, mount, sums))
        await step("unpublish, unstage and detach from node A", lambda: self.release(pv, a, pod))

        async def move_to_b() -> str:
            pod_b, mount_b = await self.mount_on(from_backup, b)
            try:
                return await asyncio.to_thread(verify_files, mount_b, sums)
            finally:
                await self.release(from_backup, b, pod_b)

        await step("attach the restored volume to node B and verify", move_to_b)
        await step("raw block volume round trip across nodes", self.block_round_trip)
        await step("delete every snapshot, backup and volume", self.delete_everything)

    async def group_snapshot_steps(self, pv: PersistentVolume, mount: Path, sums: dict[str, str]) -> None:
        """A second volume beside the first, both snapshotted together while mounted, both restored."""
        step, co, a = self.report.step, self.co, self.node_a
        log_pv = await step(
            "provision a second volume", lambda: self.provision(1, capability=mount_capability(self.fs_type))
        )
        log_pod, log_mount = await step(
            "attach, stage and publish it on node A beside the first", lambda: self.mount_on(log_pv, a)
        )
        try:
            log_sums = await step(
                "write files to the second volume",
                lambda: asyncio.to_thread(write_files, log_mount, 2, 2 * MIB, "log"),
            )
            group = await step(
                "snapshot both mounted volumes together (a volume group snapshot)",
                lambda: co.group_snapshot([pv, log_pv], GROUP_SNAPSHOT_PARAMETERS),
            )
            self.group_snapshots.append(group)
        finally:
            await self.release(log_pv, a, log_pod)
        expected = {pv.volume_id: sums, log_pv.volume_id: log_sums}

        async def restore_members() -> str:
            for member in group.snapshots:
                copy = await self.provision(1, source=_snapshot_source(member.snapshot_id))
                copy_pod, copy_mount = await self.mount_on(copy, a)
                try:
                    await asyncio.to_thread(verify_files, copy_mount, expected[member.source_volume_id])
                finally:
                    await self.release(copy, a, copy_pod)
            return f"{len(group.snapshots)} member snapshots restored, every file verified"

        await step("restore both member snapshots and verify checksums", restore_members)
        await asyncio.to_thread(verify_files, mount, sums)

    async def block_round_trip(self) -> str:
        pv = await self.provision(1, capability=block_capability())
        pattern = os.urandom(4 * MIB)
        pod, device = await self.mount_on(pv, self.node_b)
        try:
            await asyncio.to_thread(_write_device, device, pattern)
        finally:
            await self.release(pv, self.node_b, pod)
        pod, device = await self.mount_on(pv, self.node_a)
        try:
            read_back = await asyncio.to_thread(_read_device, device, len(pattern))
        finally:
            await self.release(pv, self.node_a, pod)
        if read_back != pattern:
            raise AssertionError("raw block data differs after moving the volume")
        return "4 MiB written on node B, read back on node A"

    async def delete_everything(self) -> str:
        # Backups and snapshots first: Cinder refuses to delete a volume that has snapshots.
        for group in reversed(self.group_snapshots):
            await self.co.delete_group_snapshot(group)
        for snapshot_id in reversed(self.snapshots):
            await self.co.delete_snapshot(snapshot_id)
        for pv in reversed(self.volumes):
            await self.co.delete(pv)
        count = (
            f"{len(self.group_snapshots)} group snapshots, {len(self.snapshots)} snapshots/backups, "
            f"{len(self.volumes)} volumes"
        )
        self.group_snapshots.clear()
        self.snapshots.clear()
        self.volumes.clear()
        return count


def _snapshot_source(snapshot_id: str) -> csi_pb2.VolumeContentSource:
    return csi_pb2.VolumeContentSource(
        snapshot=csi_pb2.VolumeContentSource.SnapshotSource(snapshot_id=snapshot_id)
    )


def _volume_source(volume_id: str) -> csi_pb2.VolumeContentSource:
    return csi_pb2.VolumeContentSource(volume=csi_pb2.VolumeContentSource.VolumeSource(volume_id=volume_id))


def _write_device(device: Path, data: bytes) -> None:
    fd = os.open(device, os.O_WRONLY)
    try:
        os.pwrite(fd, data, 0)
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_device(device: Path, length: int) -> bytes:
    fd = os.open(device, os.O_RDONLY)
    try:
        return os.pread(fd, length, 0)
    finally:
        os.close(fd)


async def walk(cluster: Cluster, report: Report, fs_type: str) -> None:
    node_a, node_b = cluster.server_ids()[:2]
    async with Orchestrator(cluster.controller_socket, cluster.node_handles) as co:
        await report.step("wait for the driver to be ready", co.wait_ready)
        await Walk(co, report, node_a, node_b, fs_type).run()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir", type=Path, help="where the emulator keeps its data (default: a temporary folder)"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the emulator's data folder for a look afterwards"
    )
    parser.add_argument(
        "--op-seconds", type=float, default=0.2, help="how long the emulated cloud takes per operation"
    )
    parser.add_argument(
        "--fs-type",
        choices=["ext4", "xfs"],
        help="filesystem of the main volume (default ext4; xfs where a mounted ext4 cannot be grown here)",
    )


def run(args: argparse.Namespace, out: TextIO) -> int:
    """Run the walk; returns 0 when every step passed."""
    from csi_xloud.demo.cluster import Cluster

    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="csi-xloud-demo-"))
    report = Report(out)
    out.write(f"csi-xloud demo: emulator and driver under {data_dir}\n")
    fs_type = args.fs_type or ("ext4" if can_grow_mounted_ext4() else "xfs")
    if args.fs_type is None and fs_type == "xfs":
        out.write(
            "note: this process lacks CAP_SYS_RESOURCE, which the kernel wants for growing a mounted ext4;\n"
        )
        out.write("      the main volume uses xfs so the online expansion step can run\n")
    cluster = Cluster(data_dir, op_seconds=args.op_seconds)
    failed = False
    try:
        asyncio.run(_main(cluster, report, fs_type))
    except KeyboardInterrupt:
        out.write("\ninterrupted; cleaning up\n")
        failed = True
    except Exception:
        failed = True
    finally:
        cluster.close()
        out.write("\n" + report.summary() + "\n")
        if args.keep:
            out.write(f"kept the data in {data_dir}\n")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)
    failed = failed or not all(r.ok for r in report.results)
    return 1 if failed else 0


async def _main(cluster: Cluster, report: Report, fs_type: str) -> None:
    async def start() -> str:
        await asyncio.to_thread(cluster.start)
        return f"{len(cluster.node_handles)} nodes"

    await report.step("start the emulator, a controller and two node plugins", start)
    await walk(cluster, report, fs_type)
