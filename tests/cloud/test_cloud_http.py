"""Retries, rate limits, token renewal, microversions, error mapping: corner cases on a scripted transport."""

from __future__ import annotations

import asyncio
import logging
import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from csi_xloud.cloud.auth import auth_body
from csi_xloud.cloud.client import CloudClient
from csi_xloud.cloud.errors import (
    BadRequest,
    CloudError,
    Conflict,
    Forbidden,
    NotFound,
    QuotaExceeded,
    Unauthorized,
    Unavailable,
    UnsupportedFeature,
)
from csi_xloud.cloud.http import HttpTuning, retry_after_seconds, version_root
from csi_xloud.cloud.models import VolumeStatus
from csi_xloud.cloud.settings import COMPUTE, STORAGE, AuthType, CloudSettings
from csi_xloud.deadline import CALL_DEADLINE
from csi_xloud.emulator.process import free_port
from csi_xloud.metrics import Metrics
from csi_xloud.requestid import REQUEST_ID
from tests.cloud.fakes import FakeClock, Script, json_response

VOLUME_URL = "http://cloud.test/volume/v3/p1"
VERSIONS = {"versions": [{"id": "v3.0", "status": "CURRENT", "version": "3.71", "min_version": "3.0"}]}
VOLUME = {"id": "v1", "name": "pvc-1", "size": 1, "status": "available", "attachments": [], "metadata": {}}
OVER_QUOTA = {
    "overLimit": {
        "code": 413,
        "retryAfter": "0",
        "message": "VolumeSizeExceedsAvailableQuota: Requested volume or snapshot exceeds allowed gigabytes "
        "quota. "
        "Requested 100000G, quota is 1000G and 2G has been consumed.",
    }
}


def no_auth(**tuning: Any) -> CloudSettings:
    return CloudSettings(
        auth_type=AuthType.NONE,
        project_id="p1",
        endpoint_overrides={STORAGE: VOLUME_URL, COMPUTE: "http://cloud.test/compute/v2.1"},
        tuning=HttpTuning(**tuning),
    )


def password(**tuning: Any) -> CloudSettings:
    return CloudSettings(
        auth_type=AuthType.PASSWORD,
        auth_url="http://cloud.test/identity",
        username="demo",
        password="pw-very-secret",
        user_domain_id="default",
        project_name="demo",
        project_domain_id="default",
        tuning=HttpTuning(**tuning),
    )


def token_answer(value: str, ttl_seconds: float = 3600) -> httpx.Response:
    now = datetime.now(UTC)
    body = {
        "token": {
            "expires_at": (now + timedelta(seconds=ttl_seconds)).isoformat().replace("+00:00", "Z"),
            "issued_at": now.isoformat().replace("+00:00", "Z"),
            "project": {"id": "p1", "name": "demo"},
            "catalog": [
                {
                    "type": "volumev3",
                    "endpoints": [
                        {"interface": "public", "region": "RegionOne", "url": VOLUME_URL},
                        {
                            "interface": "internal",
                            "region": "RegionOne",
                            "url": "http://internal.test/volume/v3/p1",
                        },
                    ],
                }
            ],
        }
    }
    return httpx.Response(201, json=body, headers={"X-Subject-Token": value})


class Harness:
    def __init__(self, settings: CloudSettings, script: Script, rng: random.Random | None = None) -> None:
        self.clock = FakeClock()
        self.metrics = Metrics()
        self.script = script
        self.client = CloudClient(
            settings,
            self.metrics,
            clock=self.clock,
            transport=httpx.MockTransport(script),
            rng=rng or random.Random(5),
        )

    def sample(self, name: str, **labels: str) -> float:
        value = self.metrics.registry.get_sample_value(name, labels)
        return value or 0.0


@pytest.fixture
async def make() -> Any:
    made: list[Harness] = []

    def build(settings: CloudSettings, script: Script, rng: random.Random | None = None) -> Harness:
        harness = Harness(settings, script, rng)
        made.append(harness)
        return harness

    yield build
    for harness in made:
        await harness.client.aclose()


def with_versions(script: Script) -> Script:
    return script.on("GET", "/volume/v3/", json_response(200, VERSIONS))


