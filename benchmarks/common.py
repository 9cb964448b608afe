"""What every benchmark script shares: tables, percentiles, machine facts, memory, the emulator's counters."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import yaml

from csi_xloud.emulator.process import EmulatorProcess

T = TypeVar("T")


# --- the command line ----------------------------------------------------------------------------


def run_script(doc: str | None, main_async: Callable[[bool], Coroutine[Any, Any, None]],
               quick_help: str = "one small run, for the smoke test") -> None:
    """A script's command line: its docstring as help, and --quick."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help=quick_help)
    asyncio.run(main_async(parser.parse_args().quick))


# --- tables ------------------------------------------------------------------------------------


@dataclass
class Table:
    """A Markdown table printed to stdout; numbers are formatted by the caller."""

    title: str
    columns: Sequence[str]
    rows: list[list[str]] = field(default_factory=list)

    def add(self, *cells: object) -> None:
        self.rows.append([str(c) for c in cells])

    def render(self) -> str:
        widths = [max(len(c), *(len(r[i]) for r in self.rows)) if self.rows else len(c)
                  for i, c in enumerate(self.columns)]
        def line(cells: Sequence[str]) -> str:
            return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"
        out = [f"### {self.title}", "", line(self.columns), "| " + " | ".join("-" * w for w in widths) + " |"]
        out.extend(line(r) for r in self.rows)
        return "\n".join(out) + "\n"

    def print(self) -> None:
        print(self.render(), flush=True)


def verdict(met: bool) -> str:
    return "met" if met else "**missed**"


def seconds(value: float) -> str:
    return f"{value:.2f}"


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (p50 of [1, 2, 3, 4] is 2)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, round(pct / 100 * len(ordered) + 0.4999))
    return ordered[min(rank, len(ordered)) - 1]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


# --- machine -----------------------------------------------------------------------------------


def machine() -> str:
    """One line naming the machine: cores, memory, kernel, Python."""
    mem_kib = 0
    with open("/proc/meminfo", encoding="utf-8") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    model = ""
    with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return (f"{os.cpu_count()} cores ({model or platform.machine()}), {mem_kib / (1 << 20):.1f} GiB memory, "
            f"Linux {platform.release()}, Python {platform.python_version()}")


# --- memory ------------------------------------------------------------------------------------


def proc_kib(pid: int, key: str) -> int:
    """A VmRSS/VmHWM-style field of /proc/<pid>/status in KiB."""
    with open(f"/proc/{pid}/status", encoding="utf-8") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def mib(kib: int) -> str:
    return f"{kib / 1024:.1f}"


class RssSampler:
    """Samples VmRSS of some processes in the background and keeps each one's peak (KiB)."""

    def __init__(self, pids: dict[str, int], interval: float = 0.05) -> None:
        self.pids = pids
        self.peak = {name: 0 for name in pids}
        self._interval = interval
        self._task: asyncio.Task[None] | None = None

    def sample(self) -> None:
        for name, pid in self.pids.items():
            with contextlib.suppress(OSError, KeyError):
                self.peak[name] = max(self.peak[name], proc_kib(pid, "VmRSS"))

    async def _run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(self._interval)

    async def __aenter__(self) -> RssSampler:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self.sample()


# --- timing ------------------------------------------------------------------------------------


async def timed(work: Awaitable[T]) -> tuple[float, T]:
    start = time.monotonic()
    result = await work
    return time.monotonic() - start, result


async def run_all(factories: Iterable[Callable[[], Awaitable[T]]]) -> tuple[float, list[float], list[T]]:
    """Start every piece of work at once; (wall seconds, each one's seconds, results)."""
    start = time.monotonic()
    pairs = await asyncio.gather(*(timed(f()) for f in factories))
    return time.monotonic() - start, [p[0] for p in pairs], [p[1] for p in pairs]


# --- the emulator's API, as a plain client --------------------------------------------------------


class CloudApi:
    """A token-holding HTTP client for one of the emulator's clouds (admin work and the reference model)."""

    def __init__(self, emulator: EmulatorProcess, cloud: str, max_connections: int = 600) -> None:
        clouds = yaml.safe_load(emulator.clouds_yaml.read_text())["clouds"]
        self._auth = clouds[cloud]["auth"]
        self.project_id = str(self._auth["project_id"])
        self.base = emulator.url
        self._client = httpx.AsyncClient(
            timeout=120, limits=httpx.Limits(max_connections=max_connections,
                                             max_keepalive_connections=max_connections))
        self._token = ""

    async def login(self) -> None:
        auth = self._auth
        body = {"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": auth["username"], "password": auth["password"],
                "domain": {"name": auth["user_domain_name"]}}}},
            "scope": {"project": {"id": auth["project_id"]}},
        }}
        answer = await self._client.post(f"{auth['auth_url']}/auth/tokens", json=body)
        answer.raise_for_status()
        self._token = answer.headers["X-Subject-Token"]

    async def call(self, method: str, path: str, body: Any = None, microversion: str | None = None) -> Any:
        headers = {"X-Auth-Token": self._token}
        if microversion:
            headers["OpenStack-API-Version"] = microversion
        answer = await self._client.request(method, f"{self.base}{path}", json=body, headers=headers)
        if answer.status_code >= 400:
            raise RuntimeError(f"{method} {path}: {answer.status_code} {answer.text[:300]}")
        return answer.json() if answer.content else None

    def volume_path(self, rest: str) -> str:
        return f"/volume/v3/{self.project_id}/{rest}"

    async def close(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> CloudApi:
        await self.login()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def lift_quotas(emulator: EmulatorProcess) -> None:
    """Make the member project's Storage quotas unlimited (the defaults stop at 10 volumes)."""
    async with CloudApi(emulator, "xloud-emulator-admin") as admin:
        member = yaml.safe_load(emulator.clouds_yaml.read_text())["clouds"]["xloud-emulator"]["auth"]
        project = member["project_id"]
        quota = {key: -1 for key in ("volumes", "gigabytes", "snapshots", "backups", "backup_gigabytes")}
        await admin.call("PUT", f"/volume/v3/{project}/os-quota-sets/{project}", {"quota_set": quota})


class CallCounter:
    """API calls the emulator served between two points, from GET /_emulator/stats."""

    def __init__(self, emulator: EmulatorProcess) -> None:
        self._emulator = emulator
        self._start = 0

    def __enter__(self) -> CallCounter:
        self._start = int(self._emulator.stats()["total"])
        self.calls = 0
        return self

    def __exit__(self, *exc: object) -> None:
        # The stats request itself is not counted by the emulator's own path (/_emulator is excluded).
        self.calls = int(self._emulator.stats()["total"]) - self._start


def run_command(argv: list[str]) -> float:
    """Run a command to completion; its wall time in seconds (raises when it fails)."""
    start = time.monotonic()
    subprocess.run(argv, check=True, capture_output=True)
    return time.monotonic() - start


def python() -> str:
    return sys.executable


def data_root(name: str) -> Path:
    """A fresh folder for one run, under the system's temporary directory."""
    import tempfile

    return Path(tempfile.mkdtemp(prefix=f"csx-bench-{name}-"))
