"""Bad input anywhere gets a 4xx answer in the API's error format, never a 500."""

from __future__ import annotations

import json
from typing import Any

from tests.emulator.helpers import Api

BODIES: list[Any] = [
    None,
    b"garbage",
    b"",
    b"null",
    b"[]",
    b"42",
    {},
    {"x": 1},
    {"volume": None},
    {"volume": []},
    {"volume": {"size": None}},
    {"volume": {"size": True}},
    {"volume": {"size": [1]}},
    {"volume": {"size": 1, "metadata": []}},
    {"volume": {"size": 1, "name": 5}},
    {"volume": {"size": 1, "source_volid": 7}},
    {"volume": {"size": 1, "volume_type": {"a": 1}}},
    {"snapshot": {"volume_id": None}},
    {"snapshot": {"volume_id": ["x"]}},
    {"backup": {"volume_id": {}}},
    {"backup": {"volume_id": "x", "incremental": "perhaps"}},
    {"restore": None},
    {"restore": {"volume_id": 3}},
    {"os-extend": None},
    {"os-extend": {"new_size": None}},
    {"os-extend": {"new_size": -3}},
    {"os-retype": "x"},
    {"os-retype": {"new_type": None}},
    {"os-reset_status": None},
    {"os-reset_status": {"status": 5}},
    {"os-attach": {"mountpoint": None}},
    {"os-detach": "x"},
    {"os-set_bootable": {"bootable": "maybe"}},
    {"os-extend": {}, "os-retype": {}},
    {"metadata": None},
    {"metadata": {"k": 1}},
    {"meta": {"a": "b", "c": "d"}},
    {"quota_set": None},
    {"quota_set": {"volumes": None}},
    {"quota_set": {"nonsense": 1}},
    {"volume_type": {"name": None}},
    {"volume_type": {"name": "x", "extra_specs": "no"}},
    {"qos_specs": {"name": ["x"]}},
    {"extra_specs": {"a": None}},
    {"volumeAttachment": None},
    {"volumeAttachment": {"volumeId": 5}},
    {"volumeAttachment": {"volumeId": "00000000-0000-4000-8000-000000000000", "device": 3}},
    {"auth": None},
    {"auth": {"identity": {"methods": "password"}}},
    {"auth": {"identity": {"methods": ["password"], "password": {"user": "x"}}}},
    {"auth": {"identity": {"methods": ["password"], "password": {"user": {"id": 5, "password": 5}}}}},
    {"auth": {"identity": {"methods": ["token"], "token": {"id": ["x"]}}}},
    {"auth": {"identity": {"methods": ["application_credential"], "application_credential": {"id": 1}}}},
]


def _paths(api: Api, vol: str, server: str) -> list[tuple[str, str]]:
    zero = "00000000-0000-0000-0000-000000000000"
    volume = [
        ("POST", "/volumes"),
        ("PUT", f"/volumes/{vol}"),
        ("POST", f"/volumes/{vol}/action"),
        ("POST", f"/volumes/{zero}/action"),
        ("POST", f"/volumes/{vol}/metadata"),
        ("PUT", f"/volumes/{vol}/metadata"),
        ("PUT", f"/volumes/{vol}/metadata/k"),
        ("POST", "/snapshots"),
        ("POST", "/backups"),
        ("POST", f"/backups/{zero}/restore"),
        ("POST", "/types"),
        ("PUT", f"/os-quota-sets/{api.project_id}"),
        ("POST", "/qos-specs"),
        ("GET", "/volumes?limit=1.5"),
        ("GET", "/volumes?sort=name:sideways"),
        ("GET", "/volumes/detail?metadata=notjson"),
        ("GET", "/snapshots?limit=x"),
        ("GET", "/backups?marker=nope"),
        ("DELETE", f"/volumes/{zero}"),
    ]
    paths = [(m, f"/volume/v3/{api.project_id}{p}") for m, p in volume]
    paths += [
        ("POST", f"/compute/v2.1/servers/{server}/os-volume_attachments"),
        ("PUT", f"/compute/v2.1/servers/{server}/os-volume_attachments/{vol}"),
        ("GET", f"/compute/v2.1/servers/{server}/os-volume_attachments?limit=x"),
        ("POST", "/identity/v3/auth/tokens"),
    ]
    return paths


def _send(api: Api, method: str, path: str, body: Any, headers: dict[str, str]) -> str | None:
    content = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    resp = api.http.request(method, path, content=content, headers=headers)
    if resp.status_code >= 500:
        return f"{method} {path} {body!r}: {resp.status_code} {resp.text[:200]}"
    if resp.status_code >= 400 and resp.content:
        error = resp.json()
        assert isinstance(error, dict), (path, resp.text)
        assert len(error) == 1 or "message" in error, (path, resp.text)
    return None


def test_no_input_makes_a_500(api: Api, admin: Api, servers: dict[str, dict[str, str]]) -> None:
    vol = api.create_volume()
    try:
        for caller in (api, admin):
            headers = {
                "X-Auth-Token": caller.token,
                "Content-Type": "application/json",
                "OpenStack-API-Version": "volume 3.71",
            }
            failures = [
                failure
                for method, path in _paths(api, vol["id"], servers["node-a"]["id"])
                for body in BODIES
                if (failure := _send(caller, method, path, body, headers))
            ]
            assert not failures, "\n".join(failures[:20])
    finally:
        api.wait(lambda: api.get_volume(vol["id"]), "available")
        admin.volume(
            "POST", f"/volumes/{vol['id']}/action", json={"os-reset_status": {"status": "available"}}
        )
        api.volume("DELETE", f"/volumes/{vol['id']}?cascade=true")
        api.wait_volume(vol["id"], None)
