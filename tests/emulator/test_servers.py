"""Compute server lifecycles: boot from volume, stop and start, error, delete, as Nova runs them."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from csi_xloud.emulator.process import EmulatorProcess
from tests.emulator.helpers import Api
from tests.emulator.test_replay import SAMPLES, shape_diff


def _server(api: Api, server_id: str) -> dict[str, Any] | None:
    resp = api.compute("GET", f"/servers/{server_id}")
    if resp.status_code == 404:
        return None
    assert resp.status_code == 200, resp.text
    server: dict[str, Any] = resp.json()["server"]
    return server


def _wait_server(api: Api, server_id: str, status: str | None) -> Any:
    """Until the server has status and no task in flight (None: until it is gone)."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        server = _server(api, server_id)
        if status is None and server is None:
            return None
        if server is not None and server["status"] == status and server["OS-EXT-STS:task_state"] is None:
            return server
        time.sleep(0.03)
    raise AssertionError(f"server {server_id} never reached {status}: {_server(api, server_id)}")


def _boot(api: Api, name: str, volume_id: str, delete_on_termination: bool = False) -> str:
    body = {
        "server": {
            "name": name,
            "flavorRef": "1",
            "networks": "none",
            "block_device_mapping_v2": [
                {
                    "boot_index": 0,
                    "uuid": volume_id,
                    "source_type": "volume",
                    "destination_type": "volume",
                    "delete_on_termination": delete_on_termination,
                }
            ],
        }
    }
    resp = api.compute("POST", "/servers", json=body, mv="2.79")
    assert resp.status_code == 202, resp.text
    return str(resp.json()["server"]["id"])


def _link(server: dict[str, Any], volume_id: str) -> Path:
    return Path(server["device_dir"]) / f"virtio-{volume_id[:20]}"


def _listed(emu: EmulatorProcess, server_id: str) -> dict[str, Any] | None:
    return next((s for s in emu.servers if s["id"] == server_id), None)


def _attachments(api: Api, server_id: str) -> list[dict[str, Any]]:
    resp = api.compute("GET", f"/servers/{server_id}/os-volume_attachments", mv="2.89")
    assert resp.status_code == 200, resp.text
    return list(resp.json()["volumeAttachments"])


@pytest.fixture
def booted(api: Api) -> Iterator[tuple[str, dict[str, Any], str]]:
    """A server booted from its own volume: (server id, its servers.json entry, boot volume id)."""
    boot = api.create_volume()
    server_id = _boot(api, "booted", boot["id"])
    _wait_server(api, server_id, "ACTIVE")
    entry = _listed(api.emu, server_id)
    assert entry is not None
    yield server_id, entry, boot["id"]
    if _server(api, server_id) is not None:
        assert api.compute("DELETE", f"/servers/{server_id}").status_code == 204
        _wait_server(api, server_id, None)
    api.wait_volume(boot["id"], "available")
    api.delete_volume(boot["id"])


