"""The gRPC server over a real unix socket: Identity, errors, logging, secrets, stale and live sockets."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from csi_xloud import DRIVER_NAME, __version__
from csi_xloud._proto import csi_pb2, csi_pb2_grpc
from csi_xloud.cloud import errors as cloud_errors
from csi_xloud.config import Endpoint
from csi_xloud.identity import NOT_READY_METADATA_KEY, IdentityService
from csi_xloud.metrics import Metrics
from csi_xloud.rpc.errors import InvalidArgument
from csi_xloud.rpc.interceptors import CallInterceptor
from csi_xloud.rpc.server import CsiServer, EndpointInUse, Registration
from csi_xloud.rpc.types import Context

SECRET = "s3cr3t-value-never-logged"


class ScriptedController(csi_pb2_grpc.ControllerServicer):
    """A controller whose CreateVolume does what the request's name asks, to exercise the plumbing."""

    async def CreateVolume(
        self, request: csi_pb2.CreateVolumeRequest, context: Context
    ) -> csi_pb2.CreateVolumeResponse:
        if request.name == "not-found":
            raise cloud_errors.NotFound("volume vol-1 could not be found", status=404, request_id="req-cloud")
        if request.name == "bad":
            raise InvalidArgument("name is required")
        if request.name == "boom":
            raise RuntimeError("unexpected crash")
        if request.name == "aborted-by-handler":
            await context.abort(grpc.StatusCode.ABORTED, "busy")
        return csi_pb2.CreateVolumeResponse(volume=csi_pb2.Volume(volume_id="vol-1", capacity_bytes=1 << 30))


def identity_registration(identity: IdentityService) -> Registration:
    return lambda server: csi_pb2_grpc.add_IdentityServicer_to_server(identity, server)


async def started(path: Path, *registrations: Registration, metrics: Metrics | None = None) -> CsiServer:
    server = CsiServer(
        Endpoint("unix", str(path)), registrations, [CallInterceptor(metrics or Metrics())], 1.0
    )
    await server.start()
    return server


@pytest.fixture
async def served(short_tmp: Path) -> AsyncIterator[tuple[Path, Metrics]]:
    path = short_tmp / "csi.sock"
    metrics = Metrics()
    server = await started(
        path,
        identity_registration(IdentityService(controller=True)),
        lambda s: csi_pb2_grpc.add_ControllerServicer_to_server(ScriptedController(), s),
        metrics=metrics,
    )
    try:
        yield path, metrics
    finally:
        await server.stop(0)


async def test_identity_over_a_unix_socket(served: tuple[Path, Metrics]) -> None:
    path, _ = served
    async with grpc.aio.insecure_channel(f"unix://{path}") as channel:
        stub = csi_pb2_grpc.IdentityStub(channel)
        info = await stub.GetPluginInfo(csi_pb2.GetPluginInfoRequest())
        caps = await stub.GetPluginCapabilities(csi_pb2.GetPluginCapabilitiesRequest())
        probe = await stub.Probe(csi_pb2.ProbeRequest())
    assert (info.name, info.vendor_version) == (DRIVER_NAME, __version__)
    services = {c.service.type for c in caps.capabilities if c.HasField("service")}
    assert services == {
        csi_pb2.PluginCapability.Service.CONTROLLER_SERVICE,
        csi_pb2.PluginCapability.Service.GROUP_CONTROLLER_SERVICE,
        csi_pb2.PluginCapability.Service.VOLUME_ACCESSIBILITY_CONSTRAINTS,
    }
    expansion = [c.volume_expansion.type for c in caps.capabilities if c.HasField("volume_expansion")]
    assert expansion == [csi_pb2.PluginCapability.VolumeExpansion.ONLINE]
    assert probe.HasField("ready") and probe.ready.value is True


async def test_node_mode_does_not_advertise_the_controller(short_tmp: Path) -> None:
    server = await started(short_tmp / "n.sock", identity_registration(IdentityService(controller=False)))
    try:
        async with grpc.aio.insecure_channel(f"unix://{short_tmp / 'n.sock'}") as channel:
            caps = await csi_pb2_grpc.IdentityStub(channel).GetPluginCapabilities(
                csi_pb2.GetPluginCapabilitiesRequest()
            )
    finally:
        await server.stop(0)
    services = {c.service.type for c in caps.capabilities if c.HasField("service")}
    assert csi_pb2.PluginCapability.Service.CONTROLLER_SERVICE not in services
    assert csi_pb2.PluginCapability.Service.GROUP_CONTROLLER_SERVICE not in services


