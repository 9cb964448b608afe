"""Replays the exchanges recorded from real Cinder, Nova and Keystone and compares the answers.

Each sample file is replayed in order against one emulator as the admin (the Cinder and Nova recordings
ran as admin), with recorded ids mapped to the ids the emulator hands out. Compared: the status code;
the JSON shape (same keys, same JSON types; null matches anything; free-form maps such as metadata or
connection_info are compared as maps only); the API headers (microversion, Vary, request ids,
X-Subject-Token, WWW-Authenticate, Location); the status of the volume, snapshot, backup or attachment
a body holds; and, for errors, the message. SKIP names the exchanges that the samples' READMEs mark as
specific to the recording set-up, or that need something the emulated cloud does not have.
"""

from __future__ import annotations

import json
import re
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from csi_xloud.emulator.identity_api import stable_hex
from csi_xloud.emulator.process import EmulatorProcess
from tests.emulator.helpers import password_auth

# Exchanges recorded from real Cinder 29.0.0, Keystone 30.0.0 and Nova 34.0.0 (kept as test data).
SAMPLES = Path(__file__).resolve().parent / "api_samples"
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{32}")
OPAQUE = {
    "connection_info",
    "metadata",
    "extra_specs",
    "specs",
    "capabilities",
    "meta",
    "data",
    "flavor",
    "addresses",
    "qos_specs",
    "volume-summary",
}
NOT_IDS = {
    "metadata",
    "extra_specs",
    "specs",
    "capabilities",
    "meta",
    "data",
    "project",
    "projects",
    "user",
    "domain",
    "domains",
    "token",
}
REQUEST_ID = re.compile(r"req-[0-9a-f-]{36}")
API_HEADERS = {
    "openstack-api-version",
    "x-openstack-nova-api-version",
    "vary",
    "x-subject-token",
    "x-openstack-request-id",
    "x-compute-request-id",
    "location",
    "www-authenticate",
}
NO_SETTLE = {("op_08_attach_creating", 1)}
NOAUTH = "Cinder noauth / Nova token pass-through artefact (README)"
NO_NOVA = "Cinder ran without Compute, the call failed there; on Xloud it succeeds (README)"
SCOPES = "the emulator hands out project-scoped tokens only"
BOOTED = (
    "the recorded servers are replayed as --servers nodes (no boot volume); test_servers.py boots one from"
    " a volume as this recording does and checks the answers and the root volume refusal"
)
SKIP: dict[tuple[str, int | None], str] = {
    ("00-versions", 1): NOAUTH,
    ("08-snapshot-force-in-use", 10): NO_NOVA,
    ("08-snapshot-force-in-use", 11): NO_NOVA,
    ("12-attachments", 14): NO_NOVA,
    ("12-attachments", 19): NO_NOVA,
    ("13-bad-inputs", 25): "Cinder answers 500 for an empty body; the emulator answers 400 (never a 500)",
    ("ks_02_password", 3): SCOPES,
    ("ks_02_password", 4): SCOPES,
    ("ks_02_password", 5): SCOPES,
    ("ks_02_password", 6): SCOPES,
    ("ks_04_token_method", 0): SCOPES,
    ("ks_05_errors", 2): "the seed users are never disabled",
    ("ks_05_errors", 4): "the recorded admin project maps to the seed project, where demo has a role",
    ("ks_07_auth_catalog_projects", 1): SCOPES,
    ("ks_07_auth_catalog_projects", 2): SCOPES,
    ("ks_08_expired", None): "needs a second Keystone with a short token lifetime; see test_tokens_expire",
    ("ks_10_cinder_keystone", 5): "the recorded admin lives in a separate admin project",
    ("ks_10_cinder_keystone", 6): SCOPES,
    ("ks_10_cinder_keystone", 13): "keystonemiddleware's in-process token cache (README)",
    ("ks_10_cinder_keystone", 14): "needs a short token lifetime; see test_tokens_expire",
    ("op_01_boot_servers", 0): BOOTED,
    ("op_01_boot_servers", 2): BOOTED,
    ("op_07_errors", 13): BOOTED,
    ("op_07_errors", 14): NOAUTH,
    ("op_09_attach_v2_49_tag_device", 0): BOOTED,
}
SERVERS = {"nvs-a": "node-a", "nvs-b": "node-b", "nvs-c": "node-c"}
TYPES = {"ssd-standard": "standard", "archive-hdd": "archive", "__DEFAULT__": "shared"}


