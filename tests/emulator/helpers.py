"""A small synchronous client for the emulator's APIs, used by the emulator tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import yaml

from csi_xloud.emulator.process import EmulatorProcess


class Api:
    """Authenticated calls to one emulator as one of its clouds."""

    def __init__(self, emu: EmulatorProcess, cloud: str = "xloud-emulator") -> None:
        self.emu = emu
        self.cloud = yaml.safe_load(emu.clouds_yaml.read_text())["clouds"][cloud]
        self.http = httpx.Client(base_url=emu.url, timeout=30)
        self.project_id: str = self.cloud["auth"].get("project_id", "")
        self.token = self.login()

    def close(self) -> None:
        """Close the HTTP client."""
        self.http.close()

    def login(self) -> str:
        """A fresh token by password."""
        auth = self.cloud["auth"]
        body = password_auth(auth)
        resp = self.http.post("/identity/v3/auth/tokens", json=body)
        assert resp.status_code == 201, resp.text
        return resp.headers["X-Subject-Token"]

    def volume(self, method: str, path: str, mv: str = "3.71", **kw: Any) -> httpx.Response:
        """A Storage API call under /volume/v3/{project}."""
        headers = {
            "X-Auth-Token": self.token,
            "OpenStack-API-Version": f"volume {mv}",
            **kw.pop("headers", {}),
        }
        return self.http.request(method, f"/volume/v3/{self.project_id}{path}", headers=headers, **kw)

    def compute(self, method: str, path: str, mv: str = "2.1", **kw: Any) -> httpx.Response:
        """A Compute API call under /compute/v2.1."""
        headers = {
            "X-Auth-Token": self.token,
            "OpenStack-API-Version": f"compute {mv}",
            **kw.pop("headers", {}),
        }
        return self.http.request(method, f"/compute/v2.1{path}", headers=headers, **kw)

    def get_volume(self, volume_id: str) -> dict[str, Any] | None:
        """The volume, or None when it is gone."""
        resp = self.volume("GET", f"/volumes/{volume_id}")
        if resp.status_code == 404:
            return None
        assert resp.status_code == 200, resp.text
        vol: dict[str, Any] = resp.json()["volume"]
        return vol

    def wait(
        self,
        fetch: Callable[[], dict[str, Any] | None],
        status: str | None,
        timeout: float = 15,
        interval: float = 0.03,
    ) -> Any:
        """Poll until fetch() has that status (None: until it is gone)."""
        deadline = time.monotonic() + timeout
        last: dict[str, Any] | None = None
        while time.monotonic() < deadline:
            last = fetch()
            if (status is None and last is None) or (last is not None and last.get("status") == status):
                return last
            time.sleep(interval)
        raise AssertionError(f"still {last and last.get('status')!r}, wanted {status!r}: {last}")

    def wait_volume(
        self, volume_id: str, status: str | None, timeout: float = 15, interval: float = 0.03
    ) -> Any:
        """Poll a volume until it has status (None: gone)."""
        return self.wait(lambda: self.get_volume(volume_id), status, timeout, interval)

    def create_volume(self, size: int = 1, wait: bool = True, **fields: Any) -> dict[str, Any]:
        """Create a volume and (by default) wait until it is available."""
        resp = self.volume("POST", "/volumes", json={"volume": {"size": size, **fields}})
        assert resp.status_code == 202, resp.text
        vol: dict[str, Any] = resp.json()["volume"]
        return self.wait_volume(vol["id"], "available") if wait else vol

    def attach(self, server_id: str, volume_id: str) -> dict[str, Any]:
        """Attach through Compute and wait for in-use."""
        resp = self.compute(
            "POST",
            f"/servers/{server_id}/os-volume_attachments",
            json={"volumeAttachment": {"volumeId": volume_id}},
            mv="2.60",
        )
        assert resp.status_code == 200, resp.text
        return self.wait_volume(volume_id, "in-use")

    def detach(self, server_id: str, volume_id: str) -> None:
        """Detach through Compute and wait for available."""
        resp = self.compute("DELETE", f"/servers/{server_id}/os-volume_attachments/{volume_id}")
        assert resp.status_code == 202, resp.text
        self.wait_volume(volume_id, "available")

    def delete_volume(self, volume_id: str) -> None:
        """Delete and wait until gone."""
        resp = self.volume("DELETE", f"/volumes/{volume_id}")
        assert resp.status_code == 202, resp.text
        self.wait_volume(volume_id, None)


def password_auth(auth: dict[str, str]) -> dict[str, Any]:
    """A Keystone password request body scoped to the project of a clouds.yaml `auth` entry."""
    return {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {"name": auth["username"], "domain": {"name": "Default"}, "password": auth["password"]}
                },
            },
            "scope": {"project": {"id": auth["project_id"]}},
        }
    }
