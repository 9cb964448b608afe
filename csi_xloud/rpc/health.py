"""Readiness apart from liveness: what the process depends on is watched here, not in Probe.

The livenessprobe sidecar turns a Probe that answers `ready: false` into a failed liveness check,
and kubelet restarts the container. A restart cannot bring a cloud back, so a cloud outage must not
fail Probe: Probe answers from the process's own health, and the cloud's reachability is checked
here in the background, shown as `csi_xloud_ready{check="cloud"}`, on `/readyz` beside `/metrics`
(the controller's readinessProbe) and by `csi-xloud doctor`.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from http.server import ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, MetricsHandler

from csi_xloud.deadline import CALL_DEADLINE
from csi_xloud.metrics import Metrics

log = logging.getLogger(__name__)

# A check returns None when its part is ready, else the reason it is not.
Check = Callable[[], Awaitable[str | None]]
DEFAULT_INTERVAL_SECONDS = 30.0
CHECK_TIMEOUT_SECONDS = 10.0


class ReadinessMonitor:
    """Runs named checks now and then; keeps the last reasons, the `csi_xloud_ready` gauge, a change log."""

    def __init__(
        self, checks: Mapping[str, Check], metrics: Metrics, *,
        interval_seconds: float = DEFAULT_INTERVAL_SECONDS, timeout_seconds: float = CHECK_TIMEOUT_SECONDS,
    ) -> None:
        self._checks = dict(checks)
        self._metrics = metrics
        self._interval = interval_seconds
        self._timeout = timeout_seconds
        # None until the first round has run; replaced whole, so the HTTP thread reads it safely.
        self._reasons: tuple[str, ...] | None = None
        self._failing: dict[str, str] = {}

    @property
    def reasons(self) -> tuple[str, ...] | None:
        """Why the process is not ready (empty when it is), or None before the first round."""
        return self._reasons

    async def check_once(self) -> tuple[str, ...]:
        """Run every check at once, record each outcome, and return the reasons of those failing."""
        names = list(self._checks)
        results = await asyncio.gather(*(self._run(name) for name in names))
        for name, reason in zip(names, results, strict=True):
            self._metrics.ready.labels(name).set(0 if reason else 1)
            self._log_change(name, reason)
        pairs = zip(names, results, strict=True)
        self._reasons = tuple(f"{name}: {reason}" for name, reason in pairs if reason)
        return self._reasons

    async def run_forever(self) -> None:
        """Check every interval until cancelled."""
        while True:
            await self.check_once()
            await asyncio.sleep(self._interval)

    async def _run(self, name: str) -> str | None:
        # The check's requests are retried only while its answer can still come in time (own task).
        CALL_DEADLINE.set(time.monotonic() + self._timeout)
        try:
            return await asyncio.wait_for(self._checks[name](), self._timeout)
        except TimeoutError:
            return f"no answer within {self._timeout:g} s"
        except Exception as exc:  # a failing check means not ready, never a crash of the monitor
            return f"{type(exc).__name__}: {exc}"

    def _log_change(self, name: str, reason: str | None) -> None:
        before = self._failing.get(name)
        if reason and reason != before:
            log.warning("not ready: %s: %s", name, reason)
            self._failing[name] = reason
        elif not reason and before is not None:
            log.info("ready again: %s", name)
            del self._failing[name]


def health_handler(registry: CollectorRegistry, monitor: ReadinessMonitor) -> type[MetricsHandler]:
    """An HTTP handler: `/readyz` (503 with the reasons while not ready), `/healthz`, metrics elsewhere."""
    base: Any = MetricsHandler.factory(registry)

    class HealthHandler(base):  # type: ignore[misc]
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/healthz":
                self._answer(200, "ok\n")
            elif path == "/readyz":
                reasons = monitor.reasons
                if reasons is None:
                    self._answer(503, "not checked yet\n")
                elif reasons:
                    self._answer(503, "".join(f"{reason}\n" for reason in reasons))
                else:
                    self._answer(200, "ready\n")
            else:
                super().do_GET()

        def _answer(self, status: int, text: str) -> None:
            body = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return  # kubelet probes every few seconds: not worth a log line each

    return HealthHandler


def serve_health(
    host: str, port: int, registry: CollectorRegistry, monitor: ReadinessMonitor,
) -> ThreadingHTTPServer:
    """Serve metrics, /readyz and /healthz from a daemon thread; the caller shuts the server down."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]  # an IPv6 address needs AF_INET6
    server_class: type[ThreadingHTTPServer] = type(
        "HealthServer", (ThreadingHTTPServer,), {"address_family": family, "daemon_threads": True}
    )
    server = server_class((host, port), health_handler(registry, monitor))
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
