"""Node safety through the whole installation (controller, node plugin processes, the emulator's disks):
a disk that holds anything is never formatted, busy mounts are left intact until free, broken mounts
are cleaned, and two stage calls at once format once. tests/node covers the same rules RPC by RPC on
bare loop devices; here the disks come from the cloud and the calls from the orchestrator."""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from csi_xloud._proto import csi_pb2
from csi_xloud.demo.cluster import mounts_below
from csi_xloud.demo.orchestrator import PersistentVolume, block_capability, mount_capability
from tests.faults.lifecycle import GIB, read_payload, write_payload
from tests.faults.support import FaultCluster, Sidecars, is_root

pytestmark = pytest.mark.skipif(not is_root(), reason="the node plugin mounts: run as root")
MIB = 1 << 20


def sh(*argv: str, stdin: bytes | None = None) -> None:
    subprocess.run(argv, input=stdin, check=True, capture_output=True)


def put_xfs(device: str) -> None:
    sh("mkfs.xfs", "-q", device)


def put_gpt(device: str) -> None:
    sh("sfdisk", "-q", "--no-reread", device, stdin=b"label: gpt\n,16M\n")


def put_lvm(device: str) -> None:
    sh("pvcreate", "-q", "-y", "--devices", device, device)


def put_luks(device: str) -> None:
    sh("cryptsetup", "luksFormat", "-q", "--type", "luks2", "--pbkdf", "pbkdf2", "--pbkdf-force-iterations",
       "1000", "--key-file", "-", device, stdin=b"a test key")  # fmt: skip


def head_sha256(device: str, size: int = 64 * MIB) -> str:
    with open(device, "rb") as disk:
        return hashlib.sha256(disk.read(size)).hexdigest()


def disk_of(cluster: FaultCluster, node: str, volume_id: str) -> str:
    """The block device the cloud attached, through its by-id link on the node."""
    assert cluster.emulator is not None
    server = next(s for s in cluster.emulator.servers if s["id"] == node)
    return os.path.realpath(Path(server["device_dir"]) / f"virtio-{volume_id[:20]}")


def formatting_lines(cluster: FaultCluster, node: str) -> list[str]:
    log = (
        cluster.data_dir
        / "logs"
        / f"node-{next(s['name'] for s in cluster.emulator.servers if s['id'] == node)}.log"
    )  # type: ignore[union-attr]
    return [line for line in log.read_text().splitlines() if "formatting" in line]


@pytest.mark.parametrize(
    ("holding", "signature"),
    [(put_xfs, "xfs"), (put_gpt, "gpt"), (put_lvm, "LVM2_member"), (put_luks, "crypto_LUKS")],
    ids=["another-filesystem", "partition-table", "lvm-pv", "luks"],
)
async def test_a_disk_written_by_a_pod_is_never_formatted_when_staged_as_a_filesystem(
    cluster: FaultCluster, co: Sidecars, holding: Callable[[str], None], signature: str
) -> None:
    node = cluster.server_ids()[0]
    raw = await co.provision(GIB, block_capability())
    pod = str(uuid.uuid4())
    try:
        await co.attach(raw, node)
        await co.stage(raw, node)
        await co.publish(raw, node, pod)
        holding(disk_of(cluster, node, raw.volume_id))  # what a pod with the raw device wrote
        await co.unpublish(raw, node, pod)
        await co.unstage(raw, node)
        await co.detach(raw, node)
        as_filesystem = PersistentVolume(
            raw.name, raw.volume_id, raw.capacity_bytes, mount_capability(), raw.zone
        )
        await co.attach(as_filesystem, node)
        device = disk_of(cluster, node, raw.volume_id)
        before, formatted = head_sha256(device), len(formatting_lines(cluster, node))
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await co.stage(as_filesystem, node)
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION, refused.value.details()
        assert signature in (refused.value.details() or "")
        assert head_sha256(device) == before, "the disk changed"
        assert len(formatting_lines(cluster, node)) == formatted
        assert mounts_below(co.nodes[node].kubelet.root) == []
        await co.detach(as_filesystem, node)
    finally:
        await co.delete(raw)


