"""The chart's evaluation install, run as rendered, driven as Kubernetes drives it.

`helm template --set emulator.enabled=true` renders the emulator, the controller and the node
plugin; tests/e2e/chartinstall.py starts each with the args its rendered container has, and the
kubelet stand-in walks a volume through provisioning, attach, format and mount, data, snapshot and
restore, online expansion and cleanup over the sockets the rendered paths lead to.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest

from csi_xloud import TOPOLOGY_KEY
from csi_xloud._proto import csi_pb2, csi_pb2_grpc
from csi_xloud.demo.cluster import mounts_below
from csi_xloud.demo.orchestrator import KubeletPaths, NodeHandle, Orchestrator, RetryPolicy, mount_capability
from csi_xloud.demo.scenario import GIB, verify_files, write_files
from csi_xloud.osutil.filesystem import can_grow_mounted_ext4
from tests.e2e.chartinstall import NODE_NAME, EvaluationInstall, render

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="end-to-end tests attach loop devices and mount: run as root"
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def install() -> Iterator[EvaluationInstall]:
    # The evaluation install's values; a free port and short transitions suit a shared test machine.
    values = {"emulator": {"enabled": True, "port": free_port(), "opSeconds": 0.1}}
    root = Path(tempfile.mkdtemp(prefix="csx-chart-"))
    running = EvaluationInstall(root, render(values))
    try:
        running.start()
        yield running
    finally:
        running.close()
        leftovers = mounts_below(root), running.leftovers()
        shutil.rmtree(root, ignore_errors=True)
        assert leftovers == ([], []), f"left behind: mounts {leftovers[0]}, loop devices {leftovers[1]}"


@pytest.fixture
async def co(install: EvaluationInstall) -> AsyncIterator[Orchestrator]:
    async with grpc.aio.insecure_channel(f"unix://{install.node_socket}") as channel:
        info = await csi_pb2_grpc.NodeStub(channel).NodeGetInfo(csi_pb2.NodeGetInfoRequest(), timeout=30)
    handle = NodeHandle(
        node_id=info.node_id,
        socket=install.node_socket,
        kubelet=KubeletPaths(install.kubelet_dir),
        zone=info.accessible_topology.segments[TOPOLOGY_KEY],
    )
    async with Orchestrator(install.controller_socket, {info.node_id: handle}, RetryPolicy()) as orchestrator:
        await orchestrator.wait_ready()
        yield orchestrator


def test_the_processes_run_the_rendered_args(install: EvaluationInstall) -> None:
    emulator, controller, node = install.pods()
    assert install.argv(emulator)[3:] == [
        "emulator", f"--listen=127.0.0.1:{install.emulator_url.rsplit(':', 1)[1]}",
        f"--data-dir={install.root}/var/lib/csi-xloud-emulator", f"--servers={NODE_NAME}@nova",
        "--op-seconds=0.1", "--log-level=info",
    ]
    assert f"--cloud-config={install.root}/var/lib/csi-xloud-emulator/clouds.yaml" in controller.args()
    assert "--cloud=xloud-emulator" in controller.args()
    assert f"--device-dir={install.root}/var/lib/csi-xloud-emulator/servers/{NODE_NAME}/by-id" in node.args()
    assert f"--kubelet-dir={install.root}/var/lib/kubelet" in node.args()
    assert f"--metadata-url={install.emulator_url}/_emulator/metadata/{NODE_NAME}" in node.args()
    assert install.node_socket == install.root / "var/lib/kubelet/plugins/block.csi.xloud.tech/csi.sock"


async def test_a_volume_lives_its_life_on_the_evaluation_install(co: Orchestrator) -> None:
    (node_id,) = co.nodes
    zone = co.nodes[node_id].zone
    fs_type = "ext4" if can_grow_mounted_ext4() else "xfs"
    pv = await co.provision(GIB, mount_capability(fs_type), zone=zone)
    assert pv.zone == zone
    pod = str(uuid.uuid4())
    await co.attach(pv, node_id)
    await co.stage(pv, node_id)
    target = await co.publish(pv, node_id, pod)
    sums = write_files(target, count=2)

    snapshot = await co.snapshot(pv)
    source = csi_pb2.VolumeContentSource(
        snapshot=csi_pb2.VolumeContentSource.SnapshotSource(snapshot_id=snapshot.snapshot_id)
    )
    copy = await co.provision(GIB, mount_capability(fs_type), source=source, zone=zone)
    copy_pod = str(uuid.uuid4())
    await co.attach(copy, node_id)
    await co.stage(copy, node_id)
    verify_files(await co.publish(copy, node_id, copy_pod), sums)

    grown = await co.expand(pv, 2 * GIB, (node_id, pod))
    assert grown == 2 * GIB
    assert os.statvfs(target).f_blocks * os.statvfs(target).f_frsize > GIB
    verify_files(target, sums)

    for volume, its_pod in ((copy, copy_pod), (pv, pod)):
        await co.unpublish(volume, node_id, its_pod)
        await co.unstage(volume, node_id)
        await co.detach(volume, node_id)
    await co.delete(copy)
    await co.delete_snapshot(snapshot.snapshot_id)
    await co.delete(pv)
