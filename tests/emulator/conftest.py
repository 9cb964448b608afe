"""Fixtures for the emulator tests: one shared emulator, API clients, and the loop-device leak check."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from csi_xloud.emulator.process import EmulatorProcess, loop_devices_under
from tests.emulator.helpers import Api

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every emulator test needs root: the emulator attaches volumes as loop devices."""
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.root)


@pytest.fixture(scope="session")
def emu_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Parent of every emulator data dir; at the end no loop device may be backed by a file under it."""
    if os.geteuid() != 0:
        pytest.skip("the emulator tests need root for loop devices")
    root = tmp_path_factory.mktemp("emulator")
    yield root
    leaked = loop_devices_under(root)
    assert not leaked, f"loop devices left behind: {leaked}"


@pytest.fixture(scope="session")
def emu(emu_root: Path) -> Iterator[EmulatorProcess]:
    """A shared emulator with fast transitions."""
    with EmulatorProcess(emu_root / "shared", op_seconds=0.05, servers="node-a,node-b,node-z@zone-z") as proc:
        yield proc
    log = (emu_root / "shared" / "emulator.log").read_text()
    assert "internal error" not in log and "Exception in ASGI application" not in log, log[-3000:]


@pytest.fixture
def fresh_emu(emu_root: Path, request: pytest.FixtureRequest) -> Iterator[EmulatorProcess]:
    """An emulator of its own, for tests that restart, kill or change quotas."""
    with EmulatorProcess(emu_root / request.node.name[:40], op_seconds=0.05) as proc:
        yield proc


@pytest.fixture
def api(emu: EmulatorProcess) -> Iterator[Api]:
    """Member client of the shared emulator."""
    client = Api(emu)
    yield client
    client.close()


@pytest.fixture
def admin(emu: EmulatorProcess) -> Iterator[Api]:
    """Admin client of the shared emulator."""
    client = Api(emu, "xloud-emulator-admin")
    yield client
    client.close()


@pytest.fixture
def servers(emu: EmulatorProcess) -> dict[str, dict[str, str]]:
    """The shared emulator's servers by name."""
    return {s["name"]: s for s in emu.servers}
