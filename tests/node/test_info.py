"""NodeGetInfo (flags, config drive, metadata service), NodeGetCapabilities and the node's readiness."""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import grpc
import pytest
from nodekit import NODE_ID, ZONE, Host, Node, build_service, mounted_at, rpc_error, serve, sh

from csi_xloud import TOPOLOGY_KEY
from csi_xloud.__main__ import build_node_service
from csi_xloud._proto import csi_pb2, csi_pb2_grpc
from csi_xloud.config import DriverConfig, Endpoint, Mode
from csi_xloud.node.service import NodeService
from csi_xloud.osutil.runner import CommandResult, Runner

SERVER_ID = "4b0c2a8e-0f38-4d36-9a43-2d1c0d3c9f10"


class MetadataServer:
    """A metadata service on 127.0.0.1 serving one instance's meta_data.json, counting requests."""

    def __init__(self, document: dict[str, object]) -> None:
        outer = self
        self.requests: list[str] = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests.append(self.path)
                if self.path != f"/_emulator/metadata/{SERVER_ID}/openstack/latest/meta_data.json":
                    self.send_error(404)
                    return
                body = json.dumps(document).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/_emulator/metadata/{SERVER_ID}"


@pytest.fixture
def metadata_server() -> Iterator[MetadataServer]:
    server = MetadataServer({"uuid": SERVER_ID, "availability_zone": "zone-from-metadata", "name": "node-1"})
    server.thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()


async def node_info(service: NodeService, socket: Path) -> csi_pb2.NodeGetInfoResponse:
    server = await serve(service, socket)
    try:
        async with grpc.aio.insecure_channel(f"unix://{socket}") as channel:
            return await csi_pb2_grpc.NodeStub(channel).NodeGetInfo(csi_pb2.NodeGetInfoRequest())
    finally:
        await server.stop(0)


async def test_node_info_from_the_flags(node: Node) -> None:
    info = await node.stub.NodeGetInfo(csi_pb2.NodeGetInfoRequest())
    assert info.node_id == NODE_ID
    assert dict(info.accessible_topology.segments) == {TOPOLOGY_KEY: ZONE}
    assert info.max_volumes_per_node == 25


async def test_node_info_from_the_metadata_service_is_read_once(
    host: Host, short_tmp: Path, metadata_server: MetadataServer
) -> None:
    service = build_service_for(host, node_id=None, zone=None, metadata_url=metadata_server.url)
    first = await node_info(service, short_tmp / "a.sock")
    second = await node_info(service, short_tmp / "b.sock")

    assert first.node_id == second.node_id == SERVER_ID
    assert dict(first.accessible_topology.segments) == {TOPOLOGY_KEY: "zone-from-metadata"}
    assert len(metadata_server.requests) == 1


async def test_a_zone_flag_wins_over_metadata_and_an_id_flag_still_takes_the_zone(
    host: Host, short_tmp: Path, metadata_server: MetadataServer
) -> None:
    service = build_service_for(host, node_id="explicit-id", zone=None, metadata_url=metadata_server.url)
    info = await node_info(service, short_tmp / "a.sock")
    assert info.node_id == "explicit-id"
    assert dict(info.accessible_topology.segments) == {TOPOLOGY_KEY: "zone-from-metadata"}


async def test_node_info_without_any_source_is_unavailable(host: Host, short_tmp: Path) -> None:
    service = build_service_for(host, node_id=None, zone=None, metadata_url="http://127.0.0.1:9")
    server = await serve(service, short_tmp / "n.sock")
    try:
        async with grpc.aio.insecure_channel(f"unix://{short_tmp / 'n.sock'}") as channel:
            error = await rpc_error(csi_pb2_grpc.NodeStub(channel).NodeGetInfo(csi_pb2.NodeGetInfoRequest()))
    finally:
        await server.stop(0)
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert "127.0.0.1:9" in error.details()


def make_config_drive(host: Host, label: str) -> Path:
    """A loop device with an ext4 labelled `label` holding meta_data.json, as Nova writes it."""
    drive = host.disk(16)
    sh("mkfs.ext4", "-q", "-L", label, str(drive.device))
    folder = host.root / "drive"
    folder.mkdir()
    sh("mount", str(drive.device), str(folder))
    try:
        (folder / "openstack/latest").mkdir(parents=True)
        (folder / "openstack/latest/meta_data.json").write_text(
            json.dumps({"uuid": "from-config-drive", "availability_zone": "zone-cd"})
        )
    finally:
        sh("umount", str(folder))
    return Path(drive.device)


