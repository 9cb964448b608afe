"""A TCP proxy in front of the emulator that resets connections (RST) on chosen requests.

The emulator's fault rules answer with a status or a delay; they cannot cut a connection. This proxy
can, in the two ways that matter: before the request reaches the cloud (nothing happened), or after
the cloud has answered but before the client reads the answer (something happened, nobody was told).
A request is recognised by its request line at the start of a chunk the client writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from csi_xloud.emulator.process import free_port


@dataclass
class ResetRule:
    """Reset the next `count` requests whose request line matches; after the cloud answered, or before."""

    request_line: re.Pattern[bytes]
    after_answer: bool
    count: int = 1


@dataclass
class ResetProxy:
    upstream_port: int
    rules: list[ResetRule] = field(default_factory=list)
    resets: int = 0

    def _take(self, chunk: bytes) -> ResetRule | None:
        for rule in self.rules:
            if rule.count > 0 and rule.request_line.match(chunk):
                rule.count -= 1
                return rule
        return None

    async def serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        up_r, up_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        answered = asyncio.Event()
        swallow = asyncio.Event()
        back = asyncio.create_task(self._back(up_r, client_w, swallow, answered))
        cut: asyncio.Task[None] | None = None
        try:
            while data := await client_r.read(65536):
                rule = self._take(data)
                if rule is not None and not rule.after_answer:
                    self._reset(client_w)
                    return
                if rule is not None:
                    swallow.set()
                    cut = asyncio.create_task(self._reset_when(answered, client_w))
                up_w.write(data)
                await up_w.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            if cut is not None:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(cut, 10)
            back.cancel()
            up_w.close()
            client_w.close()

    async def _back(
        self,
        up_r: asyncio.StreamReader,
        client_w: asyncio.StreamWriter,
        swallow: asyncio.Event,
        answered: asyncio.Event,
    ) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await up_r.read(65536):
                if swallow.is_set():
                    answered.set()  # the cloud acted and answered; the client never hears of it
                    return
                client_w.write(data)
                await client_w.drain()

    async def _reset_when(self, answered: asyncio.Event, client_w: asyncio.StreamWriter) -> None:
        await answered.wait()
        self._reset(client_w)

    def _reset(self, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()
        self.resets += 1


@contextlib.asynccontextmanager
async def reset_proxy(upstream_port: int) -> AsyncIterator[tuple[ResetProxy, str]]:
    """The proxy on 127.0.0.1 in this event loop; yields it and its base URL."""
    proxy = ResetProxy(upstream_port)
    port = free_port()
    server = await asyncio.start_server(proxy.serve, "127.0.0.1", port)
    try:
        yield proxy, f"http://127.0.0.1:{port}"
    finally:
        server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 2)
