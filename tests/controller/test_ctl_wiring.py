"""The controller as the CLI builds it: `csi-xloud driver --mode controller` on the emulator's clouds.yaml."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc

from csi_xloud.__main__ import build_controller_service
from csi_xloud._proto import csi_pb2, csi_pb2_grpc
from csi_xloud.config import DriverConfig, Endpoint, Mode
from csi_xloud.emulator.process import EmulatorProcess
from csi_xloud.metrics import Metrics
from tests.controller.harness import gib_range, mount_cap, unique


async def test_build_controller_service_reads_the_cloud_config(
    emulator: EmulatorProcess, short_tmp: Path
) -> None:
    config = DriverConfig(
        endpoint=Endpoint("unix", str(short_tmp / "csi.sock")),
        mode=Mode.CONTROLLER,
        cloud="xloud-emulator",
        cloud_config=emulator.clouds_yaml,
    )
    service = build_controller_service(config, Metrics(), {})
    try:
        assert await service.readiness() is None
    finally:
        await service.aclose()


async def test_the_driver_command_serves_the_controller(emulator: EmulatorProcess, short_tmp: Path) -> None:
    socket = short_tmp / "csi.sock"
    argv = [
        sys.executable,
        "-m",
        "csi_xloud",
        "driver",
        "--mode",
        "controller",
        "--endpoint",
        f"unix://{socket}",
        "--cloud",
        "xloud-emulator",
        "--cloud-config",
        str(emulator.clouds_yaml),
    ]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_for(socket, process)
        async with grpc.aio.insecure_channel(f"unix://{socket}") as channel:
            probe = await csi_pb2_grpc.IdentityStub(channel).Probe(csi_pb2.ProbeRequest())
            assert probe.ready.value
            stub = csi_pb2_grpc.ControllerStub(channel)
            request = csi_pb2.CreateVolumeRequest(
                name=unique("pvc"), volume_capabilities=[mount_cap()], capacity_range=gib_range(1)
            )
            volume = (await stub.CreateVolume(request)).volume
            await stub.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=volume.volume_id))
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr.decode(errors="replace")[-2000:]


def _wait_for(socket: Path, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while not socket.exists():
        assert process.poll() is None, "the driver exited early"
        assert time.monotonic() < deadline, "the driver did not open its socket"
        time.sleep(0.05)
