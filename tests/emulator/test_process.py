"""EmulatorProcess: start failures are reported, stop and kill are idempotent."""

from __future__ import annotations

from pathlib import Path

import pytest

from csi_xloud.emulator.process import EmulatorError, EmulatorProcess


def test_port_in_use_is_reported(emu: EmulatorProcess, emu_root: Path) -> None:
    second = EmulatorProcess(emu_root / "clash", op_seconds=0.05, port=emu.port, start_timeout=10)
    with pytest.raises(EmulatorError, match="exited early"):
        second.start()
    assert not second.running


def test_bad_servers_flag_is_reported(emu_root: Path) -> None:
    with pytest.raises(EmulatorError, match="invalid server name"):
        EmulatorProcess(emu_root / "bad-flag", servers="no spaces").start()


def test_stop_and_kill_are_idempotent(emu_root: Path) -> None:
    proc = EmulatorProcess(emu_root / "idem", op_seconds=0.05)
    assert proc.stop() is None
    proc.start()
    assert proc.running and proc.pid is not None
    assert proc.stop() == 0
    assert proc.stop() is None
    proc.kill()
    proc.start()
    proc.kill()
    assert not proc.running
