"""Volume group snapshots end to end: two mounted volumes written, snapshotted together, both restored."""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path

import pytest

from csi_xloud._proto import csi_pb2
from csi_xloud.demo.cluster import Cluster
from csi_xloud.demo.orchestrator import Orchestrator, PersistentVolume, mount_capability
from csi_xloud.demo.scenario import GIB, GROUP_SNAPSHOT_PARAMETERS, verify_files, write_files

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="end-to-end tests attach loop devices and mount: run as root"
)


async def _mount(co: Orchestrator, pv: PersistentVolume, node: str) -> tuple[str, Path]:
    pod = str(uuid.uuid4())
    await co.attach(pv, node)
    await co.stage(pv, node)
    return pod, await co.publish(pv, node, pod)


async def _unmount(co: Orchestrator, pv: PersistentVolume, node: str, pod: str) -> None:
    await co.unpublish(pv, node, pod)
    await co.unstage(pv, node)
    await co.detach(pv, node)


async def test_two_mounted_volumes_snapshotted_together_restore_byte_for_byte(
    cluster: Cluster, co: Orchestrator
) -> None:
    node_a, node_b = cluster.server_ids()[:2]
    data = await co.provision(GIB, mount_capability("ext4"))
    log = await co.provision(2 * GIB, mount_capability("xfs"))
    created = [data, log]
    group = None
    try:
        data_pod, data_mount = await _mount(co, data, node_a)
        log_pod, log_mount = await _mount(co, log, node_b)
        try:
            expected = {
                data.volume_id: await asyncio.to_thread(write_files, data_mount, 3, 3 << 20, "rows"),
                log.volume_id: await asyncio.to_thread(write_files, log_mount, 2, 5 << 20, "wal"),
            }
            group = await co.group_snapshot([data, log], GROUP_SNAPSHOT_PARAMETERS)
            # Still mounted and writable; what is written now is not in the group snapshot.
            later = await asyncio.to_thread(write_files, data_mount, 1, 1 << 20, "after")
            await asyncio.to_thread(verify_files, data_mount, {**expected[data.volume_id], **later})
        finally:
            await _unmount(co, data, node_a, data_pod)
            await _unmount(co, log, node_b, log_pod)
        assert group.ready_to_use and len(group.snapshots) == 2
        assert {s.source_volume_id for s in group.snapshots} == {data.volume_id, log.volume_id}
        assert all(s.group_snapshot_id == group.group_snapshot_id for s in group.snapshots)
        for member in group.snapshots:
            source = next(pv for pv in created[:2] if pv.volume_id == member.source_volume_id)
            restored = await co.provision(
                member.size_bytes, source.capability, source=_snapshot_source(member.snapshot_id)
            )
            created.append(restored)
            node = node_b if source is data else node_a  # restored on the other node
            pod, mount = await _mount(co, restored, node)
            try:
                await asyncio.to_thread(verify_files, mount, expected[source.volume_id])
                names = sorted(p.name for p in mount.iterdir() if p.suffix == ".bin")
                assert names == sorted(expected[source.volume_id]), names  # nothing written later
            finally:
                await _unmount(co, restored, node, pod)
    finally:
        if group is not None:
            await co.delete_group_snapshot(group)
        for pv in reversed(created):
            await co.delete(pv)


def _snapshot_source(snapshot_id: str) -> csi_pb2.VolumeContentSource:
    return csi_pb2.VolumeContentSource(
        snapshot=csi_pb2.VolumeContentSource.SnapshotSource(snapshot_id=snapshot_id)
    )
