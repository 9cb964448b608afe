"""Fault rules and request statistics."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.emulator.helpers import Api


def test_status_rule_fires_exactly_count_times(api: Api) -> None:
    api.emu.set_faults(
        [{"method": "GET", "path": "/volumes/detail$", "status": 503, "count": 2, "retry_after": 1}]
    )
    try:
        first = api.volume("GET", "/volumes/detail")
        second = api.volume("GET", "/volumes/detail")
        third = api.volume("GET", "/volumes/detail")
        other = api.volume("GET", "/volumes")
    finally:
        api.emu.clear_faults()
    assert [first.status_code, second.status_code, third.status_code] == [503, 503, 200]
    assert first.headers["Retry-After"] == "1"
    assert first.json() == {"computeFault": {"code": 503, "message": "Injected fault."}}
    assert other.status_code == 200


def test_method_must_match(api: Api) -> None:
    api.emu.set_faults([{"method": "POST", "path": "/volumes$", "status": 500, "count": 1}])
    try:
        assert api.volume("GET", "/volumes").status_code == 200
        assert api.volume("POST", "/volumes", json={"volume": {"size": 0}}).status_code == 500
        assert api.volume("POST", "/volumes", json={"volume": {"size": 0}}).status_code == 400
    finally:
        api.emu.clear_faults()


def test_delay_rule(api: Api) -> None:
    api.emu.set_faults([{"path": "/os-availability-zone", "delay": 0.4, "count": 1}])
    try:
        start = time.monotonic()
        assert api.volume("GET", "/os-availability-zone").status_code == 200
        slow = time.monotonic() - start
        start = time.monotonic()
        assert api.volume("GET", "/os-availability-zone").status_code == 200
        fast = time.monotonic() - start
    finally:
        api.emu.clear_faults()
    assert slow >= 0.4 > fast


def test_clear_faults(api: Api) -> None:
    api.emu.set_faults([{"path": "/limits", "status": 429, "count": 5}])
    api.emu.clear_faults()
    assert api.volume("GET", "/limits").status_code == 200


def test_bad_rules_rejected(api: Api) -> None:
    for body in (
        {"path": "x"},
        [{"path": "(", "status": 500}],
        [{"status": 99}],
        [{"path": "x"}],
        [{"status": 500, "count": 0}],
        [{"status": 500, "colour": 1}],
        [{"path": "x", "outcome": "explode"}],
        [{"path": "x", "outcome": "error", "status": 500}],
    ):
        resp = api.http.post("/_emulator/faults", json=body)
        assert resp.status_code == 400, body


def test_stats_count_templates(api: Api) -> None:
    before = api.emu.stats()
    api.volume("GET", "/volumes/00000000-0000-0000-0000-000000000000")
    api.volume("GET", "/volumes/11111111-0000-0000-0000-000000000000")
    after = api.emu.stats()
    key = "GET /volume/v3/{id}/volumes/{id}"
    assert after["requests"][key] - before["requests"].get(key, 0) == 2
    assert after["total"] - before["total"] == 2
    assert not any(k.split()[1].startswith("/_emulator") for k in after["requests"])
    # Both named no volume: answered 404, so counted as refused too; a request answered 200 is not.
    assert after["refused"][key] - before["refused"].get(key, 0) == 2
    listed = "GET /volume/v3/{id}/volumes/detail"
    assert api.volume("GET", "/volumes/detail").status_code == 200
    assert api.emu.stats()["refused"].get(listed, 0) == after["refused"].get(listed, 0)


def test_bodies_follow_the_api(api: Api) -> None:
    api.emu.set_faults(
        [
            {"path": "^/volume/.*/limits$", "status": 413, "count": 1},
            {"path": "^/identity/v3/auth/tokens$", "status": 401, "count": 1},
        ]
    )
    try:
        assert api.volume("GET", "/limits").json()["overLimit"]["code"] == 413
        assert api.http.post("/identity/v3/auth/tokens", json={}).json()["error"]["code"] == 401
    finally:
        api.emu.clear_faults()


def test_outcome_error_accepts_the_request_and_fails_its_work(api: Api) -> None:
    """A create that the cloud accepts (202) and whose backend then fails: the volume ends in error."""
    api.emu.set_faults([{"method": "POST", "path": "/volumes$", "outcome": "error", "count": 1}])
    try:
        failed = api.create_volume(wait=False)
        healthy = api.create_volume(wait=False)
    finally:
        api.emu.clear_faults()
    assert failed["status"] == "creating"
    api.wait_volume(failed["id"], "error")
    api.wait_volume(healthy["id"], "available")
    for volume in (failed, healthy):
        api.delete_volume(volume["id"])


def test_outcome_error_on_extend_snapshot_and_detach(api: Api) -> None:
    servers = {s["name"]: s for s in api.emu.servers}
    node = servers["node-a"]["id"]
    extended, snapped, attached = api.create_volume(), api.create_volume(), api.create_volume()
    api.attach(node, attached["id"])
    api.emu.set_faults(
        [
            {"method": "POST", "path": "/action$", "outcome": "error", "count": 1},
            {"method": "POST", "path": "/snapshots$", "outcome": "error", "count": 1},
            {"method": "DELETE", "path": "/os-volume_attachments/", "outcome": "error", "count": 1},
        ]
    )
    try:
        extend = {"os-extend": {"new_size": 2}}
        assert api.volume("POST", f"/volumes/{extended['id']}/action", json=extend).status_code == 202
        snap = api.volume("POST", "/snapshots", json={"snapshot": {"volume_id": snapped["id"]}})
        assert snap.status_code == 202
        detach = api.compute("DELETE", f"/servers/{node}/os-volume_attachments/{attached['id']}")
        assert detach.status_code == 202
    finally:
        api.emu.clear_faults()
    api.wait_volume(extended["id"], "error_extending")
    snap_id = snap.json()["snapshot"]["id"]
    api.wait(lambda: api.volume("GET", f"/snapshots/{snap_id}").json()["snapshot"], "error")
    time.sleep(0.3)
    assert (api.get_volume(attached["id"]) or {}).get("status") == "in-use"  # the failed detach rolled back
    api.detach(node, attached["id"])
    assert api.volume("DELETE", f"/snapshots/{snap_id}").status_code == 202
    api.wait(lambda: None if api.volume("GET", f"/snapshots/{snap_id}").status_code == 404 else {}, None)
    for volume in (extended, snapped, attached):
        api.delete_volume(volume["id"])


def test_outcome_stuck_keeps_the_volume_creating(api: Api, admin: Api) -> None:
    api.emu.set_faults([{"method": "POST", "path": "/volumes$", "outcome": "stuck", "count": 1}])
    try:
        stuck = api.create_volume(wait=False)
        time.sleep(0.5)  # ten times the operation time
        assert (api.get_volume(stuck["id"]) or {}).get("status") == "creating"
        # What an operator does with a stuck volume: reset its status, then delete it.
        reset = admin.volume(
            "POST", f"/volumes/{stuck['id']}/action", json={"os-reset_status": {"status": "error"}}
        )
        assert reset.status_code == 202
        api.delete_volume(stuck["id"])
    finally:
        api.emu.clear_faults()  # lets the hung work go on: it finds its volume gone


def test_outcome_error_on_attach_rolls_back(api: Api) -> None:
    servers = {s["name"]: s for s in api.emu.servers}
    volume = api.create_volume()
    api.emu.set_faults([{"method": "POST", "path": "/os-volume_attachments$", "outcome": "error", "count": 1}])
    try:
        resp = api.compute(
            "POST",
            f"/servers/{servers['node-a']['id']}/os-volume_attachments",
            json={"volumeAttachment": {"volumeId": volume["id"]}},
        )
    finally:
        api.emu.clear_faults()
    assert resp.status_code == 200
    api.wait_volume(volume["id"], "available")
    api.attach(servers["node-a"]["id"], volume["id"])  # the next attach works
    api.detach(servers["node-a"]["id"], volume["id"])
    api.delete_volume(volume["id"])


def test_a_delayed_request_is_served_even_when_its_client_gave_up(api: Api) -> None:
    """Like a slow cloud: the request was read before the delay, so it lands after the client left."""
    api.emu.set_faults([{"method": "POST", "path": "/volumes$", "delay": 1.0, "count": 1}])
    try:
        with pytest.raises(httpx.ReadTimeout):
            api.volume("POST", "/volumes", json={"volume": {"size": 1, "name": "served-late"}}, timeout=0.3)
        time.sleep(1.5)
    finally:
        api.emu.clear_faults()
    listed = api.volume("GET", "/volumes", params={"name": "served-late"}).json()["volumes"]
    assert len(listed) == 1
    api.wait_volume(listed[0]["id"], "available")
    api.delete_volume(listed[0]["id"])


def test_outcome_refused_settles_an_extend_back_with_a_user_message(api: Api) -> None:
    """As the scheduler refuses an extend it accepted: the old status and size, and a user message."""
    volume = api.create_volume()
    api.emu.set_faults([{"method": "POST", "path": "/action$", "outcome": "refused", "count": 1}])
    try:
        extend = {"os-extend": {"new_size": 2}}
        assert api.volume("POST", f"/volumes/{volume['id']}/action", json=extend).status_code == 202
    finally:
        api.emu.clear_faults()
    settled = until(lambda: _unless_status(api.get_volume(volume["id"]), "extending"))
    assert settled["status"] == "available"
    assert settled["size"] == 1
    messages = api.volume("GET", "/messages", params={"resource_uuid": volume["id"]}).json()["messages"]
    assert [(m["event_id"], m["user_message"], m["resource_type"]) for m in messages] == [
        ("VOLUME_VOLUME_007_003", "extend volume:Could not find any available weighted backend.", "VOLUME")
    ]
    api.delete_volume(volume["id"])


def test_outcome_error_rolls_a_retype_back_to_the_old_type(api: Api) -> None:
    volume = api.create_volume()
    api.emu.set_faults([{"method": "POST", "path": "/action$", "outcome": "error", "count": 1}])
    try:
        retype = {"os-retype": {"new_type": "archive", "migration_policy": "on-demand"}}
        assert api.volume("POST", f"/volumes/{volume['id']}/action", json=retype).status_code == 202
    finally:
        api.emu.clear_faults()
    settled = until(lambda: _unless_status(api.get_volume(volume["id"]), "retyping"))
    assert (settled["status"], settled["volume_type"]) == ("available", "standard")
    api.delete_volume(volume["id"])


def test_messages_filter_from_3_34_and_page_from_3_5(api: Api) -> None:
    """Below 3.34 the real service ignores resource_uuid (recorded Cinder); the emulator does the same."""
    refused = [api.create_volume(), api.create_volume()]
    api.emu.set_faults([{"method": "POST", "path": "/action$", "outcome": "refused", "count": 2}])
    try:
        for volume in refused:
            extend = {"os-extend": {"new_size": 2}}
            assert api.volume("POST", f"/volumes/{volume['id']}/action", json=extend).status_code == 202
    finally:
        api.emu.clear_faults()
    for volume in refused:
        until(lambda v=volume: api.volume(
            "GET", "/messages", mv="3.34", params={"resource_uuid": v["id"]}
        ).json()["messages"])
    first = refused[0]["id"]
    unfiltered = api.volume("GET", "/messages", mv="3.3", params={"resource_uuid": first}).json()["messages"]
    assert {m["resource_uuid"] for m in unfiltered} >= {v["id"] for v in refused}
    filtered = api.volume("GET", "/messages", mv="3.34", params={"resource_uuid": first}).json()["messages"]
    assert [m["resource_uuid"] for m in filtered] == [first]
    paged = api.volume("GET", "/messages", mv="3.5", params={"limit": "1"}).json()
    assert len(paged["messages"]) == 1 and paged["messages_links"][0]["rel"] == "next"
    assert api.volume("GET", "/messages", mv="3.2").status_code == 404
    for volume in refused:
        api.delete_volume(volume["id"])


def test_a_failed_attach_leaves_an_instance_action_naming_why(api: Api) -> None:
    server = {s["name"]: s for s in api.emu.servers}["node-a"]["id"]
    volume = api.create_volume()
    api.emu.set_faults([{"method": "POST", "path": "/os-volume_attachments$", "outcome": "error", "count": 1}])
    try:
        resp = api.compute(
            "POST", f"/servers/{server}/os-volume_attachments", json={"volumeAttachment": {"volumeId": volume["id"]}}
        )
    finally:
        api.emu.clear_faults()
    request_id = resp.headers["x-openstack-request-id"]
    api.wait_volume(volume["id"], "available")
    path = f"/servers/{server}/os-instance-actions/{request_id}"
    action = until(lambda: _if_finished(api.compute("GET", path, mv="2.84").json()["instanceAction"]))
    assert (action["action"], action["message"], action["request_id"]) == ("attach_volume", "Error", request_id)
    (event,) = action["events"]
    assert (event["event"], event["result"]) == ("compute_attach_volume", "Error")
    assert event["details"] == "the backend failed (injected by a fault rule)"
    old = api.compute("GET", path, mv="2.1").json()
    assert "details" not in old["instanceAction"]["events"][0]
    listed = api.compute("GET", f"/servers/{server}/os-instance-actions").json()["instanceActions"]
    assert request_id in [a["request_id"] for a in listed]
    missing = api.compute("GET", f"/servers/{server}/os-instance-actions/req-{'0' * 8}")
    assert missing.status_code == 404
    api.attach(server, volume["id"])
    api.detach(server, volume["id"])
    api.delete_volume(volume["id"])


def until(fetch: Callable[[], Any], timeout: float = 15) -> Any:
    """Poll until fetch() answers something truthy; that answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = fetch()
        if found:
            return found
        time.sleep(0.03)
    raise AssertionError("never came")


def _unless_status(volume: dict[str, Any] | None, status: str) -> dict[str, Any] | None:
    return volume if volume is not None and volume["status"] != status else None


def _if_finished(action: dict[str, Any]) -> dict[str, Any] | None:
    return action if action["events"][0]["result"] else None
