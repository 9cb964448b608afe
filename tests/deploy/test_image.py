"""The image, built by scripts/build-image and run with podman: the driver's containers drive a volume.

The controller runs in a container on the host network against the emulator on 127.0.0.1; a node
plugin runs in a privileged container with the host's /dev and a kubelet folder shared with the
host (as a DaemonSet mounts them). The kubelet and the sidecars are the demo's stand-ins, calling
the containers' sockets from the host. Every container, mount and loop device goes away afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from deploy_support import ROOT

from csi_xloud import __version__
from csi_xloud.demo.cluster import mounts_below, unmount_all_below
from csi_xloud.demo.orchestrator import KubeletPaths, NodeHandle, Orchestrator, RetryPolicy, mount_capability
from csi_xloud.emulator.process import EmulatorProcess, loop_devices_under

TAG = "localhost/csi-xloud:test"
SIZE_GOAL_BYTES = 200_000_000
ENV = {**os.environ, "CONTAINERS_CONF": str(ROOT / "deploy" / "image" / "containers.conf")}
BUILD_TIMEOUT_SECONDS = 900
CONTROLLER_UID = 65532  # the chart's runAsUser for the controller

pytestmark = [pytest.mark.root, pytest.mark.slow]


def podman(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["podman", *args], env=ENV, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)}: exit {result.returncode}\n{result.stderr[-3000:]}")
    return result


def podman_unusable() -> str | None:
    """Why podman cannot run containers here, or None when it can."""
    if os.geteuid() != 0:
        return "building and running the image needs root (rootful podman, loop devices, mounts)"
    if shutil.which("podman") is None:
        return "podman is not installed (scripts/setup installs podman, buildah, runc and mmdebstrap)"
    info = subprocess.run(["podman", "info", "--format", "json"], env=ENV, capture_output=True, text=True)
    if info.returncode != 0:
        return f"podman cannot run here: {info.stderr.strip()[-500:]}"
    return None


@pytest.fixture(scope="module")
def image() -> str:
    """scripts/build-image TAG, as a user runs it (layers, base and wheels are kept between runs)."""
    reason = podman_unusable()
    if reason:
        pytest.skip(reason)
    log = Path(tempfile.mkstemp(prefix="csx-build-", suffix=".log")[1])
    # BASE=local: the base the script makes itself, as on a machine that reaches no container
    # registry; the tests then ask only the Debian mirror and the package index, and only on a miss.
    try:
        with log.open("w") as out:
            result = subprocess.run(
                [str(ROOT / "scripts" / "build-image"), TAG],
                stdout=out, stderr=subprocess.STDOUT, timeout=BUILD_TIMEOUT_SECONDS, check=False,
                env={**ENV, "BASE": "local"},
            )
        assert result.returncode == 0, f"scripts/build-image failed:\n{log.read_text()[-5000:]}"
    finally:
        log.unlink()
    return TAG


def test_the_image_runs_the_console_script(image: str) -> None:
    result = podman("run", "--rm", "--network=none", image, "--version")
    assert result.stdout.strip() == f"csi-xloud {__version__}"


def test_the_image_holds_the_driver_and_its_tools_only(image: str) -> None:
    size = int(podman("image", "inspect", "--format", "{{.Size}}", image).stdout)
    assert size <= SIZE_GOAL_BYTES, f"the image is {size / 1e6:.0f} MB"
    probe = (
        "import importlib.util, json, shutil;"
        "mods = ['pip', 'setuptools', 'starlette', 'uvicorn', 'grpc', 'httpx', 'csi_xloud.node.service',"
        " 'csi_xloud.emulator', 'csi_xloud.demo'];"
        "tools = ['mkfs.ext4', 'mkfs.xfs', 'xfs_growfs', 'resize2fs', 'e2fsck', 'blkid', 'mount', 'umount',"
        " 'findmnt', 'wipefs', 'udevadm'];"
        "print(json.dumps({'modules': {m: importlib.util.find_spec(m) is not None for m in mods},"
        " 'tools': {t: shutil.which(t) is not None for t in tools}}))"
    )
    found = json.loads(podman("run", "--rm", "--network=none", "--entrypoint", "python3", image, "-c", probe).stdout)
    assert found["modules"] == {
        "pip": False, "setuptools": False, "starlette": False, "uvicorn": False,
        "grpc": True, "httpx": True, "csi_xloud.node.service": True,
        "csi_xloud.emulator": False, "csi_xloud.demo": False,
    }
    refused = podman("run", "--rm", "--network=none", image, "demo", check=False)
    assert refused.returncode == 1
    assert "needs the emulator extra" in refused.stderr and "Traceback" not in refused.stderr
    assert all(found["tools"].values()), found["tools"]
    labels = json.loads(podman("image", "inspect", "--format", "{{json .Labels}}", image).stdout)
    assert labels["org.opencontainers.image.version"] == __version__
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    assert labels["org.opencontainers.image.revision"] == head


@dataclass
class Installation:
    """The emulator on the host and the driver's two containers, with their host-side paths."""

    root: Path
    emulator: EmulatorProcess
    sockets: Path
    kubelet: Path
    node_id: str
    zone: str
    containers: list[str]

    def logs(self) -> str:
        parts = []
        for name in self.containers:
            out = podman("logs", "--tail", "40", name, check=False)
            parts.append(f"--- {name}\n{out.stdout}{out.stderr}")
        return "\n".join(parts)