async def test_two_stage_calls_at_once_format_once(cluster: FaultCluster, co: Sidecars) -> None:
    node = cluster.server_ids()[1]
    pv = await co.provision(GIB, mount_capability("xfs"))
    try:
        await co.attach(pv, node)
        formatted = len(formatting_lines(cluster, node))
        await asyncio.gather(*(co.stage(pv, node) for _ in range(3)))
        assert len(formatting_lines(cluster, node)) == formatted + 1
        assert co.retries["NodeStageVolume ABORTED"] >= 1, "the calls never overlapped"
        await co.unstage(pv, node)
        await co.detach(pv, node)
    finally:
        await co.delete(pv)


async def test_busy_mounts_stay_until_free_and_then_unmount(cluster: FaultCluster, co: Sidecars) -> None:
    """A process holding a file open: unpublish and unstage refuse, keep the mount and the data, then succeed."""
    node = cluster.server_ids()[0]
    stub = co.node_stubs[node]
    pv = await co.provision(GIB, mount_capability())
    pod = str(uuid.uuid4())
    try:
        await co.attach(pv, node)
        staging = await co.stage(pv, node)
        target = await co.publish(pv, node, pod)
        written = write_payload(target, MIB)
        unpublish = csi_pb2.NodeUnpublishVolumeRequest(volume_id=pv.volume_id, target_path=str(target))
        with (target / "payload.bin").open("rb"):
            with pytest.raises(grpc.aio.AioRpcError) as busy:
                await stub.NodeUnpublishVolume(unpublish)
            assert busy.value.code() != grpc.StatusCode.OK
            assert os.path.ismount(target) and read_payload(target) == written
        await stub.NodeUnpublishVolume(unpublish)
        assert not os.path.lexists(target)
        unstage = csi_pb2.NodeUnstageVolumeRequest(volume_id=pv.volume_id, staging_target_path=str(staging))
        with (staging / "payload.bin").open("rb"):
            with pytest.raises(grpc.aio.AioRpcError):
                await stub.NodeUnstageVolume(unstage)
            assert os.path.ismount(staging) and read_payload(staging) == written
        await stub.NodeUnstageVolume(unstage)
        assert not os.path.ismount(staging)
        await co.detach(pv, node)
    finally:
        await co.delete(pv)


def broken_fuse_mount(path: Path) -> None:
    """A FUSE mount whose daemon is gone: every access answers ENOTCONN, as after a crash."""
    path.mkdir(parents=True, exist_ok=True)
    fd = os.open("/dev/fuse", os.O_RDWR)
    try:
        subprocess.run(["mount", "-t", "fuse.csx-broken", "-o", f"fd={fd},rootmode=40000,user_id=0,group_id=0",
                        "csx", str(path)], pass_fds=(fd,), check=True, capture_output=True)  # fmt: skip
    finally:
        os.close(fd)


@pytest.mark.skipif(not os.path.exists("/dev/fuse"), reason="no /dev/fuse to make a broken mount with")
async def test_broken_mounts_stacked_on_a_volume_are_cleaned_and_the_data_kept(
    cluster: FaultCluster, co: Sidecars
) -> None:
    node = cluster.server_ids()[0]
    pv = await co.provision(GIB, mount_capability())
    pod = str(uuid.uuid4())
    try:
        await co.attach(pv, node)
        staging = await co.stage(pv, node)
        target = await co.publish(pv, node, pod)
        written = write_payload(target, MIB)
        broken_fuse_mount(target)  # a dead mount stacked on the publish
        broken_fuse_mount(staging)  # and on the staging mount
        await co.unpublish(pv, node, pod)
        assert not os.path.lexists(target)
        await co.unstage(pv, node)
        assert not os.path.ismount(staging)
        await co.stage(pv, node)  # the data is still on the volume
        assert read_payload(staging) == written
        await co.unstage(pv, node)
        await co.detach(pv, node)
    finally:
        await co.delete(pv)
