"""The call sequences of the CSI community's conformance suite (kubernetes-csi/csi-test, csi-sanity) that
uncovered spec rules, replayed against a `csi-xloud driver --mode all` process on its unix socket, with
the emulator behind it over real HTTP.

Each test names the csi-sanity spec whose calls it makes, in its order and with its arguments (10 GiB
single-node-writer mount volumes, `some/path`, the cleanup's unpublish, unstage and deletes), and
quotes the rule. The emulator takes a second per transition, as csi-sanity saw it, so a snapshot is
still being made when csi-sanity deletes it.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from csi_xloud._proto import csi_pb2, csi_pb2_grpc
from csi_xloud.cloud import errors as cloud_errors
from csi_xloud.cloud.client import CloudClient
from csi_xloud.demo.cluster import DriverProcess, mounts_below, unmount_all_below
from csi_xloud.emulator.process import EmulatorProcess
from tests.controller.harness import AdminApi, cloud_client, expect_code
from tests.faults.support import is_root

GIB = 1 << 30
SANITY_VOLUME_BYTES = 10 * GIB  # csi-sanity's default test volume size
OP_SECONDS = 1.0  # the emulator's default, as csi-sanity ran against it
Mode = csi_pb2.VolumeCapability.AccessMode


@dataclass
class Plugin:
    """The driver process (controller and node in one), its emulator and csi-sanity's folders."""

    emulator: EmulatorProcess
    socket: Path
    node_id: str
    mount_dir: Path  # --csi.mountdir: csi-sanity publishes at <mountdir>/target
    staging_dir: Path  # --csi.stagingdir


