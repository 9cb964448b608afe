"""Keystone v3: one shared token for all calls, renewed before it expires, and the service catalog."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from csi_xloud.clock import Clock
from csi_xloud.cloud.errors import BadRequest, CloudError, Forbidden, NotFound, Unauthorized
from csi_xloud.cloud.http import Answer, ServiceHttp
from csi_xloud.cloud.models import parse_time
from csi_xloud.cloud.settings import STORAGE, AuthType, CloudSettings

# Catalog types under which a cloud may publish each service, most specific first.
SERVICE_TYPES: Mapping[str, tuple[str, ...]] = {
    "volume": ("block-storage", "volumev3", "volume"),
    "compute": ("compute",),
    "identity": ("identity",),
}
_OVERRIDE_KEYS = {"volume": STORAGE, "compute": "compute"}
# Renew this long before expiry, but never more than this share of a token's whole life.
RENEW_MARGIN_SECONDS = 120.0
RENEW_MARGIN_SHARE = 0.1


@dataclass(frozen=True, slots=True)
class Token:
    """An issued token: its id (kept out of repr), project, catalog and when to renew it."""

    value: str = field(repr=False)
    project_id: str | None
    catalog: Sequence[Mapping[str, Any]] = field(repr=False)
    renew_at: float  # on the client's monotonic clock


class Authenticator:
    """Issues and shares the token; concurrent callers share one renewal instead of each asking Keystone."""

    def __init__(self, settings: CloudSettings, identity: ServiceHttp, clock: Clock) -> None:
        self._settings = settings
        self._identity = identity
        self._clock = clock
        self._token: Token | None = None
        self._lock = asyncio.Lock()

    async def token(self) -> str | None:
        """The current token, issuing a new one when there is none or it is about to expire."""
        if self._settings.auth_type is AuthType.NONE:
            return None
        current = self._token
        if current is not None and self._clock.monotonic() < current.renew_at:
            return current.value
        return (await self._renew_if(current)).value

    async def renew(self, stale: str | None) -> str | None:
        """Drop a token the cloud refused (401) and issue another, unless someone already did."""
        if self._settings.auth_type is AuthType.NONE:
            return None
        current = self._token
        if current is not None and current.value != stale:
            return current.value
        return (await self._renew_if(current)).value

    async def endpoint(self, service: str) -> str:
        """The URL of a service: the configured override, else the catalog's for the region and interface."""
        override = self._settings.endpoint_overrides.get(_OVERRIDE_KEYS.get(service, service))
        if override is not None:
            return override
        if service == "identity" and self._settings.auth_url:
            return identity_url(self._settings.auth_url)
        if self._settings.auth_type is AuthType.NONE:
            raise CloudError(f"no endpoint for the {service} service: auth type none needs an override")
        await self.token()
        assert self._token is not None
        settings = self._settings
        return find_endpoint(self._token.catalog, service, settings.region_name, settings.interface)

    async def project_id(self) -> str:
        """The project the token is scoped to (or the configured one)."""
        if self._settings.project_id:
            return self._settings.project_id
        await self.token()
        if self._token is None or not self._token.project_id:
            raise CloudError("the token is not scoped to a project; set project_id or project_name")
        return self._token.project_id

    async def _renew_if(self, seen: Token | None) -> Token:
        async with self._lock:
            if self._token is not None and self._token is not seen:
                return self._token  # another caller renewed while we waited for the lock
            self._token = await self._issue()
            return self._token

    async def _issue(self) -> Token:
        if self._settings.auth_type is AuthType.TOKEN:
            answer = await self._validate_given_token()
        else:
            answer = await self._password_or_credential()
        value = answer.headers.get("x-subject-token") or self._settings.token
        if not value:
            raise Unauthorized("identity API: the token answer has no X-Subject-Token header")
        body = answer.field("token")
        return Token(value, _project_id(body), body.get("catalog") or (), self._renew_at(body))

    async def _password_or_credential(self) -> Answer:
        """Issue a token; an unknown user or credential is an authentication failure, whatever the status."""
        try:
            return await self._identity.request("POST", "auth/tokens", json=auth_body(self._settings),
                                                idempotent=True)
        except (NotFound, BadRequest, Forbidden) as exc:
            raise Unauthorized(f"identity API refused our credentials: {exc.message}", status=exc.status,
                               request_id=exc.request_id) from exc

    async def _validate_given_token(self) -> Answer:
        """For a given token (OS_TOKEN) read its catalog and expiry; it cannot be renewed."""
        given = self._settings.token or ""
        try:
            return await self._identity.request(
                "GET", "auth/tokens", headers={"X-Auth-Token": given, "X-Subject-Token": given},
            )
        except (NotFound, Unauthorized) as exc:
            raise Unauthorized(f"identity API: the configured token (OS_TOKEN) is not valid: {exc.message}",
                               status=exc.status, request_id=exc.request_id) from exc

    def _renew_at(self, body: Mapping[str, Any]) -> float:
        now = self._clock.monotonic()
        expires, issued = parse_time(body.get("expires_at")), parse_time(body.get("issued_at"))
        if expires is None:
            return now + 3600.0
        wall = datetime.now(UTC)
        left = (expires - wall).total_seconds()
        lifetime = (expires - issued).total_seconds() if issued is not None else left
        margin = min(RENEW_MARGIN_SECONDS, max(0.0, lifetime) * RENEW_MARGIN_SHARE)
        return now + left - margin


