"""Measure the node's costs on 10 GiB sparse loop devices (a script, not a test; run as root).

    python tests/node/figures.py [--trials N]

1. NodeStageVolume of a fresh 10 GiB volume (find, probe, mkfs with lazy init, mount) against a
   plain `mkfs.ext4` + `mount` of the same kind of device.
2. NodeExpandVolume of a mounted 10 -> 20 GiB volume, ext4 and xfs (ext4 grows online only with
   CAP_SYS_RESOURCE; without it the figure reported is the refusal).
3. NodeStageVolume of an ext4 snapshot of 10 GiB restored onto a 20 GiB volume (grown before mount).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import grpc
from nodekit import (
    MIB,
    Host,
    build_service,
    mount_capability,
    new_volume_id,
    publish_request,
    serve,
    sh,
    stage_request,
)

from csi_xloud._proto import csi_pb2, csi_pb2_grpc
from csi_xloud.osutil.runner import CommandResult

GIB_MIB = 1024


async def timed(call: object) -> float:
    started = time.perf_counter()
    await call  # type: ignore[misc]
    return time.perf_counter() - started


def plain_mkfs_and_mount(host: Host) -> float:
    disk = host.disk(10 * GIB_MIB)
    folder = host.root / f"plain-{len(host.loops)}"
    folder.mkdir()
    started = time.perf_counter()
    sh("mkfs.ext4", "-q", str(disk.device))
    sh("mount", str(disk.device), str(folder))
    elapsed = time.perf_counter() - started
    sh("umount", str(folder))
    return elapsed


async def node_stage(host: Host, stub: csi_pb2_grpc.NodeStub, fs_type: str = "ext4") -> float:
    volume_id = new_volume_id()
    host.disk(10 * GIB_MIB, volume_id)
    request = stage_request(volume_id, host.staging(volume_id), mount_capability(fs_type))
    elapsed = await timed(stub.NodeStageVolume(request))
    await stub.NodeUnstageVolume(
        csi_pb2.NodeUnstageVolumeRequest(volume_id=volume_id, staging_target_path=request.staging_target_path)
    )
    return elapsed


async def node_expand(host: Host, stub: csi_pb2_grpc.NodeStub, fs_type: str) -> str:
    volume_id = new_volume_id()
    disk = host.disk(10 * GIB_MIB, volume_id)
    staging, target = host.staging(volume_id), host.target(volume_id)
    capability = mount_capability(fs_type)
    await stub.NodeStageVolume(stage_request(volume_id, staging, capability))
    await stub.NodePublishVolume(publish_request(volume_id, staging, target, capability))
    (target / "data").write_bytes(b"x" * MIB)
    disk.grow(20 * GIB_MIB * MIB)
    request = csi_pb2.NodeExpandVolumeRequest(
        volume_id=volume_id,
        volume_path=str(target),
        capacity_range=csi_pb2.CapacityRange(required_bytes=20 * GIB_MIB * MIB),
        volume_capability=capability,
    )
    try:
        elapsed = await timed(stub.NodeExpandVolume(request))
    except grpc.aio.AioRpcError as exc:
        return f"refused: {exc.code().name}: {exc.details()}"
    return f"{elapsed * 1000:.0f} ms"


async def restored_stage(host: Host, stub: csi_pb2_grpc.NodeStub) -> float:
    volume_id = new_volume_id()
    disk = host.disk(10 * GIB_MIB, volume_id)
    sh("mkfs.ext4", "-q", str(disk.device))
    disk.grow(20 * GIB_MIB * MIB)
    return await timed(stub.NodeStageVolume(stage_request(volume_id, host.staging(volume_id))))


async def main(trials: int) -> None:
    host = Host(Path(tempfile.mkdtemp(prefix="csx-figures-")))
    host.kubelet.mkdir()
    host.device_dir.mkdir()
    commands: list[CommandResult] = []
    socket = host.root / "node.sock"
    server = await serve(build_service(host, commands, device_wait_seconds=5.0), socket)
    try:
        async with grpc.aio.insecure_channel(f"unix://{socket}") as channel:
            stub = csi_pb2_grpc.NodeStub(channel)
            plain = [plain_mkfs_and_mount(host) for _ in range(trials)]
            staged = [await node_stage(host, stub) for _ in range(trials)]
            staged_xfs = [await node_stage(host, stub, "xfs") for _ in range(trials)]
            p, s, x = statistics.median(plain), statistics.median(staged), statistics.median(staged_xfs)
            print(f"plain mkfs.ext4 + mount, 10 GiB:   median {p * 1000:.0f} ms  ({trials} trials)")
            print(f"NodeStageVolume ext4, 10 GiB:     median {s * 1000:.0f} ms  (ratio {s / p:.2f})")
            print(f"NodeStageVolume xfs, 10 GiB:      median {x * 1000:.0f} ms")
            for fs_type in ("ext4", "xfs"):
                print(f"NodeExpandVolume {fs_type} 10 -> 20 GiB: {await node_expand(host, stub, fs_type)}")
            restored = await restored_stage(host, stub)
            print(f"NodeStageVolume ext4 10 GiB fs on a 20 GiB disk (grows it): {restored * 1000:.0f} ms")
    finally:
        await server.stop(0)
        host.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=3)
    asyncio.run(main(parser.parse_args().trials))
