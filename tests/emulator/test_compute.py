"""Compute API: servers, attachments on real loop devices, Nova's errors."""

from __future__ import annotations

import os
import time
from pathlib import Path

from csi_xloud import GIB
from csi_xloud.emulator.process import loop_devices_under
from tests.emulator.helpers import Api


def _link(server: dict[str, str], volume_id: str) -> Path:
    return Path(server["device_dir"]) / f"virtio-{volume_id[:20]}"


def _loop_device_released(api: Api, device: str) -> bool:
    """Whether the emulator let the loop device go within 5 s: `losetup -d` only marks a device
    udev is still probing, and the kernel releases it when udev is done."""
    deadline = time.monotonic() + 5
    while device in {name for name, _ in loop_devices_under(api.emu.data_dir)}:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _blockdev_size(device: str) -> int:
    with open(device, "rb") as f:
        return f.seek(0, os.SEEK_END)


def test_servers(api: Api, servers: dict[str, dict[str, str]]) -> None:
    listed = api.compute("GET", "/servers").json()["servers"]
    assert {s["name"] for s in listed} == {"node-a", "node-b", "node-z"}
    shown = api.compute("GET", f"/servers/{servers['node-z']['id']}").json()["server"]
    assert shown["OS-EXT-AZ:availability_zone"] == "zone-z"
    assert shown["status"] == "ACTIVE"
    missing = api.compute("GET", "/servers/00000000-0000-4000-8000-000000000000")
    assert missing.json() == {
        "itemNotFound": {
            "code": 404,
            "message": "Instance 00000000-0000-4000-8000-000000000000 could not be found.",
        }
    }
    assert missing.headers["X-OpenStack-Nova-API-Version"] == "2.1"


def test_metadata_service(api: Api, servers: dict[str, dict[str, str]]) -> None:
    node = servers["node-b"]
    meta = api.http.get(f"/_emulator/metadata/{node['id']}/openstack/latest/meta_data.json").json()
    assert meta["uuid"] == node["id"]
    assert meta["name"] == meta["hostname"] == "node-b"
    assert meta["availability_zone"] == "nova"
    assert meta["project_id"] == api.project_id
    # A node plugin in a cluster knows its node's name, which names its server.
    by_name = api.http.get("/_emulator/metadata/node-b/openstack/latest/meta_data.json").json()
    assert by_name == meta
    assert api.http.get("/_emulator/metadata/no-such-node/openstack/latest/meta_data.json").status_code == 404


def test_attach_makes_loop_device_and_detach_removes_it(api: Api, servers: dict[str, dict[str, str]]) -> None:
    node = servers["node-a"]
    vol = api.create_volume()
    resp = api.compute(
        "POST",
        f"/servers/{node['id']}/os-volume_attachments",
        json={"volumeAttachment": {"volumeId": vol["id"], "device": "/dev/vdq"}},
    )
    assert resp.status_code == 200
    assert resp.json() == {
        "volumeAttachment": {
            "id": vol["id"],
            "serverId": node["id"],
            "volumeId": vol["id"],
            "device": "/dev/vdb",
        }
    }
    in_use = api.wait_volume(vol["id"], "in-use")
    assert [a["server_id"] for a in in_use["attachments"]] == [node["id"]]
    link = _link(node, vol["id"])
    device = os.readlink(link)
    assert device.startswith("/dev/loop")
    assert _blockdev_size(device) == GIB
    # The disk reads and writes its file directly: no second cache of it in the node's memory.
    assert Path(f"/sys/block/{Path(device).name}/loop/dio").read_text().strip() == "1"
    shown = api.compute("GET", f"/servers/{node['id']}/os-volume_attachments/{vol['id']}", mv="2.89").json()
    assert shown["volumeAttachment"]["attachment_id"] == in_use["attachments"][0]["attachment_id"]
    listed = api.compute("GET", f"/servers/{node['id']}/os-volume_attachments").json()["volumeAttachments"]
    assert vol["id"] in {a["volumeId"] for a in listed}
    assert api.volume("DELETE", f"/volumes/{vol['id']}").status_code == 400
    api.detach(node["id"], vol["id"])
    assert not link.is_symlink()
    assert _loop_device_released(api, device)
    api.delete_volume(vol["id"])


