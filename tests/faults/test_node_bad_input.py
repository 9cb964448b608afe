"""Bad input to every node RPC of a real `csi-xloud driver --mode node` process: the documented code, a
message naming the field, and nothing mounted or created anywhere."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from google.protobuf.message import Message

from csi_xloud._proto import csi_pb2, csi_pb2_grpc
from csi_xloud.demo.cluster import DriverProcess, mounts_below
from csi_xloud.demo.orchestrator import Mode, block_capability, mount_capability
from tests.faults.support import is_root

pytestmark = pytest.mark.skipif(not is_root(), reason="the node plugin mounts: run as root")

INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
LONG = "v" * 4096
C = csi_pb2


@dataclass(frozen=True, slots=True)
class Place:
    """The node's folders: its kubelet dir, a folder outside it, and a symlink inside that leads out."""

    kubelet: Path
    outside: Path
    escape: Path
    volume_id: str

    def staging(self) -> str:
        return str(self.kubelet / "plugins/kubernetes.io/csi/block.csi.xloud.tech/abc/globalmount")

    def target(self) -> str:
        return str(self.kubelet / "pods/pod-1/volumes/kubernetes.io~csi/pv-1/mount")


@dataclass(frozen=True, slots=True)
class Case:
    rpc: str
    what: str
    request: Callable[[Place], Message]
    code: grpc.StatusCode
    fragment: str


def stage(**changes: object) -> Callable[[Place], Message]:
    def build(p: Place) -> Message:
        fields: dict[str, object] = {
            "volume_id": p.volume_id,
            "staging_target_path": p.staging(),
            "volume_capability": mount_capability(),
        }
        fields.update({k: (v(p) if callable(v) else v) for k, v in changes.items()})
        return C.NodeStageVolumeRequest(**{k: v for k, v in fields.items() if v is not None})

    return build


def publish(**changes: object) -> Callable[[Place], Message]:
    def build(p: Place) -> Message:
        fields: dict[str, object] = {
            "volume_id": p.volume_id,
            "staging_target_path": p.staging(),
            "target_path": p.target(),
            "volume_capability": mount_capability(),
        }
        fields.update({k: (v(p) if callable(v) else v) for k, v in changes.items()})
        return C.NodePublishVolumeRequest(**{k: v for k, v in fields.items() if v is not None})

    return build


def make(kind: type[Message], **fields: object) -> Callable[[Place], Message]:
    def build(p: Place) -> Message:
        return kind(**{k: (v(p) if callable(v) else v) for k, v in fields.items()})

    return build


def outside(p: Place) -> str:
    return str(p.outside / "mount")


def via_symlink(p: Place) -> str:
    return str(p.escape / "mount")


def dotdot(p: Place) -> str:
    return str(p.kubelet / ".." / "escaped")


def vid(p: Place) -> str:
    return p.volume_id


def target(p: Place) -> str:
    return p.target()


def staging(p: Place) -> str:
    return p.staging()