def _sample_files() -> list[Path]:
    files = []
    for folder in ("cinder", "keystone", "nova"):
        files.extend(
            p for p in sorted((SAMPLES / folder).glob("*.json")) if "exchanges" in json.loads(p.read_text())
        )
    return files


def shape_diff(recorded: Any, ours: Any, where: str = "$") -> list[str]:
    """Differences in keys and JSON types between a recorded body and ours."""
    if recorded is None or ours is None:
        return []
    if isinstance(recorded, dict):
        if not isinstance(ours, dict):
            return [f"{where}: object expected, got {type(ours).__name__}"]
        diffs = []
        missing, extra = set(recorded) - set(ours), set(ours) - set(recorded)
        if missing:
            diffs.append(f"{where}: missing keys {sorted(missing)}")
        if extra:
            diffs.append(f"{where}: unexpected keys {sorted(extra)}")
        for key in set(recorded) & set(ours):
            if key in OPAQUE:
                if type(recorded[key]) is not type(ours[key]) and None not in (recorded[key], ours[key]):
                    diffs.append(
                        f"{where}.{key}: {type(recorded[key]).__name__} vs {type(ours[key]).__name__}"
                    )
                continue
            diffs.extend(shape_diff(recorded[key], ours[key], f"{where}.{key}"))
        return diffs
    if isinstance(recorded, list):
        if not isinstance(ours, list):
            return [f"{where}: list expected, got {type(ours).__name__}"]
        return shape_diff(recorded[0], ours[0], f"{where}[0]") if recorded and ours else []
    if isinstance(recorded, bool) or isinstance(ours, bool):
        return [] if type(recorded) is type(ours) else [f"{where}: {recorded!r} vs {ours!r}"]
    if isinstance(recorded, int | float) and isinstance(ours, int | float):
        return []
    return (
        []
        if type(recorded) is type(ours)
        else [f"{where}: {type(recorded).__name__} vs {type(ours).__name__}"]
    )


