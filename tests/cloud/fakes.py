"""Test doubles for time: a clock that advances only when someone sleeps on it."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx


class FakeClock:
    """Monotonic time that moves forward by exactly the requested sleeps, recording each one."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(0.0, seconds)
        await asyncio.sleep(0)  # still a real suspension point, so cancellation can land here


class Script:
    """An httpx handler that answers each (method, path suffix) from a queue of canned responses.

    Used only for corner cases the emulator cannot produce on demand (exact retry counts,
    HTTP-date Retry-After, malformed bodies); real behaviour is tested against the emulator.
    """

    def __init__(self) -> None:
        self.routes: list[tuple[str, str, list[Any]]] = []
        self.requests: list[httpx.Request] = []

    def on(self, method: str, suffix: str, *answers: Any) -> Script:
        self.routes.append((method, suffix, list(answers)))
        return self

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        for method, suffix, answers in self.routes:
            if request.method == method and request.url.path.endswith(suffix):
                answer = answers.pop(0) if len(answers) > 1 else answers[0]
                if isinstance(answer, Exception):
                    raise answer
                if callable(answer):
                    return answer(request)
                return answer
        return httpx.Response(404, json={"itemNotFound": {"code": 404, "message": "no route in script"}})

    def count(self, method: str, suffix: str) -> int:
        return sum(1 for r in self.requests if r.method == method and r.url.path.endswith(suffix))


def json_response(status: int, body: Any = None, headers: dict[str, str] | None = None) -> httpx.Response:
    return (
        httpx.Response(status, json=body, headers=headers)
        if body is not None
        else httpx.Response(status, headers=headers)
    )
