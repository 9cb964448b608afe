"""The node plugin: NodeStage against plain mkfs + mount, NodeExpand of a mounted volume, its memory.

Volumes are real: the emulator attaches each as a loop device over a sparse file, and the node plugin
runs blkid, mkfs and mount on it as root. "Plain" is `mkfs.ext4 -q DEVICE` then `mount DEVICE DIR` on
the same device once its signature is wiped, the runs of each alternating so neither is favoured
by caches.

    python -m benchmarks.node            # 1 GiB and 10 GiB, 30 rounds each; 20 volumes staged at once
    python -m benchmarks.node --quick    # 1 GiB, 1 round; 3 volumes staged at once
"""

from __future__ import annotations

import asyncio
import shutil
import time
import uuid
from pathlib import Path

import grpc

from benchmarks.common import (
    RssSampler,
    Table,
    data_root,
    lift_quotas,
    machine,
    median,
    mib,
    proc_kib,
    run_command,
    run_script,
    seconds,
    verdict,
)
from csi_xloud import GIB
from csi_xloud._proto import csi_pb2
from csi_xloud.demo.cluster import Cluster
from csi_xloud.demo.orchestrator import Orchestrator, PersistentVolume, RetryPolicy, mount_capability


def device_of(cluster: Cluster, pv: PersistentVolume) -> Path:
    assert cluster.emulator is not None
    server = cluster.emulator.servers[0]
    return (Path(server["device_dir"]) / f"virtio-{pv.volume_id[:20]}").resolve()


async def timed_stage(co: Orchestrator, pv: PersistentVolume, node: str) -> float:
    start = time.monotonic()
    await co.stage(pv, node)
    elapsed = time.monotonic() - start
    await co.unstage(pv, node)
    return elapsed


def timed_plain(device: Path, mountpoint: Path) -> float:
    """mkfs.ext4 + mount on a device that holds nothing, then unmounted and wiped again.

    Nothing reads the device before the timed commands: a wipefs first would probe it untimed and
    leave the plain run a warm device where NodeStage, going first, meets a cold one.
    """
    mountpoint.mkdir(parents=True, exist_ok=True)
    elapsed = run_command(["mkfs.ext4", "-q", str(device)])
    elapsed += run_command(["mount", str(device), str(mountpoint)])
    run_command(["umount", str(mountpoint)])
    run_command(["wipefs", "-a", str(device)])
    return elapsed


ROUNDS = 30


async def stage_vs_plain(
    cluster: Cluster, co: Orchestrator, size_gib: int, rounds: int
) -> tuple[float, float]:
    """Median NodeStage and median plain mkfs + mount, on fresh devices of one size.

    Whichever runs first in a round is slower (the device's first use), so each goes first in half
    of the rounds: an even number of rounds keeps the medians fair. Whichever goes second finds the
    device as the first left it, unmounted and wiped.
    """
    node = cluster.server_ids()[0]
    stage_times: list[float] = []
    plain_times: list[float] = []
    for i in range(rounds):
        pv = await co.provision(size_gib * GIB, mount_capability("ext4"))
        await co.attach(pv, node)
        device = device_of(cluster, pv)
        mountpoint = cluster.data_dir / "plain" / uuid.uuid4().hex
        if i % 2:
            plain_times.append(timed_plain(device, mountpoint))
            stage_times.append(await timed_stage(co, pv, node))
        else:
            stage_times.append(await timed_stage(co, pv, node))
            run_command(["wipefs", "-a", str(device)])
            plain_times.append(timed_plain(device, mountpoint))
        await co.detach(pv, node)
        await co.delete(pv)
    return median(stage_times), median(plain_times)


