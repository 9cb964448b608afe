"""The cloud client: built once from the cloud's settings, shared by every controller RPC."""

from __future__ import annotations

import random

import httpx

from csi_xloud.clock import Clock, SystemClock
from csi_xloud.cloud.auth import Authenticator, identity_url
from csi_xloud.cloud.compute import ComputeApi
from csi_xloud.cloud.errors import CloudError
from csi_xloud.cloud.groups import GroupsApi
from csi_xloud.cloud.http import ServiceHttp
from csi_xloud.cloud.settings import AuthType, CloudSettings
from csi_xloud.cloud.storage import StorageApi
from csi_xloud.cloud.waiters import Backoff, Waiter
from csi_xloud.metrics import Metrics


class CloudClient:
    """Storage and Compute APIs over one connection pool, one token and one waiter."""

    def __init__(
        self,
        settings: CloudSettings,
        metrics: Metrics,
        *,
        clock: Clock | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        backoff: Backoff | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self._clock = clock or SystemClock()
        tuning = settings.tuning
        self._client = httpx.AsyncClient(
            verify=settings.tls_verify(), timeout=tuning.httpx_timeout(), limits=tuning.httpx_limits(),
            transport=transport, follow_redirects=False,
        )
        identity = identity_url(settings.auth_url) if settings.auth_url else None
        self._identity = self._service("identity", None, identity, metrics, rng)
        self.auth = Authenticator(settings, self._identity, self._clock)
        self.waiter = Waiter(self._clock, backoff, rng, metrics)
        volume_http = self._service("volume", self.auth, None, metrics, rng)
        self.storage = StorageApi(volume_http, self.waiter)
        self.groups = GroupsApi(volume_http, self.waiter)
        self.compute = ComputeApi(self._service("compute", self.auth, None, metrics, rng))

    def _service(
        self, name: str, auth: Authenticator | None, endpoint: str | None, metrics: Metrics,
        rng: random.Random | None,
    ) -> ServiceHttp:
        return ServiceHttp(name, self._client, auth, endpoint=endpoint, tuning=self.settings.tuning,
                           metrics=metrics, clock=self._clock, rng=rng,
                           requests_per_second=self.settings.rate_for(name), project_in_path=name == "volume")

    async def readiness(self) -> str | None:
        """None when the cloud answers and accepts our credentials, else the reason it does not."""
        try:
            if self.settings.auth_type is not AuthType.NONE:
                await self.auth.token()
            await self.storage.versions()
            await self.storage.get_limits()
        except CloudError as exc:
            return f"cloud not ready: {exc}"
        return None

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()

    async def __aenter__(self) -> CloudClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