def test_online_extend_grows_loop_device(api: Api, servers: dict[str, dict[str, str]]) -> None:
    node = servers["node-b"]
    vol = api.create_volume()
    api.attach(node["id"], vol["id"])
    device = os.readlink(_link(node, vol["id"]))
    old = api.volume("POST", f"/volumes/{vol['id']}/action", json={"os-extend": {"new_size": 2}}, mv="3.41")
    assert old.status_code == 400
    resp = api.volume("POST", f"/volumes/{vol['id']}/action", json={"os-extend": {"new_size": 2}}, mv="3.42")
    assert resp.status_code == 202
    assert api.wait_volume(vol["id"], "in-use")["size"] == 2
    assert _blockdev_size(device) == 2 * GIB
    api.detach(node["id"], vol["id"])
    api.delete_volume(vol["id"])


def test_attach_errors(api: Api, servers: dict[str, dict[str, str]]) -> None:
    a, b, z = servers["node-a"], servers["node-b"], servers["node-z"]
    vol = api.create_volume()
    api.attach(a["id"], vol["id"])
    for server in (a, b):
        again = api.compute(
            "POST",
            f"/servers/{server['id']}/os-volume_attachments",
            json={"volumeAttachment": {"volumeId": vol["id"]}},
        )
        assert again.json() == {
            "badRequest": {
                "code": 400,
                "message": f"Invalid volume: volume {vol['id']} is already attached to instances: {a['id']}",
            }
        }
    cases = [
        (a["id"], {"volumeAttachment": {"volumeId": "00000000-0000-4000-8000-000000000000"}}, 404),
        (a["id"], {"volumeAttachment": {"volumeId": "not-a-uuid"}}, 400),
        (a["id"], {"volumeAttachment": {}}, 400),
        (a["id"], {"volumeAttachment": {"volumeId": vol["id"], "device": "bogus"}}, 400),
        (a["id"], {"volumeAttachment": {"volumeId": vol["id"], "tag": "x"}}, 400),
        ("00000000-0000-4000-8000-000000000000", {"volumeAttachment": {"volumeId": vol["id"]}}, 404),
    ]
    for server_id, body, status in cases:
        resp = api.compute("POST", f"/servers/{server_id}/os-volume_attachments", json=body)
        assert resp.status_code == status, (body, resp.text)
    not_here = api.compute("DELETE", f"/servers/{b['id']}/os-volume_attachments/{vol['id']}")
    assert (
        not_here.json()["itemNotFound"]["message"]
        == f"Instance {b['id']} is not attached to volume {vol['id']}"
    )
    too_new = api.compute("GET", "/servers", mv="2.200")
    assert too_new.status_code == 406
    other_zone = api.create_volume()
    cross = api.compute(
        "POST",
        f"/servers/{z['id']}/os-volume_attachments",
        json={"volumeAttachment": {"volumeId": other_zone["id"]}},
    )
    assert cross.status_code == 400
    creating = api.create_volume(wait=False)
    racing = api.compute(
        "POST",
        f"/servers/{b['id']}/os-volume_attachments",
        json={"volumeAttachment": {"volumeId": creating["id"]}},
    )
    assert racing.status_code == 400
    assert "status must be available or downloading to reserve" in racing.json()["badRequest"]["message"]
    api.detach(a["id"], vol["id"])
    for vid in (vol["id"], other_zone["id"]):
        api.delete_volume(vid)
    api.wait_volume(creating["id"], "available")
    api.delete_volume(creating["id"])


def test_multiattach(api: Api, servers: dict[str, dict[str, str]]) -> None:
    a, b = servers["node-a"], servers["node-b"]
    vol = api.create_volume(volume_type="shared")
    assert vol["multiattach"] is True
    old = api.compute(
        "POST",
        f"/servers/{a['id']}/os-volume_attachments",
        json={"volumeAttachment": {"volumeId": vol["id"]}},
        mv="2.59",
    )
    assert old.status_code == 400
    api.attach(a["id"], vol["id"])
    api.attach(b["id"], vol["id"])
    deadline = time.monotonic() + 5
    while len(api.get_volume(vol["id"])["attachments"]) < 2 and time.monotonic() < deadline:  # type: ignore[index]
        time.sleep(0.03)
    assert _link(a, vol["id"]).is_symlink() and _link(b, vol["id"]).is_symlink()
    api.compute("DELETE", f"/servers/{a['id']}/os-volume_attachments/{vol['id']}")
    still = api.wait_volume(vol["id"], "in-use")
    deadline = time.monotonic() + 5
    while len(still["attachments"]) != 1 and time.monotonic() < deadline:
        time.sleep(0.03)
        still = api.get_volume(vol["id"])
    assert [x["server_id"] for x in still["attachments"]] == [b["id"]]
    api.detach(b["id"], vol["id"])
    api.delete_volume(vol["id"])


