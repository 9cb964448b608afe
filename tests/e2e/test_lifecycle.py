"""The whole life of volumes as Kubernetes drives it, through the real sockets, processes and loop devices."""

from __future__ import annotations

import asyncio
import errno
import io
import os
import uuid

import grpc
import pytest

from csi_xloud import GIB
from csi_xloud.demo.cluster import Cluster
from csi_xloud.demo.orchestrator import Orchestrator, block_capability, mount_capability
from csi_xloud.demo.scenario import Report, Walk, verify_files, write_files
from csi_xloud.osutil.filesystem import can_grow_mounted_ext4

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="end-to-end tests attach loop devices and mount: run as root"
)


async def test_the_demo_walk(cluster: Cluster, co: Orchestrator) -> None:
    node_a, node_b = cluster.server_ids()[:2]
    report = Report(io.StringIO())
    # Where the kernel will not grow a mounted ext4 for us (no CAP_SYS_RESOURCE), the walk runs on xfs;
    # tests/node proves the clear refusal for ext4 there.
    await Walk(co, report, node_a, node_b, "ext4" if can_grow_mounted_ext4() else "xfs").run()
    assert all(result.ok for result in report.results), report.summary()
    assert len(report.results) >= 20


async def test_a_volume_attached_to_one_node_is_refused_to_another(
    cluster: Cluster, co: Orchestrator
) -> None:
    node_a, node_b = cluster.server_ids()[:2]
    pv = await co.provision(GIB, mount_capability())
    await co.attach(pv, node_a)
    try:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await co.attach(pv, node_b)
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        again = await co.attach(pv, node_a)  # the same attachment again answers the same
        assert again == pv.publish_context[node_a]
    finally:
        await co.detach(pv, node_a)
        await co.delete(pv)


async def test_moving_a_volume_between_nodes_keeps_its_data(cluster: Cluster, co: Orchestrator) -> None:
    node_a, node_b = cluster.server_ids()[:2]
    pv = await co.provision(GIB, mount_capability("xfs"))
    sums: dict[str, str] = {}
    try:
        for node in (node_a, node_b, node_a):
            pod = str(uuid.uuid4())
            await co.attach(pv, node)
            await co.stage(pv, node)
            mount = await co.publish(pv, node, pod)
            verify_files(mount, sums)
            sums.update(write_files(mount, 1, 1 << 20, prefix=f"from-{node[:8]}-{len(sums)}"))
            await co.unpublish(pv, node, pod)
            await co.unstage(pv, node)
            await co.detach(pv, node)
        assert len(sums) == 3
    finally:
        await co.delete(pv)


async def test_read_only_publish_refuses_writes(cluster: Cluster, co: Orchestrator) -> None:
    node_a = cluster.server_ids()[0]
    pv = await co.provision(GIB, mount_capability())
    writer, reader = str(uuid.uuid4()), str(uuid.uuid4())
    await co.attach(pv, node_a)
    await co.stage(pv, node_a)
    try:
        rw = await co.publish(pv, node_a, writer)
        sums = write_files(rw, 1, 1 << 20)
        ro = await co.publish(pv, node_a, reader, readonly=True)
        verify_files(ro, sums)
        with pytest.raises(OSError) as refused:
            (ro / "new-file").write_bytes(b"x")
        assert refused.value.errno == errno.EROFS
    finally:
        for pod in (writer, reader):
            await co.unpublish(pv, node_a, pod)
        await co.unstage(pv, node_a)
        await co.detach(pv, node_a)
        await co.delete(pv)


async def test_concurrent_pvcs_on_one_node(cluster: Cluster, co: Orchestrator) -> None:
    node_a = cluster.server_ids()[0]

    async def one_life(index: int) -> None:
        capability = (
            block_capability() if index % 4 == 3 else mount_capability("xfs" if index % 2 else "ext4")
        )
        pv = await co.provision(GIB, capability)
        pod = str(uuid.uuid4())
        await co.attach(pv, node_a)
        await co.stage(pv, node_a)
        target = await co.publish(pv, node_a, pod)
        if pv.block:
            data = os.urandom(1 << 20)
            fd = os.open(target, os.O_RDWR)
            try:
                os.pwrite(fd, data, 0)
                os.fsync(fd)
                assert os.pread(fd, len(data), 0) == data
            finally:
                os.close(fd)
        else:
            sums = await asyncio.to_thread(write_files, target, 2, 1 << 20)
            await asyncio.to_thread(verify_files, target, sums)
        await co.unpublish(pv, node_a, pod)
        await co.unstage(pv, node_a)
        await co.detach(pv, node_a)
        await co.delete(pv)

    await asyncio.gather(*(one_life(i) for i in range(8)))


async def test_staging_paths_follow_the_kubelet_layout(cluster: Cluster, co: Orchestrator) -> None:
    node_a = cluster.server_ids()[0]
    pv = await co.provision(GIB, mount_capability())
    await co.attach(pv, node_a)
    try:
        staging = await co.stage(pv, node_a)
        kubelet = cluster.node_handles[node_a].kubelet.root
        assert staging.is_relative_to(kubelet / "plugins/kubernetes.io/csi/block.csi.xloud.tech")
        assert staging.name == "globalmount" and os.path.ismount(staging)
        await co.unstage(pv, node_a)
        assert not os.path.ismount(staging)
        await co.unstage(pv, node_a)  # again: the spec wants 0 OK when not staged
    finally:
        await co.detach(pv, node_a)
        await co.delete(pv)