async def test_node_info_from_a_config_drive_found_by_a_scan(host: Host, short_tmp: Path) -> None:
    label = f"csx-{secrets.token_hex(4)}"  # a label of our own: other tests on this machine may hold config-2
    make_config_drive(host, label)
    commands: list[CommandResult] = []
    # mount(8) here, so the test sees the read-only mount it made (mount(2) is used alike elsewhere).
    service = build_service_for(
        host, node_id=None, zone=None, metadata_url="http://127.0.0.1:9", label=label, commands=commands,
        in_process=False,
    )

    info = await node_info(service, short_tmp / "cd.sock")

    assert info.node_id == "from-config-drive"
    assert dict(info.accessible_topology.segments) == {TOPOLOGY_KEY: "zone-cd"}
    # No udev link for the label: every device was probed for it.
    assert [c.argv for c in commands if c.argv[0] == "blkid" and f"LABEL={label}" in c.argv]
    mounts = [c.argv for c in commands if c.argv[0] == "mount"]
    assert len(mounts) == 1 and "ro" in mounts[0]
    assert not mounted_at(Path(mounts[0][-1]))
    assert not Path(mounts[0][-1]).exists()


async def test_node_info_from_a_config_drive_found_by_its_udev_label_link(host: Host, short_tmp: Path) -> None:
    label = f"csx-{secrets.token_hex(4)}"
    device = make_config_drive(host, label)
    by_label = host.root / "by-label"
    by_label.mkdir()
    (by_label / label).symlink_to(os.path.relpath(device, by_label))
    commands: list[CommandResult] = []
    # The commands, not libblkid in the process, so the test sees which device was probed.
    service = build_service(
        host, commands, node_id=None, zone=None, config_drive_label=label, by_label_dir=by_label,
        in_process=False,
    )

    info = await node_info(service, short_tmp / "cd.sock")

    assert info.node_id == "from-config-drive"
    # The link named the device: no device was scanned for the label, only this one probed.
    assert not [c.argv for c in commands if c.argv[0] == "blkid" and f"LABEL={label}" in c.argv]
    assert [c.argv for c in commands if c.argv[0] == "blkid" and str(device) in c.argv]


async def test_node_info_with_both_flags_looks_nothing_up(
    host: Host, short_tmp: Path, metadata_server: MetadataServer
) -> None:
    label = f"csx-{secrets.token_hex(4)}"
    make_config_drive(host, label)
    commands: list[CommandResult] = []
    service = build_service_for(
        host, metadata_url=metadata_server.url, label=label, commands=commands
    )
    server = await serve(service, short_tmp / "f.sock")
    try:
        async with grpc.aio.insecure_channel(f"unix://{short_tmp / 'f.sock'}") as channel:
            stub = csi_pb2_grpc.NodeStub(channel)
            await stub.NodeGetCapabilities(csi_pb2.NodeGetCapabilitiesRequest())  # the channel is up
            started = time.monotonic()
            info = await stub.NodeGetInfo(csi_pb2.NodeGetInfoRequest())
            elapsed = time.monotonic() - started
    finally:
        await server.stop(0)

    assert info.node_id == NODE_ID
    assert dict(info.accessible_topology.segments) == {TOPOLOGY_KEY: ZONE}
    assert elapsed < 0.1, f"NodeGetInfo took {elapsed * 1000:.0f} ms"
    assert commands == [] and metadata_server.requests == []


async def test_capabilities(node: Node) -> None:
    response = await node.stub.NodeGetCapabilities(csi_pb2.NodeGetCapabilitiesRequest())
    rpc = csi_pb2.NodeServiceCapability.RPC
    assert {c.rpc.type for c in response.capabilities} == {
        rpc.STAGE_UNSTAGE_VOLUME,
        rpc.EXPAND_VOLUME,
        rpc.GET_VOLUME_STATS,
        rpc.VOLUME_CONDITION,
        rpc.SINGLE_NODE_MULTI_WRITER,
    }


async def test_readiness_names_missing_tools(host: Host, tmp_path: Path) -> None:
    tools = tmp_path / "bin"
    tools.mkdir()
    for tool in ("blkid", "mount", "umount", "mkfs.ext4"):
        (tools / tool).symlink_to(sh("sh", "-c", f"command -v {tool}").strip())
    partial = Runner(env={"PATH": str(tools)}, search_path="")
    ready = build_node_service(
        DriverConfig(endpoint=Endpoint("unix", "/csi/csi.sock"), mode=Mode.NODE, kubelet_dir=host.kubelet)
    )

    not_ready = build_service_for(host, runner=partial)

    assert await ready.readiness() is None
    reason = await not_ready.readiness()
    assert reason is not None
    assert "mkfs.xfs" in reason and "xfs_growfs" in reason and "resize2fs" in reason
    assert "mkfs.ext4" not in reason and "blkid" not in reason


def build_service_for(
    host: Host,
    *,
    node_id: str | None = NODE_ID,
    zone: str | None = ZONE,
    metadata_url: str = "http://127.0.0.1:9",
    label: str = "csx-no-such-label",
    commands: list[CommandResult] | None = None,
    runner: Runner | None = None,
    in_process: bool = True,
) -> NodeService:
    return build_service(
        host,
        commands if commands is not None else [],
        in_process=in_process,
        node_id=node_id,
        zone=zone,
        metadata_url=metadata_url,
        config_drive_label=label,
        runner=runner,
    )
