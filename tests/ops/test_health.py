"""Liveness apart from readiness: a cloud outage leaves Probe green and shows in /readyz and the metrics."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import subprocess
import sys
from pathlib import Path

import grpc
import httpx
import pytest
import yaml

from csi_xloud._proto import csi_pb2, csi_pb2_grpc
from csi_xloud.cloud.client import CloudClient
from csi_xloud.cloud.settings import load_cloud_settings
from csi_xloud.emulator.process import EmulatorProcess, free_port
from csi_xloud.metrics import Metrics
from csi_xloud.rpc.health import ReadinessMonitor
from tests.ops.conftest import ROOT


async def _settled(port: int, path: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        for _ in range(200):
            with contextlib.suppress(httpx.TransportError):
                answer = await http.get(path)
                if answer.text != "not checked yet\n":
                    return answer
            await asyncio.sleep(0.1)
    raise AssertionError(f"no answer on {path}")


async def test_a_controller_without_its_cloud_stays_live_and_reports_not_ready(short_tmp: Path) -> None:
    config = short_tmp / "clouds.yaml"
    auth = {"auth_url": "http://127.0.0.1:9/identity/v3", "username": "u", "password": "p", "project_name": "p"}
    config.write_text(yaml.safe_dump({"clouds": {"down": {"auth": auth}}}))
    config.chmod(0o600)
    socket, port = short_tmp / "c.sock", free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "csi_xloud", "driver", "--mode", "controller", "--endpoint", f"unix://{socket}",
         "--cloud", "down", "--cloud-config", str(config), "--metrics-address", f"127.0.0.1:{port}"],
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        readyz = await _settled(port, "/readyz")
        async with grpc.aio.insecure_channel(f"unix://{socket}") as channel:
            probe = await csi_pb2_grpc.IdentityStub(channel).Probe(csi_pb2.ProbeRequest(), timeout=10)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            healthz, metrics = await http.get("/healthz"), await http.get("/metrics")
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=30)
    assert probe.ready.value, "the livenessprobe must not restart a controller because the cloud is away"
    assert readyz.status_code == 503 and readyz.text.startswith("cloud: cloud not ready:"), readyz.text
    assert healthz.status_code == 200
    assert 'csi_xloud_ready{check="cloud"} 0.0' in metrics.text
    assert b"not ready: cloud:" in stderr  # logged once, when it changed


async def test_the_monitor_follows_the_cloud_down_and_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with EmulatorProcess(tmp_path / "cloud", op_seconds=0.1) as emulator:
        metrics = Metrics()
        settings = load_cloud_settings("xloud-emulator", emulator.clouds_yaml, {})
        async with CloudClient(settings, metrics) as cloud:
            monitor = ReadinessMonitor({"cloud": cloud.readiness}, metrics, timeout_seconds=20)
            with caplog.at_level(logging.INFO, logger="csi_xloud.rpc.health"):
                assert await monitor.check_once() == ()
                emulator.stop()
                down = await monitor.check_once()
                again = await monitor.check_once()
                emulator.start()
                back = await monitor.check_once()

    def gauge() -> float | None:
        return metrics.registry.get_sample_value("csi_xloud_ready", {"check": "cloud"})

    assert down and down[0].startswith("cloud: ") and down == again
    assert back == () and gauge() == 1.0
    changes = [r.getMessage() for r in caplog.records if r.name == "csi_xloud.rpc.health"]
    assert len(changes) == 2 and changes[0].startswith("not ready: cloud:") and changes[1] == "ready again: cloud"


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
async def test_readyz_says_not_checked_then_the_reasons_on_ipv4_and_ipv6(host: str) -> None:
    from csi_xloud.rpc.health import serve_health

    reasons = iter(["keystone answers 503", None])

    async def cloud() -> str | None:
        return next(reasons)

    metrics = Metrics()
    monitor = ReadinessMonitor({"cloud": cloud}, metrics)
    port = free_port()
    server = serve_health(host, port, metrics.registry, monitor)
    base = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    try:
        async with httpx.AsyncClient(base_url=base) as http:
            first = await http.get("/readyz")
            await monitor.check_once()
            down = await http.get("/readyz")
            await monitor.check_once()
            up, alive = await http.get("/readyz"), await http.get("/healthz")
            scraped = (await http.get("/metrics")).text
    finally:
        server.shutdown()
        server.server_close()
    assert (first.status_code, first.text) == (503, "not checked yet\n")
    assert (down.status_code, down.text) == (503, "cloud: keystone answers 503\n")
    assert (up.status_code, up.text, alive.status_code) == (200, "ready\n", 200)
    assert 'csi_xloud_ready{check="cloud"} 1.0' in scraped
