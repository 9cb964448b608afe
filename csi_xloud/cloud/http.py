"""One service's HTTP calls: token, microversion, request id, rate limit, retries, logging and metrics."""

from __future__ import annotations

import logging
import random
import re
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

import httpx

from csi_xloud.clock import Clock
from csi_xloud.cloud.answers import error_from_answer, is_rate_limit
from csi_xloud.cloud.errors import CloudError, Unavailable
from csi_xloud.cloud.models import ApiVersion
from csi_xloud.cloud.ratelimit import TokenBucket
from csi_xloud.deadline import seconds_left, within_call
from csi_xloud.metrics import Metrics
from csi_xloud.requestid import REQUEST_ID

log = logging.getLogger("csi_xloud.cloud")

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
# A path segment that names one resource: a UUID, a 32-hex id (projects, users) or a number.
_ID_SEGMENT = re.compile(r"^([0-9a-fA-F]{8}-[0-9a-fA-F-]{27}|[0-9a-fA-F]{32}|\d+)$")
# Errors raised before the request left this host: safe to retry whatever the method.
NOT_SENT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


# The default depth of the client's token bucket, in seconds of its rate.
BURST_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class HttpTuning:
    """Timeouts, pool size, retry and rate-limit settings shared by all services."""

    timeout_seconds: float = 30.0
    connect_timeout_seconds: float = 5.0
    max_connections: int = 32
    # Failed requests that may be sent again are, with growing pauses, until the call's deadline; in
    # a call without one, for retry_seconds from the first failure (timeout_seconds when None).
    retry_seconds: float | None = None
    retry_initial_seconds: float = 0.25
    retry_max_seconds: float = 8.0
    max_retry_after_seconds: float = 60.0
    # One CreateVolume alone costs about 3 requests (look-up by name, create, one look once it is
    # done); many at once about 1.1 each, as look-ups and looks are shared (sharedlookups, sharedpolls),
    # so the creates themselves set the pace. The bucket holds BURST_SECONDS of the rate (None) or
    # `burst` requests: a scale-up of a few hundred volumes leaves at once, never more than
    # max_connections requests are open at a time, and over any stretch the cloud sees no more than
    # the rate plus that one burst. Operators whose cloud takes more raise `rate_limit` in clouds.yaml,
    # those whose cloud wants smoother traffic lower `rate_limit_burst`.
    requests_per_second: float = 50.0
    burst: int | None = None

    def __post_init__(self) -> None:
        if self.timeout_seconds <= 0 or self.connect_timeout_seconds <= 0:
            raise ValueError("timeouts must be positive")
        if self.retry_seconds is not None and self.retry_seconds < 0:
            raise ValueError("retry_seconds must not be negative")
        if self.retry_initial_seconds <= 0 or self.retry_max_seconds < self.retry_initial_seconds:
            raise ValueError("retry pauses must be positive and retry_max_seconds >= retry_initial_seconds")
        if self.max_connections < 1:
            raise ValueError("max_connections must be >= 1")
        if self.requests_per_second <= 0 or (self.burst is not None and self.burst < 1):
            raise ValueError("requests_per_second must be > 0 and burst >= 1")

    def burst_for(self, rate: float) -> int:
        """How many requests the bucket of a service at `rate` lets through at once."""
        return self.burst if self.burst is not None else max(1, round(rate * BURST_SECONDS))

    def httpx_timeout(self) -> httpx.Timeout:
        return httpx.Timeout(self.timeout_seconds, connect=self.connect_timeout_seconds)

    def httpx_limits(self) -> httpx.Limits:
        return httpx.Limits(max_connections=self.max_connections,
                            max_keepalive_connections=self.max_connections)


@dataclass(frozen=True, slots=True)
class Answer:
    """A successful HTTP answer: status, JSON body ({} when empty) and the cloud's request id."""

    status: int
    body: Mapping[str, Any]
    headers: httpx.Headers
    request_id: str | None

    def field(self, key: str) -> Mapping[str, Any]:
        """A top-level object of the body; CloudError when the cloud answered something else."""
        value = self.body.get(key)
        if not isinstance(value, Mapping):
            raise CloudError(f"the cloud's answer lacks the '{key}' object", status=self.status,
                             request_id=self.request_id)
        return value


