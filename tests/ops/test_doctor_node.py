"""`csi-xloud doctor --mode node` on this host: tools, kernel, instance metadata from the emulator, folders."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from csi_xloud.emulator.process import EmulatorProcess
from csi_xloud.node.service import REQUIRED_TOOLS
from csi_xloud.ops.checks import Outcome
from csi_xloud.ops.nodechecks import NodeDoctor, NodeTarget
from csi_xloud.osutil.filesystem import Filesystems
from csi_xloud.osutil.metadata import MetadataReader
from csi_xloud.osutil.mounts import Mounter
from csi_xloud.osutil.runner import Runner
from tests.ops.conftest import csi_xloud

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="mount propagation is set up with real mounts, as root"),
]


@pytest.fixture
def kubelet(tmp_path: Path) -> Iterator[Path]:
    """A kubelet folder on a tmpfs of its own, unmounted afterwards whatever happens."""
    folder = tmp_path / "kubelet"
    folder.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "csx-kubelet", str(folder)], check=True)
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def propagation(folder: Path, kind: str) -> None:
    subprocess.run(["mount", f"--make-{kind}", str(folder)], check=True)


def node_args(emu: EmulatorProcess, kubelet: Path, *more: str) -> list[str]:
    server = emu.servers[0]
    return ["doctor", "--mode", "node", "--metadata-url", f"{emu.url}/_emulator/metadata/{server['id']}",
            "--device-dir", server["device_dir"], "--kubelet-dir", str(kubelet), *more]


def test_a_ready_node_passes_and_reads_its_identity_through_the_metadata_url(
    emulator: EmulatorProcess, kubelet: Path
) -> None:
    propagation(kubelet, "shared")
    ran = csi_xloud(*node_args(emulator, kubelet))
    assert ran.code == 0, ran.out + ran.err
    for tool in REQUIRED_TOOLS:
        assert ran.line(f"tool {tool}").startswith("ok "), ran.line(f"tool {tool}")
    assert "1.4" in ran.line("tool mkfs.ext4")  # e2fsprogs' version is shown
    server = emulator.servers[0]
    instance = ran.line("instance")
    assert instance.startswith("ok ") and server["id"] in instance and "zone zone-a" in instance
    assert f"metadata service {emulator.url}/_emulator/metadata/" in instance
    assert ran.line("kubelet dir").startswith("ok ") and "shared" in ran.line("kubelet dir")
    assert ran.line("kernel ext4").startswith("ok ")
    assert "max 25 volumes per node, 0 attached now" in ran.line("volume limit")


def test_a_kubelet_dir_without_shared_propagation_fails(emulator: EmulatorProcess, kubelet: Path) -> None:
    propagation(kubelet, "private")
    ran = csi_xloud(*node_args(emulator, kubelet))
    assert ran.code == 1
    line = ran.line("kubelet dir")
    assert line.startswith("fail ") and "Bidirectional" in line


def test_an_unreachable_metadata_service_fails_and_names_the_flags(
    emulator: EmulatorProcess, kubelet: Path
) -> None:
    propagation(kubelet, "shared")
    args = node_args(emulator, kubelet)
    args[args.index("--metadata-url") + 1] = "http://127.0.0.1:9"
    ran = csi_xloud(*args, "--max-volumes-per-node", "40")
    assert ran.code == 1
    line = ran.line("instance")
    assert line.startswith("fail ") and "http://127.0.0.1:9" in line and "--node-id" in line
    assert ran.line("volume limit").startswith("warn ")  # 40 is above what an instance takes
    flags = csi_xloud(*args, "--node-id", "n1", "--availability-zone", "zone-a")
    assert flags.line("instance").startswith("ok ") and "from the flags" in flags.line("instance")


async def test_a_missing_tool_fails_its_line(emulator: EmulatorProcess, kubelet: Path, tmp_path: Path) -> None:
    propagation(kubelet, "shared")
    tools = tmp_path / "bin"
    tools.mkdir()
    for tool in REQUIRED_TOOLS:
        if tool != "mkfs.xfs":
            found = shutil.which(tool, path="/usr/sbin:/usr/bin:/sbin:/bin")
            assert found is not None
            (tools / tool).symlink_to(found)
    runner = Runner(env={"PATH": str(tools)}, search_path=str(tools))
    mounter = Mounter(runner)
    server = emulator.servers[0]
    url = f"{emulator.url}/_emulator/metadata/{server['id']}"
    target = NodeTarget(device_dir=Path(server["device_dir"]), kubelet_dir=kubelet, metadata_url=url)
    doctor = NodeDoctor(target, runner=runner, mounter=mounter,
                        metadata=MetadataReader(Filesystems(runner), mounter, url))
    findings = {f.check: f for f in await doctor.run()}
    assert findings["tool mkfs.xfs"].outcome is Outcome.FAIL
    assert "xfsprogs" in findings["tool mkfs.xfs"].fix
    assert findings["tool mkfs.ext4"].outcome is Outcome.OK
    assert findings["tool udevadm"].outcome is Outcome.WARN