CASES = [
    Case("NodeStageVolume", "missing volume_id", stage(volume_id=""), INVALID, "volume_id"),
    Case("NodeStageVolume", "very long volume_id", stage(volume_id=LONG), INVALID, "volume_id"),
    Case("NodeStageVolume", "missing staging_target_path", stage(staging_target_path=""), INVALID,
         "staging_target_path"),
    Case("NodeStageVolume", "missing volume_capability", stage(volume_capability=None), INVALID,
         "volume_capability"),
    Case("NodeStageVolume", "staging outside the kubelet dir", stage(staging_target_path=outside), INVALID,
         "staging_target_path"),
    Case("NodeStageVolume", "staging through a symlink that leads out", stage(staging_target_path=via_symlink),
         INVALID, "staging_target_path"),
    Case("NodeStageVolume", "staging with ..", stage(staging_target_path=dotdot), INVALID, "staging_target_path"),
    Case("NodeStageVolume", "relative staging path", stage(staging_target_path="plugins/x"), INVALID,
         "staging_target_path"),
    Case("NodeStageVolume", "unknown access mode", stage(volume_capability=mount_capability("ext4", Mode.UNKNOWN)),
         INVALID, "volume_capability"),
    Case("NodeStageVolume", "unsupported fs_type", stage(volume_capability=mount_capability("ntfs")), INVALID,
         "fs_type"),
    Case("NodeStageVolume", "a mount flag that smuggles options",
         stage(volume_capability=C.VolumeCapability(
             mount=C.VolumeCapability.MountVolume(fs_type="ext4", mount_flags=["ro,exec;rm -rf /"]),
             access_mode=Mode(mode=Mode.SINGLE_NODE_WRITER))), INVALID, "mount"),
    Case("NodeStageVolume", "bad size in publish_context", stage(publish_context={"size_gib": "-3"}), INVALID,
         "publish_context[size_gib]"),
    Case("NodeUnstageVolume", "missing volume_id", make(C.NodeUnstageVolumeRequest, staging_target_path=staging),
         INVALID, "volume_id"),
    Case("NodeUnstageVolume", "missing staging_target_path", make(C.NodeUnstageVolumeRequest, volume_id=vid),
         INVALID, "staging_target_path"),
    Case("NodeUnstageVolume", "staging outside the kubelet dir",
         make(C.NodeUnstageVolumeRequest, volume_id=vid, staging_target_path=outside), INVALID,
         "staging_target_path"),
    Case("NodePublishVolume", "missing volume_id", publish(volume_id=""), INVALID, "volume_id"),
    Case("NodePublishVolume", "missing target_path", publish(target_path=""), INVALID, "target_path"),
    Case("NodePublishVolume", "missing staging_target_path", publish(staging_target_path=""), INVALID,
         "staging_target_path"),
    Case("NodePublishVolume", "missing volume_capability", publish(volume_capability=None), INVALID,
         "volume_capability"),
    Case("NodePublishVolume", "target outside the kubelet dir", publish(target_path=outside), INVALID,
         "target_path"),
    Case("NodePublishVolume", "target through a symlink that leads out", publish(target_path=via_symlink), INVALID,
         "target_path"),
    Case("NodePublishVolume", "unknown access mode", publish(volume_capability=block_capability(Mode.UNKNOWN)),
         INVALID, "volume_capability"),
    Case("NodePublishVolume", "not staged", publish(), grpc.StatusCode.FAILED_PRECONDITION, "staging_target_path"),
    Case("NodeUnpublishVolume", "missing volume_id", make(C.NodeUnpublishVolumeRequest, target_path=target),
         INVALID, "volume_id"),
    Case("NodeUnpublishVolume", "missing target_path", make(C.NodeUnpublishVolumeRequest, volume_id=vid), INVALID,
         "target_path"),
    Case("NodeUnpublishVolume", "target through a symlink that leads out",
         make(C.NodeUnpublishVolumeRequest, volume_id=vid, target_path=via_symlink), INVALID, "target_path"),
    Case("NodeGetVolumeStats", "missing volume_id", make(C.NodeGetVolumeStatsRequest, volume_path=target), INVALID,
         "volume_id"),
    Case("NodeGetVolumeStats", "missing volume_path", make(C.NodeGetVolumeStatsRequest, volume_id=vid), INVALID,
         "volume_path"),
    Case("NodeGetVolumeStats", "a path that does not exist",
         make(C.NodeGetVolumeStatsRequest, volume_id=vid, volume_path=target), NOT_FOUND, "volume_path"),
    Case("NodeGetVolumeStats", "path outside the kubelet dir",
         make(C.NodeGetVolumeStatsRequest, volume_id=vid, volume_path=outside), NOT_FOUND, "volume_path"),
    Case("NodeGetVolumeStats", "relative path",
         make(C.NodeGetVolumeStatsRequest, volume_id=vid, volume_path="some/path"), NOT_FOUND, "volume_path"),
    Case("NodeExpandVolume", "missing volume_id", make(C.NodeExpandVolumeRequest, volume_path=target), INVALID,
         "volume_id"),
    Case("NodeExpandVolume", "missing volume_path", make(C.NodeExpandVolumeRequest, volume_id=vid), INVALID,
         "volume_path"),
    Case("NodeExpandVolume", "required above limit",
         make(C.NodeExpandVolumeRequest, volume_id=vid, volume_path=target,
              capacity_range=C.CapacityRange(required_bytes=2 << 30, limit_bytes=1 << 30)), INVALID,
         "capacity_range"),
    Case("NodeExpandVolume", "path through a symlink that leads out",
         make(C.NodeExpandVolumeRequest, volume_id=vid, volume_path=via_symlink), NOT_FOUND, "volume_path"),
    Case("NodeExpandVolume", "relative path",
         make(C.NodeExpandVolumeRequest, volume_id=vid, volume_path="some/path"), NOT_FOUND, "volume_path"),
    Case("NodeExpandVolume", "staging path outside the kubelet dir",
         make(C.NodeExpandVolumeRequest, volume_id=vid, volume_path=target, staging_target_path=outside), INVALID,
         "staging_target_path"),
]  # fmt: skip