class Credentials(Protocol):
    """The shared token and the service catalog."""

    async def token(self) -> str | None: ...

    async def renew(self, stale: str | None) -> str | None: ...

    async def endpoint(self, service: str) -> str: ...

    async def project_id(self) -> str: ...


class ServiceHttp:
    """Requests to one service (`volume`, `compute` or `identity`); paths are relative to its endpoint."""

    def __init__(
        self,
        service: str,
        client: httpx.AsyncClient,
        credentials: Credentials | None,
        *,
        endpoint: str | None = None,
        tuning: HttpTuning,
        metrics: Metrics,
        clock: Clock,
        rng: random.Random | None = None,
        requests_per_second: float | None = None,
        project_in_path: bool = False,
    ) -> None:
        self.service = service
        self._client = client
        self._credentials = credentials
        self._endpoint = endpoint
        self._tuning = tuning
        self._metrics = metrics
        self._clock = clock
        self._rng = rng if rng is not None else random.Random()
        rate = requests_per_second if requests_per_second is not None else tuning.requests_per_second
        self._bucket = TokenBucket(rate, tuning.burst_for(rate), clock)
        self._project_in_path = project_in_path

    async def base_url(self) -> str:
        """The service endpoint: the fixed one, else the catalog's (with the project appended if needed)."""
        if self._endpoint is not None:
            return self._endpoint
        if self._credentials is None:
            raise CloudError(f"no endpoint for the {self.service} service")
        url = await self._credentials.endpoint(self.service)
        if self._project_in_path and version_root(url).rstrip("/") == url.rstrip("/"):
            # The Storage API accepts paths without the project only from 3.67; older ones need it.
            url = f"{url.rstrip('/')}/{await self._credentials.project_id()}"
        return url

    async def project_id(self) -> str:
        if self._credentials is None:
            raise CloudError("no project: the client has no credentials")
        return await self._credentials.project_id()

    async def version_document(self) -> Mapping[str, Any]:
        """The service's version document (GET on the versioned root of its endpoint)."""
        answer = await self.request("GET", version_root(await self.base_url()))
        return answer.body

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
        microversion: ApiVersion | None = None,
        idempotent: bool | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Answer:
        """Send a request and return its 2xx answer, or raise the named error for its failure."""
        retry_safe = method in IDEMPOTENT_METHODS if idempotent is None else idempotent
        attempt = _Attempts(self._tuning, self._clock, self._rng)
        while True:
            token = await self._credentials.token() if self._credentials is not None else None
            try:
                response = await self._send(method, path, json, params, microversion, token, headers)
            except httpx.TransportError as exc:
                not_sent = isinstance(exc, NOT_SENT_ERRORS)
                retryable = not _tls_failure(exc) and (retry_safe or not_sent)
                delay = attempt.backoff() if retryable else None
                if delay is None:
                    raise Unavailable(
                        f"{self.service} API {method} {path}: {_describe(exc)}",
                        may_still_land=not retry_safe and not not_sent and not _tls_failure(exc),
                    ) from exc
                await self._clock.sleep(delay)
                continue
            answer = _answer(response)
            if response.is_success:
                return answer
            await self._before_retry(answer, token, attempt, retry_safe, f"{method} {path}")

    async def _before_retry(
        self, answer: Answer, token: str | None, attempt: _Attempts, retry_safe: bool, what: str,
    ) -> None:
        """Wait or renew so the failed request can be sent again, or raise its error when it must not be."""
        if answer.status == 401 and self._credentials is not None and token and attempt.renew():
            await self._credentials.renew(token)
            return
        if is_rate_limit(answer):
            # Refused before any work began: safe to send again whatever the method.
            self._metrics.cloud_throttled.labels(self.service, str(answer.status)).inc()
            delay = attempt.backoff(self._retry_after(answer))
            if delay is None:
                raise Unavailable(f"{self.service} API kept rate-limiting {what} until the call's deadline",
                                  status=answer.status, request_id=answer.request_id)
            await self._clock.sleep(delay)
            return
        error = error_from_answer(self.service, answer)
        if answer.status < 500 or not retry_safe:
            raise error
        # A 503 may say when to come back.
        delay = attempt.backoff(self._retry_after(answer) if "retry-after" in answer.headers else 0.0)
        if delay is None:
            raise error
        await self._clock.sleep(delay)

    async def _send(
        self, method: str, path: str, json: Mapping[str, Any] | None, params: Mapping[str, str] | None,
        microversion: ApiVersion | None, token: str | None, extra: Mapping[str, str] | None,
    ) -> httpx.Response:
        url = path
        if not path.startswith(("http://", "https://")):
            url = f"{(await self.base_url()).rstrip('/')}/{path}"
        headers = {"Accept": "application/json"}
        request_id = REQUEST_ID.get()
        if request_id and request_id != "-":
            headers["X-OpenStack-Request-ID"] = request_id
        if token:
            headers["X-Auth-Token"] = token
        if microversion is not None:
            headers["OpenStack-API-Version"] = f"{self.service} {microversion}"
        headers.update(extra or {})
        if await self._bucket.acquire():
            self._metrics.cloud_throttled.labels(self.service, "local").inc()
        operation = operation_of(method, path, json)
        in_flight = self._metrics.cloud_in_flight.labels(self.service)
        in_flight.inc()
        started = time.perf_counter()
        try:
            response = await self._client.request(method, url, json=json, params=params, headers=headers)
        except httpx.TransportError as exc:
            status = "timeout" if isinstance(exc, httpx.TimeoutException) else "error"
            self._record(method, url, operation, status, time.perf_counter() - started, None)
            raise
        finally:
            in_flight.dec()
        self._record(method, url, operation, str(response.status_code), time.perf_counter() - started,
                     response.headers.get("x-openstack-request-id"))
        return response

    def _record(
        self, method: str, url: str, operation: str, status: str, elapsed: float, cloud_id: str | None,
    ) -> None:
        self._metrics.cloud_requests.labels(self.service, method, status).inc()
        self._metrics.cloud_seconds.labels(self.service, method).observe(elapsed)
        self._metrics.cloud_operation_seconds.labels(self.service, operation, status).observe(elapsed)
        log.debug("cloud %s %s %s -> %s in %.0f ms (cloud request %s)", self.service, method,
                 httpx.URL(url).path, status, elapsed * 1000, cloud_id or "-")

    def _retry_after(self, answer: Answer) -> float:
        """The answer's Retry-After (1 s when it has none), capped by max_retry_after_seconds."""
        seconds = retry_after_seconds(answer.headers.get("retry-after"), answer.body)
        return min(self._tuning.max_retry_after_seconds, seconds)


