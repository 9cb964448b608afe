"""The emulator image, built by scripts/build-image --emulator and run as the chart's evaluation install runs it.

The container gets the args, the privileges and the host folders the chart's emulator Deployment
renders (its host network on 127.0.0.1, a data dir and /dev from the host); a volume created and
attached through its APIs shows up on the host as a loop device and a by-id link, and stopping the
container leaves no loop device, mount or container behind.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import httpx
import pytest
from deploy_support import ROOT, container, expanded_args, flatten, one, pod_spec
from test_image import ENV, SIZE_GOAL_BYTES, podman, podman_unusable

from csi_xloud import __version__
from csi_xloud.demo.cluster import mounts_below
from csi_xloud.emulator.process import detach_loops_under, free_port, loop_devices_under
from tests.emulator.helpers import Api

TAG = "localhost/csi-xloud-emulator:test"
BUILD_TIMEOUT_SECONDS = 900
NODE = "node-a"

pytestmark = [pytest.mark.root, pytest.mark.slow]


@pytest.fixture(scope="module")
def emulator_image() -> str:
    """scripts/build-image --emulator TAG (on the driver's cached layers, as test_image builds them)."""
    reason = podman_unusable()
    if reason:
        pytest.skip(reason)
    log = Path(tempfile.mkstemp(prefix="csx-build-", suffix=".log")[1])
    try:
        with log.open("w") as out:
            result = subprocess.run(
                [str(ROOT / "scripts" / "build-image"), "--emulator", TAG],
                stdout=out, stderr=subprocess.STDOUT, timeout=BUILD_TIMEOUT_SECONDS, check=False,
                env={**ENV, "BASE": "local"},
            )
        assert result.returncode == 0, f"scripts/build-image --emulator failed:\n{log.read_text()[-5000:]}"
    finally:
        log.unlink()
    return TAG


def test_the_emulator_image_adds_the_extra_and_the_emulator(emulator_image: str) -> None:
    size = int(podman("image", "inspect", "--format", "{{.Size}}", emulator_image).stdout)
    assert size <= SIZE_GOAL_BYTES, f"the emulator image is {size / 1e6:.0f} MB"
    probe = (
        "import importlib.util, json, shutil;"
        "mods = ['pip', 'setuptools', 'starlette', 'uvicorn', 'csi_xloud.emulator.app', 'csi_xloud.demo.scenario',"
        " 'csi_xloud.node.service'];"
        "tools = ['losetup', 'blockdev', 'cp', 'mkfs.ext4', 'udevadm'];"
        "print(json.dumps({'modules': {m: importlib.util.find_spec(m) is not None for m in mods},"
        " 'tools': {t: shutil.which(t) is not None for t in tools}}))"
    )
    found = json.loads(
        podman("run", "--rm", "--network=none", "--entrypoint", "python3", emulator_image, "-c", probe).stdout
    )
    assert found["modules"] == {
        "pip": False, "setuptools": False, "starlette": True, "uvicorn": True,
        "csi_xloud.emulator.app": True, "csi_xloud.demo.scenario": True, "csi_xloud.node.service": True,
    }
    assert all(found["tools"].values()), found["tools"]
    labels = json.loads(podman("image", "inspect", "--format", "{{json .Labels}}", emulator_image).stdout)
    assert labels["org.opencontainers.image.title"] == "csi-xloud-emulator"
    assert labels["org.opencontainers.image.version"] == __version__


@dataclass
class RunningEmulator:
    """The emulator container, started from the chart's rendering, and where its host-side files are."""

    name: str
    url: str
    data_dir: Path

    @property
    def clouds_yaml(self) -> Path:
        """The clouds.yaml the emulator wrote into its (host) data dir."""
        return self.data_dir / "clouds.yaml"


def chart_run_options(generator: ModuleType, port: int, data_dir: Path) -> tuple[list[str], list[str]]:
    """podman options and args of the chart's emulator container: host folders, privileges, args."""
    values = {"emulator": {"enabled": True, "port": port, "dataDir": str(data_dir), "opSeconds": 0.05}}
    deployment = one(flatten(generator.render(values)), "Deployment", "csi-xloud-emulator")
    spec = pod_spec(deployment)
    ctr = container(deployment, "emulator")
    assert spec["hostNetwork"] is True and ctr["securityContext"]["privileged"] is True
    host_paths = {v["name"]: v["hostPath"]["path"] for v in spec["volumes"] if "hostPath" in v}
    options = ["--network=host", "--privileged", "--user", str(ctr["securityContext"]["runAsUser"])]
    for mount in ctr["volumeMounts"]:
        options += ["-v", f"{host_paths[mount['name']]}:{mount['mountPath']}"]
    args = [arg.replace("<NODE_NAME>", NODE) for arg in expanded_args(ctr)]
    assert args[0] == "emulator" and f"--listen=127.0.0.1:{port}" in args, args
    return options, args


def wait_healthy(url: str, name: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/_emulator/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        state = podman("inspect", "--format", "{{.State.Running}}", name, check=False).stdout.strip()
        if state != "true":
            break
        time.sleep(0.1)
    logs = podman("logs", "--tail", "40", name, check=False)
    raise AssertionError(f"the emulator container did not answer on {url}:\n{logs.stdout}{logs.stderr}")


@pytest.fixture
def running_emulator(emulator_image: str, generator: ModuleType) -> Iterator[RunningEmulator]:
    root = Path(tempfile.mkdtemp(prefix="csx-emuimg-"))
    data_dir = root / "data"
    data_dir.mkdir()  # DirectoryOrCreate: the kubelet makes it, podman wants it there
    port = free_port()
    name = f"csx-test-emulator-{uuid.uuid4().hex[:8]}"
    options, args = chart_run_options(generator, port, data_dir)
    try:
        podman("run", "-d", "--name", name, *options, emulator_image, *args)
        running = RunningEmulator(name, f"http://127.0.0.1:{port}", data_dir)
        wait_healthy(running.url, name)
        yield running
    finally:
        podman("rm", "--force", "--time", "10", name, check=False)
        leftovers = loop_devices_under(root), mounts_below(root)
        detach_loops_under(root)
        shutil.rmtree(root, ignore_errors=True)
        assert leftovers == ([], []), f"left behind: loop devices {leftovers[0]}, mounts {leftovers[1]}"
        assert podman("ps", "-a", "-q", "--filter", f"name={name}").stdout.strip() == ""


def test_the_emulator_container_attaches_a_volume_the_host_sees(running_emulator: RunningEmulator) -> None:
    emu = running_emulator
    health = httpx.get(f"{emu.url}/_emulator/health", timeout=5).json()
    assert health["pid"] > 0
    (server,) = json.loads((emu.data_dir / "servers.json").read_text())
    assert server["name"] == NODE
    api = Api(emu)  # type: ignore[arg-type]  # the client reads only url and clouds_yaml
    try:
        volume = api.create_volume(1)
        api.attach(server["id"], volume["id"])
        links = list(Path(server["device_dir"]).iterdir())
        assert len(links) == 1 and links[0].is_symlink(), links
        device = os.path.realpath(links[0])
        assert stat.S_ISBLK(os.stat(device).st_mode), device
        loops = loop_devices_under(emu.data_dir)
        assert [name for name, _ in loops] == [device], loops
        assert int(subprocess.run(["blockdev", "--getsize64", device], capture_output=True, text=True,
                                  check=True).stdout) == 1 << 30
    finally:
        api.close()
    # On SIGTERM the emulator detaches its loop devices itself (the pod's graceful stop).
    stopped = podman("stop", "--time", "20", emu.name, check=False)
    assert stopped.returncode == 0, stopped.stderr
    code = podman("inspect", "--format", "{{.State.ExitCode}}", emu.name).stdout.strip()
    assert code == "0", podman("logs", "--tail", "40", emu.name, check=False).stderr
    assert loop_devices_under(emu.data_dir) == []
