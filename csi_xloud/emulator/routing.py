"""A small regex route table shared by the Storage and Compute APIs."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from csi_xloud.emulator.context import Caller, Microversion


@dataclass(frozen=True, slots=True)
class Call:
    """One API request after authentication and microversion negotiation."""

    request: Request
    caller: Caller
    mv: Microversion
    project_id: str
    params: dict[str, str] = field(default_factory=dict)

    @property
    def query(self) -> Any:
        """Query parameters."""
        return self.request.query_params


Handler = Callable[[Call], Awaitable[Response]]


class RouteTable:
    """(method, path regex) -> handler; paths are relative to the API's root."""

    def __init__(self) -> None:
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        """Register a handler; pattern uses (?P<name>...) groups and is anchored."""
        self._routes.append((method, re.compile(f"^{pattern}$"), handler))

    def match(self, method: str, path: str) -> tuple[Handler, dict[str, str]] | None:
        """The handler and path parameters for a request, or None."""
        for route_method, regex, handler in self._routes:
            found = regex.match(path)
            if found and route_method == method:
                return handler, found.groupdict()
        return None

    def path_known(self, path: str) -> bool:
        """Whether any method serves this path."""
        return any(regex.match(path) for _, regex, _ in self._routes)
