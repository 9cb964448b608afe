"""NodePublishVolume / NodeUnpublishVolume: bind mounts, read-only, raw block, broken mounts, path escapes."""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import grpc
import pytest
from nodekit import (
    MIB,
    AccessMode,
    Node,
    block_capability,
    mount_capability,
    mounted_at,
    new_volume_id,
    publish_request,
    rpc_error,
    stage_request,
)

from csi_xloud._proto import csi_pb2
from csi_xloud.osutil.mounts import parse_mountinfo


async def staged_volume(node: Node, size_mib: int = 64) -> tuple[str, Path]:
    volume_id = new_volume_id()
    node.host.disk(size_mib, volume_id)
    staging = node.host.staging(volume_id)
    await node.stub.NodeStageVolume(stage_request(volume_id, staging))
    return volume_id, staging


def unpublish_request(volume_id: str, target: Path) -> csi_pb2.NodeUnpublishVolumeRequest:
    return csi_pb2.NodeUnpublishVolumeRequest(volume_id=volume_id, target_path=str(target))


async def test_publish_read_write_then_unpublish_and_repeats(node: Node) -> None:
    volume_id, staging = await staged_volume(node)
    target = node.host.target(volume_id)
    request = publish_request(volume_id, staging, target)

    await node.stub.NodePublishVolume(request)
    await node.stub.NodePublishVolume(request)  # Spec: same arguments -> OK

    (target / "written-by-pod").write_bytes(b"hello")
    assert (staging / "written-by-pod").read_bytes() == b"hello"
    await node.stub.NodeUnpublishVolume(unpublish_request(volume_id, target))
    assert not target.exists() and not mounted_at(target)
    await node.stub.NodeUnpublishVolume(unpublish_request(volume_id, target))  # gone already -> OK
    assert (staging / "written-by-pod").read_bytes() == b"hello"


async def test_read_only_publish_refuses_writes_and_conflicting_republish(node: Node) -> None:
    volume_id, staging = await staged_volume(node)
    (staging / "existing").write_bytes(b"readable")
    read_only = node.host.target(volume_id, pod="reader")
    writable = node.host.target(volume_id, pod="writer")

    await node.stub.NodePublishVolume(publish_request(volume_id, staging, read_only, readonly=True))
    await node.stub.NodePublishVolume(publish_request(volume_id, staging, writable))

    assert (read_only / "existing").read_bytes() == b"readable"
    with pytest.raises(OSError) as refused:
        (read_only / "new").write_bytes(b"x")
    assert refused.value.errno == errno.EROFS
    (writable / "new").write_bytes(b"x")  # the same volume stays writable elsewhere
    flipped = await rpc_error(node.stub.NodePublishVolume(publish_request(volume_id, staging, read_only)))
    assert flipped.code() == grpc.StatusCode.ALREADY_EXISTS


async def test_read_only_access_mode_publishes_read_only(node: Node) -> None:
    volume_id, staging = await staged_volume(node)
    target = node.host.target(volume_id)
    capability = mount_capability(mode=csi_pb2.VolumeCapability.AccessMode.SINGLE_NODE_READER_ONLY)

    await node.stub.NodePublishVolume(publish_request(volume_id, staging, target, capability))

    with pytest.raises(OSError) as refused:
        (target / "new").write_bytes(b"x")
    assert refused.value.errno == errno.EROFS


async def test_republish_of_another_volume_on_a_busy_target_is_already_exists(node: Node) -> None:
    first, first_staging = await staged_volume(node)
    second, second_staging = await staged_volume(node)
    target = node.host.target(first)
    await node.stub.NodePublishVolume(publish_request(first, first_staging, target))

    error = await rpc_error(node.stub.NodePublishVolume(publish_request(second, second_staging, target)))

    assert error.code() == grpc.StatusCode.ALREADY_EXISTS


async def test_publish_before_stage_is_failed_precondition(node: Node) -> None:
    volume_id = new_volume_id()
    node.host.disk(64, volume_id)
    staging = node.host.staging(volume_id)
    target = node.host.target(volume_id)

    error = await rpc_error(node.stub.NodePublishVolume(publish_request(volume_id, staging, target)))

    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "staging_target_path" in error.details()
    assert not target.exists()


