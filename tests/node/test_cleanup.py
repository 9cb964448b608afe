"""The test fixture's promise: every loop device and mount a test made is gone afterwards, even mid-way."""

from __future__ import annotations

import tempfile
from pathlib import Path

from nodekit import Host, build_service, new_volume_id, publish_request, sh, stage_request
from test_publish import broken_fuse_mount

from csi_xloud.osutil.mounts import parse_mountinfo


async def test_cleanup_removes_stacked_mounts_broken_mounts_and_loop_devices() -> None:
    host = Host(Path(tempfile.mkdtemp(prefix="csx-node-")))
    host.kubelet.mkdir()
    host.device_dir.mkdir()
    try:
        service = build_service(host, [])
        volume_id = new_volume_id()
        disk = host.disk(64, volume_id)
        read_only = host.disk(8)
        sh("blockdev", "--setro", str(read_only.device))
        staging, target = host.staging(volume_id), host.target(volume_id)
        await service.NodeStageVolume(stage_request(volume_id, staging), None)  # type: ignore[arg-type]
        await service.NodePublishVolume(publish_request(volume_id, staging, target), None)  # type: ignore[arg-type]
        broken_fuse_mount(host.root / "broken")
        elsewhere = Path(tempfile.mkdtemp(prefix="csx-elsewhere-"))  # a mount of our disk outside the root
        sh("mount", str(disk.device), str(elsewhere))
    finally:
        host.cleanup()

    entries = parse_mountinfo(Path("/proc/self/mountinfo").read_text())
    assert not [e for e in entries if e.mount_point.is_relative_to(host.root) or e.device_number == disk.rdev]
    assert str(disk.backing) not in sh("losetup", "-a")
    assert Path(f"/sys/block/{read_only.device.name}/ro").read_text().strip() == "0"  # not passed on
    assert not host.root.exists()
    elsewhere.rmdir()