def run_detached(name: str, *args: str) -> None:
    podman("run", "-d", "--name", name, "--network=host", *args)


@pytest.fixture
def installation(image: str) -> Iterator[Installation]:
    root = Path(tempfile.mkdtemp(prefix="csx-img-"))
    suffix = uuid.uuid4().hex[:8]
    emulator = EmulatorProcess(root / "cloud", servers="node-a", op_seconds=0.05)
    sockets, kubelet = root / "sockets", root / "kubelet"
    sockets.mkdir()
    kubelet.mkdir()
    made = Installation(root, emulator, sockets, kubelet, "", "", [])
    try:
        emulator.start()
        (server,) = emulator.servers
        made.node_id, made.zone = str(server["id"]), str(server["availability_zone"])
        device_dir = str(server["device_dir"])
        # Mounts the node plugin makes under the kubelet folder must reach the host (Bidirectional).
        subprocess.run(["mount", "--bind", str(kubelet), str(kubelet)], check=True)
        subprocess.run(["mount", "--make-rshared", str(kubelet)], check=True)

        # The controller as the chart runs it: user 65532, read-only root, a clouds.yaml only it reads.
        clouds = root / "clouds.yaml"
        shutil.copyfile(emulator.clouds_yaml, clouds)
        clouds.chmod(0o400)
        os.chown(clouds, CONTROLLER_UID, CONTROLLER_UID)
        os.chown(sockets, CONTROLLER_UID, CONTROLLER_UID)
        controller = f"csx-test-controller-{suffix}"
        made.containers.append(controller)
        run_detached(
            controller,
            "--user", f"{CONTROLLER_UID}:{CONTROLLER_UID}", "--read-only", "--tmpfs", "/tmp",
            "-v", f"{sockets}:/csi",
            "-v", f"{clouds}:/etc/xloud/clouds.yaml:ro",
            image, "driver", "--mode", "controller", "--endpoint", "unix:///csi/controller.sock",
            "--cloud", "xloud-emulator", "--cloud-config", "/etc/xloud/clouds.yaml",
        )
        node = f"csx-test-node-{suffix}"
        made.containers.append(node)
        run_detached(
            node, "--privileged",
            "-v", "/dev:/dev",
            "-v", f"{kubelet}:{kubelet}:rshared",
            "-v", f"{device_dir}:{device_dir}:ro",
            "-v", f"{sockets}:/csi",
            image, "driver", "--mode", "node", "--endpoint", "unix:///csi/node.sock",
            "--node-id", made.node_id, "--device-dir", device_dir, "--kubelet-dir", str(kubelet),
            "--metadata-url", f"{emulator.url}/_emulator/metadata/{made.node_id}",
        )
        yield made
    finally:
        for name in made.containers:
            podman("rm", "--force", "--time", "10", name, check=False)
        unmount_all_below(root)
        emulator.stop()
        unmount_all_below(root)
        leftovers = mounts_below(root), loop_devices_under(root)
        shutil.rmtree(root, ignore_errors=True)
        assert leftovers == ([], []), f"left behind: mounts {leftovers[0]}, loop devices {leftovers[1]}"


async def test_containers_take_a_volume_through_its_life(installation: Installation) -> None:
    inst = installation
    handle = NodeHandle(inst.node_id, inst.sockets / "node.sock", KubeletPaths(inst.kubelet), inst.zone)
    try:
        async with Orchestrator(
            inst.sockets / "controller.sock", {inst.node_id: handle}, RetryPolicy(max_attempts=50)
        ) as co:
            await co.wait_ready(timeout_seconds=60)
            pv = await co.provision(1 << 30, mount_capability("ext4"), zone=inst.zone)
            await co.attach(pv, inst.node_id)
            staging = await co.stage(pv, inst.node_id)
            target = await co.publish(pv, inst.node_id, "pod-1")
            # The host (kubelet's view) writes; the node container reads the same file back.
            (target / "hello.txt").write_text("written through the published mount\n")
            node = inst.containers[1]
            seen = podman("exec", node, "cat", str(target / "hello.txt")).stdout
            assert seen == "written through the published mount\n"
            fstype = podman("exec", node, "findmnt", "-n", "-o", "FSTYPE", str(staging)).stdout.strip()
            assert fstype == "ext4"
            await co.unpublish(pv, inst.node_id, "pod-1")
            await co.unstage(pv, inst.node_id)
            assert mounts_below(inst.kubelet) == [str(inst.kubelet.resolve())]
            await co.detach(pv, inst.node_id)
            await co.delete(pv)
    except BaseException:
        print(inst.logs())
        raise
