"""`csi-xloud doctor` (controller side) against the emulator: healthy, wrong password, no Compute, no quota."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from csi_xloud.emulator.process import EmulatorProcess
from tests.emulator.helpers import Api
from tests.ops.conftest import cloud_args, csi_xloud

CLOUD_CHECKS = ("clouds.yaml", "cloud settings", "auth", "catalog storage", "catalog compute", "storage API",
                "compute API", "zones", "volume types", "quota volumes", "quota gigabytes", "rate limit")


@pytest.fixture
def admin(emulator: EmulatorProcess) -> Iterator[Api]:
    api = Api(emulator, "xloud-emulator-admin")
    try:
        yield api
    finally:
        api.close()


def config_copy(emu: EmulatorProcess, folder: Path, mode: int = 0o600, **auth: str) -> Path:
    """The emulator's clouds.yaml with some auth keys changed, written with the given mode."""
    document = yaml.safe_load(emu.clouds_yaml.read_text())
    document["clouds"]["xloud-emulator"]["auth"].update(auth)
    path = folder / "clouds.yaml"
    path.write_text(yaml.safe_dump(document))
    path.chmod(mode)
    return path


def test_a_healthy_cloud_passes_every_check(emulator: EmulatorProcess) -> None:
    ran = csi_xloud("doctor", *cloud_args(emulator))
    assert ran.code == 0, ran.out + ran.err
    for check in CLOUD_CHECKS:
        assert ran.line(check).startswith("ok "), ran.line(check)
    assert "zone-a, zone-b" in ran.line("zones")
    assert "standard (default)" in ran.line("volume types")
    assert "shared (multiattach)" in ran.line("volume types")
    assert f"{emulator.url}/compute/v2.1" in ran.line("catalog compute")
    assert ran.out.splitlines()[-1].startswith("doctor passed:")


def test_a_wrong_password_names_user_and_auth_url_but_never_the_password(
    emulator: EmulatorProcess, tmp_path: Path
) -> None:
    wrong = "not-the-Password-7f3a"
    real = yaml.safe_load(emulator.clouds_yaml.read_text())["clouds"]["xloud-emulator"]["auth"]["password"]
    ran = csi_xloud("doctor", *cloud_args(emulator, config_copy(emulator, tmp_path, password=wrong)))
    assert ran.code == 1
    line = ran.line("auth")
    assert line.startswith("fail ")
    assert "user xloud-member" in line and f"{emulator.url}/identity/v3" in line
    assert "wrong password" in line
    assert "password" in line.split("-- fix:")[1]
    for secret in (wrong, real):
        assert secret not in ran.out and secret not in ran.err
    assert "catalog storage" not in ran.out  # nothing past a refused login


def test_a_clouds_yaml_everyone_may_read_fails_with_the_chmod_to_run(
    emulator: EmulatorProcess, tmp_path: Path
) -> None:
    path = config_copy(emulator, tmp_path, mode=0o644)
    ran = csi_xloud("doctor", *cloud_args(emulator, path))
    assert ran.code == 1
    assert ran.line("clouds.yaml").startswith("fail ")
    assert "mode 0644" in ran.line("clouds.yaml") and f"chmod 0600 {path}" in ran.line("clouds.yaml")
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # a check changes nothing


def test_a_catalog_without_compute_fails_that_check_only(emulator: EmulatorProcess) -> None:
    emulator.hide_services(["compute"])
    try:
        ran = csi_xloud("doctor", *cloud_args(emulator))
    finally:
        emulator.hide_services([])
    assert ran.code == 1
    assert ran.line("catalog storage").startswith("ok ")
    line = ran.line("catalog compute")
    assert line.startswith("fail ") and "no public endpoint for compute in region RegionOne" in line
    assert "compute_endpoint_override" in line


def test_an_exhausted_quota_fails_and_a_nearly_full_one_warns(emulator: EmulatorProcess, admin: Api) -> None:
    project = admin.project_id
    made = admin.volume("POST", "/volumes", json={"volume": {"name": "doctor-quota", "size": 1}})
    assert made.status_code == 202, made.text
    volume_id = made.json()["volume"]["id"]
    try:
        quota = {"quota_set": {"volumes": 1, "gigabytes": 10}}
        assert admin.volume("PUT", f"/os-quota-sets/{project}", json=quota).status_code == 200
        ran = csi_xloud("doctor", *cloud_args(emulator))
    finally:
        admin.volume("DELETE", f"/os-quota-sets/{project}")
        admin.volume("DELETE", f"/volumes/{volume_id}")
    assert ran.code == 1
    volumes = ran.line("quota volumes")
    assert volumes.startswith("fail ") and "1 of 1 used" in volumes and "RESOURCE_EXHAUSTED" in volumes
    assert ran.line("quota gigabytes").startswith("ok ")  # 1 of 10


def test_the_rate_limit_warns_when_the_expected_load_needs_more(emulator: EmulatorProcess) -> None:
    ran = csi_xloud("doctor", *cloud_args(emulator), "--expected-ops-per-second", "40")
    assert ran.code == 0, ran.out  # a warning alone does not fail the run
    line = ran.line("rate limit")
    assert line.startswith("warn ") and "160 requests/s" in line and "rate_limit" in line


def test_the_rate_limit_counts_the_burst_the_bucket_lets_through(emulator: EmulatorProcess) -> None:
    # 15 operations/s need about 60 requests/s, over the 50/s rate; ten seconds of them (600) fit in
    # the bucket's 500 plus 500 more at the rate.
    ran = csi_xloud("doctor", *cloud_args(emulator), "--expected-ops-per-second", "15")
    assert ran.line("rate limit").startswith("ok "), ran.out


def test_an_unreachable_identity_api_says_where_it_looked(tmp_path: Path) -> None:
    path = tmp_path / "clouds.yaml"
    auth = {"auth_url": "http://127.0.0.1:9/identity/v3", "username": "ops", "password": "pw-unseen",
            "project_name": "p"}
    path.write_text(yaml.safe_dump({"clouds": {"c": {"auth": auth}}}))
    path.chmod(0o600)
    ran = csi_xloud("doctor", "--cloud", "c", "--cloud-config", str(path))
    assert ran.code == 1
    assert ran.line("auth").startswith("fail ") and "cannot reach the identity API at http://127.0.0.1:9" in ran.out
    assert "pw-unseen" not in ran.out + ran.err