# The room left for the answer of a last try sent before the call's deadline (see _Attempts).
LAST_TRY_ROOM = 1.0


class _Attempts:
    """One request's retries: jittered, growing pauses, sent again only while the deadline allows.

    The deadline is the RPC's own (the gRPC deadline the CO sent, less the time its answer needs);
    a call without one gives the request `retry_seconds` (else `timeout_seconds`) from its first
    failure. Not a fixed count: a burst of failures is ridden out when there is time, and the call
    still answers before its caller gives up.

    When the next jittered pause would end past the deadline while much of the time is left (the
    pauses double, so that can be more than half of it), one last try is sent LAST_TRY_ROOM (or half
    the time left, if less) before the deadline, so a burst that ends meanwhile is still ridden out.
    """

    def __init__(self, tuning: HttpTuning, clock: Clock, rng: random.Random) -> None:
        self._tuning = tuning
        self._clock = clock
        self._rng = rng
        self._deadline: float | None = None
        self._retries = 0
        self._renewed = False
        self._last_try = False

    def renew(self) -> bool:
        """A refused token is renewed once per request."""
        if self._renewed:
            return False
        self._renewed = True
        return True

    def backoff(self, at_least: float = 0.0) -> float | None:
        """The pause before the next try (at least `at_least`), or None when it would end past the deadline.

        Full jitter in [ceiling / 2, ceiling], ceiling = min(cap, initial * 2^n), so that clients do not
        retry in step.
        """
        self._retries += 1
        tuning = self._tuning
        ceiling = min(tuning.retry_max_seconds, tuning.retry_initial_seconds * 2 ** (self._retries - 1))
        delay = max(at_least, self._rng.uniform(ceiling / 2, ceiling))
        now = self._clock.monotonic()
        if self._deadline is None:
            left = seconds_left(now)
            fallback = tuning.timeout_seconds if tuning.retry_seconds is None else tuning.retry_seconds
            self._deadline = now + (fallback if left is None else within_call(left, now))
        if now + delay < self._deadline:
            return delay
        if self._last_try:
            return None
        left = self._deadline - now
        pause = left - min(LAST_TRY_ROOM, left / 2)
        if pause < max(at_least, tuning.retry_initial_seconds):
            return None
        self._last_try = True
        return pause