@dataclass
class Sanity:
    """What one test talks to: the plugin's three services, and the cloud for checking."""

    plugin: Plugin
    identity: csi_pb2_grpc.IdentityStub
    controller: csi_pb2_grpc.ControllerStub
    node: csi_pb2_grpc.NodeStub
    cloud: CloudClient
    admin: AdminApi

    @property
    def target(self) -> str:
        return str(self.plugin.mount_dir / "target")

    async def create_volume(self, prefix: str) -> csi_pb2.Volume:
        """MakeCreateVolumeReq: a 10 GiB single-node-writer mount volume, no parameters."""
        request = csi_pb2.CreateVolumeRequest(
            name=unique(prefix),
            volume_capabilities=[sanity_capability()],
            capacity_range=csi_pb2.CapacityRange(required_bytes=SANITY_VOLUME_BYTES),
        )
        return (await self.controller.CreateVolume(request)).volume

    async def create_snapshot(self, prefix: str, volume_id: str, **parameters: str) -> csi_pb2.Snapshot:
        """MakeCreateSnapshotReq (with --csi.testsnapshotparameters when parameters are given)."""
        request = csi_pb2.CreateSnapshotRequest(
            name=unique(prefix), source_volume_id=volume_id, parameters=parameters
        )
        return (await self.controller.CreateSnapshot(request)).snapshot

    async def stage_and_publish(
        self, volume: csi_pb2.Volume, capability: csi_pb2.VolumeCapability
    ) -> tuple[str, dict[str, str]]:
        """NodeGetInfo, ControllerPublishVolume, NodeStageVolume and NodePublishVolume at <mountdir>/target."""
        info = await self.node.NodeGetInfo(csi_pb2.NodeGetInfoRequest())
        assert info.node_id == self.plugin.node_id
        published = await self.controller.ControllerPublishVolume(
            csi_pb2.ControllerPublishVolumeRequest(
                volume_id=volume.volume_id,
                node_id=info.node_id,
                volume_capability=capability,
                volume_context=volume.volume_context,
            )
        )
        await self.node.NodeStageVolume(
            csi_pb2.NodeStageVolumeRequest(
                volume_id=volume.volume_id,
                volume_capability=capability,
                staging_target_path=str(self.plugin.staging_dir),
                volume_context=volume.volume_context,
                publish_context=published.publish_context,
            )
        )
        await self.node.NodePublishVolume(self.publish_request(volume, capability, published, self.target))
        return info.node_id, dict(published.publish_context)

    def publish_request(
        self,
        volume: csi_pb2.Volume,
        capability: csi_pb2.VolumeCapability,
        published: csi_pb2.ControllerPublishVolumeResponse | dict[str, str],
        target: str,
    ) -> csi_pb2.NodePublishVolumeRequest:
        context = published if isinstance(published, dict) else dict(published.publish_context)
        return csi_pb2.NodePublishVolumeRequest(
            volume_id=volume.volume_id,
            target_path=target,
            staging_target_path=str(self.plugin.staging_dir),
            volume_capability=capability,
            volume_context=volume.volume_context,
            publish_context=context,
        )

    async def cleanup_snapshot(self, snapshot_id: str) -> None:
        """Resources.cleanupSnapshot: DeleteSnapshot must succeed."""
        await self.controller.DeleteSnapshot(csi_pb2.DeleteSnapshotRequest(snapshot_id=snapshot_id))

    async def cleanup_volume(self, volume_id: str, published_on: str | None = None) -> None:
        """Resources.cleanupVolume: node unpublish and unstage (NOT_FOUND tolerated), unpublish, delete."""
        staging = str(self.plugin.staging_dir)
        for call in (
            lambda: self.node.NodeUnpublishVolume(
                csi_pb2.NodeUnpublishVolumeRequest(volume_id=volume_id, target_path=self.target)
            ),
            lambda: self.node.NodeUnstageVolume(
                csi_pb2.NodeUnstageVolumeRequest(volume_id=volume_id, staging_target_path=staging)
            ),
        ):
            try:
                await call()
            except grpc.aio.AioRpcError as exc:
                assert exc.code() == grpc.StatusCode.NOT_FOUND, exc.details()
        if published_on is not None:
            await self.controller.ControllerUnpublishVolume(
                csi_pb2.ControllerUnpublishVolumeRequest(volume_id=volume_id, node_id=published_on)
            )
        await self.controller.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=volume_id))

    async def listed_snapshot_ids(self) -> list[str]:
        response = await self.controller.ListSnapshots(csi_pb2.ListSnapshotsRequest())
        return [entry.snapshot.snapshot_id for entry in response.entries]

    async def assert_gone(self, volume_id: str, *snapshot_ids: str) -> None:
        """The cloud holds neither the volume nor the snapshots: the deletes answered only when done."""
        with pytest.raises(cloud_errors.NotFound):
            await self.cloud.storage.get_volume(volume_id)
        for snapshot_id in snapshot_ids:
            with pytest.raises(cloud_errors.NotFound):
                await self.cloud.storage.get_snapshot(snapshot_id)


def unique(prefix: str) -> str:
    """UniqueString: the prefix and a random suffix."""
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


def sanity_capability(mode: int = Mode.SINGLE_NODE_WRITER) -> csi_pb2.VolumeCapability:
    """TestVolumeCapabilityWithAccessType(mode): a mount with no fs_type (SINGLE_NODE_WRITER by default)."""
    return csi_pb2.VolumeCapability(
        mount=csi_pb2.VolumeCapability.MountVolume(),
        access_mode=Mode(mode=mode),  # type: ignore[arg-type]
    )


