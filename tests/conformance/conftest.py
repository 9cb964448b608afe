"""Fixtures of the conformance tests: the controller harness of tests/controller."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from csi_xloud.emulator.process import EmulatorProcess
from tests.controller.harness import Harness, running_controller, session_emulator


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    yield from session_emulator(tmp_path_factory.mktemp("controller"))


@pytest.fixture
async def ctl(emulator: EmulatorProcess, short_tmp: Path) -> AsyncIterator[Harness]:
    async with running_controller(emulator, short_tmp) as harness:
        yield harness