async def test_probe_reports_not_ready_with_the_reasons(short_tmp: Path) -> None:
    async def cloud_down() -> str | None:
        return "cloud: authentication failed"

    async def tools_ok() -> str | None:
        return None

    async def broken() -> str | None:
        raise OSError("metadata unreachable")

    identity = IdentityService(controller=True, checks=[cloud_down, tools_ok, broken])
    server = await started(short_tmp / "p.sock", identity_registration(identity))
    try:
        async with grpc.aio.insecure_channel(f"unix://{short_tmp / 'p.sock'}") as channel:
            call = csi_pb2_grpc.IdentityStub(channel).Probe(csi_pb2.ProbeRequest())
            response = await call
            trailers = dict(await call.trailing_metadata())
    finally:
        await server.stop(0)
    assert response.ready.value is False
    assert "cloud: authentication failed" in trailers[NOT_READY_METADATA_KEY]
    assert "metadata unreachable" in trailers[NOT_READY_METADATA_KEY]


@pytest.mark.parametrize(
    ("name", "code", "fragment"),
    [
        ("not-found", grpc.StatusCode.NOT_FOUND, "vol-1 could not be found"),
        ("bad", grpc.StatusCode.INVALID_ARGUMENT, "name is required"),
        ("boom", grpc.StatusCode.INTERNAL, "request id req-"),
        ("aborted-by-handler", grpc.StatusCode.ABORTED, "busy"),
    ],
)
async def test_errors_map_to_codes_from_one_table(
    served: tuple[Path, Metrics],
    name: str,
    code: grpc.StatusCode,
    fragment: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    path, metrics = served
    caplog.set_level(logging.INFO)
    async with grpc.aio.insecure_channel(f"unix://{path}") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            await csi_pb2_grpc.ControllerStub(channel).CreateVolume(csi_pb2.CreateVolumeRequest(name=name))
    assert failure.value.code() == code
    assert fragment in (failure.value.details() or "")
    # The status reaches the client as abort() sends it; the server logs and counts just after.
    counted = None
    for _ in range(100):
        counted = metrics.registry.get_sample_value(
            "csi_xloud_rpc_calls_total", {"method": "CreateVolume", "code": code.name}
        )
        if counted is not None:
            break
        await asyncio.sleep(0.01)
    assert counted == 1.0
    assert any(f"CreateVolume {code.name}" in record.getMessage() for record in caplog.records)
    if name == "boom":
        tracebacks = [r for r in caplog.records if r.exc_info]
        assert tracebacks and "unexpected crash" in str(tracebacks[0].exc_info[1])  # type: ignore[index]


async def test_info_logs_one_line_per_state_change_and_nothing_for_probes(
    served: tuple[Path, Metrics], caplog: pytest.LogCaptureFixture
) -> None:
    path, _ = served
    caplog.set_level(logging.INFO)
    async with grpc.aio.insecure_channel(f"unix://{path}") as channel:
        identity = csi_pb2_grpc.IdentityStub(channel)
        for _ in range(3):
            await identity.Probe(csi_pb2.ProbeRequest())
        await identity.GetPluginCapabilities(csi_pb2.GetPluginCapabilitiesRequest())
        await csi_pb2_grpc.ControllerStub(channel).CreateVolume(csi_pb2.CreateVolumeRequest(name="pvc-1"))
    lines = [(r.levelname, r.getMessage()) for r in caplog.records if r.name.startswith("csi_xloud")]
    calls = [message for level, message in lines if level == "INFO" and "ms" in message]
    assert len(calls) == 1 and calls[0].startswith("CreateVolume OK "), lines
    assert calls[0].endswith("ms name=pvc-1 -> volume_id=vol-1"), calls
    assert [message for _, message in lines if "probe" in message.lower()] == ["probe: ready"]  # once, not per Probe


async def test_probe_warns_when_readiness_changes_not_at_every_probe(
    short_tmp: Path, caplog: pytest.LogCaptureFixture
) -> None:
    reason: list[str | None] = ["cloud: authentication failed"]

    async def cloud() -> str | None:
        return reason[0]

    server = await started(short_tmp / "p.sock", identity_registration(IdentityService(controller=True, checks=[cloud])))
    caplog.set_level(logging.INFO)
    try:
        async with grpc.aio.insecure_channel(f"unix://{short_tmp / 'p.sock'}") as channel:
            identity = csi_pb2_grpc.IdentityStub(channel)
            for answer in ("cloud: authentication failed", "cloud: authentication failed", None, None, "cloud: down"):
                reason[0] = answer
                await identity.Probe(csi_pb2.ProbeRequest())
    finally:
        await server.stop(0)
    probes = [(r.levelname, r.getMessage()) for r in caplog.records if r.getMessage().startswith("probe:")]
    assert probes == [
        ("WARNING", "probe: not ready: cloud: authentication failed"),
        ("INFO", "probe: ready"),
        ("WARNING", "probe: not ready: cloud: down"),
    ]


async def test_debug_logs_carry_no_secret(
    served: tuple[Path, Metrics], caplog: pytest.LogCaptureFixture
) -> None:
    path, _ = served
    caplog.set_level(logging.DEBUG)
    request = csi_pb2.CreateVolumeRequest(
        name="pvc-1",
        secrets={"password": SECRET, "token": SECRET},
        parameters={"type": "standard"},
        volume_content_source=csi_pb2.VolumeContentSource(
            snapshot=csi_pb2.VolumeContentSource.SnapshotSource(snapshot_id="snap-1")
        ),
    )
    async with grpc.aio.insecure_channel(f"unix://{path}") as channel:
        await csi_pb2_grpc.ControllerStub(channel).CreateVolume(request)
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert "CreateVolume request:" in text and "pvc-1" in text and "snap-1" in text
    assert "<redacted>" in text
    assert SECRET not in text


async def test_stale_socket_file_is_replaced(short_tmp: Path) -> None:
    path = short_tmp / "stale.sock"
    leftover = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    leftover.bind(str(path))
    leftover.close()  # the file stays, nobody listens: what a crashed driver leaves behind
    assert path.is_socket()
    server = await started(path, identity_registration(IdentityService(controller=False)))
    try:
        async with grpc.aio.insecure_channel(f"unix://{path}") as channel:
            info = await csi_pb2_grpc.IdentityStub(channel).GetPluginInfo(csi_pb2.GetPluginInfoRequest())
        assert info.name == DRIVER_NAME
    finally:
        await server.stop(0)
    assert not path.exists()


async def test_second_server_on_a_live_socket_is_refused(short_tmp: Path) -> None:
    path = short_tmp / "live.sock"
    first = await started(path, identity_registration(IdentityService(controller=False)))
    try:
        with pytest.raises(EndpointInUse, match="already listening"):
            await started(path, identity_registration(IdentityService(controller=False)))
        async with grpc.aio.insecure_channel(f"unix://{path}") as channel:  # the first one still serves
            await csi_pb2_grpc.IdentityStub(channel).GetPluginInfo(csi_pb2.GetPluginInfoRequest())
    finally:
        await first.stop(0)


async def test_a_regular_file_in_the_way_is_not_removed(short_tmp: Path) -> None:
    path = short_tmp / "data.sock"
    path.write_text("precious")
    with pytest.raises(EndpointInUse, match="not a socket"):
        await started(path, identity_registration(IdentityService(controller=False)))
    assert path.read_text() == "precious"


async def test_stop_lets_a_call_in_flight_finish_and_refuses_new_ones(short_tmp: Path) -> None:
    path = short_tmp / "grace.sock"
    release = asyncio.Event()

    async def slow_check() -> str | None:
        await release.wait()
        return None

    server = CsiServer(
        Endpoint("unix", str(path)),
        [identity_registration(IdentityService(controller=False, checks=[slow_check]))],
        [CallInterceptor(Metrics())],
        grace_seconds=5.0,
    )
    await server.start()
    async with grpc.aio.insecure_channel(f"unix://{path}") as channel:
        stub = csi_pb2_grpc.IdentityStub(channel)
        in_flight = asyncio.ensure_future(stub.Probe(csi_pb2.ProbeRequest()))
        await asyncio.sleep(0.2)
        stopping = asyncio.ensure_future(server.stop())
        await asyncio.sleep(0.2)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.GetPluginInfo(csi_pb2.GetPluginInfoRequest(), timeout=2)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        release.set()
        response = await in_flight
        await stopping
    assert response.ready.value is True
