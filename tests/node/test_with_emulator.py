"""The node on disks the emulator attaches: its by-id links, its metadata service, an online extend."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from nodekit import Host, build_service, mount_capability, publish_request, serve, stage_request

from csi_xloud import GIB, TOPOLOGY_KEY
from csi_xloud._proto import csi_pb2, csi_pb2_grpc
from csi_xloud.emulator.process import EmulatorProcess
from csi_xloud.osutil.runner import CommandResult
from tests.emulator.helpers import Api


@pytest.fixture
def emulator() -> Iterator[EmulatorProcess]:
    root = Path(tempfile.mkdtemp(prefix="csx-node-emu-"))
    try:
        with EmulatorProcess(root / "data", op_seconds=0.05, servers="node-q@zone-q") as emu:
            yield emu
    finally:
        shutil.rmtree(root, ignore_errors=True)


async def test_a_volume_attached_by_the_emulator_stages_publishes_and_expands_online(
    host: Host, short_tmp: Path, emulator: EmulatorProcess
) -> None:
    server = emulator.servers[0]
    api = Api(emulator)
    commands: list[CommandResult] = []
    service = build_service(
        host,
        commands,
        node_id=None,
        zone=None,
        metadata_url=f"{emulator.url}/_emulator/metadata/{server['id']}",
        device_dir=Path(server["device_dir"]),  # the emulated server's by-id folder
    )
    server_socket = await serve(service, short_tmp / "emu-node.sock")
    volume = api.create_volume(size=1)
    attached = False
    try:
        api.attach(server["id"], volume["id"])
        attached = True
        staging, target = host.staging(volume["id"]), host.target(volume["id"])
        context = {"size_gib": "1", "device_path": "/dev/vdb"}
        async with grpc.aio.insecure_channel(f"unix://{short_tmp / 'emu-node.sock'}") as channel:
            node = csi_pb2_grpc.NodeStub(channel)
            info = await node.NodeGetInfo(csi_pb2.NodeGetInfoRequest())
            await node.NodeStageVolume(stage_request(volume["id"], staging, mount_capability("xfs"), context))
            publish = publish_request(volume["id"], staging, target, mount_capability("xfs"))
            await node.NodePublishVolume(publish)
            (target / "data").write_bytes(os.urandom(1 << 20))
            kept = hashlib.sha256((target / "data").read_bytes()).hexdigest()
            extend = api.volume(
                "POST", f"/volumes/{volume['id']}/action", json={"os-extend": {"new_size": 2}}, mv="3.42"
            )
            assert extend.status_code == 202, extend.text
            expanded = await node.NodeExpandVolume(
                csi_pb2.NodeExpandVolumeRequest(
                    volume_id=volume["id"],
                    volume_path=str(target),
                    capacity_range=csi_pb2.CapacityRange(required_bytes=2 * GIB),
                    volume_capability=mount_capability("xfs"),
                )
            )
            vfs = os.statvfs(target)
            assert vfs.f_blocks * vfs.f_frsize > 1.5 * GIB
            assert hashlib.sha256((target / "data").read_bytes()).hexdigest() == kept
            await node.NodeUnpublishVolume(
                csi_pb2.NodeUnpublishVolumeRequest(volume_id=volume["id"], target_path=str(target))
            )
            await node.NodeUnstageVolume(
                csi_pb2.NodeUnstageVolumeRequest(volume_id=volume["id"], staging_target_path=str(staging))
            )
        assert info.node_id == server["id"]
        assert dict(info.accessible_topology.segments) == {TOPOLOGY_KEY: "zone-q"}
        assert expanded.capacity_bytes == 2 * GIB
        api.wait_volume(volume["id"], "in-use")
        api.detach(server["id"], volume["id"])
        attached = False
        api.delete_volume(volume["id"])
    finally:
        host.cleanup()  # unmount before the emulator detaches its loop device
        if attached:
            api.detach(server["id"], volume["id"])
        api.close()
        await server_socket.stop(0)
