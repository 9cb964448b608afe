"""Identity API: token methods, errors, validation, revocation, expiry, catalog."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import yaml

from csi_xloud.emulator.process import EmulatorProcess
from tests.emulator.helpers import Api


def _password_body(user: str, password: str, project_id: str) -> dict[str, object]:
    return {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {"user": {"name": user, "domain": {"id": "default"}, "password": password}},
            },
            "scope": {"project": {"id": project_id}},
        }
    }


def test_version_discovery(api: Api) -> None:
    assert api.http.get("/identity/").status_code == 300
    resp = api.http.get("/identity/v3")
    assert resp.status_code == 200
    assert resp.json()["version"]["id"] == "v3.14"


def test_password_token_has_catalog_roles_and_expiry(api: Api) -> None:
    auth = api.cloud["auth"]
    resp = api.http.post(
        "/identity/v3/auth/tokens",
        json=_password_body(auth["username"], auth["password"], auth["project_id"]),
    )
    assert resp.status_code == 201
    token = resp.json()["token"]
    assert resp.headers["X-Subject-Token"]
    assert token["project"]["id"] == auth["project_id"]
    assert {r["name"] for r in token["roles"]} == {"member", "reader"}
    types = {s["type"]: s for s in token["catalog"]}
    assert set(types) == {"volumev3", "compute", "identity"}
    volume_urls = {e["interface"]: e["url"] for e in types["volumev3"]["endpoints"]}
    assert volume_urls["public"] == f"{api.emu.url}/volume/v3/{auth['project_id']}"
    assert set(volume_urls) == {"public", "internal"}
    assert token["expires_at"].endswith("Z")


def test_application_credential(emu: EmulatorProcess, api: Api) -> None:
    cloud = yaml.safe_load(emu.clouds_yaml.read_text())["clouds"]["xloud-emulator-appcred"]["auth"]
    body = {
        "auth": {
            "identity": {
                "methods": ["application_credential"],
                "application_credential": {
                    "id": cloud["application_credential_id"],
                    "secret": cloud["application_credential_secret"],
                },
            }
        }
    }
    resp = api.http.post("/identity/v3/auth/tokens", json=body)
    assert resp.status_code == 201, resp.text
    assert resp.json()["token"]["methods"] == ["application_credential"]
    body["auth"]["identity"]["application_credential"]["secret"] = "wrong"  # type: ignore[index]
    assert api.http.post("/identity/v3/auth/tokens", json=body).status_code == 401


def test_auth_errors(api: Api) -> None:
    auth = api.cloud["auth"]
    wrong = api.http.post(
        "/identity/v3/auth/tokens", json=_password_body(auth["username"], "nope", auth["project_id"])
    )
    assert wrong.status_code == 401
    assert wrong.json() == {
        "error": {
            "code": 401,
            "message": "The request you have made requires authentication.",
            "title": "Unauthorized",
        }
    }
    assert api.http.post("/identity/v3/auth/tokens", content=b"{not json").status_code == 400
    assert api.http.post("/identity/v3/auth/tokens", json={}).status_code == 400
    unknown = {"auth": {"identity": {"methods": ["kerberos"], "kerberos": {}}}}
    assert api.http.post("/identity/v3/auth/tokens", json=unknown).status_code == 401
    other = _password_body(auth["username"], auth["password"], "f" * 32)
    assert api.http.post("/identity/v3/auth/tokens", json=other).status_code == 401


def test_validate_and_revoke(api: Api) -> None:
    victim = api.login()
    headers = {"X-Auth-Token": api.token, "X-Subject-Token": victim}
    assert api.http.get("/identity/v3/auth/tokens", headers=headers).status_code == 200
    assert api.http.head("/identity/v3/auth/tokens", headers=headers).status_code == 200
    assert api.http.delete("/identity/v3/auth/tokens", headers=headers).status_code == 204
    assert api.http.get("/identity/v3/auth/tokens", headers=headers).status_code == 404
    resp = api.http.get(f"/volume/v3/{api.project_id}/volumes", headers={"X-Auth-Token": victim})
    assert resp.status_code == 401
    assert resp.json()["error"]["code"] == 401
    assert "WWW-Authenticate" in resp.headers
    assert api.http.get("/compute/v2.1/servers").status_code == 401


def test_tokens_expire(emu_root: Path) -> None:
    with EmulatorProcess(emu_root / "ttl", op_seconds=0.05, token_ttl=2) as emu:
        client = Api(emu)
        try:
            assert client.volume("GET", "/volumes").status_code == 200
            time.sleep(2.2)
            assert client.volume("GET", "/volumes").status_code == 401
            headers = {"X-Auth-Token": client.login(), "X-Subject-Token": client.token}
            assert client.http.get("/identity/v3/auth/tokens", headers=headers).status_code == 404
        finally:
            client.close()


def test_catalog_route(api: Api) -> None:
    resp = api.http.get("/identity/v3/auth/catalog", headers={"X-Auth-Token": api.token})
    assert resp.status_code == 200
    assert len(resp.json()["catalog"]) == 3
    assert httpx.get(f"{api.emu.url}/identity/v3/auth/catalog").status_code == 401
