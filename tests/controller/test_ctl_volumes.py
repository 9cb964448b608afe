"""CreateVolume and DeleteVolume against the emulator, through the socket."""

from __future__ import annotations

import grpc

from csi_xloud import TOPOLOGY_KEY
from csi_xloud._proto import csi_pb2
from tests.controller.harness import GIB, Harness, expect_code, gib_range, mount_cap, unique


async def test_create_and_delete_volume(ctl: Harness) -> None:
    volume = await ctl.create_volume(size_gib=1)
    assert volume.capacity_bytes == GIB
    assert [dict(t.segments) for t in volume.accessible_topology] == [{TOPOLOGY_KEY: "nova"}]
    stored = await ctl.cloud.storage.get_volume(volume.volume_id)
    assert stored.raw_status == "available"
    await ctl.stub.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=volume.volume_id))
    await expect_code(ctl.cloud.storage.get_volume(volume.volume_id), grpc.StatusCode.OK)