async def test_get_retries_5xx_with_jittered_backoff(make: Any) -> None:
    script = with_versions(Script()).on(
        "GET", "/volumes/v1", json_response(503), json_response(502), json_response(200, {"volume": VOLUME})
    )
    h = make(no_auth(retry_initial_seconds=0.5), script)
    volume = await h.client.storage.get_volume("v1")
    assert volume.id == "v1"
    assert script.count("GET", "/volumes/v1") == 3
    assert 0.25 <= h.clock.sleeps[0] <= 0.5 and 0.5 <= h.clock.sleeps[1] <= 1.0
    assert h.sample("csi_xloud_cloud_requests_total", service="volume", method="GET", status="503") == 1
    assert h.sample("csi_xloud_cloud_requests_total", service="volume", method="GET", status="200") == 2


async def get_stays_busy(h: Harness, deadline: float) -> None:
    """GET /volumes/v1 within a call's deadline, which the cloud answers with 503s to the end."""
    token = CALL_DEADLINE.set(deadline)
    try:
        with pytest.raises(Unavailable, match="busy"):
            await h.client.storage.get_volume("v1")
    finally:
        CALL_DEADLINE.reset(token)


async def test_get_is_retried_until_the_calls_deadline(make: Any) -> None:
    script = with_versions(Script()).on("GET", "/volumes/v1", json_response(503, {"message": "busy"}))
    h = make(no_auth(), script)
    await h.client.storage.versions()
    started = h.clock.now
    await get_stays_busy(h, started + 20.0)
    # 0.25, 0.5, 1, 2, 4, 8, 8 s at most (each jittered down to half): every pause ends before the
    # deadline less the second its answer needs, and one more would not.
    assert 6 <= len(h.clock.sleeps) <= 10
    assert h.clock.now <= started + 19.0
    assert script.count("GET", "/volumes/v1") == len(h.clock.sleeps) + 1


async def test_a_burst_shorter_than_the_deadline_is_ridden_out(make: Any) -> None:
    burst = [json_response(503)] * 5
    script = with_versions(Script()).on("GET", "/volumes/v1", *burst, json_response(200, {"volume": VOLUME}))
    h = make(no_auth(), script)
    token = CALL_DEADLINE.set(h.clock.now + 10.0)
    try:
        assert (await h.client.storage.get_volume("v1")).id == "v1"
    finally:
        CALL_DEADLINE.reset(token)
    assert script.count("GET", "/volumes/v1") == 6


class LongestPauses(random.Random):
    """Jitter that always draws the longest pause."""

    def uniform(self, a: float, b: float) -> float:
        return b


async def test_a_pause_that_would_pass_the_deadline_leaves_room_for_one_last_try(make: Any) -> None:
    # A 7 s deadline leaves 6.3 s (the answer needs a tenth). After pauses of 0.25, 0.5, 1 and 2 s the
    # next, 4 s, would end past it with 2.55 s still left: one try more goes 1 s before the end, and
    # rides out a failure that has passed by then.
    burst = [json_response(503)] * 5
    script = with_versions(Script()).on("GET", "/volumes/v1", *burst, json_response(200, {"volume": VOLUME}))
    h = make(no_auth(), script, LongestPauses())
    await h.client.storage.versions()
    token = CALL_DEADLINE.set(h.clock.now + 7.0)
    try:
        assert (await h.client.storage.get_volume("v1")).id == "v1"
    finally:
        CALL_DEADLINE.reset(token)
    assert h.clock.sleeps == [0.25, 0.5, 1.0, 2.0, pytest.approx(1.55)]


async def test_the_last_try_is_the_last_one(make: Any) -> None:
    script = with_versions(Script()).on("GET", "/volumes/v1", json_response(503, {"message": "busy"}))
    h = make(no_auth(), script, LongestPauses())
    await h.client.storage.versions()
    started = h.clock.now
    await get_stays_busy(h, started + 7.0)
    assert len(h.clock.sleeps) == 5 and script.count("GET", "/volumes/v1") == 6
    assert h.clock.now == pytest.approx(started + 5.3)