@pytest.fixture(scope="module")
def node_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """A running node plugin (socket, root folder); on the way out nothing may be mounted below root."""
    root = Path(tempfile.mkdtemp(prefix="csx-nbad-"))
    kubelet, devices = root / "kubelet", root / "by-id"
    for folder in (kubelet / "pods", devices, root / "outside"):
        folder.mkdir(parents=True)
    (kubelet / "pods" / "escape").symlink_to(root / "outside")
    socket = root / "node.sock"
    argv = [
        sys.executable, "-m", "csi_xloud", "driver", "--mode", "node",
        "--endpoint", f"unix://{socket}", "--node-id", str(uuid.uuid4()), "--availability-zone", "zone-a",
        "--device-dir", str(devices), "--kubelet-dir", str(kubelet), "--metadata-url", "http://127.0.0.1:9",
    ]  # fmt: skip
    driver = DriverProcess("node", socket, argv, root / "node.log")
    driver.start()
    try:
        driver.wait_for_socket()
        yield socket, root
    finally:
        driver.stop()
        left = mounts_below(root)
        shutil.rmtree(root, ignore_errors=True)
        assert left == [], f"mounted by bad input: {left}"


@pytest.fixture
async def node_stub(node_root: tuple[Path, Path]) -> AsyncIterator[csi_pb2_grpc.NodeStub]:
    async with grpc.aio.insecure_channel(f"unix://{node_root[0]}") as channel:
        yield csi_pb2_grpc.NodeStub(channel)


def snapshot_of(root: Path) -> set[str]:
    """Every path below root except the plugin's own socket and log."""
    found = set()
    for folder, dirs, files in os.walk(root, followlinks=False):
        for name in dirs + files:
            found.add(os.path.relpath(os.path.join(folder, name), root))
    return found - {"node.sock", "node.log"}


@pytest.mark.parametrize("case", CASES, ids=[f"{c.rpc}-{c.what}" for c in CASES])
async def test_node_bad_input_is_refused_and_touches_nothing(
    case: Case, node_root: tuple[Path, Path], node_stub: csi_pb2_grpc.NodeStub
) -> None:
    root = node_root[1]
    place = Place(root / "kubelet", root / "outside", root / "kubelet/pods/escape", str(uuid.uuid4()))
    before = snapshot_of(root)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await getattr(node_stub, case.rpc)(case.request(place), timeout=30)
    message = refused.value.details() or ""
    assert refused.value.code() == case.code, (
        f"{case.rpc} {case.what}: {refused.value.code().name}: {message}"
    )
    assert case.fragment in message, f"the message does not name {case.fragment!r}: {message!r}"
    assert len(message) < 1024, "the message echoes the whole bad input"
    assert snapshot_of(root) == before, "a refused request created or removed something"
    assert mounts_below(root) == []
