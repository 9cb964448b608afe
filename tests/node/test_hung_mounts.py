"""A hung mount stalls only the calls that touch it: the node plugin goes on answering every other call.

The hang is real: a FUSE mount whose daemon never answers, so a stat, statvfs or path lookup under it
sleeps in the kernel, as on a dead NFS server. Closing the daemon's end of /dev/fuse lets those calls
fail with ENOTCONN, as when the daemon dies.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import statistics
import subprocess
import threading
import time
from collections.abc import Awaitable
from pathlib import Path

import grpc
from nodekit import Host, build_service, new_volume_id, serve

from csi_xloud._proto import csi_pb2, csi_pb2_grpc
from csi_xloud.osutil.blocking import BlockingCalls

DEADLINE_SECONDS = 1.0


class HungMount:
    """A FUSE mount at a folder with nobody serving it; release() plays the daemon's death."""

    def __init__(self, mount_point: Path) -> None:
        self.mount_point = mount_point
        self._fd: int | None = None
        self._lock = threading.Lock()

    def __enter__(self) -> HungMount:
        self._fd = os.open("/dev/fuse", os.O_RDWR | os.O_CLOEXEC)
        libc = ctypes.CDLL(None, use_errno=True)
        options = f"fd={self._fd},rootmode=40000,user_id=0,group_id=0".encode()
        if libc.mount(b"csx-hung", str(self.mount_point).encode(), b"fuse", 0, options) != 0:
            error = ctypes.get_errno()
            self.release()
            raise OSError(error, f"mount -t fuse at {self.mount_point}: {os.strerror(error)}")
        return self

    def release(self) -> None:
        """Close the daemon's end: every call waiting on the mount fails with ENOTCONN from now on."""
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def __exit__(self, *exc_info: object) -> None:
        self.release()  # first, or the unmount itself would stat the hung folder
        subprocess.run(["umount", "-l", str(self.mount_point)], capture_output=True, check=False)


def stats_request(volume_id: str, path: Path) -> csi_pb2.NodeGetVolumeStatsRequest:
    return csi_pb2.NodeGetVolumeStatsRequest(volume_id=volume_id, volume_path=str(path))


async def timed(call: Awaitable[object]) -> float:
    started = time.monotonic()
    await call
    return time.monotonic() - started


async def test_a_stats_call_on_a_hung_mount_delays_no_other_call(host: Host, short_tmp: Path) -> None:
    service = build_service(host, [], blocking=BlockingCalls(timeout_seconds=DEADLINE_SECONDS))
    server = await serve(service, short_tmp / "node.sock")
    volume_id = new_volume_id()
    target = host.target(volume_id)
    target.mkdir()
    capabilities = csi_pb2.NodeGetCapabilitiesRequest()
    try:
        with HungMount(target) as hung:
            # Should the loop block after all, the "daemon" dies after a while and the test fails, not hangs.
            watchdog = threading.Timer(15, hung.release)
            watchdog.start()
            try:
                async with grpc.aio.insecure_channel(f"unix://{short_tmp / 'node.sock'}") as channel:
                    node = csi_pb2_grpc.NodeStub(channel)
                    before = [await timed(node.NodeGetCapabilities(capabilities)) for _ in range(20)]

                    started = time.monotonic()
                    stats = asyncio.ensure_future(node.NodeGetVolumeStats(stats_request(volume_id, target)))
                    await asyncio.sleep(0.2)  # the stats call sleeps in the kernel by now
                    during = [await timed(node.NodeGetCapabilities(capabilities)) for _ in range(20)]
                    assert not stats.done(), "the stats call should still be waiting on the hung mount"
                    answer = await stats
                    stats_seconds = time.monotonic() - started

                    # The first call's thread is still stuck: the next one is answered at once, not queued.
                    again_started = time.monotonic()
                    again = await node.NodeGetVolumeStats(stats_request(volume_id, target))
                    again_seconds = time.monotonic() - again_started

                    hung.release()  # the daemon dies: the stuck call returns, the path answers again
                    after = await _stats_once_answered(node, volume_id, target)
            finally:
                watchdog.cancel()
    finally:
        await server.stop(0)

    print(
        f"NodeGetCapabilities median/max ms: before {statistics.median(before) * 1000:.1f}/{max(before) * 1000:.1f}, "
        f"during the hang {statistics.median(during) * 1000:.1f}/{max(during) * 1000:.1f}; "
        f"stats {stats_seconds:.2f}s, again {again_seconds * 1000:.1f}ms"
    )
    assert max(during) < 0.2 and statistics.median(during) < 0.02, during
    assert DEADLINE_SECONDS <= stats_seconds < DEADLINE_SECONDS + 2
    assert answer.volume_condition.abnormal
    assert f"did not answer within {DEADLINE_SECONDS:g}s" in answer.volume_condition.message
    assert again.volume_condition.abnormal and "has not answered a call made" in again.volume_condition.message
    assert again_seconds < 0.5
    assert after.volume_condition.abnormal and "broken mount" in after.volume_condition.message


async def _stats_once_answered(
    node: csi_pb2_grpc.NodeStub, volume_id: str, path: Path
) -> csi_pb2.NodeGetVolumeStatsResponse:
    """The stats once the stuck thread has returned and the path is no longer refused."""
    deadline = time.monotonic() + 10
    while True:
        answer = await node.NodeGetVolumeStats(stats_request(volume_id, path))
        if "has not answered" not in answer.volume_condition.message or time.monotonic() > deadline:
            return answer
        await asyncio.sleep(0.05)
