"""The command line: version, bad flags (one line, exit 2), SIGTERM during a slow call, JSON logs."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import grpc
import pytest

from csi_xloud import __version__
from csi_xloud._proto import csi_pb2, csi_pb2_grpc
from csi_xloud.config import LogFormat
from csi_xloud.requestid import REQUEST_ID
from csi_xloud.rpc.logs import configure_logging


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "csi_xloud", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **(env or {})},
    )


def test_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"csi-xloud {__version__}"


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ((), "the following arguments are required"),
        (("driver",), "--mode"),
        (("driver", "--mode", "everything"), "invalid choice"),
        (("driver", "--mode", "node"), "--endpoint is required"),
        (("driver", "--mode", "node", "--endpoint", "/tmp/x.sock"), "expected unix:///path"),
        (("driver", "--mode", "node", "--endpoint", "unix://relative.sock"), "must be absolute"),
        (
            ("driver", "--mode", "node", "--endpoint", "unix:///tmp/x.sock", "--max-volumes-per-node", "0"),
            "at least 1",
        ),
        (
            ("driver", "--mode", "node", "--endpoint", "unix:///tmp/x.sock", "--max-volumes-per-node", "x"),
            "invalid int",
        ),
        (
            ("driver", "--mode", "node", "--endpoint", "unix:///tmp/x.sock", "--metrics-address", "nope"),
            "HOST:PORT",
        ),
        (
            ("driver", "--mode", "node", "--endpoint", "unix:///tmp/x.sock", "--log-level", "loud"),
            "log level",
        ),
        (
            ("driver", "--mode", "node", "--endpoint", "unix:///tmp/x.sock", "--kubelet-dir", "rel"),
            "absolute",
        ),
        (
            ("driver", "--mode", "node", "--endpoint", "unix:///tmp/x.sock", "--bogus"),
            "unrecognized arguments",
        ),
    ],
)
def test_bad_flags_give_one_line_and_exit_2(args: tuple[str, ...], fragment: str) -> None:
    result = run_cli(*args, env={"CSI_ENDPOINT": ""})
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert fragment in lines[0]
    assert "Traceback" not in result.stderr


def test_csi_endpoint_from_the_environment_is_used() -> None:
    result = run_cli("driver", "--mode", "node", env={"CSI_ENDPOINT": "ftp://nowhere"})
    assert result.returncode == 2
    assert "ftp://nowhere" in result.stderr


SLOW_SERVER = textwrap.dedent(
    """
    import asyncio, sys
    from csi_xloud._proto import csi_pb2_grpc
    from csi_xloud.config import Endpoint
    from csi_xloud.identity import IdentityService
    from csi_xloud.rpc.interceptors import CallInterceptor
    from csi_xloud.config import LogFormat
    from csi_xloud.rpc.logs import configure_logging
    from csi_xloud.metrics import Metrics
    from csi_xloud.rpc.server import CsiServer

    async def slow() -> None:
        await asyncio.sleep(1.5)
        return None

    async def main() -> None:
        configure_logging(LogFormat.TEXT, "INFO")
        identity = IdentityService(controller=False, checks=[slow])
        server = CsiServer(
            Endpoint("unix", sys.argv[1]),
            [lambda s: csi_pb2_grpc.add_IdentityServicer_to_server(identity, s)],
            [CallInterceptor(Metrics())],
            grace_seconds=10.0,
        )
        await server.start()
        print("ready", flush=True)
        await server.serve_until_signalled()

    asyncio.run(main())
    """
)


def test_sigterm_during_a_slow_call_lets_it_finish(short_tmp: Path) -> None:
    sock = short_tmp / "s.sock"
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_SERVER, str(sock)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        with grpc.insecure_channel(f"unix://{sock}") as channel:
            future = csi_pb2_grpc.IdentityStub(channel).Probe.future(csi_pb2.ProbeRequest(), timeout=10)
            time.sleep(0.3)  # the call is now waiting in the slow readiness check
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            response = future.result()
            assert response.ready.value is True
            assert proc.wait(timeout=10) == 0
            assert time.monotonic() - started < 5
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not sock.exists(), "the socket file is removed on a clean stop"
    assert "received SIGTERM" in (proc.stderr.read() if proc.stderr else "")


def test_json_log_lines_carry_the_request_id() -> None:
    stream = io.StringIO()
    configure_logging(LogFormat.JSON, "INFO", stream)
    try:
        token = REQUEST_ID.set("req-1234")
        logging.getLogger("csi_xloud.test").info("attached %s", "vol-1", extra={"volume_id": "vol-1"})
        REQUEST_ID.reset(token)
        try:
            raise ValueError("bad")
        except ValueError:
            logging.getLogger("csi_xloud.test").exception("failed")
    finally:
        configure_logging(LogFormat.TEXT, "WARNING")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["message"] == "attached vol-1" and first["request_id"] == "req-1234"
    assert first["volume_id"] == "vol-1" and first["level"] == "INFO"
    assert second["request_id"] == "-" and "ValueError: bad" in second["exception"]


def test_controller_refuses_a_world_readable_clouds_yaml(short_tmp: Path) -> None:
    clouds = short_tmp / "clouds.yaml"
    clouds.write_text(
        "clouds:\n  c:\n    auth:\n      auth_url: http://127.0.0.1:9/identity/v3\n"
        "      username: u\n      password: hunter2-secret\n      project_name: p\n"
    )
    clouds.chmod(0o644)
    result = run_cli(
        "driver", "--mode", "controller", "--endpoint", f"unix://{short_tmp / 'c.sock'}",
        "--cloud", "c", "--cloud-config", str(clouds),
    )  # fmt: skip
    assert result.returncode == 2
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("csi-xloud: error: --cloud-config:") and "mode 0644" in error and "chmod it to 0600" in error
    assert "Traceback" not in result.stderr
    assert "hunter2-secret" not in result.stderr
    assert not (short_tmp / "c.sock").exists()
