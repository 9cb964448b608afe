"""The chart's evaluation install (`--set emulator.enabled=true`) run as processes on this machine.

The chart is rendered as Helm renders it; each of its three driver containers (the emulator, the
controller's csi-xloud, the node plugin's csi-xloud) is started with exactly the args the rendered
manifest gives it. Only what a pod sees differently is translated, the way kubelet would set the pod
up: every hostPath moves under one root folder (a fake host; /dev stays the real one, where the loop
devices are), emptyDirs get a folder of their own, $(NODE_NAME) is the node's name. The kubelet
stand-in (csi_xloud.demo.orchestrator) then drives the sockets the rendered paths lead to.
"""

from __future__ import annotations

import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import httpx

from csi_xloud.demo.cluster import DriverProcess, unmount_all_below
from csi_xloud.emulator.process import loop_devices_under
from tests.deploy.deploy_support import container, find, load_generator, resolve_path, volume

Obj = dict[str, Any]
NODE_NAME = "evaluation-node"
# Host folders that stay what they are: the loop devices the emulator makes live in the real /dev.
REAL_HOST_PATHS = ("/dev",)


def render(values: Obj) -> list[Obj]:
    """The chart with these values, as `helm template csi-xloud -n kube-system` renders it."""
    return [doc for docs in load_generator().render(values).values() for doc in docs]


def workload(objects: list[Obj], kind: str, suffix: str) -> Obj:
    (found,) = [o for o in find(objects, kind) if o["metadata"]["name"].endswith(suffix)]
    return found


@dataclass
class Pod:
    """One rendered workload's driver container, its paths translated onto this machine."""

    workload: Obj
    container_name: str
    root: Path

    @property
    def container(self) -> Obj:
        return container(self.workload, self.container_name)

    def host_path(self, path: str) -> Path:
        """Where a path of the container lies on this machine, through the volume it is mounted from."""
        name, inside = resolve_path(self.workload, self.container, path)
        source = volume(self.workload, name)
        if "hostPath" in source:
            host = source["hostPath"]["path"]
            if host in REAL_HOST_PATHS:
                return Path(host) / inside
            return self.root / PurePosixPath(host).relative_to("/") / inside
        assert "emptyDir" in source, f"{name}: only hostPath and emptyDir volumes are expected here"
        return self.root / "pods" / self.workload["metadata"]["name"] / name / inside

    def args(self) -> list[str]:
        """The container's args, $(NODE_NAME) set and every container path made a path of this machine."""
        translated = []
        for arg in self.container["args"]:
            arg = arg.replace("$(NODE_NAME)", NODE_NAME)
            assert "$(" not in arg, f"{arg}: a variable this stand-in does not set"
            flag, sep, value = arg.partition("=")
            if sep and value.startswith("unix:///"):
                value = f"unix://{self.host_path(value.removeprefix('unix://'))}"
            elif sep and value.startswith("/"):
                value = str(self.host_path(value))
            translated.append(f"{flag}{sep}{value}" if sep else flag)
        return translated

    def make_host_folders(self) -> None:
        """What kubelet does for DirectoryOrCreate and emptyDir volumes before the pod starts."""
        for source in self.workload["spec"]["template"]["spec"].get("volumes", []):
            if "emptyDir" in source:
                (self.root / "pods" / self.workload["metadata"]["name"] / source["name"]).mkdir(
                    parents=True, exist_ok=True
                )
            elif source.get("hostPath", {}).get("type") in ("DirectoryOrCreate", "Directory"):
                host = source["hostPath"]["path"]
                if host not in REAL_HOST_PATHS:
                    (self.root / PurePosixPath(host).relative_to("/")).mkdir(parents=True, exist_ok=True)


@dataclass
class EvaluationInstall:
    """The emulator, the controller and the node plugin of the rendered evaluation install."""

    root: Path
    objects: list[Obj]
    processes: list[DriverProcess] = field(default_factory=list)

    def pods(self) -> tuple[Pod, Pod, Pod]:
        return (
            Pod(workload(self.objects, "Deployment", "-emulator"), "emulator", self.root),
            Pod(workload(self.objects, "Deployment", "-controller"), "csi-xloud", self.root),
            Pod(workload(self.objects, "DaemonSet", "-node"), "csi-xloud", self.root),
        )

    @property
    def emulator_url(self) -> str:
        listen = next(a for a in self.pods()[0].args() if a.startswith("--listen="))
        return "http://" + listen.split("=", 1)[1]

    @property
    def controller_socket(self) -> Path:
        return self._socket(self.pods()[1])

    @property
    def node_socket(self) -> Path:
        return self._socket(self.pods()[2])

    @property
    def kubelet_dir(self) -> Path:
        node = self.pods()[2]
        flag = next(a for a in node.container["args"] if a.startswith("--kubelet-dir="))
        return node.host_path(flag.split("=", 1)[1])

    @staticmethod
    def _socket(pod: Pod) -> Path:
        endpoint = next(a for a in pod.args() if a.startswith("--endpoint="))
        return Path(endpoint.split("=", 1)[1].removeprefix("unix://"))

    def argv(self, pod: Pod) -> list[str]:
        """The image's entrypoint (`csi-xloud`) with the container's args."""
        return [sys.executable, "-m", "csi_xloud", *pod.args()]

    def start(self) -> None:
        emulator, controller, node = self.pods()
        for pod in (emulator, controller, node):
            pod.make_host_folders()
        self._start(emulator, "emulator", self.root / "emulator.sock-unused")
        self._wait_for_emulator()
        # The controller's clouds.yaml is a hostPath of type File: kubelet starts the pod once it exists.
        cloud_config = next(a for a in controller.args() if a.startswith("--cloud-config="))
        assert Path(cloud_config.split("=", 1)[1]).is_file()
        self._start(controller, "controller", self.controller_socket)
        self._start(node, "node", self.node_socket)
        for process in self.processes[1:]:
            process.wait_for_socket()

    def _start(self, pod: Pod, label: str, socket: Path) -> None:
        process = DriverProcess(label, socket, self.argv(pod), self.root / "logs" / f"{label}.log")
        process.start()
        self.processes.append(process)

    def _wait_for_emulator(self, timeout_seconds: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            emulator = self.processes[0].process
            if emulator is not None and emulator.poll() is not None:
                raise RuntimeError(f"the emulator exited with {emulator.returncode}; see {self.root}/logs")
            try:
                if httpx.get(f"{self.emulator_url}/_emulator/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError("the emulator did not answer")

    def close(self) -> None:
        """Stop the node plugin and the controller, unmount, then stop the emulator (it frees its loops)."""
        for process in reversed(self.processes[1:]):
            process.stop()
        unmount_all_below(self.root)
        if self.processes:
            self.processes[0].stop(grace_seconds=20)
        unmount_all_below(self.root)

    def leftovers(self) -> list[tuple[str, str]]:
        return loop_devices_under(self.root)


def port_of(url: str) -> int:
    match = re.search(r":(\d+)$", url)
    assert match, url
    return int(match[1])
