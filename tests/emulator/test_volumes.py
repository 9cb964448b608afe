"""Storage API: versions, volumes, actions, snapshots, backups, types, qos, quotas; bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from csi_xloud.emulator.process import EmulatorProcess
from tests.emulator.helpers import Api


def test_version_discovery_and_negotiation(api: Api) -> None:
    root = api.http.get("/volume/")
    assert root.status_code == 300
    assert root.json()["versions"][0]["version"] == "3.71"
    assert api.http.get("/volume/v3/").json()["versions"][0]["min_version"] == "3.0"
    ok = api.volume("GET", "/volumes", mv="3.50")
    assert ok.headers["OpenStack-API-Version"] == "volume 3.50"
    assert api.volume("GET", "/volumes", mv="latest").headers["OpenStack-API-Version"] == "volume 3.71"
    too_new = api.volume("GET", "/volumes", mv="3.72")
    assert too_new.status_code == 406
    assert too_new.json()["computeFault"]["message"].startswith("Version 3.72 is not supported by the API.")
    assert api.volume("GET", "/volumes", mv="3.abc").status_code == 400
    no_project = api.http.get("/volume/v3/volumes", headers={"X-Auth-Token": api.token})
    assert no_project.status_code == 200
    assert no_project.headers["OpenStack-API-Version"] == "volume 3.0"
    other = api.http.get(f"/volume/v3/{'f' * 32}/volumes", headers={"X-Auth-Token": api.token})
    assert other.status_code == 400


def test_create_show_update_delete(api: Api) -> None:
    created = api.volume(
        "POST", "/volumes", json={"volume": {"size": 1, "name": "crud", "metadata": {"a": "b"}}}
    )
    assert created.status_code == 202
    assert created.json()["volume"]["status"] == "creating"
    vol = api.wait_volume(created.json()["volume"]["id"], "available")
    assert vol["volume_type"] == "standard"
    assert "os-vol-host-attr:host" not in vol and "migration_status" not in vol
    updated = api.volume("PUT", f"/volumes/{vol['id']}", json={"volume": {"name": "crud2"}})
    assert updated.json()["volume"]["name"] == "crud2"
    assert api.volume("POST", f"/volumes/{vol['id']}/metadata", json={"metadata": {"c": "d"}}).json() == {
        "metadata": {"a": "b", "c": "d"}
    }
    assert api.volume("PUT", f"/volumes/{vol['id']}/metadata/c", json={"meta": {"c": "e"}}).status_code == 200
    assert api.volume("DELETE", f"/volumes/{vol['id']}/metadata/a").status_code == 200
    assert api.volume("GET", f"/volumes/{vol['id']}/metadata").json() == {"metadata": {"c": "e"}}
    api.delete_volume(vol["id"])
    missing = api.volume("GET", f"/volumes/{vol['id']}")
    assert missing.json() == {
        "itemNotFound": {"code": 404, "message": f"Volume {vol['id']} could not be found."}
    }


def test_admin_sees_admin_fields(api: Api, admin: Api) -> None:
    vol = api.create_volume()
    shown = admin.volume("GET", f"/volumes/{vol['id']}").json()["volume"]
    assert shown["os-vol-tenant-attr:tenant_id"] == api.project_id
    assert "migration_status" in shown
    api.delete_volume(vol["id"])


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (
            {"volume": {"size": 0}},
            400,
            "Invalid input for field/attribute size. Value: 0. 0 is less than the minimum of 1",
        ),
        (
            {"volume": {"size": "abc"}},
            400,
            "Invalid input for field/attribute size. Value: abc. 'abc' does not match '^[0-9]+$'",
        ),
        ({"volume": {"size": 1.5}}, 400, None),
        ({"volume": {"size": 100000}}, 413, None),
        (
            {"volume": {"size": 1, "volume_type": "nope"}},
            404,
            "Volume type with name nope could not be found.",
        ),
        (
            {"volume": {"size": 1, "availability_zone": "zone-x"}},
            400,
            "Availability zone 'zone-x' is invalid.",
        ),
        (
            {"volume": {"size": 1, "name": "x" * 256}},
            400,
            "Invalid input received: name has 256 characters, more than 255.",
        ),
        ({"volume": {"size": 1, "metadata": {"a": 1}}}, 400, None),
        ({"volume": {"size": 1, "colour": "red"}}, 400, None),
        ({"volume": {}}, 400, None),
        ({}, 400, "'volume' is a required property"),
        ({"volume": {"size": 1, "source_volid": "00000000-0000-0000-0000-000000000000"}}, 404, None),
        ({"volume": {"size": 1, "snapshot_id": "00000000-0000-0000-0000-000000000000"}}, 404, None),
    ],
)
def test_create_bad_input(api: Api, body: dict[str, object], status: int, message: str | None) -> None:
    resp = api.volume("POST", "/volumes", json=body)
    assert resp.status_code == status, resp.text
    kind = {400: "badRequest", 404: "itemNotFound", 413: "overLimit"}[status]
    assert resp.json()[kind]["code"] == status
    if message:
        assert resp.json()[kind]["message"] == message


def test_malformed_bodies(api: Api) -> None:
    resp = api.volume("POST", "/volumes", content=b"{nope", headers={"Content-Type": "application/json"})
    assert resp.json() == {"badRequest": {"code": 400, "message": "Malformed request body"}}
    wrong_type = api.volume("POST", "/volumes", content=b"{}", headers={"Content-Type": "text/plain"})
    assert wrong_type.status_code == 415
    assert api.volume("GET", "/nonsense").status_code == 404
    action = api.volume(
        "POST", "/volumes/00000000-0000-0000-0000-000000000000/action", json={"os-extend": {}}
    )
    assert action.status_code == 404


def test_list_filters_sort_and_pages(api: Api, admin: Api) -> None:
    ids = [
        api.create_volume(name=f"list-{n}", metadata={"tier": "gold" if n < 2 else "iron"})["id"]
        for n in range(3)
    ]
    try:
        detail = api.volume("GET", "/volumes/detail").json()["volumes"]
        assert [v["id"] for v in detail if v["id"] in ids] == ids[::-1]
        assert len(api.volume("GET", "/volumes?name=list-1").json()["volumes"]) == 1
        assert (
            len(
                api.volume("GET", "/volumes/detail", params={"metadata": '{"tier":"gold"}'}).json()["volumes"]
            )
            == 2
        )
        assert (
            len(
                api.volume("GET", "/volumes/detail", params={"metadata": "{'tier':'iron'}"}).json()["volumes"]
            )
            == 1
        )
        # From 3.33 a member may filter only by the configured keys; name~ is not one of them.
        refused = api.volume("GET", "/volumes?name~=list-")
        assert refused.json()["badRequest"]["message"] == "Invalid filters name~ are found in query options."
        assert len(admin.volume("GET", "/volumes?name~=list-").json()["volumes"]) >= 3
        page1 = admin.volume("GET", "/volumes?limit=2&sort=name:asc&name~=list-").json()
        assert [v["name"] for v in page1["volumes"]] == ["list-0", "list-1"]
        next_href = page1["volumes_links"][0]["href"]
        page2 = admin.http.get(next_href, headers={"X-Auth-Token": admin.token}).json()
        assert [v["name"] for v in page2["volumes"]] == ["list-2"]
        counted = api.volume("GET", "/volumes?limit=1&with_count=true", mv="3.45").json()
        assert counted["count"] >= 3
        assert (
            api.volume("GET", "/volumes?limit=-1").json()["badRequest"]["message"]
            == "limit param must be positive"
        )
        assert api.volume("GET", "/volumes?limit=abc").status_code == 400
        assert api.volume("GET", "/volumes?sort=bogus:asc").status_code == 400
        assert api.volume("GET", f"/volumes?marker={'0' * 8}-0000-0000-0000-{'0' * 12}").status_code == 404
        assert admin.volume("GET", "/volumes/detail?status=creating&name~=list-").json()["volumes"] == []
    finally:
        for vid in ids:
            api.delete_volume(vid)


def test_extend_rules(api: Api) -> None:
    vol = api.create_volume()
    assert (
        api.volume("POST", f"/volumes/{vol['id']}/action", json={"os-extend": {"new_size": 1}}).status_code
        == 400
    )
    assert (
        api.volume(
            "POST", f"/volumes/{vol['id']}/action", json={"os-extend": {"new_size": "four"}}
        ).status_code
        == 400
    )
    assert api.volume("POST", f"/volumes/{vol['id']}/action", json={"os-extend": {}}).status_code == 400
    assert (
        api.volume(
            "POST", f"/volumes/{vol['id']}/action", json={"os-extend": {"new_size": 100000}}
        ).status_code
        == 413
    )
    resp = api.volume("POST", f"/volumes/{vol['id']}/action", json={"os-extend": {"new_size": 2}})
    assert resp.status_code == 202
    assert api.wait_volume(vol["id"], "available")["size"] == 2
    bogus = api.volume("POST", f"/volumes/{vol['id']}/action", json={"os-bogus": {}})
    assert bogus.json()["badRequest"]["message"].startswith("There is no such action: os-bogus.")
    api.delete_volume(vol["id"])


def test_retype_moves_data_on_demand(api: Api, emu: EmulatorProcess) -> None:
    vol = api.create_volume()
    path = emu.data_dir / "backends" / "ssd" / "volumes" / f"{vol['id']}.img"
    assert path.exists()
    never = api.volume(
        "POST",
        f"/volumes/{vol['id']}/action",
        json={"os-retype": {"new_type": "archive", "migration_policy": "never"}},
    )
    assert never.status_code == 202
    assert api.wait_volume(vol["id"], "available")["volume_type"] == "standard"
    bad = api.volume(
        "POST",
        f"/volumes/{vol['id']}/action",
        json={"os-retype": {"new_type": "archive", "migration_policy": "sometimes"}},
    )
    assert bad.status_code == 400
    assert (
        api.volume(
            "POST", f"/volumes/{vol['id']}/action", json={"os-retype": {"new_type": "nope"}}
        ).status_code
        == 404
    )
    assert (
        api.volume(
            "POST", f"/volumes/{vol['id']}/action", json={"os-retype": {"new_type": "standard"}}
        ).status_code
        == 400
    )
    resp = api.volume(
        "POST",
        f"/volumes/{vol['id']}/action",
        json={"os-retype": {"new_type": "archive", "migration_policy": "on-demand"}},
    )
    assert resp.status_code == 202
    assert api.wait_volume(vol["id"], "available")["volume_type"] == "archive"
    assert not path.exists()
    assert (emu.data_dir / "backends" / "hdd" / "volumes" / f"{vol['id']}.img").exists()
    api.delete_volume(vol["id"])


def test_snapshots(api: Api) -> None:
    vol = api.create_volume()
    resp = api.volume(
        "POST", "/snapshots", json={"snapshot": {"volume_id": vol["id"], "name": "s1"}}, mv="3.0"
    )
    assert resp.status_code == 202
    snap = resp.json()["snapshot"]
    assert snap["status"] == "creating"
    snap = api.wait(lambda: api.volume("GET", f"/snapshots/{snap['id']}").json()["snapshot"], "available")
    assert snap["os-extended-snapshot-attributes:progress"] == "100%"
    refused = api.volume("DELETE", f"/volumes/{vol['id']}")
    assert refused.status_code == 400
    assert refused.json()["badRequest"]["message"].startswith(
        "Invalid volume: Volume status must be available"
    )
    listed = api.volume("GET", f"/snapshots?volume_id={vol['id']}&limit=1").json()
    assert [s["id"] for s in listed["snapshots"]] == [snap["id"]]
    assert (
        api.volume(
            "POST", "/snapshots", json={"snapshot": {"volume_id": vol["id"], "force": "maybe"}}
        ).status_code
        == 400
    )
    assert api.volume("GET", "/snapshots/00000000-0000-0000-0000-000000000000").status_code == 404
    assert (
        api.volume("PUT", f"/snapshots/{snap['id']}", json={"snapshot": {"name": "s2"}}).json()["snapshot"][
            "name"
        ]
        == "s2"
    )
    cascade = api.volume("DELETE", f"/volumes/{vol['id']}?cascade=true")
    assert cascade.status_code == 202
    api.wait_volume(vol["id"], None)
    assert api.volume("GET", f"/snapshots/{snap['id']}").status_code == 404


def test_types_and_qos(api: Api, admin: Api) -> None:
    types = {t["name"]: t for t in api.volume("GET", "/types").json()["volume_types"]}
    assert set(types) >= {"standard", "archive", "shared"}
    assert types["shared"]["extra_specs"] == {"multiattach": "<is> True"}
    assert (
        "volume_backend_name"
        in admin.volume("GET", f"/types/{types['archive']['id']}").json()["volume_type"]["extra_specs"]
    )
    assert api.volume("GET", "/types/default", mv="3.62").json()["volume_type"]["name"] == "standard"
    assert api.volume("GET", "/types/standard").status_code == 404
    assert api.volume("POST", "/types", json={"volume_type": {"name": "t"}}).status_code == 403
    created = admin.volume(
        "POST", "/types", json={"volume_type": {"name": "tmp-type", "extra_specs": {"a": "b"}}}
    )
    assert created.status_code == 200
    assert admin.volume("POST", "/types", json={"volume_type": {"name": "tmp-type"}}).status_code == 409
    assert admin.volume("DELETE", f"/types/{created.json()['volume_type']['id']}").status_code == 202
    assert api.volume("GET", "/qos-specs").status_code == 403
    qos = admin.volume(
        "POST",
        "/qos-specs",
        json={"qos_specs": {"name": "gold", "consumer": "front-end", "read_iops_sec": "100"}},
    )
    assert qos.status_code == 200
    qos_id = qos.json()["qos_specs"]["id"]
    assert (
        admin.volume(
            "POST", "/qos-specs", json={"qos_specs": {"name": "bad", "consumer": "sideways"}}
        ).status_code
        == 400
    )
    assert admin.volume("GET", f"/qos-specs/{qos_id}").json()["qos_specs"]["specs"] == {
        "read_iops_sec": "100"
    }
    assert admin.volume("DELETE", f"/qos-specs/{qos_id}").status_code == 202
    assert admin.volume("GET", f"/qos-specs/{qos_id}").status_code == 404


def test_quotas_enforced_and_adjustable(fresh_emu: EmulatorProcess) -> None:
    api, admin = Api(fresh_emu), Api(fresh_emu, "xloud-emulator-admin")
    try:
        project = api.project_id
        assert (
            api.volume("PUT", f"/os-quota-sets/{project}", json={"quota_set": {"volumes": 1}}).status_code
            == 403
        )
        set_one = admin.volume("PUT", f"/os-quota-sets/{project}", json={"quota_set": {"volumes": 1}})
        assert set_one.status_code == 200
        assert set_one.json()["quota_set"]["volumes"] == 1
        api.create_volume()
        over = api.volume("POST", "/volumes", json={"volume": {"size": 1}})
        assert over.status_code == 413
        assert over.json()["overLimit"]["message"] == (
            "VolumeLimitExceeded: Maximum number of volumes allowed (1) exceeded for quota 'volumes'."
        )
        usage = api.volume("GET", f"/os-quota-sets/{project}?usage=true").json()["quota_set"]
        assert usage["volumes"] == {"limit": 1, "in_use": 1, "reserved": 0}
        limits = api.volume("GET", "/limits").json()["limits"]["absolute"]
        assert limits["maxTotalVolumes"] == 1 and limits["totalVolumesUsed"] == 1
        bad = admin.volume("PUT", f"/os-quota-sets/{project}", json={"quota_set": {"volumes": "many"}})
        assert bad.json() == {"badRequest": {"code": 400, "message": "volumes must be an integer"}}
        assert admin.volume("DELETE", f"/os-quota-sets/{project}").status_code == 200
        assert api.volume("POST", "/volumes", json={"volume": {"size": 1}}).status_code == 202
    finally:
        api.close()
        admin.close()


def test_admin_only_actions(api: Api, admin: Api) -> None:
    vol = api.create_volume()
    reset = {"os-reset_status": {"status": "error"}}
    assert api.volume("POST", f"/volumes/{vol['id']}/action", json=reset).status_code == 403
    assert admin.volume("POST", f"/volumes/{vol['id']}/action", json=reset).status_code == 202
    assert api.get_volume(vol["id"])["status"] == "error"  # type: ignore[index]
    api.delete_volume(vol["id"])


def test_legacy_attach_actions(api: Api) -> None:
    vol = api.create_volume()
    path = f"/volumes/{vol['id']}/action"
    assert api.volume("POST", path, json={"os-reserve": None}).status_code == 202
    assert api.get_volume(vol["id"])["status"] == "attaching"  # type: ignore[index]
    assert api.volume("POST", path, json={"os-unreserve": None}).status_code == 202
    assert api.get_volume(vol["id"])["status"] == "available"  # type: ignore[index]
    api.volume("POST", path, json={"os-reserve": None})
    attach = {
        "os-attach": {"instance_uuid": "89445fa7-dbf2-419f-a427-a9ae23566275", "mountpoint": "/dev/vdc"}
    }
    assert api.volume("POST", path, json=attach).status_code == 202
    assert api.get_volume(vol["id"])["status"] == "in-use"  # type: ignore[index]
    assert api.volume("POST", path, json={"os-begin_detaching": None}).status_code == 202
    assert api.get_volume(vol["id"])["status"] == "detaching"  # type: ignore[index]
    assert api.volume("POST", path, json={"os-detach": {}}).status_code == 202
    assert api.get_volume(vol["id"])["status"] == "available"  # type: ignore[index]
    api.delete_volume(vol["id"])


def test_pages_are_capped_at_the_max_page_size_and_counted(emu_root: Path) -> None:
    with EmulatorProcess(emu_root / "pages", op_seconds=0.05, max_page_size=2) as emulator:
        api = Api(emulator)
        ids = [api.create_volume(name=f"page-{i}")["id"] for i in range(3)]
        try:
            # No limit, or a larger one: two per page and a next link, as Cinder's osapi_max_limit.
            for query in ("", "?limit=50"):
                first = api.volume("GET", f"/volumes/detail{query}").json()
                assert len(first["volumes"]) == 2 and first["volumes_links"][0]["rel"] == "next"
            counted = api.volume("GET", "/volumes/detail?with_count=true&sort=created_at:asc", mv="3.45").json()
            assert counted["count"] == 3 and [v["id"] for v in counted["volumes"]] == ids[:2]
            rest = api.http.get(counted["volumes_links"][0]["href"], headers={"X-Auth-Token": api.token}).json()
            assert [v["id"] for v in rest["volumes"]] == ids[2:] and "volumes_links" not in rest
            assert "count" not in api.volume("GET", "/volumes?with_count=true", mv="3.44").json()
            snapshots = api.volume("GET", "/snapshots/detail?with_count=true", mv="3.45").json()
            backups = api.volume("GET", "/backups/detail?with_count=true", mv="3.45").json()
            assert snapshots["count"] == 0 and backups["count"] == 0
        finally:
            for vid in ids:
                api.delete_volume(vid)


def test_volume_lists_filter_by_time_from_3_60(api: Api) -> None:
    vol = api.create_volume(name="timed")
    try:
        shown = api.volume("GET", f"/volumes/{vol['id']}").json()["volume"]
        updated = shown["updated_at"]

        def ids(query: str, mv: str = "3.60") -> list[str]:
            listed = api.volume("GET", f"/volumes/detail?name=timed&{query}", mv=mv).json()["volumes"]
            return [v["id"] for v in listed]

        assert ids(f"updated_at=gte:{updated}") == [vol["id"]]
        assert ids(f"updated_at=gt:{updated}") == []
        assert ids(f"updated_at=lt:{updated}") == []
        assert ids(f"created_at=lte:{shown['created_at']}") == [vol["id"]]
        assert ids(f"created_at={shown['created_at']}") == [vol["id"]]
        assert ids(f"updated_at=gte:{updated}", mv="3.59") == []  # before 3.60 no time comparison
        assert api.volume("GET", "/volumes/detail?updated_at=gte:yesterday", mv="3.60").status_code == 400
    finally:
        api.delete_volume(vol["id"])