def retry_after_seconds(header: str | None, body: Mapping[str, Any]) -> float:
    """Seconds from `Retry-After` (seconds or an HTTP date) or the body's `retryAfter`; 1 s by default."""
    for raw in (header, _body_retry_after(body)):
        if raw is None:
            continue
        text = str(raw).strip()
        try:
            return max(0.0, float(text))
        except ValueError:
            pass
        try:
            moment = parsedate_to_datetime(text)
            return max(0.0, moment.timestamp() - time.time())
        except (TypeError, ValueError):
            continue
    return 1.0


def _body_retry_after(body: Mapping[str, Any]) -> object:
    for value in body.values():
        if isinstance(value, Mapping) and "retryAfter" in value:
            return value["retryAfter"]
    return None


def operation_of(method: str, path: str, body: Mapping[str, Any] | None) -> str:
    """A metric label for a request: `GET volumes/{id}`, `POST volumes/{id}/action os-extend`, `GET versions`.

    Ids become {id}, so the label has a value per kind of call, not per resource.
    """
    if path.startswith(("http://", "https://")):
        return f"{method} versions"  # the only absolute URLs asked for are version documents
    segments = [("{id}" if _ID_SEGMENT.match(part) else part) for part in path.split("/") if part]
    operation = f"{method} {'/'.join(segments)}"
    if segments and segments[-1] == "action" and body is not None and len(body) == 1:
        operation += f" {next(iter(body))}"
    return operation


def version_root(endpoint: str) -> str:
    """The versioned root of an endpoint: `.../volume/v3/<project>` -> `.../volume/v3/`."""
    url = httpx.URL(endpoint)
    parts = [p for p in url.path.split("/") if p]
    for index in range(len(parts) - 1, -1, -1):
        segment = parts[index]
        if segment.startswith("v") and segment[1:].replace(".", "").isdigit():
            return str(url.copy_with(path="/" + "/".join(parts[: index + 1]) + "/", query=None))
    return str(url.copy_with(path=url.path.rstrip("/") + "/", query=None))


def _answer(response: httpx.Response) -> Answer:
    body: Mapping[str, Any] = {}
    if response.content:
        try:
            parsed = response.json()
        except ValueError:
            parsed = None
        if isinstance(parsed, Mapping):
            body = parsed
    request_id = response.headers.get("x-openstack-request-id")
    return Answer(response.status_code, body, response.headers, request_id)


def _tls_failure(exc: BaseException) -> bool:
    """A certificate or handshake failure: retrying cannot help."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return True
        seen = seen.__cause__ or seen.__context__
    return "CERTIFICATE_VERIFY_FAILED" in str(exc)


def _describe(exc: httpx.TransportError) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out ({type(exc).__name__})"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__

