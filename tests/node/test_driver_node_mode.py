"""`csi-xloud driver --mode node` as a process: Probe, NodeGetInfo, a volume staged and published."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
from google.protobuf.wrappers_pb2 import BoolValue
from nodekit import Host, mounted_at, new_volume_id, publish_request, stage_request

from csi_xloud import TOPOLOGY_KEY
from csi_xloud._proto import csi_pb2, csi_pb2_grpc


def start_driver(host: Host, socket: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable, "-m", "csi_xloud", "driver", "--mode", "node",
            "--endpoint", f"unix://{socket}", "--node-id", "srv-1", "--availability-zone", "zone-b",
            "--device-dir", str(host.device_dir), "--kubelet-dir", str(host.kubelet),
            "--metadata-url", "http://127.0.0.1:9",
        ],
        cwd=Path(__file__).resolve().parents[2],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip


async def test_node_mode_serves_a_whole_volume_life(host: Host, short_tmp: Path) -> None:
    socket = short_tmp / "csi.sock"
    driver = start_driver(host, socket)
    try:
        deadline = time.monotonic() + 20
        while not socket.exists():
            assert driver.poll() is None, driver.communicate()
            assert time.monotonic() < deadline, "the driver never opened its socket"
            time.sleep(0.05)
        volume_id = new_volume_id()
        host.disk(64, volume_id)
        staging, target = host.staging(volume_id), host.target(volume_id)
        async with grpc.aio.insecure_channel(f"unix://{socket}") as channel:
            identity = csi_pb2_grpc.IdentityStub(channel)
            node = csi_pb2_grpc.NodeStub(channel)
            probe = await identity.Probe(csi_pb2.ProbeRequest())
            info = await node.NodeGetInfo(csi_pb2.NodeGetInfoRequest())
            await node.NodeStageVolume(stage_request(volume_id, staging))
            await node.NodePublishVolume(publish_request(volume_id, staging, target))
            (target / "hello").write_text("from a pod")
            await node.NodeUnpublishVolume(
                csi_pb2.NodeUnpublishVolumeRequest(volume_id=volume_id, target_path=str(target))
            )
            await node.NodeUnstageVolume(
                csi_pb2.NodeUnstageVolumeRequest(volume_id=volume_id, staging_target_path=str(staging))
            )
        assert probe.ready == BoolValue(value=True)
        assert (info.node_id, dict(info.accessible_topology.segments)) == ("srv-1", {TOPOLOGY_KEY: "zone-b"})
        assert not mounted_at(staging) and not target.exists()
    finally:
        if driver.poll() is None:
            os.kill(driver.pid, signal.SIGTERM)
        _, stderr = driver.communicate(timeout=30)
    assert driver.returncode == 0, stderr
    assert "NodeStageVolume" in stderr