async def node_expand(cluster: Cluster, co: Orchestrator, fs_type: str) -> str:
    """NodeExpandVolume 10 -> 20 GiB of a mounted volume; its time, or why it failed."""
    node = cluster.server_ids()[0]
    pv = await co.provision(10 * GIB, mount_capability(fs_type))
    await co.attach(pv, node)
    await co.stage(pv, node)
    pod = str(uuid.uuid4())
    target = await co.publish(pv, node, pod)
    try:
        grown = csi_pb2.CapacityRange(required_bytes=20 * GIB)
        await co.call("ControllerExpandVolume", co.controller.ControllerExpandVolume,
                      csi_pb2.ControllerExpandVolumeRequest(
                          volume_id=pv.volume_id, capacity_range=grown, volume_capability=pv.capability))
        kubelet = co.nodes[node].kubelet
        request = csi_pb2.NodeExpandVolumeRequest(
            volume_id=pv.volume_id, volume_path=str(target),
            staging_target_path=str(kubelet.staging(pv.volume_id, pv.name, False)),
            capacity_range=grown, volume_capability=pv.capability)
        start = time.monotonic()
        try:
            answer = await co.node_stubs[node].NodeExpandVolume(request, timeout=120)
        except grpc.aio.AioRpcError as error:  # the reason is the figure here
            return f"failed: {error.code().name}: {str(error.details())[:200]}"
        elapsed = time.monotonic() - start
        return f"{elapsed * 1000:.0f} ms (capacity now {answer.capacity_bytes / GIB:.1f} GiB)"
    finally:
        await co.unpublish(pv, node, pod)
        await co.unstage(pv, node)
        await co.detach(pv, node)


async def staging_memory(cluster: Cluster, co: Orchestrator, count: int) -> tuple[int, float]:
    """Peak RSS of the node plugin (KiB) while `count` fresh volumes are staged at once, and the wall time."""
    node = cluster.server_ids()[0]
    pid = cluster.nodes[node].process.pid  # type: ignore[union-attr]
    pvs = await asyncio.gather(*(co.provision(GIB, mount_capability()) for _ in range(count)))
    await asyncio.gather(*(co.attach(pv, node) for pv in pvs))
    start = time.monotonic()
    async with RssSampler({"node": pid}, interval=0.01) as rss:
        await asyncio.gather(*(co.stage(pv, node) for pv in pvs))
    wall = time.monotonic() - start
    await asyncio.gather(*(co.unstage(pv, node) for pv in pvs))
    await asyncio.gather(*(co.detach(pv, node) for pv in pvs))
    return max(rss.peak["node"], proc_kib(pid, "VmHWM")), wall


async def main_async(quick: bool) -> None:
    root = data_root("node")
    cluster = Cluster(root, servers="node-a", op_seconds=0.05, log_level="WARNING")
    stage_rows: list[tuple[int, float, float]] = []
    expand: dict[str, str] = {}
    try:
        with cluster:
            assert cluster.emulator is not None
            await lift_quotas(cluster.emulator)
            policy = RetryPolicy(max_attempts=50, call_timeout_seconds=600.0)
            async with Orchestrator(cluster.controller_socket, cluster.node_handles, policy) as co:
                await co.wait_ready()
                node_pid = next(iter(cluster.nodes.values())).process.pid  # type: ignore[union-attr]
                await asyncio.sleep(2.0)
                idle_kib = proc_kib(node_pid, "VmRSS")
                rounds = 1 if quick else ROUNDS
                for size in (1,) if quick else (1, 10):
                    stage_rows.append((size, *await stage_vs_plain(cluster, co, size, rounds)))
                staging_kib, staging_wall = await staging_memory(cluster, co, 3 if quick else 20)
                if not quick:
                    for fs_type in ("xfs", "ext4"):
                        expand[fs_type] = await node_expand(cluster, co, fs_type)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"machine: {machine()}\n")
    table = Table("NodeStage of a fresh volume against plain mkfs.ext4 + mount (target <= 1.1x)",
                  ["size GiB", "NodeStage median ms", "plain median ms", "difference ms", "ratio", "target"])
    for size, stage, plain in stage_rows:
        table.add(size, f"{stage * 1000:.1f}", f"{plain * 1000:.1f}", f"{(stage - plain) * 1000:.1f}",
                  f"{stage / plain:.2f}", verdict(stage <= 1.1 * plain))
    table.print()
    table = Table("Node plugin memory (target <= 60 MB idle)", ["state", "RSS MiB", "target"])
    table.add("idle", mib(idle_kib), verdict(idle_kib * 1024 <= 60e6))
    table.add(f"staging {3 if quick else 20} fresh volumes at once ({seconds(staging_wall)} s)",
              mib(staging_kib), "-")
    table.print()
    if expand:
        table = Table("NodeExpandVolume 10 -> 20 GiB, mounted", ["filesystem", "result"])
        for fs_type, result in expand.items():
            table.add(fs_type, result)
        table.print()


if __name__ == "__main__":
    run_script(__doc__, main_async, "one small round, for the smoke test")