@pytest.fixture(scope="module")
def plugin() -> Iterator[Plugin]:
    """`csi-xloud emulator --servers node-a` and `csi-xloud driver --mode all` for it, as csi-sanity is run."""
    root = Path(tempfile.mkdtemp(prefix="csx-sanity-"))
    emulator = EmulatorProcess(root / "cloud", servers="node-a", op_seconds=OP_SECONDS)
    driver: DriverProcess | None = None
    try:
        emulator.start()
        server = emulator.servers[0]
        kubelet = root / "kubelet"
        mount_dir, staging_dir = kubelet / "mnt", kubelet / "stage"
        for folder in (mount_dir, staging_dir):
            folder.mkdir(parents=True)
        socket = root / "csi.sock"
        argv = [
            sys.executable, "-m", "csi_xloud", "driver", "--mode", "all", "--endpoint", f"unix://{socket}",
            "--cloud", "xloud-emulator", "--cloud-config", str(emulator.clouds_yaml),
            "--node-id", str(server["id"]), "--device-dir", str(server["device_dir"]),
            "--kubelet-dir", str(kubelet), "--metadata-url", f"{emulator.url}/_emulator/metadata/{server['id']}",
        ]  # fmt: skip
        driver = DriverProcess("all", socket, argv, root / "driver.log")
        driver.start()
        driver.wait_for_socket()
        yield Plugin(emulator, socket, str(server["id"]), mount_dir, staging_dir)
    finally:
        if driver is not None:
            driver.stop()
        left = mounts_below(root)
        unmount_all_below(root)
        emulator.stop()
        shutil.rmtree(root, ignore_errors=True)
        assert left == [], f"left mounted: {left}"


@pytest.fixture
async def sanity(plugin: Plugin) -> AsyncIterator[Sanity]:
    cloud = cloud_client(plugin.emulator)
    admin_cloud = cloud_client(plugin.emulator, "xloud-emulator-admin")
    admin = AdminApi(admin_cloud)
    try:
        async with grpc.aio.insecure_channel(f"unix://{plugin.socket}") as channel:
            yield Sanity(
                plugin,
                csi_pb2_grpc.IdentityStub(channel),
                csi_pb2_grpc.ControllerStub(channel),
                csi_pb2_grpc.NodeStub(channel),
                cloud,
                admin,
            )
    finally:
        plugin.emulator.clear_faults()
        await admin.aclose()
        await admin_cloud.aclose()
        await cloud.aclose()


# -- DeleteSnapshot and DeleteVolume while the cloud is still at work -------------------------------


async def test_delete_snapshot_right_after_create_snapshot(sanity: Sanity) -> None:
    """DeleteSnapshot [Controller Server] should return appropriate values (no optional values added).

    Spec, DeleteSnapshot: its error table has no code for a snapshot still being made; the CO may
    delete a VolumeSnapshot a second after creating it, and the snapshot and then its volume go.
    """
    volume = await sanity.create_volume("DeleteSnapshot-volume-1")
    snapshot = await sanity.create_snapshot("DeleteSnapshot-snapshot-1", volume.volume_id)
    assert not snapshot.ready_to_use, "the snapshot was made already: the test proves nothing"

    await sanity.cleanup_snapshot(snapshot.snapshot_id)
    await sanity.cleanup_volume(volume.volume_id)

    await sanity.assert_gone(volume.volume_id, snapshot.snapshot_id)


async def test_a_snapshot_deleted_while_being_made_leaves_the_list(sanity: Sanity) -> None:
    """ListSnapshots [Controller Server] check the presence of new snapshots in the snapshot list.

    Spec, DeleteSnapshot: once it answers OK the snapshot is gone, so ListSnapshots omits it.
    """
    before = await sanity.listed_snapshot_ids()
    volume = await sanity.create_volume("listSnapshots-volume-3")
    snapshot = await sanity.create_snapshot("listSnapshots-snapshot-3", volume.volume_id)
    assert len(await sanity.listed_snapshot_ids()) == len(before) + 1

    await sanity.controller.DeleteSnapshot(csi_pb2.DeleteSnapshotRequest(snapshot_id=snapshot.snapshot_id))

    assert sorted(await sanity.listed_snapshot_ids()) == sorted(before)
    await sanity.cleanup_snapshot(snapshot.snapshot_id)  # the cleanup deletes it again: still OK
    await sanity.cleanup_volume(volume.volume_id)
    await sanity.assert_gone(volume.volume_id, snapshot.snapshot_id)