def test_boot_from_volume_answers_as_nova_and_attaches_the_root_disk(api: Api, admin: Api) -> None:
    recorded = json.loads((SAMPLES / "nova" / "op_01_boot_servers.json").read_text())["exchanges"]
    boot = api.create_volume()
    body = {"server": {**recorded[0]["request"]["body"]["server"], "availability_zone": "nova"}}
    body["server"]["block_device_mapping_v2"][0]["uuid"] = boot["id"]
    resp = api.compute("POST", "/servers", json=body, mv="2.79")
    assert resp.status_code == 202
    assert shape_diff(recorded[0]["response"]["body"], resp.json()) == []
    server_id = resp.json()["server"]["id"]
    assert resp.headers["Location"].endswith(f"/compute/v2.1/servers/{server_id}")
    building = _server(api, server_id)
    assert building is not None and building["status"] == "BUILD"
    assert (api.get_volume(boot["id"]) or {})["status"] == "reserved"

    shown = _wait_server(admin, server_id, "ACTIVE")
    assert shape_diff(recorded[1]["response"]["body"]["server"], shown) == []
    assert shown["os-extended-volumes:volumes_attached"] == [
        {"id": boot["id"], "delete_on_termination": False}
    ]
    volume = api.wait_volume(boot["id"], "in-use")
    assert [a["device"] for a in volume["attachments"]] == ["/dev/vda"]
    entry = _listed(api.emu, server_id)
    assert entry is not None and entry["name"] == "nvs-a" and entry["availability_zone"] == "nova"
    assert os.path.realpath(_link(entry, boot["id"])).startswith("/dev/loop")
    listed = _attachments(api, server_id)
    assert shape_diff(recorded[4]["response"]["body"], {"volumeAttachments": listed}) == []

    root = api.compute("DELETE", f"/servers/{server_id}/os-volume_attachments/{boot['id']}")
    assert root.status_code == 400
    assert root.json() == {"badRequest": {"code": 400, "message": "Cannot detach a root device volume"}}
    data = api.create_volume()
    api.attach(server_id, data["id"])
    assert [a["device"] for a in _attachments(api, server_id)] == ["/dev/vda", "/dev/vdb"]

    assert api.compute("DELETE", f"/servers/{server_id}").status_code == 204
    _wait_server(api, server_id, None)
    for volume_id in (boot["id"], data["id"]):
        assert not (api.wait_volume(volume_id, "available"))["attachments"]
        assert not _link(entry, volume_id).exists()
        api.delete_volume(volume_id)
    assert _listed(api.emu, server_id) is None
    assert not Path(entry["device_dir"]).exists()


def test_create_refuses_bad_requests(api: Api) -> None:
    def create(server: dict[str, Any], mv: str = "2.79") -> Any:
        return api.compute("POST", "/servers", json={"server": server}, mv=mv).json()

    assert (
        "'flavorRef' is a required property"
        in create({"name": "x", "networks": "none"})["badRequest"]["message"]
    )
    assert (
        "'networks' is a required property"
        in create({"name": "x", "flavorRef": "1"})["badRequest"]["message"]
    )
    assert create({"name": "x", "flavorRef": "1", "networks": "none"})["badRequest"]["message"].startswith(
        "Block Device Mapping is Invalid: Boot sequence"
    )
    missing = "00000000-0000-4000-8000-000000000000"
    bdm = [{"boot_index": 0, "uuid": missing, "source_type": "volume", "destination_type": "volume"}]
    answer = create({"name": "x", "flavorRef": "1", "networks": "none", "block_device_mapping_v2": bdm})
    assert (
        answer["badRequest"]["message"] == f"Block Device Mapping is Invalid: failed to get volume {missing}."
    )
    zone = create(
        {
            "name": "x",
            "flavorRef": "1",
            "networks": "none",
            "availability_zone": "nowhere",
            "imageRef": missing,
        }
    )
    assert zone["badRequest"]["message"] == "The requested availability zone is not available"


def test_stop_and_start_take_the_disks_away_and_back_while_attaching_and_detaching_work(
    api: Api, booted: tuple[str, dict[str, Any], str]
) -> None:
    server_id, entry, boot_id = booted
    kept, detached, added = api.create_volume(), api.create_volume(), api.create_volume()
    api.attach(server_id, kept["id"])
    api.attach(server_id, detached["id"])
    assert api.compute("POST", f"/servers/{server_id}/action", json={"os-stop": None}).status_code == 202
    stopped = _wait_server(api, server_id, "SHUTOFF")
    assert (stopped["OS-EXT-STS:vm_state"], stopped["OS-EXT-STS:power_state"]) == ("stopped", 4)
    assert not _link(entry, kept["id"]).exists() and not _link(entry, boot_id).exists()
    again = api.compute("POST", f"/servers/{server_id}/action", json={"os-stop": None})
    assert again.status_code == 409
    assert again.json()["conflictingRequest"]["message"] == (
        f"Cannot 'stop' instance {server_id} while it is in vm_state stopped"
    )

    api.detach(server_id, detached["id"])  # Nova detaches from a stopped server
    api.attach(server_id, added["id"])  # and attaches to one; the disk appears when it starts
    assert not _link(entry, added["id"]).exists()

    assert api.compute("POST", f"/servers/{server_id}/action", json={"os-start": None}).status_code == 202
    _wait_server(api, server_id, "ACTIVE")
    for volume_id in (boot_id, kept["id"], added["id"]):
        assert os.path.realpath(_link(entry, volume_id)).startswith("/dev/loop")
    assert not _link(entry, detached["id"]).exists()
    started = api.compute("POST", f"/servers/{server_id}/action", json={"os-start": None})
    assert started.status_code == 409
    for volume in (kept, added):
        api.detach(server_id, volume["id"])
    for volume in (kept, detached, added):
        api.delete_volume(volume["id"])


