"""Node tests on real loop devices: sparse files, a by-id folder, a kubelet folder, a node on a unix socket.

Every loop device and mount a test makes is removed afterwards, also when the test fails.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from nodekit import Host, Node, build_service, serve

from csi_xloud._proto import csi_pb2_grpc
from csi_xloud.osutil.runner import CommandResult


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/node/" in str(item.path):
            item.add_marker(pytest.mark.root)
            if os.geteuid() != 0:
                item.add_marker(pytest.mark.skip(reason="node tests need root for loop devices and mounts"))


@pytest.fixture
def host() -> Iterator[Host]:
    root = Path(tempfile.mkdtemp(prefix="csx-node-"))
    made = Host(root)
    made.kubelet.mkdir()
    made.device_dir.mkdir()
    try:
        yield made
    finally:
        made.cleanup()


@pytest.fixture
async def node(host: Host, short_tmp: Path) -> AsyncIterator[Node]:
    commands: list[CommandResult] = []
    service = build_service(host, commands)
    server = await serve(service, short_tmp / "node.sock")
    try:
        async with grpc.aio.insecure_channel(f"unix://{short_tmp / 'node.sock'}") as channel:
            yield Node(host, service, csi_pb2_grpc.NodeStub(channel), commands, short_tmp / "node.sock")
    finally:
        await server.stop(0)