async def test_delete_snapshot_of_a_backup_being_made(sanity: Sanity) -> None:
    """The same DeleteSnapshot sequence with the backup class (--csi.testsnapshotparameters type: backup)."""
    volume = await sanity.create_volume("DeleteSnapshot-volume-1")
    snapshot = await sanity.create_snapshot("DeleteSnapshot-snapshot-1", volume.volume_id, type="backup")
    assert not snapshot.ready_to_use, "the backup was made already: the test proves nothing"

    await sanity.cleanup_snapshot(snapshot.snapshot_id)
    await sanity.cleanup_volume(volume.volume_id)

    await sanity.assert_gone(volume.volume_id)
    assert [b.id for b in (await sanity.cloud.storage.list_backups(volume_id=volume.volume_id)).items] == []


async def test_delete_snapshot_answers_aborted_when_the_deadline_is_too_short(sanity: Sanity) -> None:
    """DeleteSnapshot on a snapshot that stays `creating` past the call's deadline.

    Spec, DeleteSnapshot: 10 ABORTED "there is already an operation pending for the specified
    snapshot"; the CO retries. It comes before the caller's deadline, so the caller sees why.
    """
    volume = await sanity.create_volume("DeleteSnapshot-volume-1")
    sanity.plugin.emulator.set_faults([{"method": "POST", "path": r"/snapshots$", "outcome": "stuck"}])
    snapshot = await sanity.create_snapshot("DeleteSnapshot-snapshot-1", volume.volume_id)

    started = time.monotonic()
    await expect_code(
        sanity.controller.DeleteSnapshot(
            csi_pb2.DeleteSnapshotRequest(snapshot_id=snapshot.snapshot_id), timeout=3.0
        ),
        grpc.StatusCode.ABORTED,
        snapshot.snapshot_id,
        "creating",
    )
    assert time.monotonic() - started < 3.0

    await sanity.admin.reset_snapshot_status(snapshot.snapshot_id, "available")  # what an operator does
    await sanity.cleanup_snapshot(snapshot.snapshot_id)
    await sanity.cleanup_volume(volume.volume_id)
    await sanity.assert_gone(volume.volume_id, snapshot.snapshot_id)


async def test_delete_volume_waits_for_a_volume_still_being_grown(sanity: Sanity) -> None:
    """A ControllerExpandVolume whose caller gave up (its deadline passed while the volume was still
    `extending`), then csi-sanity's cleanup: the claim was deleted meanwhile.

    Spec, DeleteVolume: its error table has no code for a volume in transition; the cloud refuses to
    delete it until it is done, so the plugin waits and then deletes it.
    """
    volume = await sanity.create_volume("sanity-controller-expand")
    expand = csi_pb2.ControllerExpandVolumeRequest(
        volume_id=volume.volume_id,
        capacity_range=csi_pb2.CapacityRange(required_bytes=2 * SANITY_VOLUME_BYTES),
    )
    await expect_code(
        sanity.controller.ControllerExpandVolume(expand, timeout=0.3), grpc.StatusCode.DEADLINE_EXCEEDED
    )
    status = (await sanity.cloud.storage.get_volume(volume.volume_id)).raw_status
    assert status == "extending", "the volume was grown already: the test proves nothing"

    await sanity.cleanup_volume(volume.volume_id)

    await sanity.assert_gone(volume.volume_id)


