"""A whole csi-xloud installation on one machine: the emulator, a controller and a node per server.

The demo, the end-to-end tests and the benchmarks start one of these. It owns every process,
mount and loop device it makes, and `close()` removes them all, also after a failure.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from csi_xloud.demo.orchestrator import KubeletPaths, NodeHandle
from csi_xloud.emulator.process import EmulatorProcess


@dataclass
class DriverProcess:
    """One `csi-xloud driver` process and its socket."""

    mode: str
    socket: Path
    argv: list[str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.socket.parent.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()

    def wait_for_socket(self, timeout_seconds: float = 20.0) -> None:
        deadline = time.monotonic() + timeout_seconds
        while not self.socket.exists():
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(
                    f"driver ({self.mode}) exited with {self.process.returncode}; see {self.log_path}"
                )
            if time.monotonic() > deadline:
                raise TimeoutError(f"driver ({self.mode}) did not open {self.socket}")
            time.sleep(0.05)

    def stop(self, grace_seconds: float = 10.0) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=grace_seconds)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def kill(self) -> None:
        """SIGKILL, as a crashed or evicted pod dies."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()

    def restart(self) -> None:
        self.stop()
        self.start()
        self.wait_for_socket()


@dataclass
class Cluster:
    """The emulator plus driver processes, laid out under one data folder."""

    data_dir: Path
    servers: str = "node-a,node-b"
    op_seconds: float = 0.2
    log_level: str = "INFO"
    # The controller's client-side requests per second (clouds.yaml `rate_limit`); None: the default.
    rate_limit: float | None = None
    # How many of those may leave at once (clouds.yaml `rate_limit_burst`); None: the default.
    rate_limit_burst: int | None = None
    emulator: EmulatorProcess | None = None
    controller: DriverProcess | None = None
    nodes: dict[str, DriverProcess] = field(default_factory=dict)
    node_handles: dict[str, NodeHandle] = field(default_factory=dict)

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.emulator = self._new_emulator()
        self.emulator.start()
        self.controller = self._driver("controller", "controller", self._controller_flags())
        for server in self.emulator.servers:
            self._add_node(server)
        for process in (self.controller, *self.nodes.values()):
            process.start()
        for process in (self.controller, *self.nodes.values()):
            process.wait_for_socket()

    def _new_emulator(self) -> EmulatorProcess:
        return EmulatorProcess(self.data_dir / "cloud", servers=self.servers, op_seconds=self.op_seconds)

    def _add_node(self, server: dict[str, Any]) -> None:
        """A node plugin for one emulated server, with its own kubelet folder."""
        name = str(server["name"])
        kubelet = self.data_dir / "kubelet" / name
        kubelet.mkdir(parents=True, exist_ok=True)
        node = self._driver(f"node-{name}", "node", self._node_flags(server, kubelet))
        self.nodes[str(server["id"])] = node
        self.node_handles[str(server["id"])] = NodeHandle(
            node_id=str(server["id"]),
            socket=node.socket,
            kubelet=KubeletPaths(kubelet),
            zone=str(server["availability_zone"]),
        )

    def _driver(self, label: str, mode: str, flags: list[str]) -> DriverProcess:
        socket = self.data_dir / "sockets" / f"{label}.sock"
        argv = [
            sys.executable,
            "-m",
            "csi_xloud",
            "driver",
            "--mode",
            mode,
            "--endpoint",
            f"unix://{socket}",
            "--log-level",
            self.log_level,
            *flags,
        ]
        return DriverProcess(mode, socket, argv, self.data_dir / "logs" / f"{label}.log")

    def _controller_flags(self) -> list[str]:
        assert self.emulator is not None
        return ["--cloud", "xloud-emulator", "--cloud-config", str(self._controller_clouds_yaml())]

    def _controller_clouds_yaml(self) -> Path:
        """The emulator's clouds.yaml, or a copy carrying `rate_limit` and `rate_limit_burst` when set."""
        assert self.emulator is not None
        limits = {"rate_limit": self.rate_limit, "rate_limit_burst": self.rate_limit_burst}
        if all(value is None for value in limits.values()):
            return self.emulator.clouds_yaml
        clouds = yaml.safe_load(self.emulator.clouds_yaml.read_text())
        clouds["clouds"]["xloud-emulator"].update({k: v for k, v in limits.items() if v is not None})
        path = self.data_dir / "controller-clouds.yaml"
        path.touch(mode=0o600)
        path.write_text(yaml.safe_dump(clouds, sort_keys=False))
        return path

    def _node_flags(self, server: dict[str, object], kubelet: Path) -> list[str]:
        assert self.emulator is not None
        return [
            "--node-id",
            str(server["id"]),
            "--device-dir",
            str(server["device_dir"]),
            "--kubelet-dir",
            str(kubelet),
            "--metadata-url",
            f"{self.emulator.url}/_emulator/metadata/{server['id']}",
        ]

    @property
    def controller_socket(self) -> Path:
        assert self.controller is not None
        return self.controller.socket

    def server_ids(self) -> list[str]:
        return list(self.node_handles)

    def lose_node(self, node_id: str) -> None:
        """The node's machine dies: its plugin is killed and the guest's mounts vanish with it.

        The node leaves `node_handles`; its server stays in the cloud until someone deletes it.
        """
        process = self.nodes.pop(node_id)
        handle = self.node_handles.pop(node_id)
        process.kill()
        unmount_all_below(handle.kubelet.root)

    def close(self) -> None:
        """Stop the drivers, unmount whatever is still mounted under the data folder, stop the emulator."""
        for process in (*self.nodes.values(), self.controller):
            if process is not None:
                with contextlib.suppress(Exception):
                    process.stop()
        unmount_all_below(self.data_dir)
        if self.emulator is not None:
            self.emulator.stop()
        unmount_all_below(self.data_dir)

    def __enter__(self) -> Cluster:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def mounts_below(root: Path) -> list[str]:
    """Mount points at or below root, deepest first, from /proc/self/mountinfo."""
    prefix = str(root.resolve())
    points = []
    with open("/proc/self/mountinfo", encoding="utf-8") as mountinfo:
        for line in mountinfo:
            point = _unescape(line.split()[4])
            if point == prefix or point.startswith(prefix + "/"):
                points.append(point)
    return sorted(set(points), key=lambda p: p.count("/"), reverse=True)


def unmount_all_below(root: Path) -> None:
    """Unmount every mount under root (lazily if busy); what a killed node plugin left behind."""
    if not root.exists():
        return
    for _ in range(3):
        points = mounts_below(root)
        if not points:
            return
        for point in points:
            result = subprocess.run(["umount", point], capture_output=True, check=False)
            if result.returncode != 0:
                subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def _unescape(field_text: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field_text = field_text.replace(code, char)
    return field_text
