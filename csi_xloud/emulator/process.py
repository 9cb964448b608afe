"""Run the emulator as a child process, for tests, the demo and benchmarks.

    with EmulatorProcess(tmp_path / "cloud", op_seconds=0.1) as emu:
        emu.url            # http://127.0.0.1:<port>
        emu.clouds_yaml    # clouds: xloud-emulator (member), xloud-emulator-admin, xloud-emulator-appcred
        emu.servers        # [{"id", "name", "availability_zone", "device_dir"}, ...]
        emu.set_faults([{"method": "POST", "path": "/volumes$", "status": 503, "count": 2}])
        emu.stats()        # {"total": N, "requests": {"POST /volume/v3/{id}/volumes": 3, ...}}
        emu.restart()      # graceful stop + start on the same port and data
        emu.kill()         # SIGKILL (a crash); start() brings it back

After the process ends, however it ended, every loop device whose backing file lies under `data_dir` is
detached and the by-id symlinks are removed; no other loop device is touched. The class is synchronous
(it never blocks for long) and can be used from async tests as well.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

DEFAULT_SERVERS = "node-a,node-b"


class EmulatorError(RuntimeError):
    """The emulator did not start or answer."""


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class EmulatorProcess:
    """A `python -m csi_xloud.emulator` child on 127.0.0.1 with its own data directory."""

    def __init__(
        self,
        data_dir: Path,
        servers: str = DEFAULT_SERVERS,
        op_seconds: float = 1.0,
        token_ttl: float = 3600.0,
        port: int | None = None,
        start_timeout: float = 30.0,
        max_page_size: int = 1000,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self._servers_arg = servers
        self._op_seconds = op_seconds
        self._token_ttl = token_ttl
        self.port = port or free_port()
        self._start_timeout = start_timeout
        self._max_page_size = max_page_size
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_path = self.data_dir / "emulator.log"

    @property
    def url(self) -> str:
        """Base URL, e.g. http://127.0.0.1:8900."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def clouds_yaml(self) -> Path:
        """The clouds.yaml the emulator wrote."""
        return self.data_dir / "clouds.yaml"

    @property
    def servers(self) -> list[dict[str, Any]]:
        """servers.json: one entry per compute server."""
        data: list[dict[str, Any]] = json.loads((self.data_dir / "servers.json").read_text())
        return data

    @property
    def pid(self) -> int | None:
        """Process id while running."""
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        """Whether the child is alive."""
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> EmulatorProcess:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Start the child and wait until it answers."""
        if self.running:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            sys.executable,
            "-m",
            "csi_xloud.emulator",
            "--listen",
            f"127.0.0.1:{self.port}",
            "--data-dir",
            str(self.data_dir),
            "--servers",
            self._servers_arg,
            "--op-seconds",
            str(self._op_seconds),
            "--token-ttl",
            str(self._token_ttl),
            "--max-page-size",
            str(self._max_page_size),
        ]
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
        with open(self._log_path, "ab") as log:
            self._proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self._start_timeout
        while time.monotonic() < deadline:
            if not self.running:
                self._cleanup()
                raise EmulatorError(f"emulator exited early; log:\n{self.log_tail()}")
            try:
                health = httpx.get(f"{self.url}/_emulator/health", timeout=1)
                if health.status_code == 200 and health.json().get("pid") == self.pid:
                    return
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.05)
        self.kill()
        raise EmulatorError(f"emulator did not answer within {self._start_timeout}s; log:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        """The end of the emulator's log."""
        try:
            return "\n".join(self._log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    def stop(self, grace: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL after grace seconds; returns the exit code."""
        if self._proc is None:
            return None
        code: int | None
        try:
            if self._proc.poll() is None:
                self._proc.send_signal(signal.SIGTERM)
                try:
                    self._proc.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait()
            code = self._proc.returncode
        finally:
            self._proc = None
            self._cleanup()
        return code

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self._proc is None:
            return
        try:
            if self._proc.poll() is None:
                self._proc.kill()
            self._proc.wait()
        finally:
            self._proc = None
            self._cleanup()

    def restart(self) -> None:
        """Graceful stop, then start on the same port and data."""
        self.stop()
        self.start()

    def _cleanup(self) -> None:
        """Detach loop devices backed by files under data_dir and remove the by-id symlinks."""
        detach_loops_under(self.data_dir)
        servers_dir = self.data_dir / "servers"
        if servers_dir.is_dir():
            for link in servers_dir.glob("*/by-id/*"):
                if link.is_symlink():
                    link.unlink(missing_ok=True)

    # -- /_emulator -------------------------------------------------------------------------------

    def _request(self, method: str, path: str, body: Any = None) -> Any:
        resp = httpx.request(method, f"{self.url}{path}", json=body, timeout=10)
        if resp.is_error:
            raise EmulatorError(f"{method} {path}: {resp.status_code} {resp.text}")
        return resp.json() if resp.content else None

    def set_faults(self, rules: list[dict[str, Any]]) -> None:
        """Replace the fault rules (see DESIGN: method, path regex, status, count, retry_after, delay)."""
        self._request("POST", "/_emulator/faults", rules)

    def clear_faults(self) -> None:
        """Drop every fault rule."""
        self._request("DELETE", "/_emulator/faults")

    def hide_services(self, service_types: list[str]) -> None:
        """Leave these service types (e.g. "compute") out of the catalogs of tokens issued from now on."""
        self._request("POST", "/_emulator/catalog", {"hide": service_types})

    def stats(self) -> dict[str, Any]:
        """Request counts per method and path template since start ("requests"), and of those the ones
        answered with an error status ("refused")."""
        result: dict[str, Any] = self._request("GET", "/_emulator/stats")
        return result


def loop_devices_under(root: Path) -> list[tuple[str, str]]:
    """(loop device, backing file) for loop devices whose backing file lies under root."""
    out = subprocess.run(
        ["losetup", "--list", "--json", "--output", "NAME,BACK-FILE"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    if not out.strip():
        return []
    found = []
    resolved = str(Path(root).resolve())
    for dev in json.loads(out).get("loopdevices", []):
        back = str(dev.get("back-file") or "").removesuffix(" (deleted)")
        if back == resolved or back.startswith(resolved + os.sep):
            found.append((str(dev["name"]), back))
    return found


def detach_loops_under(root: Path, attempts: int = 10) -> None:
    """Detach every loop device whose backing file lies under root (retrying while one is busy)."""
    for attempt in range(attempts):
        found = loop_devices_under(root)
        if not found:
            return
        for name, _ in found:
            subprocess.run(["losetup", "--detach", name], capture_output=True, check=False)
        time.sleep(0.05 * (attempt + 1))
