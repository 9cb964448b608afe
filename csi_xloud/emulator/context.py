"""What every API handler needs: configuration, the caller behind a token, microversions, JSON bodies."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.requests import Request

from csi_xloud.emulator.errors import ApiError, bad_request, fault, unauthorized
from csi_xloud.emulator.models import Token, User
from csi_xloud.emulator.state import Store

_VERSION = re.compile(r"^(\d+)\.(\d+)$")
PROJECT_ID = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True, slots=True)
class EmulatorConfig:
    """Settings of one emulator run."""

    data_dir: Path
    base_url: str
    op_seconds: float
    token_ttl: float
    project_id: str
    project_name: str
    domain_id: str = "default"
    domain_name: str = "Default"
    region: str = "RegionOne"
    # Cinder's osapi_max_limit: no list answers more items than this in one page.
    max_page_size: int = 1000

    @property
    def identity_url(self) -> str:
        """Public Identity endpoint."""
        return f"{self.base_url}/identity/v3"


@dataclass(frozen=True, slots=True)
class Caller:
    """The user behind a valid token."""

    token: Token
    user: User

    @property
    def project_id(self) -> str:
        """Project the token is scoped to."""
        return self.token.project_id

    @property
    def is_admin(self) -> bool:
        """Whether the user holds the admin role."""
        return "admin" in self.roles

    @property
    def roles(self) -> list[str]:
        """The roles the token carries on its project."""
        return self.token.roles if self.token.roles is not None else self.user.roles


def authenticate(request: Request, store: Store, config: EmulatorConfig) -> Caller:
    """The caller of X-Auth-Token, or 401 as keystonemiddleware answers."""
    token_id = request.headers.get("x-auth-token", "")
    token = store.get(Token, token_id) if token_id else None
    if token is None or token.revoked or token.expires_at <= time.time():
        raise unauthorized(config.identity_url)
    user = store.get(User, token.user_id)
    if user is None:
        raise unauthorized(config.identity_url)
    return Caller(token, user)


@dataclass(frozen=True, slots=True)
class Microversion:
    """A negotiated API microversion."""

    major: int
    minor: int

    def at_least(self, version: str) -> bool:
        """Whether this is version or later."""
        major, minor = (int(p) for p in version.split("."))
        return (self.major, self.minor) >= (major, minor)

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}"


def negotiate(
    request: Request,
    service: str,
    minimum: str,
    maximum: str,
    legacy_header: str = "",
    foreign_ok: bool = False,
) -> Microversion:
    """Parse OpenStack-API-Version for service; Cinder's and Nova's 400/406 answers for bad ones.

    Cinder refuses a header naming only another service; Nova (foreign_ok) ignores it.
    """
    raw = request.headers.get("openstack-api-version")
    value: str | None = None
    if raw is not None:
        for part in raw.split(","):
            words = part.strip().split()
            if len(words) == 2 and words[0].lower() == service:
                value = words[1]
        if value is None and not foreign_ok:
            raise bad_request()
    if value is None and legacy_header and legacy_header in request.headers:
        value = request.headers[legacy_header].strip()
    if value is None:
        return _parse(minimum)
    if value == "latest":
        return _parse(maximum)
    if not _VERSION.match(value):
        raise bad_request(
            f"API Version String {value} is of invalid format. Must be of format MajorNum.MinorNum."
        )
    version = _parse(value)
    low, high = _parse(minimum), _parse(maximum)
    if not (low.major, low.minor) <= (version.major, version.minor) <= (high.major, high.minor):
        raise fault(
            406,
            "computeFault",
            f"Version {value} is not supported by the API. Minimum is {minimum} and maximum is {maximum}.",
        )
    return version


def _parse(value: str) -> Microversion:
    major, minor = value.split(".")
    return Microversion(int(major), int(minor))


async def json_body(request: Request, malformed: ApiError | None = None) -> Any:
    """The request's JSON body; Cinder's/Nova's 400 when it is not JSON."""
    raw = await request.body()
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise malformed or bad_request("Malformed request body") from None


def require_object(body: Any, key: str) -> dict[str, Any]:
    """body[key] as an object, or the schema error Cinder answers."""
    if not isinstance(body, dict) or key not in body:
        raise bad_request(f"'{key}' is a required property")
    value = body[key]
    if not isinstance(value, dict):
        raise bad_request(
            f"Invalid input for field/attribute {key}. Value: {value}. {value!r} is not of type 'object'"
        )
    return value
