"""`csi-xloud demo` as a user runs it: every step passes; Ctrl-C and --keep leave no process, mount or loop device."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from csi_xloud.demo.cluster import mounts_below
from csi_xloud.emulator.process import loop_devices_under

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="the demo attaches loop devices and mounts: run as root"
)


def driver_processes_below(root: Path) -> list[str]:
    """Command lines of our processes (drivers, emulator) that mention root."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "csi_xloud" in cmdline and str(root) in cmdline:
            found.append(cmdline)
    return found


def assert_nothing_left(root: Path) -> None:
    assert mounts_below(root) == []
    assert loop_devices_under(root) == []
    assert driver_processes_below(root) == []


def test_demo_walks_every_step_and_keeps_data_when_asked(short_tmp: Path) -> None:
    data_dir = short_tmp / "demo"
    result = subprocess.run(
        [sys.executable, "-m", "csi_xloud", "demo", "--data-dir", str(data_dir), "--keep"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "29/29 steps passed" in result.stdout
    assert "kept the data in" in result.stdout
    assert (data_dir / "cloud" / "clouds.yaml").exists()  # --keep leaves the emulator's data for a look
    assert_nothing_left(data_dir)


def test_ctrl_c_in_the_middle_cleans_up(short_tmp: Path) -> None:
    data_dir = short_tmp / "demo"
    proc = subprocess.Popen(
        [sys.executable, "-m", "csi_xloud", "demo", "--data-dir", str(data_dir), "--op-seconds", "0.5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if "publish it into a pod ... ok" in line:  # a volume is attached, staged and mounted now
                break
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = "".join(lines) + rest
    assert proc.returncode != 0, output
    assert "interrupted; cleaning up" in output
    assert not data_dir.exists()
    assert_nothing_left(data_dir)
