"""What goes into the images: the driver's dependencies alone, the emulator's on top, pinned with hashes; podman's settings."""

from __future__ import annotations

import re
import tomllib

from deploy_support import ROOT
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
LOCK = (ROOT / "deploy" / "image" / "requirements.txt").read_text()
EMULATOR_LOCK = (ROOT / "deploy" / "image" / "requirements-emulator.txt").read_text()
EMULATOR_ONLY = {"starlette", "uvicorn"}


def pins(lock: str = LOCK) -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes) of every requirement in a lock file."""
    found: dict[str, tuple[str, list[str]]] = {}
    for block in re.split(r"\n(?=\S)", lock):
        match = re.match(r"([A-Za-z0-9_.-]+)==(\S+)", block)
        if match:
            found[canonicalize_name(match[1])] = (match[2], re.findall(r"--hash=sha256:([0-9a-f]{64})", block))
    return found


def test_driver_dependencies_leave_out_the_emulator_web_stack() -> None:
    core = {canonicalize_name(Requirement(r).name) for r in PYPROJECT["project"]["dependencies"]}
    extras = PYPROJECT["project"]["optional-dependencies"]
    emulator = {canonicalize_name(Requirement(r).name) for r in extras["emulator"]}
    assert emulator == EMULATOR_ONLY
    assert not core & EMULATOR_ONLY
    # The tests run the emulator, so installing the test extra brings it along.
    assert "csi-xloud[emulator]" in extras["test"]


def test_lock_pins_every_dependency_exactly_with_hashes() -> None:
    locked = pins()
    for requirement in map(Requirement, PYPROJECT["project"]["dependencies"]):
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{name} is not in deploy/image/requirements.txt: run scripts/lock-image"
        version, _ = locked[name]
        assert requirement.specifier.contains(version, prereleases=True), (
            f"{name}=={version} no longer meets {requirement.specifier}: run scripts/lock-image"
        )
    for name, (version, hashes) in locked.items():
        assert hashes, f"{name}=={version} has no hash"
    assert not set(locked) & EMULATOR_ONLY
    assert "csi-xloud" not in locked


def test_emulator_lock_is_the_driver_lock_plus_the_extra() -> None:
    """The emulator image adds packages to the driver image's, never another version of one."""
    driver, emulator = pins(), pins(EMULATOR_LOCK)
    for name, pinned in driver.items():
        assert emulator.get(name) == pinned, f"{name}: the two lock files differ, run scripts/lock-image"
    added = set(emulator) - set(driver)
    assert added >= EMULATOR_ONLY, added
    for requirement in map(Requirement, PYPROJECT["project"]["optional-dependencies"]["emulator"]):
        version, _ = emulator[canonicalize_name(requirement.name)]
        assert requirement.specifier.contains(version, prereleases=True), f"{requirement}: run scripts/lock-image"
    assert all(hashes for _, hashes in emulator.values())
    assert "csi-xloud" not in emulator


def test_lock_names_how_it_is_made() -> None:
    assert "#    scripts/lock-image" in LOCK and "#    scripts/lock-image" in EMULATOR_LOCK
    script = (ROOT / "scripts" / "lock-image").read_text()
    assert "uv pip compile pyproject.toml" in script and "--generate-hashes" in script
    uv_pins = [r for r in PYPROJECT["project"]["optional-dependencies"]["test"] if r.startswith("uv==")]
    assert len(uv_pins) == 1, "the lock tool's version is pinned in the test extra"


def test_containers_conf_suits_a_plain_debian_vm() -> None:
    conf = tomllib.loads((ROOT / "deploy" / "image" / "containers.conf").read_text())
    assert conf["containers"]["default_ulimits"] == []
    assert conf["engine"]["runtime"] == "runc"
    assert conf["engine"]["cgroup_manager"] == "cgroupfs"
    script = (ROOT / "scripts" / "build-image").read_text()
    assert 'export CONTAINERS_CONF=$PWD/deploy/image/containers.conf' in script
    assert "--isolation=chroot --network=host" in script
