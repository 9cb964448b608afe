"""The grpc.aio server: listens on a unix socket (or loopback TCP), stops gracefully on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
import socket
import stat
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import grpc

from csi_xloud.config import Endpoint

log = logging.getLogger(__name__)

# Adds one servicer to a server, e.g. ``lambda s: add_NodeServicer_to_server(node, s)``.
Registration = Callable[[grpc.aio.Server], None]


class EndpointInUse(RuntimeError):
    """Another live server already answers on the socket."""


class CsiServer:
    """One gRPC server with the given services and interceptors on one endpoint."""

    def __init__(
        self,
        endpoint: Endpoint,
        registrations: Sequence[Registration],
        interceptors: Sequence[grpc.aio.ServerInterceptor[Any, Any]] = (),
        grace_seconds: float = 25.0,
    ) -> None:
        self._endpoint = endpoint
        self._registrations = tuple(registrations)
        self._interceptors = tuple(interceptors)
        self._grace_seconds = grace_seconds
        self._server: grpc.aio.Server | None = None
        self.bound_port: int | None = None

    @property
    def endpoint(self) -> Endpoint:
        return self._endpoint

    async def start(self) -> None:
        """Bind and start serving; refuses a socket on which a live server answers."""
        if self._endpoint.scheme == "unix":
            prepare_unix_socket(Path(self._endpoint.address))
        server = grpc.aio.server(
            interceptors=self._interceptors,
            options=[("grpc.so_reuseport", 0), ("grpc.max_receive_message_length", 16 * 1024 * 1024)],
        )
        for register in self._registrations:
            register(server)
        port = server.add_insecure_port(self._endpoint.grpc_target)
        if self._endpoint.scheme == "tcp" and port == 0:
            raise EndpointInUse(f"cannot listen on {self._endpoint}")
        self.bound_port = port
        await server.start()
        if self._endpoint.scheme == "unix":
            # The sidecars run as root in the same pod; nobody else needs the socket.
            os.chmod(self._endpoint.address, 0o660)
        self._server = server
        log.info("serving CSI on %s", self._endpoint)

    async def stop(self, grace_seconds: float | None = None) -> None:
        """Stop taking calls, let in-flight calls finish within the grace period, remove the socket."""
        server, self._server = self._server, None
        if server is None:
            return
        grace = self._grace_seconds if grace_seconds is None else grace_seconds
        log.info("stopping: waiting up to %.1fs for calls in flight", grace)
        await server.stop(grace)
        if self._endpoint.scheme == "unix":
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._endpoint.address)
        log.info("stopped")

    async def serve_until_signalled(self, signals: Sequence[int] = (signal.SIGTERM, signal.SIGINT)) -> int:
        """Run until one of the signals arrives, then stop gracefully; returns the signal number."""
        loop = asyncio.get_running_loop()
        received: asyncio.Future[int] = loop.create_future()

        def on_signal(signum: int) -> None:
            if not received.done():
                received.set_result(signum)

        for signum in signals:
            loop.add_signal_handler(signum, on_signal, signum)
        try:
            signum = await received
            log.info("received %s", signal.Signals(signum).name)
            await self.stop()
            return signum
        finally:
            for signum in signals:
                loop.remove_signal_handler(signum)


def prepare_unix_socket(path: Path) -> None:
    """Make the socket's folder; remove a stale socket file; refuse when a live server answers."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise EndpointInUse(f"{path} exists and is not a socket; refusing to replace it")
    if socket_is_live(path):
        raise EndpointInUse(f"another server is already listening on {path}")
    log.info("removing stale socket %s", path)
    path.unlink()


def socket_is_live(path: Path, timeout_seconds: float = 1.0) -> bool:
    """True when something accepts connections on the unix socket."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(timeout_seconds)
    try:
        probe.connect(str(path))
    except OSError as exc:
        if exc.errno in (errno.ECONNREFUSED, errno.ENOENT):
            return False
        raise
    finally:
        probe.close()
    return True
