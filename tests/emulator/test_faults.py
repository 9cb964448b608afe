"""Fault rules and request statistics."""

from __future__ import annotations

import time

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
