"""Groups and group snapshots with real data: members hold their volumes' data, create-from-src
makes volumes of it, and a crash in the middle of a group snapshot settles after the restart."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from csi_xloud.emulator.process import EmulatorProcess
from tests.emulator.helpers import Api


def _device(server: dict[str, str], volume_id: str) -> str:
    return os.readlink(Path(server["device_dir"]) / f"virtio-{volume_id[:20]}")


def _write(server: dict[str, str], volume_id: str, data: bytes) -> None:
    fd = os.open(_device(server, volume_id), os.O_RDWR)
    try:
        os.pwrite(fd, data, 8192)
        os.fsync(fd)
    finally:
        os.close(fd)


def _read(server: dict[str, str], volume_id: str, size: int) -> bytes:
    with open(_device(server, volume_id), "rb") as f:
        f.seek(8192)
        return f.read(size)


def _group(api: Api, **fields: Any) -> dict[str, Any]:
    gtype = next(
        t for t in api.volume("GET", "/group_types").json()["group_types"] if t["name"] == "consistent"
    )
    body = {"group": {"group_type": gtype["id"], "volume_types": ["standard"], **fields}}
    resp = api.volume("POST", "/groups", json=body)
    assert resp.status_code == 202, resp.text
    return api.wait(
        lambda: api.volume("GET", f"/groups/{resp.json()['group']['id']}").json()["group"], "available"
    )


def _group_snapshot(api: Api, group_id: str) -> dict[str, Any]:
    resp = api.volume(
        "POST", "/group_snapshots", json={"group_snapshot": {"group_id": group_id, "name": "gs"}}
    )
    assert resp.status_code == 202, resp.text
    return dict(resp.json()["group_snapshot"])


def _gsnap(api: Api, gsnap_id: str) -> dict[str, Any] | None:
    resp = api.volume("GET", f"/group_snapshots/{gsnap_id}")
    return None if resp.status_code == 404 else dict(resp.json()["group_snapshot"])


def _members(api: Api, gsnap_id: str) -> list[dict[str, Any]]:
    listed = api.volume("GET", f"/snapshots/detail?group_snapshot_id={gsnap_id}", mv="3.14").json()
    return list(listed["snapshots"])


def _add(api: Api, group_id: str, *volume_ids: str) -> None:
    resp = api.volume("PUT", f"/groups/{group_id}", json={"group": {"add_volumes": ",".join(volume_ids)}})
    assert resp.status_code == 202, resp.text
    api.wait(lambda: api.volume("GET", f"/groups/{group_id}").json()["group"], "available")


def test_members_hold_the_data_of_attached_volumes_and_restore_as_a_group(emu: EmulatorProcess) -> None:
    api, node = Api(emu), emu.servers[0]
    group = _group(api)
    volumes = [api.create_volume(volume_type="standard") for _ in range(2)]
    payloads = {v["id"]: os.urandom(64 * 1024) for v in volumes}
    for volume in volumes:
        api.attach(node["id"], volume["id"])
        _write(node, volume["id"], payloads[volume["id"]])
    _add(api, group["id"], *payloads)
    gsnap = _group_snapshot(api, group["id"])
    api.wait(lambda: _gsnap(api, gsnap["id"]), "available")
    members = _members(api, gsnap["id"])
    assert sorted(m["volume_id"] for m in members) == sorted(payloads)
    assert all(m["status"] == "available" and m["group_snapshot_id"] == gsnap["id"] for m in members)
    for volume in volumes:  # written after the group snapshot: not in it
        _write(node, volume["id"], b"later" * 100)
    body = {"create-from-src": {"name": "copy", "group_snapshot_id": gsnap["id"]}}
    made = api.volume("POST", "/groups/action", json=body, mv="3.14")
    assert made.status_code == 202, made.text
    copy_id = made.json()["group"]["id"]
    copy = api.wait(
        lambda: api.volume("GET", f"/groups/{copy_id}?list_volume=True", mv="3.25").json()["group"],
        "available",
    )
    for volume_id in copy["volumes"]:
        restored = api.get_volume(volume_id)
        assert restored is not None and restored["group_id"] == copy_id
        source = next(m["volume_id"] for m in members if m["id"] == restored["snapshot_id"])
        api.attach(node["id"], volume_id)
        assert _read(node, volume_id, 64 * 1024) == payloads[source]
        api.detach(node["id"], volume_id)
    for volume in volumes:
        api.detach(node["id"], volume["id"])
    assert api.volume("DELETE", f"/group_snapshots/{gsnap['id']}").status_code == 202
    api.wait(lambda: _gsnap(api, gsnap["id"]), None)
    for group_id in (copy_id, group["id"]):
        resp = api.volume("POST", f"/groups/{group_id}/action", json={"delete": {"delete-volumes": True}})
        assert resp.status_code == 202, resp.text
    for volume_id in [*payloads, *copy["volumes"]]:
        api.wait_volume(volume_id, None)
    api.close()


def test_a_group_snapshot_in_flight_at_a_crash_settles_after_the_restart(emu_root: Path) -> None:
    with EmulatorProcess(emu_root / "group-crash", op_seconds=1.0) as emu:
        api = Api(emu)
        group = _group(api)
        volume = api.create_volume(volume_type="standard")
        _add(api, group["id"], volume["id"])
        gsnap = _group_snapshot(api, group["id"])
        assert _gsnap(api, gsnap["id"])["status"] == "creating"  # type: ignore[index]
        emu.kill()
        emu.start()
        api.token = api.login()
        api.wait(lambda: _gsnap(api, gsnap["id"]), "available")
        assert [m["status"] for m in _members(api, gsnap["id"])] == ["available"]
        assert api.volume("DELETE", f"/group_snapshots/{gsnap['id']}").status_code == 202
        api.wait(lambda: _gsnap(api, gsnap["id"]), None)
        resp = api.volume("POST", f"/groups/{group['id']}/action", json={"delete": {"delete-volumes": True}})
        assert resp.status_code == 202, resp.text
        api.wait_volume(volume["id"], None)
        api.close()
