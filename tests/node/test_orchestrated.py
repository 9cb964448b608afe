"""The node driven as the kubelet drives it (the Orchestrator), with the controller's publish_context."""

from __future__ import annotations

from nodekit import Node, mounted_at, new_volume_id

from csi_xloud import GIB
from csi_xloud.demo.orchestrator import (
    KubeletPaths,
    NodeHandle,
    Orchestrator,
    PersistentVolume,
    block_capability,
    mount_capability,
)


async def test_a_volume_life_in_the_kubelet_call_order_and_paths(node: Node) -> None:
    filesystem, raw = new_volume_id(), new_volume_id()
    fs_disk = node.host.disk(1024, filesystem)
    raw_disk = node.host.disk(1024, raw)
    handle = NodeHandle("node-1", node.socket, KubeletPaths(node.host.kubelet))
    # The controller socket is never dialled: only kubelet calls are made here.
    async with Orchestrator(node.host.root / "no-controller.sock", {"node-1": handle}) as kube:
        volumes = [
            PersistentVolume("pv-fs", filesystem, GIB, mount_capability("xfs"), None),
            PersistentVolume("pv-raw", raw, GIB, block_capability(), None),
        ]
        for pv, disk in zip(volumes, (fs_disk, raw_disk), strict=True):
            pv.publish_context["node-1"] = {"device_path": str(disk.device), "size_gib": "1"}
        for pv in volumes:
            await kube.stage(pv, "node-1")
            target = await kube.publish(pv, "node-1", "pod-a")
            stats = await kube.volume_stats(pv, "node-1", "pod-a")
            assert not stats.volume_condition.abnormal
            assert stats.usage[0].total > (0.9 * GIB if pv.block else 0.5 * GIB)
            if not pv.block:
                (target / "file").write_text("written by pod-a")
            await kube.unpublish(pv, "node-1", "pod-a")
            await kube.unstage(pv, "node-1")
            assert not target.exists()
            assert not mounted_at(handle.kubelet.staging(pv.volume_id, pv.name, pv.block))
        assert kube.calls["NodeStageVolume"] == 2
    assert node.ran("mkfs.xfs") and not node.ran("mkfs.ext4")