async def test_no_last_try_shorter_than_the_first_pause(make: Any) -> None:
    # Pauses from 0.4 s, a 1 s deadline (0.9 s usable): 0.4 fits, the next (0.8) does not, and a
    # last pause of 0.25 s (half the 0.5 s left) would be shorter than the first.
    script = with_versions(Script()).on("GET", "/volumes/v1", json_response(503, {"message": "busy"}))
    h = make(no_auth(retry_initial_seconds=0.4), script, LongestPauses())
    await h.client.storage.versions()
    await get_stays_busy(h, h.clock.now + 1.0)
    assert h.clock.sleeps == [0.4] and script.count("GET", "/volumes/v1") == 2


async def test_a_call_without_deadline_retries_for_api_timeout_from_the_first_failure(make: Any) -> None:
    script = with_versions(Script()).on("GET", "/volumes/v1", json_response(503, {"message": "busy"}))
    h = make(no_auth(timeout_seconds=5), script)
    await h.client.storage.versions()
    started = h.clock.now
    with pytest.raises(Unavailable, match="busy"):
        await h.client.storage.get_volume("v1")
    assert len(h.clock.sleeps) >= 3 and h.clock.now < started + 5


async def test_creating_post_is_not_retried_on_5xx_or_read_timeout(make: Any) -> None:
    script = with_versions(Script()).on("POST", "/volumes", json_response(503), httpx.ReadTimeout("slow"))
    h = make(no_auth(), script)
    with pytest.raises(Unavailable) as answered:
        await h.client.storage.create_volume("pvc-1", 1)
    with pytest.raises(Unavailable, match="timed out") as lost:
        await h.client.storage.create_volume("pvc-1", 1)
    assert script.count("POST", "/volumes") == 2
    # A 503 is an answer; a read timeout leaves the create in the air: the cloud may still act on it.
    assert (answered.value.may_still_land, lost.value.may_still_land) == (False, True)
    assert h.sample("csi_xloud_cloud_requests_total", service="volume", method="POST", status="timeout") == 1


async def test_connection_refused_is_retried_even_for_post(make: Any) -> None:
    script = with_versions(Script()).on(
        "POST",
        "/volumes",
        httpx.ConnectError("refused"),
        json_response(202, {"volume": {**VOLUME, "status": "creating"}}),
    )
    h = make(no_auth(), script)
    assert (await h.client.storage.create_volume("pvc-1", 1)).status == "creating"
    assert script.count("POST", "/volumes") == 2


async def test_get_read_timeout_is_retried(make: Any) -> None:
    script = with_versions(Script()).on(
        "GET", "/volumes/v1", httpx.ReadTimeout("slow"), json_response(200, {"volume": VOLUME})
    )
    h = make(no_auth(), script)
    assert (await h.client.storage.get_volume("v1")).name == "pvc-1"


async def test_429_waits_retry_after_for_any_method(make: Any) -> None:
    script = with_versions(Script()).on(
        "POST",
        "/volumes",
        json_response(429, {"message": "slow down"}, {"Retry-After": "3"}),
        json_response(202, {"volume": VOLUME}),
    )
    h = make(no_auth(), script)
    await h.client.storage.create_volume("pvc-1", 1)
    assert 3.0 in h.clock.sleeps
    assert h.sample("csi_xloud_cloud_throttled_total", service="volume", reason="429") == 1


async def test_retry_seconds_shortens_the_retries_of_a_call_without_deadline(make: Any) -> None:
    script = with_versions(Script()).on("GET", "/volumes/v1", httpx.ConnectError("refused"))
    h = make(no_auth(retry_seconds=1.0), script)
    await h.client.storage.versions()
    started = h.clock.now
    with pytest.raises(Unavailable, match="ConnectError"):
        await h.client.storage.get_volume("v1")
    assert h.clock.now < started + 1.0 and len(h.clock.sleeps) >= 2


async def test_retry_after_is_capped_and_rate_limit_retries_end_at_the_deadline(make: Any) -> None:
    script = with_versions(Script()).on(
        "GET", "/volumes/v1", json_response(429, None, {"Retry-After": "3600"})
    )
    h = make(no_auth(timeout_seconds=25, max_retry_after_seconds=10), script)
    with pytest.raises(Unavailable, match=r"rate-limiting .* until the call's deadline"):
        await h.client.storage.get_volume("v1")
    assert h.clock.sleeps == [10, 10]


