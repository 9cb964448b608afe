"""An emulated cloud with two zones for the operators' tools, and a runner of the `csi-xloud` command."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from csi_xloud.emulator.process import EmulatorProcess

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Ran:
    """How one `csi-xloud` run ended."""

    code: int
    out: str
    err: str

    def line(self, check: str) -> str:
        """The doctor's line of one check (its name is the second column)."""
        found = [line for line in self.out.splitlines() if line[6:].startswith(f"{check} ")]
        assert len(found) == 1, f"no single line for {check!r} in:\n{self.out}"
        return found[0]


def csi_xloud(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> Ran:
    """Run this worktree's `csi-xloud` with args and a clean environment."""
    base = {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), "HOME": "/nonexistent"}
    done = subprocess.run([sys.executable, "-m", "csi_xloud", *args], capture_output=True, text=True,
                          env={**base, **(env or {})}, timeout=timeout)
    return Ran(done.returncode, done.stdout, done.stderr)


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorProcess]:
    """One emulator per module, with a server in each of two zones."""
    data_dir = Path(tempfile.mkdtemp(prefix="csx-ops-"))
    try:
        with EmulatorProcess(data_dir / "cloud", servers="node-a@zone-a,node-b@zone-b", op_seconds=0.1) as emu:
            yield emu
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def cloud_args(emu: EmulatorProcess, config: Path | None = None) -> tuple[str, ...]:
    return ("--cloud", "xloud-emulator", "--cloud-config", str(config or emu.clouds_yaml))