def test_a_server_in_error_refuses_volume_changes_until_deleted(
    api: Api, admin: Api, booted: tuple[str, dict[str, Any], str]
) -> None:
    server_id, _, _ = booted
    data = api.create_volume()
    api.attach(server_id, data["id"])
    member = api.compute("POST", f"/servers/{server_id}/action", json={"os-resetState": {"state": "error"}})
    assert member.status_code == 403
    reset = admin.compute("POST", f"/servers/{server_id}/action", json={"os-resetState": {"state": "error"}})
    assert reset.status_code == 202
    assert (_server(api, server_id) or {})["status"] == "ERROR"
    refused = api.compute("DELETE", f"/servers/{server_id}/os-volume_attachments/{data['id']}")
    assert refused.status_code == 409
    assert refused.json()["conflictingRequest"]["message"] == (
        f"Cannot 'detach_volume' instance {server_id} while it is in vm_state error"
    )
    assert api.compute("DELETE", f"/servers/{server_id}").status_code == 204
    _wait_server(api, server_id, None)
    api.wait_volume(data["id"], "available")
    api.delete_volume(data["id"])


def test_a_failed_build_leaves_the_server_in_error_and_the_volume_available(api: Api) -> None:
    boot = api.create_volume()
    api.emu.set_faults([{"method": "POST", "path": "/servers$", "outcome": "error"}])
    try:
        server_id = _boot(api, "broken", boot["id"])
    finally:
        api.emu.clear_faults()
    failed = _wait_server(api, server_id, "ERROR")
    assert failed["os-extended-volumes:volumes_attached"] == []
    api.wait_volume(boot["id"], "available")
    assert api.compute("DELETE", f"/servers/{server_id}").status_code == 204
    _wait_server(api, server_id, None)
    api.delete_volume(boot["id"])


def test_delete_on_termination_deletes_the_boot_volume(api: Api) -> None:
    boot = api.create_volume()
    server_id = _boot(api, "ephemeral", boot["id"], delete_on_termination=True)
    _wait_server(api, server_id, "ACTIVE")
    assert api.compute("DELETE", f"/servers/{server_id}").status_code == 204
    _wait_server(api, server_id, None)
    api.wait_volume(boot["id"], None)


def test_a_delete_whose_cleanup_fails_leaves_attachments_to_a_server_that_is_gone(
    api: Api, booted: tuple[str, dict[str, Any], str]
) -> None:
    server_id, entry, boot_id = booted
    data = api.create_volume()
    api.attach(server_id, data["id"])
    api.emu.set_faults([{"method": "DELETE", "path": f"/servers/{server_id}$", "outcome": "error"}])
    try:
        assert api.compute("DELETE", f"/servers/{server_id}").status_code == 204
    finally:
        api.emu.clear_faults()
    _wait_server(api, server_id, None)
    assert _listed(api.emu, server_id) is None
    for volume_id in (data["id"], boot_id):
        stale = api.wait_volume(volume_id, "in-use")
        assert [a["server_id"] for a in stale["attachments"]] == [server_id]
        assert not _link(entry, volume_id).exists()
    # What the volume's owner can do about it: delete the Storage attachment itself (3.27+).
    listed = api.volume("GET", "/attachments", mv="3.27").json()["attachments"]
    mine = [a for a in listed if a["volume_id"] == data["id"]]
    assert [a["instance"] for a in mine] == [server_id]
    assert api.volume("DELETE", f"/attachments/{mine[0]['id']}", mv="3.27").status_code == 200
    assert not api.wait_volume(data["id"], "available")["attachments"]
    api.delete_volume(data["id"])
    boot_attachment = next(a for a in listed if a["volume_id"] == boot_id)
    assert api.volume("DELETE", f"/attachments/{boot_attachment['id']}", mv="3.27").status_code == 200


