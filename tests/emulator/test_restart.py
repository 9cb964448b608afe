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
        api.attach(node["id"], attached["id"])
        fd = os.open(_device(node, attached["id"]), os.O_RDWR)
        os.pwrite(fd, b"crash-safe" * 100, 0)
        os.fsync(fd)
        os.close(fd)
        creating = api.volume("POST", "/volumes", json={"volume": {"size": 1}}).json()["volume"]
        assert api.volume("POST", f"/volumes/{grow['id']}/action",
                          json={"os-extend": {"new_size": 3}}).status_code == 202
        assert api.volume("DELETE", f"/volumes/{doomed['id']}").status_code == 202
        assert api.compute("POST", f"/servers/{node['id']}/os-volume_attachments",
                           json={"volumeAttachment": {"volumeId": joining["id"]}}).status_code == 200
        emu.kill()
        assert loop_devices_under(emu.data_dir) == []
        emu.start()
        assert api.wait_volume(creating["id"], "available")["size"] == 1
        assert api.wait_volume(grow["id"], "available")["size"] == 3
        api.wait_volume(doomed["id"], None)
        assert api.get_volume(attached["id"])["status"] == "in-use"  # type: ignore[index]
        assert _read(_device(node, attached["id"]), 1000) == b"crash-safe" * 100
        api.wait_volume(joining["id"], "in-use")
        assert _device(node, joining["id"]).startswith("/dev/loop")
        api.detach(node["id"], attached["id"])
        api.detach(node["id"], joining["id"])
        for vid in (creating["id"], grow["id"], attached["id"], joining["id"]):
            api.delete_volume(vid)
        api.close()