async def test_delete_volume_answers_aborted_when_the_deadline_is_too_short(sanity: Sanity) -> None:
    """DeleteVolume on a volume that stays `extending` past the call's deadline.

    Spec, DeleteVolume: 10 ABORTED "there is already an operation pending for the specified volume".
    """
    volume = await sanity.create_volume("sanity-controller-expand")
    sanity.plugin.emulator.set_faults([{"method": "POST", "path": r"/action$", "outcome": "stuck"}])
    expand = csi_pb2.ControllerExpandVolumeRequest(
        volume_id=volume.volume_id,
        capacity_range=csi_pb2.CapacityRange(required_bytes=2 * SANITY_VOLUME_BYTES),
    )
    await expect_code(
        sanity.controller.ControllerExpandVolume(expand, timeout=1.0), grpc.StatusCode.DEADLINE_EXCEEDED
    )
    assert (await sanity.cloud.storage.get_volume(volume.volume_id)).raw_status == "extending"

    started = time.monotonic()
    await expect_code(
        sanity.controller.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=volume.volume_id), timeout=3.0),
        grpc.StatusCode.ABORTED,
        volume.volume_id,
        "extending",
    )
    assert time.monotonic() - started < 3.0

    await sanity.admin.reset_status(volume.volume_id, "available")
    await sanity.cleanup_volume(volume.volume_id)
    await sanity.assert_gone(volume.volume_id)


# -- retries until the call's deadline --------------------------------------------------------------


async def test_delete_volume_rides_out_a_burst_of_503s(sanity: Sanity) -> None:
    """csi-sanity's cleanup DeleteVolume (no deadline) while every GET meets 5 consecutive 503s.

    An idempotent call keeps retrying until its own deadline (here the configured api_timeout from the
    first failure, as csi-sanity sends none), not for a fixed count.
    """
    volume = await sanity.create_volume("DeleteVolume-volume")
    sanity.plugin.emulator.set_faults([{"method": "GET", "path": ".*", "status": 503, "count": 5}])

    await sanity.cleanup_volume(volume.volume_id)

    await sanity.assert_gone(volume.volume_id)


async def test_a_burst_longer_than_the_deadline_is_unavailable_before_it(sanity: Sanity) -> None:
    """The same DeleteVolume with a 10 s gRPC deadline and 503s that do not stop.

    The retries go on while the sidecar's deadline (sent with the call) allows, well past what a
    fixed count of them would take (about 4 s), and end in time for UNAVAILABLE to reach it.
    """
    volume = await sanity.create_volume("DeleteVolume-volume")
    sanity.plugin.emulator.set_faults(
        [{"method": "GET", "path": r"/volumes/", "status": 503, "count": 10000}]
    )

    started = time.monotonic()
    await expect_code(
        sanity.controller.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=volume.volume_id), timeout=10.0),
        grpc.StatusCode.UNAVAILABLE,
    )
    assert 5.0 < time.monotonic() - started < 10.0

    sanity.plugin.emulator.clear_faults()
    await sanity.cleanup_volume(volume.volume_id)
    await sanity.assert_gone(volume.volume_id)


async def test_creates_wait_out_429_with_retry_after(sanity: Sanity) -> None:
    """CreateVolume and CreateSnapshot while creates meet 429 with Retry-After: one of each is made."""
    sanity.plugin.emulator.set_faults(
        [{"method": "POST", "path": r"/(volumes|snapshots)$", "status": 429, "retry_after": 1, "count": 2}]
    )
    started = time.monotonic()
    volume = await sanity.create_volume("CreateSnapshot-volume-1")
    snapshot = await sanity.create_snapshot("CreateSnapshot-snapshot-1", volume.volume_id)
    assert time.monotonic() - started >= 2.0, "the Retry-After seconds were not waited"
    made = await sanity.cloud.storage.get_snapshot(snapshot.snapshot_id)
    assert [s.id for s in await sanity.cloud.storage.find_snapshot_by_name(made.name)] == [made.id]

    await sanity.cleanup_snapshot(snapshot.snapshot_id)
    await sanity.cleanup_volume(volume.volume_id)
    await sanity.assert_gone(volume.volume_id, snapshot.snapshot_id)


# -- NodeGetVolumeStats and NodeExpandVolume on a path without the volume ---------------------------


async def test_node_get_volume_stats_of_an_unknown_volume_is_not_found(sanity: Sanity) -> None:
    """Node Service NodeGetVolumeStats should fail when volume is not found.

    Spec, NodeGetVolumeStats: 5 NOT_FOUND "volume does not exist on the specified path".
    """
    request = csi_pb2.NodeGetVolumeStatsRequest(volume_id=str(uuid.uuid4()), volume_path="some/path")
    await expect_code(sanity.node.NodeGetVolumeStats(request), grpc.StatusCode.NOT_FOUND, "volume_path")


