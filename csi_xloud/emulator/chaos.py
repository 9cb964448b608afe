"""Fault injection rules and request statistics for /_emulator/*."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections import Counter
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_ID_SEGMENT = re.compile(
    r"^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[0-9a-fA-F]{32})$"
)


# What a matching request's asynchronous work does instead of finishing: "error" ends it as the
# backend failing does (error, error_extending, error_deleting, a rolled-back attach...), "refused"
# as the scheduler (or a busy backend) refusing it does (an extend, retype or delete settles back
# where it was, a create ends in error, with a user message where the real service leaves one),
# "stuck" never ends it. Set for the request by FaultMiddleware;
# the operation tasks the request starts inherit it.
FORCED_OUTCOME: ContextVar[str | None] = ContextVar("emulator_forced_outcome", default=None)
OUTCOMES = ("error", "refused", "stuck")
# What lets "stuck" work go on: set when the rules are cleared (DELETE /_emulator/faults).
STUCK_RELEASE: ContextVar[asyncio.Event | None] = ContextVar("emulator_stuck_release", default=None)
# The id of the request being answered (its instance action's and user messages' request_id).
REQUEST_ID: ContextVar[str | None] = ContextVar("emulator_request_id", default=None)


class RuleError(ValueError):
    """A fault rule is malformed."""


@dataclass(slots=True)
class FaultRule:
    """The next `remaining` requests matching method and path get status or are delayed."""

    method: str | None
    path: re.Pattern[str]
    status: int | None
    remaining: int
    retry_after: float | None
    delay: float
    outcome: str | None = None

    @classmethod
    def parse(cls, raw: Any) -> FaultRule:
        """Validate one rule of the POST /_emulator/faults body."""
        if not isinstance(raw, dict):
            raise RuleError("each rule must be an object")
        unknown = set(raw) - {"method", "path", "status", "count", "retry_after", "delay", "outcome"}
        if unknown:
            raise RuleError(f"unknown rule fields: {sorted(unknown)}")
        try:
            path = re.compile(str(raw.get("path", ".*")))
        except re.error as exc:
            raise RuleError(f"path is not a valid regex: {exc}") from exc
        status = raw.get("status")
        if status is not None and (not isinstance(status, int) or not 100 <= status <= 599):
            raise RuleError("status must be an HTTP status code")
        count = raw.get("count", 1)
        delay = raw.get("delay", 0)
        retry_after = raw.get("retry_after")
        if not isinstance(count, int) or count < 1:
            raise RuleError("count must be a positive integer")
        if not isinstance(delay, int | float) or delay < 0:
            raise RuleError("delay must be a non-negative number")
        if retry_after is not None and (not isinstance(retry_after, int | float) or retry_after < 0):
            raise RuleError("retry_after must be a non-negative number")
        outcome = raw.get("outcome")
        if outcome is not None and outcome not in OUTCOMES:
            raise RuleError(f"outcome must be one of {', '.join(OUTCOMES)}")
        if outcome is not None and status is not None:
            raise RuleError("a rule answers with a status or forces an outcome, not both")
        if status is None and not delay and outcome is None:
            raise RuleError("a rule needs a status, a delay or an outcome")
        method = raw.get("method")
        return cls(
            method=str(method).upper() if method else None,
            path=path,
            status=status,
            remaining=count,
            retry_after=retry_after,
            delay=float(delay),
            outcome=outcome,
        )

    def matches(self, method: str, path: str) -> bool:
        """Whether a request falls under this rule."""
        return (self.method is None or self.method == method) and self.path.search(path) is not None


_KINDS = {
    400: "badRequest",
    403: "forbidden",
    404: "itemNotFound",
    409: "conflictingRequest",
    413: "overLimit",
    429: "overLimit",
}


def fault_body(path: str, status: int) -> dict[str, Any]:
    """An injected error in the body format of the API the path belongs to."""
    message = "Injected fault."
    if path.startswith("/identity"):
        return {"error": {"code": status, "message": message, "title": "Injected"}}
    return {_KINDS.get(status, "computeFault"): {"code": status, "message": message}}


def path_template(path: str) -> str:
    """The path with every id segment replaced by {id}."""
    return "/".join("{id}" if _ID_SEGMENT.match(seg) else seg for seg in path.split("/"))


class Faults:
    """Active fault rules and per-template request counts."""

    def __init__(self) -> None:
        self.rules: list[FaultRule] = []
        self.counts: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()  # of those, the ones answered with an error (4xx, 5xx)
        self.release = asyncio.Event()

    def clear(self) -> None:
        """Drop every rule and let the work that "stuck" rules hung go on."""
        self.rules = []
        self.release.set()
        self.release = asyncio.Event()

    def set_rules(self, raw: Any) -> None:
        """Replace the active rules with a validated list."""
        if not isinstance(raw, list):
            raise RuleError("the body must be a JSON list of rules")
        self.rules = [FaultRule.parse(r) for r in raw]

    def take(self, method: str, path: str) -> FaultRule | None:
        """The first live rule matching the request, with one use consumed."""
        for rule in self.rules:
            if rule.remaining > 0 and rule.matches(method, path):
                rule.remaining -= 1
                return rule
        return None

    def stats(self) -> dict[str, Any]:
        """The /_emulator/stats body."""
        return {
            "total": sum(self.counts.values()),
            "requests": dict(self.counts),
            "refused": dict(self.refused),
        }


class RequestIdMiddleware:
    """Adds the request id headers to every answer, and Keystone's Vary and WWW-Authenticate."""

    def __init__(self, app: ASGIApp, identity_url: str) -> None:
        self._app = app
        self._www_authenticate = f'Keystone uri="{identity_url}"'.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/_emulator"):
            await self._app(scope, receive, send)
            return
        request_id = f"req-{uuid.uuid4()}".encode()
        token = REQUEST_ID.set(request_id.decode())
        identity = scope["path"].startswith("/identity")
        extra = [(b"x-openstack-request-id", request_id)]
        extra.append((b"vary", b"X-Auth-Token") if identity else (b"x-compute-request-id", request_id))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                message["headers"] = headers + [(n, v) for n, v in extra if n not in present]
                if identity and message["status"] == 401 and b"www-authenticate" not in present:
                    message["headers"].append((b"www-authenticate", self._www_authenticate))
            await send(message)

        try:
            await self._app(scope, receive, send_with_id)
        finally:
            REQUEST_ID.reset(token)