async def test_a_retry_after_beyond_the_deadline_is_unavailable_at_once(make: Any) -> None:
    script = with_versions(Script()).on(
        "POST", "/volumes", json_response(429, None, {"Retry-After": "30"}), json_response(202, {"volume": VOLUME})
    )
    h = make(no_auth(), script)
    await h.client.storage.versions()
    token = CALL_DEADLINE.set(h.clock.now + 10.0)
    try:
        with pytest.raises(Unavailable, match="rate-limiting"):
            await h.client.storage.create_volume("pvc-1", 1)
    finally:
        CALL_DEADLINE.reset(token)
    assert h.clock.sleeps == []
    assert script.count("POST", "/volumes") == 1


async def test_413_quota_body_is_quota_exceeded_not_a_rate_limit(make: Any) -> None:
    script = with_versions(Script()).on(
        "POST", "/volumes", json_response(413, OVER_QUOTA, {"Retry-After": "0"})
    )
    h = make(no_auth(), script)
    with pytest.raises(QuotaExceeded, match="exceeds allowed gigabytes quota"):
        await h.client.storage.create_volume("big", 100000)
    assert script.count("POST", "/volumes") == 1


async def test_413_rate_limit_with_retry_after_is_retried(make: Any) -> None:
    limited = {"overLimit": {"code": 413, "message": "This request was rate-limited.", "retryAfter": "2"}}
    script = with_versions(Script()).on(
        "GET",
        "/volumes/v1",
        json_response(413, limited, {"Retry-After": "2"}),
        json_response(200, {"volume": VOLUME}),
    )
    h = make(no_auth(), script)
    await h.client.storage.get_volume("v1")
    assert h.clock.sleeps == [2.0]
    assert h.sample("csi_xloud_cloud_throttled_total", service="volume", reason="413") == 1


def test_retry_after_forms() -> None:
    assert retry_after_seconds("7", {}) == 7
    later = datetime.now(UTC) + timedelta(seconds=30)
    assert 25 <= retry_after_seconds(format_datetime(later, usegmt=True), {}) <= 31
    assert retry_after_seconds(None, {"overLimit": {"retryAfter": "4"}}) == 4
    assert retry_after_seconds("garbage", {}) == 1.0


async def test_error_bodies_map_to_named_errors(make: Any) -> None:
    cases = [
        (
            400,
            {"badRequest": {"code": 400, "message": "Invalid input received: name has 256 characters."}},
            BadRequest,
        ),
        (
            400,
            {
                "badRequest": {
                    "code": 400,
                    "message": "Invalid volume: Volume status must be available or error "
                    "or error_restoring or error_extending",
                }
            },
            Conflict,
        ),
        (404, {"itemNotFound": {"code": 404, "message": "Volume v1 could not be found."}}, NotFound),
        (
            404,
            {"message": "The resource could not be found.<br /><br />\n\n\n", "code": "404 Not Found"},
            NotFound,
        ),
        (403, {"forbidden": {"code": 403, "message": "Policy doesn't allow it."}}, Forbidden),
        (409, {"conflictingRequest": {"code": 409, "message": "already exists"}}, Conflict),
        (
            406,
            {"computeFault": {"code": 406, "message": "Version 3.72 is not supported by the API."}},
            UnsupportedFeature,
        ),
        (500, {"computeFault": {"code": 500, "message": "The server has either erred"}}, Unavailable),
    ]
    script = with_versions(Script()).on("DELETE", "/volumes/v1", *[json_response(s, b) for s, b, _ in cases])
    h = make(no_auth(), script)
    for status, body, kind in cases:
        with pytest.raises(CloudError) as caught:
            await h.client.storage.delete_volume("v1")
        assert type(caught.value) is kind, (status, body)
        assert caught.value.status == status
        assert "<br" not in str(caught.value)


