"""Replays the recorded group exchanges (group types, groups, group snapshots) against the emulator.

The recording (Cinder 29.0.0 behind Keystone) used a member token for most calls and an admin
token of another project for those labelled `admin: ...`; the emulator has one project, so both
project ids map to it. Compared as in test_replay: status, JSON shape, API headers, the message
of every error (except where Cinder prints a Python object's repr), and the resources' statuses.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from csi_xloud.emulator.process import EmulatorProcess
from tests.emulator.test_replay import SAMPLES, Replayer

SAMPLE = SAMPLES / "groups" / "15-groups.json"
GROUP_TRANSITIONAL = {"creating", "updating", "deleting"}
# Cinder prints its VolumeType object's repr (timestamps, backend names) into this message.
REPR_MESSAGE = {21}
# The recording deleted its groups (its clean-up) before deleting the group types.
CLEAN_GROUPS_BEFORE = 78
# A member's volume view here carries os-vol-tenant-attr:tenant_id, which the emulator shows
# to admins only (as the Cinder noauth recordings 00-14 suggest).
TENANT_ATTR = "os-vol-tenant-attr:tenant_id"


class GroupReplayer(Replayer):
    """Replayer that also waits for and cleans up groups and group snapshots."""

    def learn_fixed_ids(self, sample: dict[str, Any]) -> None:
        super().learn_fixed_ids(sample)
        self.ids[sample["admin_project_id"]] = self.project

    def learn(self, recorded: Any, ours: Any) -> None:
        """Also the volume ids a group lists (any one of ours stands for any recorded one)."""
        super().learn(recorded, ours)
        if not (isinstance(recorded, dict) and isinstance(ours, dict)):
            return
        group, our_group = recorded.get("group"), ours.get("group")
        if isinstance(group, dict) and isinstance(our_group, dict):
            for rec_id, our_id in zip(
                group.get("volumes") or [], our_group.get("volumes") or [], strict=False
            ):
                self.ids.setdefault(rec_id, our_id)

    def _admin(self, version: str = "3.71") -> dict[str, str]:
        return {"X-Auth-Token": self.tokens["admin"], "OpenStack-API-Version": f"volume {version}"}

    def settle(self) -> None:
        """Volumes, snapshots and backups settled, and no group or group snapshot in a transition."""
        super().settle()
        deadline = time.monotonic() + 10
        base = f"/volume/v3/{self.project}"
        while time.monotonic() < deadline:
            groups = self.http.get(f"{base}/groups/detail?all_tenants=1", headers=self._admin()).json()[
                "groups"
            ]
            gsnaps = self.http.get(f"{base}/group_snapshots/detail", headers=self._admin()).json()
            statuses = [g["status"] for g in groups] + [s["status"] for s in gsnaps["group_snapshots"]]
            if not GROUP_TRANSITIONAL & set(statuses):
                break
            time.sleep(0.03)
        super().settle()

    def clean_groups(self) -> None:
        """Delete every group snapshot and group (with its volumes)."""
        base = f"/volume/v3/{self.project}"
        self.settle()
        for gsnap in self.http.get(f"{base}/group_snapshots", headers=self._admin()).json()[
            "group_snapshots"
        ]:
            self.http.delete(f"{base}/group_snapshots/{gsnap['id']}", headers=self._admin())
        self.settle()
        for group in self.http.get(f"{base}/groups?all_tenants=1", headers=self._admin()).json()["groups"]:
            body = {"delete": {"delete-volumes": True}}
            self.http.post(f"{base}/groups/{group['id']}/action", headers=self._admin(), json=body)
        self.settle()

    def clean_group_types(self) -> None:
        """Delete the group types the recording made."""
        base = f"/volume/v3/{self.project}"
        for gtype in self.http.get(f"{base}/group_types", headers=self._admin()).json()["group_types"]:
            if gtype["name"].startswith("rec-"):
                self.http.delete(f"{base}/group_types/{gtype['id']}", headers=self._admin())

    def replay_groups(self, sample_path: Path) -> Iterator[tuple[int, str, list[str]]]:
        """(index, name, problems) for every exchange of the groups recording."""
        sample = json.loads(sample_path.read_text())
        self.new_tokens()
        self.learn_fixed_ids(sample)
        for index, exchange in enumerate(sample["exchanges"]):
            if index == CLEAN_GROUPS_BEFORE:
                self.clean_groups()
            label = exchange.get("label", "")
            self.settle()
            resp = self.http.request(
                exchange["request"]["method"],
                self._url(exchange, "cinder"),
                headers=self._headers(exchange, label),
                content=self._body(exchange, label),
            )
            problems = self.compare(exchange, resp)
            if index in REPR_MESSAGE:
                problems = [p for p in problems if not p.startswith("message ")]
            problems = [p for p in problems if TENANT_ATTR not in p]
            yield index, f"15-groups#{index} {label}", problems


@pytest.fixture(scope="module")
def group_replayer(emu_root: Path) -> Iterator[GroupReplayer]:
    with EmulatorProcess(emu_root / "replay-groups", op_seconds=0.05, servers="node-a") as emu:
        replayer = GroupReplayer(emu)
        yield replayer
        replayer.clean_groups()
        replayer.clean_group_types()
        replayer.cleanup()
        replayer.http.close()
        log = (emu_root / "replay-groups" / "emulator.log").read_text()
    assert "Exception in ASGI application" not in log, log[-3000:]


def test_replay_groups(group_replayer: GroupReplayer) -> None:
    failures = []
    replayed = 0
    for _, name, problems in group_replayer.replay_groups(SAMPLE):
        replayed += 1
        failures += [f"{name}: {p}" for p in problems]
    assert not failures, "\n".join(failures)
    assert replayed == len(json.loads(SAMPLE.read_text())["exchanges"])
