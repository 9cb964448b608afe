"""A reverse proxy in front of the emulator that delivers chosen requests late.

The emulator's delay rules hold a request before the API reads it, so a client that gives up takes
the request with it. A request that is late on its way (queued in a load balancer or a busy API
worker) still reaches the cloud after the client gave up; this proxy reads the whole request at once,
then forwards it after the delay whatever the client does meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field

import httpx
import uvicorn
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from csi_xloud.emulator.process import free_port

HOP_HEADERS = frozenset({"host", "content-length", "connection", "transfer-encoding"})


@dataclass
class LateRule:
    method: str
    path: re.Pattern[str]
    delay: float
    count: int = 1


@dataclass
class LateProxy:
    """ASGI app: forwards every request to upstream; the first `count` matches of a rule arrive late."""

    upstream: str
    rules: list[LateRule] = field(default_factory=list)
    delivered_late: int = 0

    def __post_init__(self) -> None:
        self._client = httpx.AsyncClient(base_url=self.upstream, timeout=60)
        self._late_tasks: set[asyncio.Task[httpx.Response]] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        body = await request.body()
        forward = self._forward(
            request.method, request.url.path, request.url.query, dict(request.headers), body
        )
        delay = self._take(request.method, request.url.path)
        if delay:
            # Shielded: the late request reaches the cloud even when its client has gone.
            task = asyncio.ensure_future(self._after(delay, forward))
            self._late_tasks.add(task)
            task.add_done_callback(self._late_tasks.discard)
            answer = await asyncio.shield(task)
        else:
            answer = await forward
        headers = {k: v for k, v in answer.headers.items() if k.lower() not in HOP_HEADERS}
        await Response(answer.content, answer.status_code, headers)(scope, receive, send)

    def _take(self, method: str, path: str) -> float:
        for rule in self.rules:
            if rule.count > 0 and rule.method == method and rule.path.search(path):
                rule.count -= 1
                return rule.delay
        return 0.0

    async def _after(self, delay: float, forward: Awaitable[httpx.Response]) -> httpx.Response:
        await asyncio.sleep(delay)
        answer = await forward
        self.delivered_late += 1
        return answer

    async def _forward(
        self, method: str, path: str, query: str, headers: dict[str, str], body: bytes
    ) -> httpx.Response:
        sent = {k: v for k, v in headers.items() if k.lower() not in HOP_HEADERS}
        url = f"{path}?{query}" if query else path
        return await self._client.request(method, url, headers=sent, content=body)

    async def drain(self) -> None:
        """Wait for late requests still on their way."""
        if self._late_tasks:
            await asyncio.gather(*self._late_tasks, return_exceptions=True)

    async def aclose(self) -> None:
        await self.drain()
        await self._client.aclose()


@contextlib.asynccontextmanager
async def late_proxy(upstream: str) -> AsyncIterator[tuple[LateProxy, str]]:
    """The proxy served on 127.0.0.1 (in this event loop); yields it and its base URL."""
    proxy = LateProxy(upstream)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(proxy, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    try:
        yield proxy, f"http://127.0.0.1:{port}"
    finally:
        await proxy.drain()
        server.should_exit = True
        await task
        await proxy.aclose()