async def test_request_id_sent_and_logged_without_secrets(
    make: Any, caplog: pytest.LogCaptureFixture
) -> None:
    script = (
        Script()
        .on("POST", "/identity/v3/auth/tokens", token_answer("tok-1"))
        .on("GET", "/volume/v3/", json_response(200, VERSIONS))
        .on(
            "GET",
            "/volumes/v1",
            json_response(200, {"volume": VOLUME}, {"X-OpenStack-Request-Id": "req-cloud-42"}),
        )
    )
    h = make(password(), script)
    token = REQUEST_ID.set("req-11111111-2222-3333-4444-555555555555")
    try:
        with caplog.at_level(logging.DEBUG, logger="csi_xloud.cloud"):
            await h.client.storage.get_volume("v1")
    finally:
        REQUEST_ID.reset(token)
    sent = next(r for r in script.requests if r.url.path.endswith("/volumes/v1"))
    assert sent.headers["X-OpenStack-Request-ID"] == "req-11111111-2222-3333-4444-555555555555"
    assert sent.headers["X-Auth-Token"] == "tok-1"
    assert sent.headers["OpenStack-API-Version"] == "volume 3.63"
    line = next(r.getMessage() for r in caplog.records if "/volumes/v1" in r.getMessage())
    assert "GET" in line and "200" in line and "req-cloud-42" in line and " ms" in line
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "tok-1" not in logged and "pw-very-secret" not in logged


async def test_one_token_for_concurrent_calls_and_one_renewal_on_401(make: Any) -> None:
    script = (
        Script()
        .on("POST", "/identity/v3/auth/tokens", token_answer("tok-1"), token_answer("tok-2"))
        .on("GET", "/volume/v3/", json_response(200, VERSIONS))
    )

    def volume(request: httpx.Request) -> httpx.Response:
        if (
            request.headers["X-Auth-Token"] == "tok-1"
            and script.count("POST", "/auth/tokens") == 1
            and script.count("GET", "/volumes/v1") > 10
        ):
            return json_response(
                401, {"error": {"code": 401, "message": "The request you have made requires authentication."}}
            )
        return json_response(200, {"volume": VOLUME})

    script.on("GET", "/volumes/v1", volume)
    h = make(password(), script)
    await asyncio.gather(*(h.client.storage.get_volume("v1") for _ in range(10)))
    assert script.count("POST", "/auth/tokens") == 1
    await asyncio.gather(*(h.client.storage.get_volume("v1") for _ in range(5)))
    assert script.count("POST", "/auth/tokens") == 2
    assert [r.headers["X-Auth-Token"] for r in script.requests if r.url.path.endswith("/volumes/v1")][
        -1
    ] == "tok-2"


async def test_a_second_401_is_unauthorized(make: Any) -> None:
    refused = json_response(
        401,
        {
            "error": {
                "code": 401,
                "message": "The request you have made requires authentication.",
                "title": "Unauthorized",
            }
        },
    )
    script = (
        Script()
        .on("POST", "/auth/tokens", token_answer("tok-1"), token_answer("tok-2"))
        .on("GET", "/volume/v3/", json_response(200, VERSIONS))
        .on("GET", "/volumes/v1", refused)
    )
    h = make(password(), script)
    with pytest.raises(Unauthorized, match="requires authentication"):
        await h.client.storage.get_volume("v1")
    assert script.count("POST", "/auth/tokens") == 2
    assert script.count("GET", "/volumes/v1") == 2


async def test_token_renewed_before_it_expires(make: Any) -> None:
    script = (
        Script()
        .on("POST", "/auth/tokens", token_answer("tok-1", 100), token_answer("tok-2", 100))
        .on("GET", "/volume/v3/", json_response(200, VERSIONS))
        .on("GET", "/volumes/v1", json_response(200, {"volume": VOLUME}))
    )
    h = make(password(), script)
    await h.client.storage.get_volume("v1")
    h.clock.now += 85  # margin is 10 % of a 100 s token: renew from 90 s on
    await h.client.storage.get_volume("v1")
    assert script.count("POST", "/auth/tokens") == 1
    h.clock.now += 6
    await h.client.storage.get_volume("v1")
    assert script.count("POST", "/auth/tokens") == 2