async def test_block_publish_binds_the_device_onto_a_file(node: Node) -> None:
    volume_id = new_volume_id()
    disk = node.host.disk(64, volume_id)
    staging = node.host.staging(volume_id, block=True)
    target = node.host.target(volume_id, block=True)
    await node.stub.NodeStageVolume(stage_request(volume_id, staging, block_capability()))
    request = publish_request(volume_id, staging, target, block_capability())

    await node.stub.NodePublishVolume(request)
    await node.stub.NodePublishVolume(request)

    assert target.is_block_device()
    payload = os.urandom(4096)
    with open(target, "r+b", buffering=0) as through_target:
        through_target.seek(8 * MIB)
        through_target.write(payload)
        os.fsync(through_target.fileno())
    with open(disk.device, "rb", buffering=0) as direct:
        direct.seek(8 * MIB)
        assert direct.read(4096) == payload

    await node.stub.NodeUnpublishVolume(unpublish_request(volume_id, target))
    assert not os.path.lexists(target)
    await node.stub.NodeUnpublishVolume(unpublish_request(volume_id, target))


async def test_read_only_block_publish_is_a_read_only_bind(node: Node) -> None:
    """A read-only mount does not stop writes through a device node (the kernel checks the mount only for
    files); for raw block volumes the kubelet grants the container read-only device access ("r")."""
    volume_id = new_volume_id()
    node.host.disk(64, volume_id)
    staging = node.host.staging(volume_id, block=True)
    target = node.host.target(volume_id, block=True)
    await node.stub.NodeStageVolume(stage_request(volume_id, staging, block_capability()))

    request = publish_request(volume_id, staging, target, block_capability(), readonly=True)

    await node.stub.NodePublishVolume(request)
    await node.stub.NodePublishVolume(request)
    writable = await rpc_error(
        node.stub.NodePublishVolume(publish_request(volume_id, staging, target, block_capability()))
    )

    entries = parse_mountinfo(Path("/proc/self/mountinfo").read_text())
    assert [e.read_only for e in entries if e.mount_point == target] == [True]
    assert writable.code() == grpc.StatusCode.ALREADY_EXISTS


def broken_fuse_mount(path: Path) -> None:
    """A FUSE mount whose daemon is gone: the kernel answers ENOTCONN for it, as for a crashed daemon."""
    path.mkdir(parents=True, exist_ok=True)
    fd = os.open("/dev/fuse", os.O_RDWR)
    try:
        subprocess.run(
            [
                "mount",
                "-t",
                "fuse.csx-broken",
                "-o",
                f"fd={fd},rootmode=40000,user_id=0,group_id=0",
                "csx",
                str(path),
            ],
            pass_fds=(fd,),
            check=True,
            capture_output=True,
        )
    finally:
        os.close(fd)


@pytest.mark.skipif(not os.path.exists("/dev/fuse"), reason="no /dev/fuse to make a broken mount with")
async def test_unpublish_of_a_broken_mount(node: Node) -> None:
    volume_id = new_volume_id()
    target = node.host.target(volume_id)
    broken_fuse_mount(target)
    with pytest.raises(OSError) as broken:
        os.stat(target)
    assert broken.value.errno == errno.ENOTCONN

    await node.stub.NodeUnpublishVolume(unpublish_request(volume_id, target))

    assert not mounted_at(target)
    assert not os.path.lexists(target)


async def test_unpublish_keeps_a_target_that_holds_files(node: Node) -> None:
    volume_id = new_volume_id()
    target = node.host.target(volume_id)
    target.mkdir()
    (target / "not ours").write_text("data")

    error = await rpc_error(node.stub.NodeUnpublishVolume(unpublish_request(volume_id, target)))

    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert (target / "not ours").read_text() == "data"


