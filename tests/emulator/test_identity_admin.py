"""Keystone's admin API as test tools use it: a project and a user of their own, a role, a login, a volume."""

from __future__ import annotations

from typing import Any

from tests.emulator.helpers import Api


def _identity(api: Api, method: str, path: str, **kw: Any) -> Any:
    return api.http.request(method, f"/identity/v3{path}", headers={"X-Auth-Token": api.token}, **kw)


def _login(api: Api, user: str, password: str, project: dict[str, Any]) -> Any:
    body = {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {"user": {"name": user, "domain": {"name": "Default"}, "password": password}},
            },
            "scope": {"project": project},
        }
    }
    return api.http.post("/identity/v3/auth/tokens", json=body)


def test_a_member_may_not_use_the_admin_api(api: Api) -> None:
    for path in ("/projects", "/users", "/roles", "/role_assignments", "/domains"):
        answer = _identity(api, "GET", path)
        assert answer.status_code == 403, path
        assert answer.json()["error"]["message"].startswith("You are not authorized to perform")


def test_domains_and_roles(admin: Api) -> None:
    domains = _identity(admin, "GET", "/domains").json()["domains"]
    assert [(d["id"], d["name"]) for d in domains] == [("default", "Default")]
    assert _identity(admin, "GET", "/domains/default").json()["domain"]["enabled"] is True
    assert _identity(admin, "GET", "/domains/other").status_code == 404
    roles = {r["name"]: r["id"] for r in _identity(admin, "GET", "/roles").json()["roles"]}
    assert set(roles) == {"admin", "member", "reader"}
    assert _identity(admin, "GET", "/roles?name=member").json()["roles"][0]["id"] == roles["member"]


def test_a_tool_makes_its_own_project_and_user_and_works_there(api: Api, admin: Api) -> None:
    made = _identity(
        admin, "POST", "/projects", json={"project": {"name": "tool-project", "description": "t"}}
    )
    assert made.status_code == 201, made.text
    project = made.json()["project"]
    again = _identity(admin, "POST", "/projects", json={"project": {"name": "tool-project"}})
    assert again.status_code == 409
    user = _identity(
        admin,
        "POST",
        "/users",
        json={"user": {"name": "tool-user", "password": "s3cret-pass", "default_project_id": project["id"]}},
    ).json()["user"]
    assert "password" not in user and user["default_project_id"] == project["id"]
    try:
        # No role yet: no token for that project.
        assert _login(admin, "tool-user", "s3cret-pass", {"id": project["id"]}).status_code == 401
        member_role = _identity(admin, "GET", "/roles?name=member").json()["roles"][0]["id"]
        grant = f"/projects/{project['id']}/users/{user['id']}/roles/{member_role}"
        assert _identity(admin, "PUT", grant).status_code == 204
        assert _identity(admin, "HEAD", grant).status_code == 204
        listed = _identity(admin, "GET", f"/role_assignments?user.id={user['id']}&include_names").json()
        assert [(a["role"]["name"], a["scope"]["project"]["name"]) for a in listed["role_assignments"]] == [
            ("member", "tool-project")
        ]
        assert [
            p["id"] for p in _identity(admin, "GET", f"/users/{user['id']}/projects").json()["projects"]
        ] == [project["id"]]

        login = _login(
            admin, "tool-user", "s3cret-pass", {"name": "tool-project", "domain": {"name": "Default"}}
        )
        assert login.status_code == 201, login.text
        token = login.json()["token"]
        assert token["project"]["id"] == project["id"]
        assert [r["name"] for r in token["roles"]] == ["member", "reader"]  # member implies reader
        volume_url = next(
            e["url"]
            for s in token["catalog"]
            if s["type"] == "volumev3"
            for e in s["endpoints"]
            if e["interface"] == "public"
        )
        assert volume_url.endswith(f"/volume/v3/{project['id']}")
        headers = {"X-Auth-Token": login.headers["X-Subject-Token"], "OpenStack-API-Version": "volume 3.71"}
        created = api.http.post(f"{volume_url}/volumes", headers=headers, json={"volume": {"size": 1}})
        assert created.status_code == 202, created.text
        volume_id = created.json()["volume"]["id"]
        assert api.volume("GET", f"/volumes/{volume_id}").status_code == 404  # another project's
        assert api.http.get(f"{volume_url}/os-services", headers=headers).status_code == 403  # a member
        seen = admin.volume("GET", "/volumes/detail?all_tenants=1").json()["volumes"]
        assert volume_id in {v["id"] for v in seen}
        admin.wait_volume(volume_id, "available")
        assert api.http.delete(f"{volume_url}/volumes/{volume_id}", headers=headers).status_code == 202
        admin.wait_volume(volume_id, None)

        assert _identity(admin, "DELETE", grant).status_code == 204
        assert _identity(admin, "HEAD", grant).status_code == 404
    finally:
        assert _identity(admin, "DELETE", f"/users/{user['id']}").status_code == 204
        assert _identity(admin, "DELETE", f"/projects/{project['id']}").status_code == 204
    assert _identity(admin, "GET", f"/projects/{project['id']}").status_code == 404
    assert _identity(admin, "GET", "/users?name=tool-user").json()["users"] == []


def test_a_volume_transfer_is_accepted_in_another_project(api: Api, admin: Api) -> None:
    project = _identity(admin, "POST", "/projects", json={"project": {"name": "receiver"}}).json()["project"]
    user = _identity(admin, "POST", "/users", json={"user": {"name": "receiver", "password": "pw-receiver"}})
    user_id = user.json()["user"]["id"]
    member_role = _identity(admin, "GET", "/roles?name=member").json()["roles"][0]["id"]
    _identity(admin, "PUT", f"/projects/{project['id']}/users/{user_id}/roles/{member_role}")
    try:
        vol = api.create_volume(name="given")
        transfer = api.volume(
            "POST", "/volume-transfers", mv="3.55", json={"transfer": {"volume_id": vol["id"]}}
        ).json()["transfer"]
        login = _login(admin, "receiver", "pw-receiver", {"id": project["id"]})
        headers = {"X-Auth-Token": login.headers["X-Subject-Token"], "OpenStack-API-Version": "volume 3.55"}
        base = f"/volume/v3/{project['id']}"
        assert api.http.get(f"{base}/volume-transfers/{transfer['id']}", headers=headers).status_code == 404
        accept = {"accept": {"auth_key": transfer["auth_key"]}}
        accepted = api.http.post(
            f"{base}/volume-transfers/{transfer['id']}/accept", headers=headers, json=accept
        )
        assert accepted.status_code == 202, accepted.text
        assert api.volume("GET", f"/volumes/{vol['id']}").status_code == 404  # no longer the member's
        mine = api.http.get(f"{base}/volumes/{vol['id']}", headers=headers).json()["volume"]
        assert mine["status"] == "available" and mine["name"] == "given"
        assert api.http.delete(f"{base}/volumes/{vol['id']}", headers=headers).status_code == 202
        admin.wait_volume(vol["id"], None)
    finally:
        _identity(admin, "DELETE", f"/users/{user_id}")
        _identity(admin, "DELETE", f"/projects/{project['id']}")