async def test_wrong_password_is_unauthorized(make: Any) -> None:
    script = Script().on(
        "POST",
        "/auth/tokens",
        json_response(
            401,
            {
                "error": {
                    "code": 401,
                    "message": "The request you have made requires authentication.",
                    "title": "Unauthorized",
                }
            },
        ),
    )
    h = make(password(), script)
    assert "requires authentication" in (await h.client.readiness() or "")
    with pytest.raises(Unauthorized):
        await h.client.storage.get_volume("v1")


async def test_catalog_interface_and_missing_service(make: Any) -> None:
    script = Script().on("POST", "/auth/tokens", token_answer("tok-1"))
    h = make(
        CloudSettings(
            auth_type=AuthType.PASSWORD,
            auth_url="http://cloud.test/identity/v3",
            username="u",
            password="p",
            user_domain_id="default",
            project_id="p1",
            interface="internal",
        ),
        script,
    )
    assert await h.client.auth.endpoint("volume") == "http://internal.test/volume/v3/p1"
    with pytest.raises(CloudError, match="no internal endpoint for compute"):
        await h.client.auth.endpoint("compute")


async def test_microversion_too_old_for_online_extend(make: Any) -> None:
    old = {"versions": [{"id": "v3.0", "status": "CURRENT", "version": "3.40", "min_version": "3.0"}]}
    script = (
        Script()
        .on("GET", "/volume/v3/", json_response(200, old))
        .on("POST", "/volumes/v1/action", json_response(202))
    )
    h = make(no_auth(), script)
    with pytest.raises(
        UnsupportedFeature, match=r"extend an attached \(in-use\) volume .* 3\.42 .* 3\.0 to 3\.40"
    ):
        await h.client.storage.extend_volume("v1", 2, online=True)
    await h.client.storage.extend_volume("v1", 2)
    sent = script.requests[-1]
    assert sent.headers["OpenStack-API-Version"] == "volume 3.0"
    assert script.count("GET", "/volume/v3/") == 1


async def test_snapshot_force_chooses_the_version(make: Any) -> None:
    snap = {"snapshot": {"id": "s1", "name": "n", "volume_id": "v1", "size": 1, "status": "creating"}}
    script = with_versions(Script()).on("POST", "/snapshots", json_response(202, snap))
    h = make(no_auth(), script)
    await h.client.storage.create_snapshot("v1", "n", force=True)
    await h.client.storage.create_snapshot("v1", "n", force=False)
    forced, plain = script.requests[-2], script.requests[-1]
    assert forced.headers["OpenStack-API-Version"] == "volume 3.66"
    assert plain.headers["OpenStack-API-Version"] == "volume 3.65"
    assert b'"force":false' in plain.content.replace(b" ", b"")


async def test_token_bucket_spaces_requests(make: Any) -> None:
    script = with_versions(Script()).on("GET", "/volumes/v1", json_response(200, {"volume": VOLUME}))
    h = make(no_auth(requests_per_second=2, burst=1), script)
    await h.client.storage.versions()
    h.clock.now += 10  # refill
    start = h.clock.now
    await asyncio.gather(*(h.client.storage.get_volume("v1") for _ in range(5)))
    # One request from the bucket at once, then one every 0.5 s (this fake clock runs sleeps in turn).
    assert h.clock.now - start == pytest.approx(2.0)
    assert h.sample("csi_xloud_cloud_throttled_total", service="volume", reason="local") == 4


async def test_the_default_bucket_lets_ten_seconds_of_its_rate_through_at_once(make: Any) -> None:
    script = with_versions(Script()).on("GET", "/volumes/v1", json_response(200, {"volume": VOLUME}))
    h = make(no_auth(requests_per_second=2), script)
    await h.client.storage.versions()
    h.clock.now += 100  # a full bucket: 20 requests
    start = h.clock.now
    await asyncio.gather(*(h.client.storage.get_volume("v1") for _ in range(22)))
    # Twenty leave at once, the next two at the rate.
    assert h.clock.now - start == pytest.approx(1.0)
    assert h.sample("csi_xloud_cloud_throttled_total", service="volume", reason="local") == 2


