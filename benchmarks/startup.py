"""Start-up: from starting a driver process to its first Probe answering ready, controller and node.

Each process is started several times against one emulator; the time runs from Popen to the first
Probe that answers ready (the socket is polled every 10 ms), as a liveness probe would see it.

    python -m benchmarks.startup           # 7 starts of each
    python -m benchmarks.startup --quick   # 2 starts of each
"""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

import grpc

from benchmarks.common import Table, data_root, machine, median, run_script, seconds, verdict
from csi_xloud._proto import csi_pb2, csi_pb2_grpc
from csi_xloud.demo.cluster import Cluster, DriverProcess


async def probe_ready(socket: Path, process: DriverProcess, timeout_seconds: float = 30.0) -> None:
    """Return once Probe on the socket answers ready."""
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        assert process.process is not None
        if process.process.poll() is not None:
            raise RuntimeError(f"driver exited with {process.process.returncode}; see {process.log_path}")
        if socket.exists():
            async with grpc.aio.insecure_channel(f"unix://{socket}") as channel:
                try:
                    answer = await csi_pb2_grpc.IdentityStub(channel).Probe(csi_pb2.ProbeRequest(), timeout=2)
                    if not answer.HasField("ready") or answer.ready.value:
                        return
                except grpc.aio.AioRpcError:
                    pass
        await asyncio.sleep(0.01)
    raise TimeoutError("no ready Probe")


async def time_start(process: DriverProcess) -> float:
    process.socket.unlink(missing_ok=True)
    start = time.monotonic()
    process.start()
    try:
        await probe_ready(process.socket, process)
        return time.monotonic() - start
    finally:
        process.stop()


async def main_async(quick: bool) -> None:
    starts = 2 if quick else 7
    root = data_root("startup")
    cluster = Cluster(root, servers="node-a", op_seconds=0.1, log_level="WARNING")
    results: dict[str, list[float]] = {}
    try:
        with cluster:
            assert cluster.controller is not None
            # The cluster's own processes answer first; stop them, then time fresh starts of the same argv.
            processes = {"controller": cluster.controller, "node": next(iter(cluster.nodes.values()))}
            for name, process in processes.items():
                process.stop()
                results[name] = [await time_start(process) for _ in range(starts)]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    table = Table("Start-up: process start to Probe ready (target <= 1 s)",
                  ["process", "starts", "median s", "max s", "target"])
    for name, times in results.items():
        table.add(name, len(times), seconds(median(times)), seconds(max(times)), verdict(max(times) <= 1.0))
    print(f"machine: {machine()}\n")
    table.print()


if __name__ == "__main__":
    run_script(__doc__, main_async, "two starts of each, for the smoke test")