class Replayer:
    """Replays sample files against one emulator, mapping ids as it learns them."""

    def __init__(self, emu: EmulatorProcess) -> None:
        self.emu = emu
        clouds = yaml.safe_load(emu.clouds_yaml.read_text())["clouds"]
        self.member = clouds["xloud-emulator"]["auth"]
        self.admin = clouds["xloud-emulator-admin"]["auth"]
        self.appcred = clouds["xloud-emulator-appcred"]["auth"]
        self.http = httpx.Client(base_url=emu.url, timeout=30)
        self.project = self.member["project_id"]
        self.tokens: dict[str, str] = {}
        self.new_tokens()
        self.ids: dict[str, str] = {}
        self.names = dict(TYPES)
        self.keystone_mode = False
        self.servers = {s["name"]: s["id"] for s in emu.servers}

    def new_tokens(self) -> None:
        """Fresh tokens for a sample file: member, admin, subject, app credential and a revoked one."""
        self.tokens = {
            "member": self._login(self.member),
            "admin": self._login(self.admin),
            "subject": self._login(self.member),
            "revoked": self._login(self.member),
        }
        body = {
            "auth": {
                "identity": {
                    "methods": ["application_credential"],
                    "application_credential": {
                        "id": self.appcred["application_credential_id"],
                        "secret": self.appcred["application_credential_secret"],
                    },
                }
            }
        }
        self.tokens["appcred"] = self.http.post("/identity/v3/auth/tokens", json=body).headers[
            "X-Subject-Token"
        ]
        headers = {"X-Auth-Token": self.tokens["admin"], "X-Subject-Token": self.tokens["revoked"]}
        assert self.http.delete("/identity/v3/auth/tokens", headers=headers).status_code == 204

    def _login(self, auth: dict[str, str]) -> str:
        body = password_auth(auth)
        return str(self.http.post("/identity/v3/auth/tokens", json=body).headers["X-Subject-Token"])

    # -- request adaptation -----------------------------------------------------------------------

    def learn_fixed_ids(self, sample: dict[str, Any]) -> None:
        """Project, users, servers and app credential of the recordings."""
        if sample.get("project_id"):
            self.ids[sample["project_id"]] = self.project
        if sample.get("admin_project_id"):
            # The recorded admin lived in a project of its own; the emulator's admin shares the member's.
            self.ids[sample["admin_project_id"]] = self.project
        self.ids["f06d6ba26f264b94ac0a5619098dac83"] = self.project
        for exchange in sample["exchanges"]:
            body = exchange["response"].get("body")
            self._learn_keystone(body)
            self._learn_servers(exchange)

    def _learn_keystone(self, body: Any) -> None:
        token = body.get("token") if isinstance(body, dict) else None
        if not isinstance(token, dict):
            return
        user = token.get("user", {})
        if user.get("name") == "demo":
            self.ids[user["id"]] = _user_id(self.emu, "xloud-member")
        if user.get("name") == "admin":
            self.ids[user["id"]] = _user_id(self.emu, "xloud-admin")
        cred = token.get("application_credential")
        if cred:
            self.ids[cred["id"]] = self.appcred["application_credential_id"]

    def _learn_servers(self, exchange: dict[str, Any]) -> None:
        body = exchange["response"].get("body")
        server = body.get("server") if isinstance(body, dict) else None
        request = exchange["request"].get("body")
        if (
            isinstance(server, dict)
            and "name" not in server
            and isinstance(request, dict)
            and "server" in request
        ):
            server = {**server, "name": request["server"].get("name")}
        if isinstance(server, dict) and server.get("name") in SERVERS:
            self.ids[server["id"]] = self.servers[SERVERS[server["name"]]]

    def substitute(self, text: str) -> str:
        """Recorded ids and names replaced by ours."""

        def repl(found: re.Match[str]) -> str:
            return self.ids.get(found.group(0), found.group(0))

        text = UUID.sub(repl, text)
        for old, new in self.names.items():
            text = text.replace(f'"{old}"', f'"{new}"').replace(f"/{old}", f"/{new}")
        return text

    def _body(self, exchange: dict[str, Any], label: str) -> bytes | None:
        body = exchange["request"].get("body")
        if body is None:
            return None
        if isinstance(body, str):
            try:
                body = json.loads(body)
            except ValueError:
                return body.encode()
        text = self.substitute(json.dumps(self._rename(body)))
        if "<redacted>" in text and "wrong" not in label:
            user_is_admin = self.admin["username"] in text or _user_id(self.emu, "xloud-admin") in text
            secret = self.admin["password"] if user_is_admin else self.member["password"]
            if "application_credential" in text:
                secret = self.appcred["application_credential_secret"]
            text = text.replace("<redacted>", secret)
        return text.encode()

    def _rename(self, value: Any, parent: str = "") -> Any:
        """Keystone names of the recording (users demo/admin, project demo) as the emulator's."""
        if isinstance(value, list):
            return [self._rename(v, parent) for v in value]
        if not isinstance(value, dict):
            return value
        renamed = {k: self._rename(v, k) for k, v in value.items()}
        name = renamed.get("name")
        if parent == "user" and name in ("demo", "admin"):
            renamed["name"] = self.member["username"] if name == "demo" else self.admin["username"]
        if parent == "project" and name in ("demo", "admin"):
            renamed["name"] = self.member["project_name"]
        if parent == "application_credential" and name == "demo-appcred":
            renamed["name"] = "xloud-emulator"
        return renamed

    def _url(self, exchange: dict[str, Any], folder: str) -> str:
        request = exchange["request"]
        port = urllib.parse.urlsplit(request.get("url", "")).port
        path = request["path"]
        if port in (8776, 8786) or (port is None and folder == "cinder"):
            prefix = "/volume"
        elif port == 8774 or (port is None and folder == "nova"):
            prefix = "/compute"
        else:
            prefix = "/identity"
        return prefix + self.substitute(path)

    def _headers(self, exchange: dict[str, Any], label: str) -> dict[str, str]:
        recorded = exchange["request"].get("headers") or {}
        headers = {
            k: v
            for k, v in recorded.items()
            if k.lower() in ("content-type", "openstack-api-version", "accept")
        }
        if "X-Auth-Token" in recorded:
            headers["X-Auth-Token"] = self._auth_token(recorded["X-Auth-Token"], label.lower())
        if "X-Subject-Token" in recorded:
            headers["X-Subject-Token"] = "garbage" if "garbage" in label else self.tokens["subject"]
        return headers

    def _auth_token(self, recorded: str, label: str) -> str:
        if recorded in ("<admin token>", "<member token>"):  # the Keystone-mode recordings
            return self.tokens["admin" if recorded == "<admin token>" else "member"]
        if "invalid token" in label or "invalid x-auth-token" in label:
            return "garbage-token"
        if "noauth-style" in label:
            return f"admin:{self.project}"
        if "revoked token as" in label or label.startswith("revoked token"):
            return self.tokens["revoked"]
        if "app-credential" in label:
            return self.tokens["appcred"]
        if recorded.startswith("admin:") or ("admin" in label and "demo" not in label):
            return self.tokens["admin"]
        return self.tokens["member"]

    # -- replay -----------------------------------------------------------------------------------

    def settle(self) -> None:
        """Wait until the emulator runs no operation (statuses set by hand, such as `reserved` after an
        attachment is created, have none and never change by themselves)."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self.http.get("/_emulator/health").json()["operations"]:
            time.sleep(0.02)

    def cleanup(self) -> None:
        """Detach and delete everything, and reset quotas, between sample files."""
        admin = {"X-Auth-Token": self.tokens["admin"], "OpenStack-API-Version": "volume 3.71"}
        base = f"/volume/v3/{self.project}"
        self.settle()
        for server in self.servers.values():
            listed = self.http.get(
                f"/compute/v2.1/servers/{server}/os-volume_attachments", headers=admin
            ).json()
            for att in listed["volumeAttachments"]:
                self.http.delete(
                    f"/compute/v2.1/servers/{server}/os-volume_attachments/{att['volumeId']}", headers=admin
                )
        self.settle()
        for backup in sorted(
            self.http.get(f"{base}/backups/detail", headers=admin).json()["backups"],
            key=lambda b: not b["is_incremental"],
        ):
            self.http.delete(f"{base}/backups/{backup['id']}", headers=admin)
            self.settle()
        for vol in self.http.get(f"{base}/volumes/detail", headers=admin).json()["volumes"]:
            self.http.post(
                f"{base}/volumes/{vol['id']}/action",
                headers=admin,
                json={"os-reset_status": {"status": "available"}},
            )
            self.http.delete(f"{base}/volumes/{vol['id']}?cascade=true", headers=admin)
        self.http.delete(f"{base}/os-quota-sets/{self.project}", headers=admin)
        self.settle()

    def precreate(self, sample: dict[str, Any]) -> None:
        """Volumes a Nova recording uses without creating them."""
        created = set()
        for exchange in sample["exchanges"]:
            body = exchange["response"].get("body")
            if exchange["request"]["method"] == "POST" and isinstance(body, dict) and "volume" in body:
                created.add(body["volume"]["id"])
        needed = []
        for exchange in sample["exchanges"]:
            if not 200 <= exchange["response"]["status"] < 300:
                continue
            text = exchange["request"]["path"] + json.dumps(exchange["request"].get("body"))
            needed += [
                m
                for m in re.findall(UUID.pattern, text)
                if len(m) == 36 and m not in self.ids and m not in created
            ]
        admin = {"X-Auth-Token": self.tokens["admin"], "OpenStack-API-Version": "volume 3.71"}
        for recorded in dict.fromkeys(needed):
            resp = self.http.post(
                f"/volume/v3/{self.project}/volumes", headers=admin, json={"volume": {"size": 1}}
            )
            self.ids[recorded] = resp.json()["volume"]["id"]
        self.settle()

    def seed_volumes(self, sample: dict[str, Any]) -> None:
        """Volumes a Cinder recording lists before (or without) creating them, made alike."""
        created = {
            e["response"]["body"]["volume"]["id"]
            for e in sample["exchanges"]
            if e["request"]["method"] == "POST"
            and isinstance(e["response"].get("body"), dict)
            and isinstance(e["response"]["body"].get("volume"), dict)
        }
        seen: dict[str, dict[str, Any]] = {}
        for exchange in sample["exchanges"]:
            body = exchange["response"].get("body")
            for vol in body.get("volumes", []) if isinstance(body, dict) else []:
                if "size" in vol and vol["id"] not in created and vol["id"] not in self.ids:
                    seen.setdefault(vol["id"], vol)
        admin = {"X-Auth-Token": self.tokens["admin"], "OpenStack-API-Version": "volume 3.71"}
        # Cinder's created_at has whole seconds; ties list by id, descending: make them in that order.
        for recorded_id, vol in sorted(seen.items(), key=lambda kv: (kv[1]["created_at"], kv[0])):
            req = {"size": vol["size"], "name": vol["name"], "metadata": vol["metadata"]}
            if vol.get("volume_type") in TYPES:
                req["volume_type"] = TYPES[vol["volume_type"]]
            resp = self.http.post(f"/volume/v3/{self.project}/volumes", headers=admin, json={"volume": req})
            self.ids[recorded_id] = resp.json()["volume"]["id"]
            time.sleep(0.002)
        self.settle()

    def seed_snapshots_and_backups(self, sample: dict[str, Any]) -> None:
        """Snapshots and backups a recording lists without creating them, made alike on the seeded volumes."""
        admin = {"X-Auth-Token": self.tokens["admin"], "OpenStack-API-Version": "volume 3.71"}
        for collection, key in (("snapshots", "snapshot"), ("backups", "backup")):
            seen: dict[str, dict[str, Any]] = {}
            for exchange in sample["exchanges"]:
                body = exchange["response"].get("body")
                for item in body.get(collection, []) if isinstance(body, dict) else []:
                    if item.get("volume_id") in self.ids and item["id"] not in self.ids:
                        seen.setdefault(item["id"], item)
            for recorded_id, item in sorted(seen.items(), key=lambda kv: (kv[1]["created_at"], kv[0])):
                req = {"volume_id": self.ids[item["volume_id"]], "name": item["name"]}
                resp = self.http.post(
                    f"/volume/v3/{self.project}/{collection}", headers=admin, json={key: req}
                )
                self.ids[recorded_id] = resp.json()[key]["id"]
                self.settle()

    def drop_volumes_of_type(self, type_id: str) -> None:
        """What a recording did between two exchanges: delete the volumes of a type it is about to delete."""
        admin = {"X-Auth-Token": self.tokens["admin"], "OpenStack-API-Version": "volume 3.71"}
        base = f"/volume/v3/{self.project}"
        for vol in self.http.get(f"{base}/volumes/detail", headers=admin).json()["volumes"]:
            if vol["volume_type_id"] == type_id:
                self.http.delete(f"{base}/volumes/{vol['id']}", headers=admin)
        self.settle()

    def seed_qos(self, sample: dict[str, Any]) -> None:
        """The qos spec the types recording found in place, associated with the standard type."""
        admin = {"X-Auth-Token": self.tokens["admin"], "OpenStack-API-Version": "volume 3.0"}
        base = f"/volume/v3/{self.project}"
        for exchange in sample["exchanges"]:
            body = exchange["response"].get("body")
            specs = body.get("qos_specs") if isinstance(body, dict) else None
            if exchange["request"]["method"] != "GET" or not isinstance(specs, list):
                continue
            for spec in specs:
                created = self.http.post(
                    f"{base}/qos-specs",
                    headers=admin,
                    json={"qos_specs": {"name": spec["name"], "consumer": spec["consumer"], **spec["specs"]}},
                ).json()["qos_specs"]
                self.ids[spec["id"]] = created["id"]
                types = self.http.get(f"{base}/types", headers=admin).json()["volume_types"]
                standard = next(t["id"] for t in types if t["name"] == "standard")
                self.http.get(
                    f"{base}/qos-specs/{created['id']}/associate?vol_type_id={standard}", headers=admin
                )
            return

    def learn(self, recorded: Any, ours: Any) -> None:
        """Map recorded ids to ours by their place in the bodies."""
        if isinstance(recorded, dict) and isinstance(ours, dict):
            for key, value in recorded.items():
                if key not in ours:
                    continue
                is_id = key in ("id", "bdm_uuid") or key.endswith("_id") or key == "volumeId"
                if is_id and isinstance(value, str) and isinstance(ours[key], str) and UUID.fullmatch(value):
                    self.ids.setdefault(value, ours[key])
                elif key not in NOT_IDS:
                    self.learn(value, ours[key])
        elif isinstance(recorded, list) and isinstance(ours, list) and len(recorded) == len(ours):
            for rec_item, our_item in zip(recorded, ours, strict=True):
                self.learn(rec_item, our_item)

    def replay(self, sample_path: Path) -> Iterator[tuple[str, list[str]]]:
        """(exchange name, problems) for every replayed exchange of a file."""
        sample = json.loads(sample_path.read_text())
        name = sample_path.stem
        if (name, None) in SKIP:
            return
        self.new_tokens()
        self.learn_fixed_ids(sample)
        if name.startswith("op_"):
            self.precreate(sample)
        else:
            self.seed_volumes(sample)
            self.seed_snapshots_and_backups(sample)
        self.keystone_mode = sample.get("auth") == "keystone"
        if name == "10-types-qos":
            self.seed_qos(sample)
        for index, exchange in enumerate(sample["exchanges"]):
            if (name, index) in SKIP:
                continue
            label = exchange.get("label", "")
            if (name, index) not in NO_SETTLE:
                self.settle()
            request = exchange["request"]
            deleted_type = re.fullmatch(r"/v3/[0-9a-f]{32}/types/([0-9a-f-]{36})", request["path"])
            if request["method"] == "DELETE" and deleted_type and exchange["response"]["status"] == 202:
                self.drop_volumes_of_type(self.ids.get(deleted_type.group(1), deleted_type.group(1)))
            resp = self.http.request(
                exchange["request"]["method"],
                self._url(exchange, sample_path.parent.name),
                headers=self._headers(exchange, label),
                content=self._body(exchange, label),
            )
            yield f"{name}#{index} {label}", self.compare(exchange, resp)

    @staticmethod
    def _status_diff(recorded: Any, ours: Any) -> list[str]:
        """Statuses of the one resource a body holds must be the recorded ones."""
        if not (isinstance(recorded, dict) and isinstance(ours, dict)):
            return []
        problems = []
        for key in ("volume", "snapshot", "backup", "attachment", "server"):
            want, got = recorded.get(key), ours.get(key)
            if (
                isinstance(want, dict)
                and isinstance(got, dict)
                and want.get("status", got.get("status")) != got.get("status")
            ):
                problems.append(f"{key} status {got.get('status')!r} != recorded {want['status']!r}")
        return problems

    def _link_diff(self, recorded: dict[str, Any], ours: Any) -> list[str]:
        """A full page's next link leads to the same list (detail or not) with the same query, marker the
        page's last item."""
        problems = []
        for key, links in recorded.items():
            if not key.endswith("_links") or not isinstance(ours, dict) or not ours.get(key):
                continue
            want = urllib.parse.urlsplit(self.substitute(links[0]["href"]))
            got = urllib.parse.urlsplit(ours[key][0]["href"])
            last = ours[key.removesuffix("_links")][-1]["id"]
            want_query = re.sub(r"marker=[0-9a-f-]+$", f"marker={last}", want.query)
            if (want.path, want_query) != (got.path.removeprefix("/volume"), got.query):
                problems.append(f"{key} next {got.path}?{got.query} != recorded {want.path}?{want.query}")
        return problems

    def _value_diff(self, recorded: dict[str, Any], ours: Any) -> list[str]:
        """Names, descriptions, metadata and extra specs of the resource a body holds must be the recorded ones."""
        if not isinstance(ours, dict):
            return []
        pairs = [(recorded, ours)] + [
            (recorded[k], ours.get(k))
            for k in ("volume", "snapshot", "backup", "volume_type")
            if isinstance(recorded.get(k), dict)
        ]
        problems = []
        for want, got in pairs:
            for field in ("name", "description", "metadata", "extra_specs"):
                if not isinstance(got, dict) or field not in want:
                    continue
                expected = json.loads(self.substitute(json.dumps(want[field])))
                if expected != got.get(field):
                    problems.append(f"{field} {got.get(field)!r} != recorded {expected!r}")
        return problems

    def _message_diff(self, recorded: Any, ours: Any) -> list[str]:
        """An error's message must be the recorded one, with the recording's ids and names mapped."""
        if not (isinstance(recorded, dict) and isinstance(ours, dict) and len(recorded) == 1):
            return []
        kind = next(iter(recorded))
        want = recorded[kind].get("message") if isinstance(recorded[kind], dict) else None
        got = ours.get(kind, {}).get("message") if isinstance(ours.get(kind), dict) else None
        if not isinstance(want, str) or not isinstance(got, str):
            return []
        want = self.substitute(want).split("\n\n")[0]  # Keystone appends the failing JSON schema
        for old, new in TYPES.items():
            want = want.replace(old, new)
        want, got = REQUEST_ID.sub("req-ID", want), REQUEST_ID.sub("req-ID", got)
        return [] if want == got else [f"message {got!r} != recorded {want!r}"]

    def _rename_keys(self, value: Any) -> Any:
        """Per-type quota keys (volumes_<type>) named after the emulator's types."""
        if isinstance(value, list):
            return [self._rename_keys(v) for v in value]
        if not isinstance(value, dict):
            return value
        renamed = {}
        for key, item in value.items():
            for old, new in TYPES.items():
                if key.endswith(f"_{old}"):
                    key = key[: -len(old)] + new
            renamed[key] = self._rename_keys(item)
        return renamed

    def compare(self, exchange: dict[str, Any], resp: httpx.Response) -> list[str]:
        """Problems with our answer to a recorded exchange."""
        recorded = exchange["response"]
        problems = []
        if resp.status_code != recorded["status"]:
            problems.append(f"status {resp.status_code} != recorded {recorded['status']}: {resp.text[:300]}")
            return problems
        body = recorded.get("body")
        if isinstance(body, dict | list) and body:
            try:
                ours = resp.json()
            except ValueError:
                return [f"no JSON body: {resp.text[:200]}"]
            self.learn(body, ours)
            problems += shape_diff(self._rename_keys(body), ours)
            if recorded["status"] >= 400:
                problems += self._message_diff(body, ours)
            problems += self._status_diff(body, ours)
            problems += self._link_diff(body, ours)
            if self.keystone_mode:
                problems += self._value_diff(body, ours)
        for header in recorded.get("headers") or {}:
            if header.lower() in API_HEADERS and header not in resp.headers:
                problems.append(f"missing header {header}")
        return problems


def _user_id(emu: EmulatorProcess, name: str) -> str:
    return stable_hex("user", name)


@pytest.fixture(scope="module")
def replayer(emu_root: Path) -> Iterator[Replayer]:
    with EmulatorProcess(emu_root / "replay", op_seconds=0.05, servers="node-a,node-b,node-c") as emu:
        replayer = Replayer(emu)
        yield replayer
        replayer.cleanup()
        replayer.http.close()


@pytest.mark.parametrize("sample", _sample_files(), ids=lambda p: p.stem)
def test_replay_sample(replayer: Replayer, sample: Path) -> None:
    failures = []
    replayed = 0
    try:
        for name, problems in replayer.replay(sample):
            replayed += 1
            failures += [f"{name}: {p}" for p in problems]
    finally:
        if not sample.stem.startswith("op_"):
            replayer.cleanup()  # the Nova recordings are one story, file after file
    assert not failures, "\n".join(failures)
    if (sample.stem, None) not in SKIP:
        assert replayed > 0