def test_a_stuck_detach_stays_detaching_until_the_faults_are_cleared(
    api: Api, servers: dict[str, dict[str, str]]
) -> None:
    node = servers["node-b"]["id"]
    volume = api.create_volume()
    api.attach(node, volume["id"])
    api.emu.set_faults([{"method": "DELETE", "path": "/os-volume_attachments/", "outcome": "stuck"}])
    try:
        resp = api.compute("DELETE", f"/servers/{node}/os-volume_attachments/{volume['id']}")
        assert resp.status_code == 202
        time.sleep(0.5)  # ten times the operation time
        assert (api.get_volume(volume["id"]) or {})["status"] == "detaching"
        again = api.compute("DELETE", f"/servers/{node}/os-volume_attachments/{volume['id']}")
        assert again.status_code == 400
    finally:
        api.emu.clear_faults()
    api.wait_volume(volume["id"], "available")
    api.delete_volume(volume["id"])


def test_server_list_pages(api: Api, servers: dict[str, dict[str, str]]) -> None:
    first = api.compute("GET", "/servers?limit=2").json()
    assert [s["name"] for s in first["servers"]] == ["node-a", "node-b"]
    [link] = first["servers_links"]
    assert link["rel"] == "next" and link["href"].endswith(f"?limit=2&marker={servers['node-b']['id']}")
    rest = api.compute("GET", f"/servers?limit=2&marker={servers['node-b']['id']}").json()
    assert rest == {
        "servers": [{"id": servers["node-z"]["id"], "name": "node-z", "links": rest["servers"][0]["links"]}]
    }
    unknown = api.compute("GET", "/servers?marker=00000000-0000-4000-8000-000000000000")
    assert unknown.status_code == 400


def test_servers_and_their_steps_survive_a_restart(fresh_emu: EmulatorProcess) -> None:
    api = Api(fresh_emu)
    try:
        volume = api.create_volume()
        server_id = _boot(api, "kept", volume["id"])
        _wait_server(api, server_id, "ACTIVE")
        fresh_emu.set_faults([{"method": "POST", "path": "/action$", "outcome": "stuck"}])
        assert api.compute("POST", f"/servers/{server_id}/action", json={"os-stop": None}).status_code == 202
        fresh_emu.restart()  # the stop was hung; the new process runs it again
        api.token = api.login()
        _wait_server(api, server_id, "SHUTOFF")
        entry = _listed(fresh_emu, server_id)
        assert entry is not None and not _link(entry, volume["id"]).exists()
        assert api.compute("POST", f"/servers/{server_id}/action", json={"os-start": None}).status_code == 202
        _wait_server(api, server_id, "ACTIVE")
        assert os.path.realpath(_link(entry, volume["id"])).startswith("/dev/loop")
        assert api.compute("DELETE", f"/servers/{server_id}").status_code == 204
        _wait_server(api, server_id, None)
        api.wait_volume(volume["id"], "available")
    finally:
        api.close()


def test_a_server_deleted_while_it_builds_goes_and_frees_its_boot_volume(api: Api) -> None:
    boot = api.create_volume()
    server_id = _boot(api, "short-lived", boot["id"])
    assert api.compute("DELETE", f"/servers/{server_id}").status_code == 204
    _wait_server(api, server_id, None)
    assert not api.wait_volume(boot["id"], "available")["attachments"]
    time.sleep(0.2)  # past the build's own time: it must not bring the server back
    assert _server(api, server_id) is None and _listed(api.emu, server_id) is None
    api.delete_volume(boot["id"])