async def test_paths_that_escape_the_kubelet_folder_are_refused_or_hold_no_volume(
    node: Node, tmp_path: Path
) -> None:
    volume_id, staging = await staged_volume(node)
    outside = tmp_path / "outside"
    outside.mkdir()
    link = node.host.kubelet / "pods" / "sneaky"
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(outside)
    escapes = [
        str(node.host.kubelet / ".." / "escaped"),
        str(link / "mount"),
        "pods/relative",
        str(node.host.kubelet),
        "/",
    ]
    for path in escapes:
        publish = await rpc_error(
            node.stub.NodePublishVolume(publish_request(volume_id, staging, Path(path)))
        )
        unpublish = await rpc_error(node.stub.NodeUnpublishVolume(unpublish_request(volume_id, Path(path))))
        stage = await rpc_error(node.stub.NodeStageVolume(stage_request(volume_id, Path(path))))
        stats = await rpc_error(
            node.stub.NodeGetVolumeStats(
                csi_pb2.NodeGetVolumeStatsRequest(volume_id=volume_id, volume_path=path)
            )
        )
        expand = await rpc_error(
            node.stub.NodeExpandVolume(csi_pb2.NodeExpandVolumeRequest(volume_id=volume_id, volume_path=path))
        )
        for error in (publish, unpublish, stage):
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (path, error.details())
        # These two name where a volume already is: a path it cannot be at holds none (spec: NOT_FOUND).
        for error in (stats, expand):
            assert error.code() == grpc.StatusCode.NOT_FOUND, (path, error.details())
            assert "volume_path" in (error.details() or "")
    assert list(outside.iterdir()) == []
    assert not mounted_at(outside / "mount")


async def test_publish_arguments_are_checked(node: Node) -> None:
    volume_id, staging = await staged_volume(node)
    target = node.host.target(volume_id)
    missing_target = await rpc_error(
        node.stub.NodePublishVolume(
            csi_pb2.NodePublishVolumeRequest(
                volume_id=volume_id, staging_target_path=str(staging), volume_capability=mount_capability()
            )
        )
    )
    missing_capability = await rpc_error(
        node.stub.NodePublishVolume(
            csi_pb2.NodePublishVolumeRequest(
                volume_id=volume_id, staging_target_path=str(staging), target_path=str(target)
            )
        )
    )
    missing_volume = await rpc_error(node.stub.NodeUnpublishVolume(unpublish_request("", target)))
    assert missing_target.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "target_path is required" in missing_target.details()
    assert "volume_capability is required" in missing_capability.details()
    assert "volume_id is required" in missing_volume.details()


@pytest.mark.parametrize("block", [False, True], ids=["mount", "block"])
async def test_a_single_writer_volume_is_published_at_one_target_at_a_time(node: Node, block: bool) -> None:
    """Spec: SINGLE_NODE_SINGLE_WRITER is published once on the node at any given time; a second target
    is FAILED_PRECONDITION, the same target again is OK, and once unpublished another target may have it."""
    volume_id = new_volume_id()
    node.host.disk(64, volume_id)
    single = AccessMode.SINGLE_NODE_SINGLE_WRITER
    capability = block_capability(single) if block else mount_capability(mode=single)
    staging = node.host.staging(volume_id, block=block)
    first = node.host.target(volume_id, "pod-1", block=block)
    second = node.host.target(volume_id, "pod-2", block=block)
    await node.stub.NodeStageVolume(stage_request(volume_id, staging, capability))
    await node.stub.NodePublishVolume(publish_request(volume_id, staging, first, capability))
    await node.stub.NodePublishVolume(publish_request(volume_id, staging, first, capability))

    refused = await rpc_error(
        node.stub.NodePublishVolume(publish_request(volume_id, staging, second, capability))
    )

    assert refused.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert str(first) in (refused.details() or "")
    assert not mounted_at(second)
    await node.stub.NodeUnpublishVolume(unpublish_request(volume_id, first))
    await node.stub.NodePublishVolume(publish_request(volume_id, staging, second, capability))
    assert mounted_at(second)
    await node.stub.NodeUnpublishVolume(unpublish_request(volume_id, second))


async def test_a_multi_writer_volume_is_published_at_many_targets(node: Node) -> None:
    volume_id, staging = await staged_volume(node)
    capability = mount_capability(mode=AccessMode.SINGLE_NODE_MULTI_WRITER)
    targets = [node.host.target(volume_id, f"pod-{n}") for n in range(2)]
    for target in targets:
        await node.stub.NodePublishVolume(publish_request(volume_id, staging, target, capability))
    assert all(mounted_at(target) for target in targets)
    for target in targets:
        await node.stub.NodeUnpublishVolume(unpublish_request(volume_id, target))
