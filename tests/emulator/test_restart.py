"""Restart and crash recovery: state, attachments and data survive; in-flight work settles."""

from __future__ import annotations

import os
from pathlib import Path

from csi_xloud.emulator.process import EmulatorProcess, loop_devices_under
from tests.emulator.helpers import Api


def _device(server: dict[str, str], volume_id: str) -> str:
    return os.readlink(Path(server["device_dir"]) / f"virtio-{volume_id[:20]}")


def _read(device: str, size: int) -> bytes:
    with open(device, "rb") as f:
        return f.read(size)


def test_graceful_restart_keeps_everything(emu_root: Path) -> None:
    with EmulatorProcess(emu_root / "graceful", op_seconds=0.05) as emu:
        api = Api(emu)
        node = emu.servers[0]
        plain = api.create_volume(name="plain", metadata={"k": "v"})
        used = api.create_volume(name="used")
        api.attach(node["id"], used["id"])
        fd = os.open(_device(node, used["id"]), os.O_RDWR)
        os.pwrite(fd, b"survives restart" * 64, 4096)
        os.fsync(fd)
        os.close(fd)
        clouds_before = emu.clouds_yaml.read_text()
        servers_before = emu.servers
        emu.stop()
        assert loop_devices_under(emu.data_dir) == []
        assert not (Path(node["device_dir"]) / f"virtio-{used['id'][:20]}").exists()
        emu.start()
        assert emu.clouds_yaml.read_text() == clouds_before
        assert emu.servers == servers_before
        assert api.volume("GET", "/volumes").status_code == 200, "tokens survive a restart"
        assert api.get_volume(plain["id"])["metadata"] == {"k": "v"}  # type: ignore[index]
        after = api.get_volume(used["id"])
        assert after is not None and after["status"] == "in-use"
        assert [a["server_id"] for a in after["attachments"]] == [node["id"]]
        assert _read(_device(node, used["id"]), 4096 + 16 * 64)[4096:] == b"survives restart" * 64
        assert len(loop_devices_under(emu.data_dir)) == 1
        api.detach(node["id"], used["id"])
        api.delete_volume(used["id"])
        api.delete_volume(plain["id"])
        api.close()


def test_crash_settles_in_flight_operations(emu_root: Path) -> None:
    with EmulatorProcess(emu_root / "crash", op_seconds=1.0) as emu:
        api = Api(emu)
        node = emu.servers[0]
        grow = api.create_volume()
        attached = api.create_volume()
        doomed = api.create_volume()
        joining = api.create_volume()
        snapped = api.create_volume()
        api.attach(node["id"], attached["id"])
        fd = os.open(_device(node, attached["id"]), os.O_RDWR)
        os.pwrite(fd, b"crash-safe" * 100, 0)
        os.fsync(fd)
        os.close(fd)
        creating = api.volume("POST", "/volumes", json={"volume": {"size": 1}}).json()["volume"]
        assert (
            api.volume(
                "POST", f"/volumes/{grow['id']}/action", json={"os-extend": {"new_size": 3}}
            ).status_code
            == 202
        )
        assert api.volume("DELETE", f"/volumes/{doomed['id']}").status_code == 202
        assert (
            api.compute(
                "POST",
                f"/servers/{node['id']}/os-volume_attachments",
                json={"volumeAttachment": {"volumeId": joining["id"]}},
            ).status_code
            == 200
        )
        snap = api.volume("POST", "/snapshots", json={"snapshot": {"volume_id": snapped["id"]}}).json()[
            "snapshot"
        ]
        backup = api.volume("POST", "/backups", json={"backup": {"volume_id": attached["id"], "force": True}})
        backup_id = backup.json()["backup"]["id"]
        # One-second transitions make every intermediate status observable.
        in_flight = {
            creating["id"]: "creating",
            grow["id"]: "extending",
            doomed["id"]: "deleting",
            joining["id"]: "reserved",
            attached["id"]: "backing-up",
        }
        for volume_id, status in in_flight.items():
            assert api.get_volume(volume_id)["status"] == status  # type: ignore[index]
        assert api.volume("GET", f"/snapshots/{snap['id']}").json()["snapshot"]["status"] == "creating"
        emu.kill()
        assert loop_devices_under(emu.data_dir) == []
        emu.start()
        assert api.wait_volume(creating["id"], "available")["size"] == 1
        assert api.wait_volume(grow["id"], "available")["size"] == 3
        api.wait_volume(doomed["id"], None)
        api.wait(lambda: api.volume("GET", f"/backups/{backup_id}").json()["backup"], "available")
        api.wait_volume(attached["id"], "in-use")
        assert _read(_device(node, attached["id"]), 1000) == b"crash-safe" * 100
        api.wait_volume(joining["id"], "in-use")
        assert _device(node, joining["id"]).startswith("/dev/loop")
        api.wait(lambda: api.volume("GET", f"/snapshots/{snap['id']}").json()["snapshot"], "available")
        assert api.volume("DELETE", f"/backups/{backup_id}").status_code == 202
        assert api.volume("DELETE", f"/volumes/{snapped['id']}?cascade=true").status_code == 202
        api.detach(node["id"], attached["id"])
        api.detach(node["id"], joining["id"])
        for vid in (creating["id"], grow["id"], attached["id"], joining["id"]):
            api.delete_volume(vid)
        api.wait_volume(snapped["id"], None)
        api.close()


def test_sigint_detaches_loop_devices(emu_root: Path) -> None:
    import signal
    import time

    with EmulatorProcess(emu_root / "sigint", op_seconds=0.05) as emu:
        api = Api(emu)
        node = emu.servers[1]
        vol = api.create_volume()
        api.attach(node["id"], vol["id"])
        api.close()
        assert len(loop_devices_under(emu.data_dir)) == 1
        assert emu.pid is not None
        os.kill(emu.pid, signal.SIGINT)
        deadline = time.monotonic() + 15
        while emu.running and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not emu.running
        assert loop_devices_under(emu.data_dir) == [], "the emulator itself detaches on shutdown"
        assert emu.stop() == 0