def test_version_root() -> None:
    assert version_root("http://h/volume/v3/abc123") == "http://h/volume/v3/"
    assert version_root("http://h:8776/v3/") == "http://h:8776/v3/"
    assert version_root("http://h/compute/v2.1") == "http://h/compute/v2.1/"
    assert version_root("http://h/identity/v3") == "http://h/identity/v3/"


async def test_hidden_version_document_means_base_version_only(make: Any) -> None:
    script = (
        Script()
        .on("GET", "/volume/v3/", json_response(404, {"message": "Not Found"}))
        .on("GET", "/volumes/v1", json_response(200, {"volume": VOLUME}))
        .on("POST", "/volumes/v1/action", json_response(202))
    )
    h = make(no_auth(), script)
    await h.client.storage.get_volume("v1")
    assert script.requests[-1].headers["OpenStack-API-Version"] == "volume 3.0"
    with pytest.raises(UnsupportedFeature, match="has no microversions"):
        await h.client.storage.extend_volume("v1", 3, online=True)


async def test_unknown_application_credential_is_unauthorized(make: Any) -> None:
    missing = {
        "error": {"code": 404, "message": "Could not find Application Credential: 0000.", "title": "x"}
    }
    script = Script().on("POST", "/auth/tokens", json_response(404, missing))
    settings = CloudSettings(
        auth_type=AuthType.APPLICATION_CREDENTIAL,
        auth_url="http://cloud.test/identity",
        application_credential_id="0000",
        application_credential_secret="appcred-secret-1",
    )
    h = make(settings, script)
    with pytest.raises(Unauthorized, match="Could not find Application Credential"):
        await h.client.storage.get_volume("v1")
    body = script.requests[0].content
    assert b'"application_credential"' in body and b'"scope"' not in body


async def test_project_appended_to_a_catalog_endpoint_without_it(make: Any) -> None:
    catalog_less = token_answer("tok-1")
    payload = catalog_less.json()
    payload["token"]["catalog"][0]["endpoints"][0]["url"] = "http://cloud.test/volume/v3"
    script = Script().on(
        "POST", "/auth/tokens", httpx.Response(201, json=payload, headers={"X-Subject-Token": "tok-1"})
    )
    script.on("GET", "/volume/v3/", json_response(200, VERSIONS))
    script.on("GET", "/volume/v3/p1/volumes/v1", json_response(200, {"volume": VOLUME}))
    h = make(password(), script)
    await h.client.storage.get_volume("v1")
    assert script.requests[-1].url.path == "/volume/v3/p1/volumes/v1"


async def test_503_with_retry_after_waits_at_least_that_long(make: Any) -> None:
    script = with_versions(Script()).on(
        "GET",
        "/volumes/v1",
        json_response(503, None, {"Retry-After": "4"}),
        json_response(200, {"volume": VOLUME}),
    )
    h = make(no_auth(), script)
    await h.client.storage.get_volume("v1")
    assert h.clock.sleeps == [4.0]


async def test_volume_error_carries_the_clouds_user_message(make: Any) -> None:
    failed = {"volume": {**VOLUME, "status": "error"}}
    message = "create volume:schedule allocate volume:Could not find any available weighted backend."
    script = (
        with_versions(Script())
        .on("GET", "/volumes/v1", json_response(200, failed))
        .on("GET", "/messages", json_response(200, {"messages": [
            # A cloud that ignores the filter answers other resources' messages too: they are no reason.
            {"user_message": "extend volume:not this one", "resource_uuid": "v2", "created_at": "2026-01-02"},
            {"user_message": message, "resource_uuid": "v1", "created_at": "2026-01-01"},
        ]}))
    )
    h = make(no_auth(), script)
    with pytest.raises(CloudError, match="volume v1 went to status error: create volume:schedule") as caught:
        await h.client.storage.wait_for_volume("v1", VolumeStatus.AVAILABLE, timeout_seconds=10)
    assert type(caught.value) is CloudError
    sent = script.requests[-1]
    assert sent.url.params["resource_uuid"] == "v1"
    assert sent.headers["OpenStack-API-Version"] == "volume 3.5"  # 3.3 and 3.4 ignore the filter