class FaultMiddleware:
    """Counts API requests and applies fault rules before the API sees them."""

    def __init__(self, app: ASGIApp, faults: Faults) -> None:
        self._app = app
        self._faults = faults

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/_emulator"):
            await self._app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        key = f"{method} {path_template(path)}"
        self._faults.counts[key] += 1
        refused, answer = self._faults.refused, send

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] >= 400:
                refused[key] += 1
            await answer(message)

        send = counting_send
        rule = self._faults.take(method, path)
        if rule is not None:
            if rule.delay:
                # Read the request first, then wait: like a slow cloud, the emulator still acts on a
                # request whose client gave up during the delay.
                receive = await _buffered(receive)
                await asyncio.sleep(rule.delay)
            if rule.status is not None:
                headers = {} if rule.retry_after is None else {"Retry-After": f"{rule.retry_after:g}"}
                body = fault_body(path, rule.status)
                await JSONResponse(body, status_code=rule.status, headers=headers)(scope, receive, send)
                return
            if rule.outcome is not None:
                token = FORCED_OUTCOME.set(rule.outcome)
                release = STUCK_RELEASE.set(self._faults.release)
                try:
                    await self._app(scope, receive, send)
                finally:
                    STUCK_RELEASE.reset(release)
                    FORCED_OUTCOME.reset(token)
                return
        await self._app(scope, receive, send)


async def _buffered(receive: Receive) -> Receive:
    """Read the whole request body now; the returned receive replays it to the API."""
    messages: list[Message] = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request" or not message.get("more_body", False):
            break

    async def replay() -> Message:
        if messages:
            return messages.pop(0)
        return await receive()

    return replay