async def test_node_expand_volume_of_an_unknown_volume_is_not_found(sanity: Sanity) -> None:
    """Node Service NodeExpandVolume should fail when volume is not found.

    Spec, NodeExpandVolume: 5 NOT_FOUND "volume does not exist on the specified path".
    """
    request = csi_pb2.NodeExpandVolumeRequest(volume_id=str(uuid.uuid4()), volume_path="some/path")
    await expect_code(sanity.node.NodeExpandVolume(request), grpc.StatusCode.NOT_FOUND, "volume_path")


@pytest.mark.skipif(not is_root(), reason="the node stages and publishes on loop devices: run as root")
async def test_node_get_volume_stats_of_a_published_volume_at_another_path_is_not_found(
    sanity: Sanity,
) -> None:
    """Node Service NodeGetVolumeStats should fail when volume does not exist on the specified path.

    Spec, NodeGetVolumeStats: 5 NOT_FOUND for a path the volume is not at, though it is published
    elsewhere on the node; the published path itself answers its usage.
    """
    volume = await sanity.create_volume("sanity-node-get-volume-stats")
    node_id = sanity.plugin.node_id
    try:
        await sanity.stage_and_publish(volume, sanity_capability())

        await expect_code(
            sanity.node.NodeGetVolumeStats(
                csi_pb2.NodeGetVolumeStatsRequest(volume_id=volume.volume_id, volume_path="some/path")
            ),
            grpc.StatusCode.NOT_FOUND,
            "volume_path",
        )
        stats = await sanity.node.NodeGetVolumeStats(
            csi_pb2.NodeGetVolumeStatsRequest(volume_id=volume.volume_id, volume_path=sanity.target)
        )
        assert stats.usage and not stats.volume_condition.abnormal
    finally:
        await sanity.cleanup_volume(volume.volume_id, published_on=node_id)
    await sanity.assert_gone(volume.volume_id)
    assert mounts_below(sanity.plugin.mount_dir.parent) == []


@pytest.mark.skipif(not is_root(), reason="the node stages and publishes on loop devices: run as root")
async def test_a_single_writer_volume_published_at_another_target_is_failed_precondition(
    sanity: Sanity,
) -> None:
    """Node Service NodePublishVolume with single node multi writer capability should fail when volume
    with single node single writer access mode is already mounted at a different target path.

    Spec: the node's SINGLE_NODE_MULTI_WRITER capability says it serves SINGLE_NODE_SINGLE_WRITER, which
    "can only be published once as read/write on a single node, at any given time": 9 FAILED_PRECONDITION.
    """
    capabilities = await sanity.node.NodeGetCapabilities(csi_pb2.NodeGetCapabilitiesRequest())
    rpc = csi_pb2.NodeServiceCapability.RPC
    assert rpc.SINGLE_NODE_MULTI_WRITER in {c.rpc.type for c in capabilities.capabilities}
    single = sanity_capability(Mode.SINGLE_NODE_SINGLE_WRITER)
    volume = await sanity.create_volume("sanity-node-publish-single-node-single-writer")
    node_id = sanity.plugin.node_id
    try:
        _, publish_context = await sanity.stage_and_publish(volume, single)
        other = str(sanity.plugin.mount_dir / "other_target")
        await expect_code(
            sanity.node.NodePublishVolume(sanity.publish_request(volume, single, publish_context, other)),
            grpc.StatusCode.FAILED_PRECONDITION,
            "SINGLE_NODE_SINGLE_WRITER",
        )
    finally:
        await sanity.cleanup_volume(volume.volume_id, published_on=node_id)
    await sanity.assert_gone(volume.volume_id)
    assert mounts_below(sanity.plugin.mount_dir.parent) == []
