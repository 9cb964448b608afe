"""Figures for the emulator (run as root: python tests/emulator/measure_emulator.py); not a test.

Prints the time to create and attach a 10 GiB volume (op-seconds 0), requests per second for
GET /volumes/detail with 100 volumes, the time for 500 concurrent creates, and the emulator's RSS.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from csi_xloud.emulator.process import EmulatorProcess
from tests.emulator.helpers import Api


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def _concurrent_creates(emu: EmulatorProcess, api: Api, count: int) -> tuple[set[int], float]:
    headers = {"X-Auth-Token": api.token, "OpenStack-API-Version": "volume 3.71"}
    limits = httpx.Limits(max_connections=count)
    async with httpx.AsyncClient(base_url=emu.url, timeout=120, limits=limits) as client:
        start = time.monotonic()
        answers = await asyncio.gather(
            *(
                client.post(
                    f"/volume/v3/{api.project_id}/volumes", json={"volume": {"size": 1}}, headers=headers
                )
                for _ in range(count)
            )
        )
        while True:
            vols = (await client.get(f"/volume/v3/{api.project_id}/volumes/detail", headers=headers)).json()
            if sum(v["status"] == "available" for v in vols["volumes"]) >= count:
                return {a.status_code for a in answers}, time.monotonic() - start
            await asyncio.sleep(0.05)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, EmulatorProcess(Path(tmp) / "cloud", op_seconds=0) as emu:
        api, admin = Api(emu), Api(emu, "xloud-emulator-admin")
        admin.volume(
            "PUT", f"/os-quota-sets/{api.project_id}", json={"quota_set": {"volumes": -1, "gigabytes": -1}}
        )
        node = emu.servers[0]
        for _ in range(3):
            start = time.monotonic()
            created = api.volume("POST", "/volumes", json={"volume": {"size": 10}}).json()["volume"]
            api.wait_volume(created["id"], "available", interval=0.001)
            available = time.monotonic()
            api.compute(
                "POST",
                f"/servers/{node['id']}/os-volume_attachments",
                json={"volumeAttachment": {"volumeId": created["id"]}},
            )
            link = Path(node["device_dir"]) / f"virtio-{created['id'][:20]}"
            api.wait_volume(created["id"], "in-use", interval=0.001)
            attached = time.monotonic()
            assert link.is_symlink()
            create_ms, attach_ms = 1000 * (available - start), 1000 * (attached - available)
            print(f"10 GiB volume: create {create_ms:.1f} ms, attach {attach_ms:.1f} ms (loop device ready)")
            api.detach(node["id"], created["id"])
            api.delete_volume(created["id"])
        for n in range(100):
            api.create_volume(wait=False, name=f"m{n}")
        api.wait(
            lambda: (
                {"status": "available"}
                if all(
                    v["status"] == "available" for v in api.volume("GET", "/volumes/detail").json()["volumes"]
                )
                else None
            ),
            "available",
        )
        start = time.monotonic()
        rounds = 300
        for _ in range(rounds):
            api.volume("GET", "/volumes/detail")
        rate = rounds / (time.monotonic() - start)
        print(f"GET /volumes/detail with 100 volumes: {rate:.0f} req/s (one client)")
        assert emu.pid is not None
        print(f"RSS with 100 volumes: {_rss_kib(emu.pid) / 1024:.1f} MiB")
        codes, seconds = asyncio.run(_concurrent_creates(emu, api, 500))
        print(f"500 concurrent creates: answers {sorted(codes)}, all available after {seconds:.1f} s")
        print(f"RSS with 600 volumes: {_rss_kib(emu.pid) / 1024:.1f} MiB")


if __name__ == "__main__":
    main()