async def test_a_user_message_about_another_resource_is_not_the_reason(make: Any) -> None:
    failed = {"volume": {**VOLUME, "status": "error"}}
    other = {"user_message": "extend volume:Volume Driver failed to extend volume.", "resource_uuid": "v2"}
    script = (
        with_versions(Script())
        .on("GET", "/volumes/v1", json_response(200, failed))
        .on("GET", "/messages", json_response(200, {"messages": [other]}))
    )
    h = make(no_auth(), script)
    with pytest.raises(CloudError, match=r"^volume v1 went to status error$"):
        await h.client.storage.wait_for_volume("v1", VolumeStatus.AVAILABLE, timeout_seconds=10)


def test_password_auth_bodies_match_keystone() -> None:
    by_name = auth_body(password())
    assert by_name == {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {"name": "demo", "domain": {"id": "default"}, "password": "pw-very-secret"}
                },
            },
            "scope": {"project": {"name": "demo", "domain": {"id": "default"}}},
        }
    }
    by_id = auth_body(
        CloudSettings(
            auth_type=AuthType.PASSWORD, user_id="u1", password="p", project_id="p1", project_name="ignored"
        )
    )
    assert by_id["auth"]["identity"]["password"]["user"] == {"id": "u1", "password": "p"}
    assert by_id["auth"]["scope"] == {"project": {"id": "p1"}}
    by_credential_name = auth_body(
        CloudSettings(
            auth_type=AuthType.APPLICATION_CREDENTIAL,
            application_credential_name="ci",
            application_credential_secret="s",
            username="demo",
            user_domain_name="Default",
        )
    )
    assert by_credential_name["auth"]["identity"]["application_credential"] == {
        "secret": "s",
        "name": "ci",
        "user": {"name": "demo", "domain": {"name": "Default"}},
    }


async def test_unreachable_cloud_makes_readiness_say_why() -> None:
    port = free_port()  # nothing listens there
    settings = CloudSettings(
        auth_type=AuthType.NONE,
        project_id="p1",
        endpoint_overrides={
            STORAGE: f"http://127.0.0.1:{port}/volume/v3/p1",
            COMPUTE: f"http://127.0.0.1:{port}/c",
        },
    )
    clock = FakeClock()
    metrics = Metrics()
    async with CloudClient(settings, metrics, clock=clock, rng=random.Random(1)) as client:
        reason = await client.readiness()
    assert (
        reason is not None
        and reason.startswith("cloud not ready: volume API GET")
        and "ConnectError" in reason
    )
    # Connection refused means the request never left: retried with growing, jittered pauses, for
    # api_timeout from the first failure when the call has no deadline.
    assert len(clock.sleeps) >= 5 and sum(clock.sleeps) < HttpTuning().timeout_seconds
    assert (
        metrics.registry.get_sample_value(
            "csi_xloud_cloud_requests_total", {"service": "volume", "method": "GET", "status": "error"}
        )
        == len(clock.sleeps) + 1
    )


@pytest.mark.parametrize(
    ("method", "path", "body", "operation"),
    [
        ("GET", "volumes/6a8f2b1c-0d4e-4f5a-9b7c-8d9e0f1a2b3c", None, "GET volumes/{id}"),
        ("POST", "volumes/6a8f2b1c-0d4e-4f5a-9b7c-8d9e0f1a2b3c/action", {"os-extend": {"new_size": 2}},
         "POST volumes/{id}/action os-extend"),
        ("GET", "os-quota-sets/0123456789abcdef0123456789abcdef", None, "GET os-quota-sets/{id}"),
        ("DELETE", "servers/6a8f2b1c-0d4e-4f5a-9b7c-8d9e0f1a2b3c/os-volume_attachments/"
         "7b8f2b1c-0d4e-4f5a-9b7c-8d9e0f1a2b3c", None, "DELETE servers/{id}/os-volume_attachments/{id}"),
        ("GET", "http://cloud.example.test/volume/v3/", None, "GET versions"),
        ("POST", "auth/tokens", {"auth": {}}, "POST auth/tokens"),
    ],
)
def test_operations_are_named_without_ids(method: str, path: str, body: Any, operation: str) -> None:
    """The operation label has one value per kind of call, whatever resource it touched."""
    from csi_xloud.cloud.http import operation_of

    assert operation_of(method, path, body) == operation
