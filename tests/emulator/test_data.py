"""Real data: what is written through an attached loop device survives snapshot, clone and backup."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from csi_xloud.emulator import data
from csi_xloud.emulator.process import EmulatorProcess
from tests.emulator.helpers import Api

MIB = 1024 * 1024
OFFSETS = (0, 5 * MIB + 17, 300 * MIB, 1024 * MIB - 4096)


def _device(server: dict[str, str], volume_id: str) -> str:
    return os.readlink(Path(server["device_dir"]) / f"virtio-{volume_id[:20]}")


def _write(device: str, blocks: dict[int, bytes]) -> None:
    fd = os.open(device, os.O_RDWR)
    try:
        for offset, data in blocks.items():
            os.pwrite(fd, data, offset)
        os.fsync(fd)
    finally:
        os.close(fd)


def _digest(device: str) -> str:
    """sha256 of the whole device, read in 4 MiB pieces (holes read as zeros)."""
    digest = hashlib.sha256()
    with open(device, "rb") as f:
        while chunk := f.read(4 * MIB):
            digest.update(chunk)
    return digest.hexdigest()


def _blocks(seed: bytes) -> dict[int, bytes]:
    return {off: hashlib.sha256(seed + str(off).encode()).digest() * 128 for off in OFFSETS}


class DataRun:
    """Attach, write, read back; detaches and deletes everything it made."""

    def __init__(self, api: Api, server: dict[str, str]) -> None:
        self.api = api
        self.server = server
        self.volumes: list[str] = []

    def new_volume(self, **fields: Any) -> str:
        vol = self.api.create_volume(**fields)
        self.volumes.append(vol["id"])
        return str(vol["id"])

    def track(self, volume_id: str) -> str:
        self.volumes.append(volume_id)
        return volume_id

    def digest_of(self, volume_id: str) -> str:
        self.api.attach(self.server["id"], volume_id)
        try:
            return _digest(_device(self.server, volume_id))
        finally:
            self.api.detach(self.server["id"], volume_id)

    def cleanup(self) -> None:
        for vid in self.volumes:
            vol = self.api.get_volume(vid)
            if vol is None:
                continue
            if vol["status"] == "in-use":
                self.api.detach(self.server["id"], vid)
            self.api.volume("DELETE", f"/volumes/{vid}?cascade=true")
        for vid in self.volumes:
            self.api.wait_volume(vid, None)


def _snapshot(api: Api, volume_id: str) -> str:
    resp = api.volume("POST", "/snapshots", json={"snapshot": {"volume_id": volume_id}}, mv="3.66")
    assert resp.status_code == 202, resp.text
    sid = str(resp.json()["snapshot"]["id"])
    api.wait(lambda: api.volume("GET", f"/snapshots/{sid}").json()["snapshot"], "available")
    return sid


def _backup(api: Api, volume_id: str, incremental: bool) -> dict[str, Any]:
    body = {"backup": {"volume_id": volume_id, "incremental": incremental, "force": True}}
    resp = api.volume("POST", "/backups", json=body)
    assert resp.status_code == 202, resp.text
    bid = resp.json()["backup"]["id"]
    return api.wait(lambda: api.volume("GET", f"/backups/{bid}").json()["backup"], "available", timeout=60)


def test_snapshot_and_clone_keep_data(api: Api, servers: dict[str, dict[str, str]]) -> None:
    node = servers["node-a"]
    run = DataRun(api, node)
    try:
        source = run.new_volume()
        api.attach(node["id"], source)
        device = _device(node, source)
        _write(device, _blocks(b"first"))
        expected = _digest(device)
        snap = _snapshot(api, source)
        clone = run.new_volume(source_volid=source)
        _write(device, _blocks(b"later"))
        api.detach(node["id"], source)
        from_snap = run.new_volume(snapshot_id=snap)
        assert run.digest_of(from_snap) == expected
        assert run.digest_of(clone) == expected
        assert run.digest_of(source) != expected
    finally:
        run.cleanup()


def test_backup_full_and_incremental_restore(api: Api, servers: dict[str, dict[str, str]]) -> None:
    node = servers["node-b"]
    run = DataRun(api, node)
    backups: list[str] = []
    try:
        source = run.new_volume()
        api.attach(node["id"], source)
        device = _device(node, source)
        _write(device, _blocks(b"full"))
        full_digest = _digest(device)
        full = _backup(api, source, incremental=False)
        backups.append(full["id"])
        assert api.wait_volume(source, "in-use")
        _write(device, {OFFSETS[1]: b"changed" * 100})
        incr_digest = _digest(device)
        incr = _backup(api, source, incremental=True)
        backups.append(incr["id"])
        assert incr["is_incremental"] is True
        assert 0 < incr["object_count"] < full["object_count"]
        api.detach(node["id"], source)
        refused = api.volume("DELETE", f"/backups/{full['id']}")
        assert (
            refused.json()["badRequest"]["message"]
            == "Invalid backup: Incremental backups exist for this backup."
        )
        restored = api.volume("POST", f"/backups/{incr['id']}/restore", json={"restore": {"name": "r-new"}})
        assert restored.status_code == 202
        new_id = run.track(restored.json()["restore"]["volume_id"])
        api.wait_volume(new_id, "available", timeout=60)
        assert run.digest_of(new_id) == incr_digest
        target = run.new_volume()
        to_existing = api.volume(
            "POST", f"/backups/{full['id']}/restore", json={"restore": {"volume_id": target}}
        )
        assert to_existing.json()["restore"]["volume_id"] == target
        api.wait_volume(target, "available", timeout=60)
        assert run.digest_of(target) == full_digest
    finally:
        for bid in reversed(backups):
            api.wait(lambda b=bid: api.volume("GET", f"/backups/{b}").json()["backup"], "available")
            api.volume("DELETE", f"/backups/{bid}")
            api.wait(lambda b=bid: api.volume("GET", f"/backups/{b}").json().get("backup"), None)
        run.cleanup()


def test_restore_detects_corrupt_chunk(
    api: Api, emu: EmulatorProcess, servers: dict[str, dict[str, str]]
) -> None:
    node = servers["node-a"]
    run = DataRun(api, node)
    try:
        source = run.new_volume()
        api.attach(node["id"], source)
        _write(_device(node, source), {0: b"precious" * 512})
        api.detach(node["id"], source)
        backup = _backup(api, source, incremental=False)
        chunk = next(
            p
            for p in (emu.data_dir / "backups" / "chunks").rglob("*")
            if p.is_file() and _holds(p, b"precious")
        )
        chunk.write_bytes(b"rotten" + chunk.read_bytes()[6:])
        resp = api.volume("POST", f"/backups/{backup['id']}/restore", json={"restore": {}})
        new_id = run.track(resp.json()["restore"]["volume_id"])
        api.wait_volume(new_id, "error_restoring")  # as Cinder leaves a failed restore
        api.volume("DELETE", f"/backups/{backup['id']}")
    finally:
        run.cleanup()


def _holds(path: Path, needle: bytes) -> bool:
    return needle in path.read_bytes()[:4096]


def test_backup_update_changes_name_description_and_metadata_by_microversion(api: Api) -> None:
    volume = api.create_volume()
    try:
        backup = _backup(api, volume["id"], incremental=False)
        path = f"/backups/{backup['id']}"
        assert api.volume("PUT", path, mv="3.8", json={"backup": {"name": "x"}}).status_code == 404
        refused = api.volume("PUT", path, mv="3.42", json={"backup": {"metadata": {"k": "v"}}})
        assert refused.status_code == 400 and "'metadata' was unexpected" in refused.text
        api.volume("PUT", path, mv="3.43", json={"backup": {"metadata": {"a": "1", "b": "2"}}})
        answer = api.volume("PUT", path, mv="3.43", json={"backup": {"name": "renamed", "metadata": {"c": "3"}}})
        assert answer.status_code == 200
        assert answer.json()["backup"]["name"] == "renamed"
        assert answer.json()["backup"]["metadata"] == {"c": "3"}  # replaced, not merged
        shown = api.volume("GET", path).json()["backup"]
        assert (shown["name"], shown["metadata"]) == ("renamed", {"c": "3"})
        assert api.volume("DELETE", path).status_code == 202
        api.wait(lambda: None if api.volume("GET", path).status_code == 404 else {}, None)
    finally:
        api.delete_volume(volume["id"])


async def test_loop_devices_fall_back_to_cached_io_when_direct_io_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, ...]] = []

    async def losetup(*argv: str) -> str:
        calls.append(argv)
        if "--direct-io=on" in argv:
            raise data.CommandError("losetup exited 1: failed to set up loop device: Invalid argument")
        return "/dev/loop-test\n"

    monkeypatch.setattr(data, "run", losetup)
    monkeypatch.setattr(data, "_read_only", lambda device: False)
    plane = data.DataPlane(tmp_path)
    assert await plane._writable_loop(tmp_path / "a.img") == "/dev/loop-test"
    assert await plane._writable_loop(tmp_path / "b.img") == "/dev/loop-test"
    assert calls == [
        ("losetup", "--find", "--show", "--direct-io=on", str(tmp_path / "a.img")),
        ("losetup", "--find", "--show", str(tmp_path / "a.img")),
        ("losetup", "--find", "--show", str(tmp_path / "b.img")),
    ]
