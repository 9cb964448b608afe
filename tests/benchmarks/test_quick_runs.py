"""Each benchmark script's --quick mode runs and prints a table of numbers, so the scripts cannot rot."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from csi_xloud.demo.cluster import mounts_below
from csi_xloud.emulator.process import loop_devices_under

ROOT = Path(__file__).resolve().parents[2]
NUMBER = re.compile(r"^\d+(\.\d+)?$")

pytestmark = [pytest.mark.root, pytest.mark.slow]


@pytest.fixture
def scratch() -> Iterator[Path]:
    """The scripts' temporary folder; nothing may stay mounted or attached below it."""
    path = Path(tempfile.mkdtemp(prefix="csx-"))
    try:
        yield path
        assert mounts_below(path) == []
        assert loop_devices_under(path) == []
    finally:
        shutil.rmtree(path, ignore_errors=True)


def run_quick(script: str, scratch: Path) -> str:
    env = {**os.environ, "TMPDIR": str(scratch)}
    result = subprocess.run([sys.executable, "-m", f"benchmarks.{script}", "--quick"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=240, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def table_rows(output: str, title: str) -> list[list[str]]:
    """The data rows of the Markdown table under a heading that contains title."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("### ") and title in line)
    rows = []
    for line in lines[start + 4:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    assert lines[start + 3].startswith("| -"), "a Markdown header separator"
    return rows


def named_rows(output: str, title: str) -> list[dict[str, str]]:
    """The data rows of the table under a heading that contains title, keyed by column name."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("### ") and title in line)
    header = [cell.strip() for cell in lines[start + 2].strip("|").split("|")]
    return [dict(zip(header, row, strict=True)) for row in table_rows(output, title)]


def numbers(row: list[str]) -> list[float]:
    return [float(cell) for cell in row if NUMBER.match(cell)]


def test_overhead_prints_latency_and_calls(scratch: Path) -> None:
    rows = named_rows(run_quick("overhead", scratch), "Latency and API calls")
    ops = {row["operation"] for row in rows}
    assert {"CreateVolume", "CreateSnapshot (snapshot)", "CreateSnapshot (backup)", "ControllerExpandVolume",
            "ControllerPublishVolume", "NodeStageVolume"} <= ops
    assert {row["controller"] for row in rows} == {"warm"}  # the quick run measures after its warm-up
    create = next(row for row in rows if row["operation"] == "CreateVolume")
    p50, calls, model_calls = float(create["p50 s"]), float(create["calls/op"]), float(create["model calls/op"])
    assert 0.2 <= p50 < 30  # never faster than the cloud's own op time
    assert calls >= 2 and model_calls >= 2  # the create request and at least one look at its status


def test_snapshots_prints_calls_on_the_snapshotters_schedule(scratch: Path) -> None:
    rows = named_rows(run_quick("snapshots", scratch), "csi-snapshotter's schedule")
    assert {row["operation"] for row in rows} == {
        "CreateSnapshot (snapshot), snapshotter re-calls", "CreateSnapshot (backup), snapshotter re-calls"}
    for row in rows:
        # Re-called after 1 s, a 0.3 s snapshot is seen ready at the second call, not before the cloud.
        assert 0.9 <= float(row["p50 s"]) < 30
        assert float(row["calls/op"]) >= 3


def test_concurrency_prints_wall_time_and_memory(scratch: Path) -> None:
    rows = table_rows(run_quick("concurrency", scratch), "in flight at once")
    assert len(rows) == 2
    for row in rows:
        values = numbers(row)
        assert len(values) >= 8
        assert float(row[3]) >= 0.2 and float(row[9]) > 10  # wall s, controller MiB


def test_startup_prints_probe_times(scratch: Path) -> None:
    rows = table_rows(run_quick("startup", scratch), "Start-up")
    assert [row[0] for row in rows] == ["controller", "node"]
    assert all(0 < float(row[2]) < 30 for row in rows)


def test_node_prints_stage_and_memory(scratch: Path) -> None:
    output = run_quick("node", scratch)
    stage = table_rows(output, "NodeStage of a fresh volume")
    assert len(stage) == 1 and float(stage[0][1]) > 0 and float(stage[0][2]) > 0
    memory = table_rows(output, "Node plugin memory")
    assert all(float(row[1]) > 10 for row in memory)