def test_in_use_snapshot_force_rules(api: Api, servers: dict[str, dict[str, str]]) -> None:
    node = servers["node-a"]
    vol = api.create_volume()
    api.attach(node["id"], vol["id"])
    body = {"snapshot": {"volume_id": vol["id"]}}
    refused = api.volume("POST", "/snapshots", json=body, mv="3.0")
    assert refused.json()["badRequest"]["message"] == (
        f"Invalid volume: Volume {vol['id']} status must be available, but current status is: in-use."
    )
    flag = api.volume(
        "POST", "/snapshots", json={"snapshot": {**body["snapshot"], "force": False}}, mv="3.66"
    )
    assert flag.status_code == 400
    forced = api.volume(
        "POST", "/snapshots", json={"snapshot": {**body["snapshot"], "force": True}}, mv="3.0"
    )
    implicit = api.volume("POST", "/snapshots", json=body, mv="3.66")
    assert forced.status_code == implicit.status_code == 202
    for snap in (forced.json()["snapshot"], implicit.json()["snapshot"]):
        api.wait(lambda s=snap: api.volume("GET", f"/snapshots/{s['id']}").json()["snapshot"], "available")
    api.detach(node["id"], vol["id"])
    assert api.volume("DELETE", f"/volumes/{vol['id']}?cascade=true").status_code == 202
    api.wait_volume(vol["id"], None)


def test_in_use_retype_moves_data_under_the_loop_device(api: Api, servers: dict[str, dict[str, str]]) -> None:
    node = servers["node-b"]
    vol = api.create_volume()
    api.attach(node["id"], vol["id"])
    device = os.readlink(_link(node, vol["id"]))
    fd = os.open(device, os.O_RDWR)
    os.pwrite(fd, b"moved" * 1000, 0)
    os.fsync(fd)
    os.close(fd)
    resp = api.volume(
        "POST",
        f"/volumes/{vol['id']}/action",
        json={"os-retype": {"new_type": "archive", "migration_policy": "on-demand"}},
    )
    assert resp.status_code == 202
    assert api.wait_volume(vol["id"], "in-use")["volume_type"] == "archive"
    moved = api.emu.data_dir / "backends" / "hdd" / "volumes" / f"{vol['id']}.img"
    assert moved.read_bytes()[:5000] == b"moved" * 1000
    api.detach(node["id"], vol["id"])
    assert _loop_device_released(api, device)
    api.delete_volume(vol["id"])


def test_many_attachments_at_once(api: Api, servers: dict[str, dict[str, str]]) -> None:
    nodes = [servers["node-a"], servers["node-b"]]
    vols = [api.create_volume(wait=False)["id"] for _ in range(8)]
    for vid in vols:
        api.wait_volume(vid, "available")
    for n, vid in enumerate(vols):
        resp = api.compute(
            "POST",
            f"/servers/{nodes[n % 2]['id']}/os-volume_attachments",
            json={"volumeAttachment": {"volumeId": vid}},
        )
        assert resp.status_code == 200, resp.text
    for vid in vols:
        api.wait_volume(vid, "in-use")
    devices = {os.readlink(_link(nodes[n % 2], vid)) for n, vid in enumerate(vols)}
    assert len(devices) == len(vols)
    for n, vid in enumerate(vols):
        assert (
            api.compute("DELETE", f"/servers/{nodes[n % 2]['id']}/os-volume_attachments/{vid}").status_code
            == 202
        )
    for vid in vols:
        api.wait_volume(vid, "available")
        api.delete_volume(vid)
    assert not devices & {name for name, _ in loop_devices_under(api.emu.data_dir)}