def auth_body(settings: CloudSettings) -> dict[str, Any]:
    """The `POST /auth/tokens` body for password or application credential auth, project-scoped."""
    if settings.auth_type is AuthType.APPLICATION_CREDENTIAL:
        credential: dict[str, Any] = {"secret": settings.application_credential_secret}
        if settings.application_credential_id:
            credential["id"] = settings.application_credential_id
        else:
            credential["name"] = settings.application_credential_name
            credential["user"] = _named(settings.user_id, settings.username, settings.user_domain_id,
                                        settings.user_domain_name)
        # Application credentials are bound to their project and refuse an explicit scope.
        return {"auth": {"identity": {"methods": ["application_credential"],
                                      "application_credential": credential}}}
    user = _named(settings.user_id, settings.username, settings.user_domain_id, settings.user_domain_name)
    user["password"] = settings.password
    project = _named(settings.project_id, settings.project_name, settings.project_domain_id,
                     settings.project_domain_name)
    return {"auth": {"identity": {"methods": ["password"], "password": {"user": user}},
                     "scope": {"project": project}}}


def _named(
    id_: str | None, name: str | None, domain_id: str | None, domain_name: str | None,
) -> dict[str, Any]:
    if id_:
        return {"id": id_}
    domain = {"id": domain_id} if domain_id else {"name": domain_name}
    return {"name": name, "domain": domain}


def _project_id(body: Mapping[str, Any]) -> str | None:
    project = body.get("project")
    return str(project["id"]) if isinstance(project, Mapping) and project.get("id") else None


def identity_url(auth_url: str) -> str:
    url = auth_url.rstrip("/")
    return url if url.endswith("/v3") else f"{url}/v3"


def find_endpoint(
    catalog: Sequence[Mapping[str, Any]], service: str, region: str | None, interface: str,
) -> str:
    """The catalog URL for a service type, region and interface; CloudError naming what is missing."""
    types = SERVICE_TYPES.get(service, (service,))
    for service_type in types:
        for entry in catalog:
            if entry.get("type") != service_type:
                continue
            for endpoint in entry.get("endpoints") or ():
                in_region = region is None or region in (endpoint.get("region"), endpoint.get("region_id"))
                if endpoint.get("interface") == interface and in_region and endpoint.get("url"):
                    return str(endpoint["url"])
    where = f" in region {region}" if region else ""
    raise CloudError(f"the service catalog has no {interface} endpoint for {'/'.join(types)}{where}")
