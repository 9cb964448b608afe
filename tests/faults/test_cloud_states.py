"""Resources the cloud leaves in a bad state: a volume stuck in `creating`, a volume or a snapshot that
goes to `error`, and an identity token that expires mid-run. The controller runs in-process on a real
socket with short timeouts (the process's defaults are minutes), over an emulator whose transitions take
a second, long enough for an operator's status reset to land while the controller waits."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest

from csi_xloud._proto import csi_pb2
from csi_xloud.demo.orchestrator import PersistentVolume, RetryPolicy, mount_capability
from csi_xloud.emulator.process import EmulatorProcess
from tests.faults.lifecycle import GIB, lifecycle
from tests.faults.support import (
    TOKEN_PATH,
    Operator,
    Sidecars,
    controller_on_socket,
    count,
    installation,
    is_root,
    member_client,
    settled_census,
    wait_for_request,
)

OP_SECONDS = 2.0  # the margin an operator's reset has to land while the controller waits
CREATE_VOLUME = "POST /volume/v3/{id}/volumes"
CREATE_SNAPSHOT = "POST /volume/v3/{id}/snapshots"


@pytest.fixture(scope="module")
def slow_cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    with EmulatorProcess(tmp_path_factory.mktemp("states") / "cloud", op_seconds=OP_SECONDS) as emulator:
        yield emulator


@pytest.fixture
async def co(slow_cloud: EmulatorProcess, short_tmp: Path) -> AsyncIterator[Sidecars]:
    """Sidecars over an in-process controller; the cloud must be empty afterwards."""
    async with (
        controller_on_socket(slow_cloud, short_tmp) as controller,
        Sidecars(controller.socket, {}, RetryPolicy(max_attempts=40, max_delay_seconds=0.5)) as sidecars,
    ):
        yield sidecars
    slow_cloud.clear_faults()
    left = await settled_census(slow_cloud, seconds=3 * OP_SECONDS + 5)
    assert left.total == 0, f"orphans at the emulator: {left}: {left!r}"


async def volume_ids_named(emulator: EmulatorProcess, name: str) -> list[str]:
    async with member_client(emulator) as cloud:
        return [v.id for v in await cloud.storage.find_volume_by_name(name)]


async def create_once(co: Sidecars, name: str) -> csi_pb2.CreateVolumeResponse:
    request = csi_pb2.CreateVolumeRequest(
        name=name,
        capacity_range=csi_pb2.CapacityRange(required_bytes=GIB),
        volume_capabilities=[mount_capability()],
    )
    return await co.controller.CreateVolume(request, timeout=30)


async def test_a_volume_stuck_in_creating_answers_deadline_exceeded_until_it_settles(
    slow_cloud: EmulatorProcess, co: Sidecars
) -> None:
    name = "pvc-stuck"
    baseline = count(slow_cloud, CREATE_VOLUME)
    first = asyncio.ensure_future(create_once(co, name))
    await wait_for_request(slow_cloud, CREATE_VOLUME, baseline)
    [volume_id] = await volume_ids_named(slow_cloud, name)
    async with Operator(slow_cloud) as operator:
        await operator.reset("volumes", volume_id, "creating")  # its transition is forgotten: stuck
        with pytest.raises(grpc.aio.AioRpcError) as stuck:
            await first
        assert stuck.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED, stuck.value.details()
        with pytest.raises(grpc.aio.AioRpcError) as again:  # the sidecar's retry waits on the same volume
            await create_once(co, name)
        assert again.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        condition = await co.controller.ControllerGetVolume(
            csi_pb2.ControllerGetVolumeRequest(volume_id=volume_id)
        )
        assert condition.status.volume_condition.abnormal, "a volume stuck past stuck_seconds is abnormal"
        assert await volume_ids_named(slow_cloud, name) == [volume_id], "a retry made another volume"
        await operator.reset("volumes", volume_id, "available")  # the operator repairs it
    pv = await co.provision(GIB, mount_capability(), name=name)
    assert pv.volume_id == volume_id
    await co.delete(pv)


async def test_a_volume_that_goes_to_error_is_replaced_by_the_retry(
    slow_cloud: EmulatorProcess, co: Sidecars
) -> None:
    name = "pvc-error"
    baseline = count(slow_cloud, CREATE_VOLUME)
    first = asyncio.ensure_future(create_once(co, name))
    await wait_for_request(slow_cloud, CREATE_VOLUME, baseline)
    [broken] = await volume_ids_named(slow_cloud, name)
    async with Operator(slow_cloud) as operator:
        await operator.reset("volumes", broken, "error")
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await first
    assert failed.value.code() == grpc.StatusCode.INTERNAL
    assert broken in (failed.value.details() or "")
    pv = await co.provision(GIB, mount_capability(), name=name)  # the CO's retry
    assert pv.volume_id != broken
    assert await volume_ids_named(slow_cloud, name) == [pv.volume_id], "the failed volume was not deleted"
    await co.delete(pv)


async def test_a_snapshot_that_goes_to_error_is_replaced_by_the_retry(
    slow_cloud: EmulatorProcess, co: Sidecars
) -> None:
    pv: PersistentVolume = await co.provision(GIB, mount_capability())
    try:
        request = csi_pb2.CreateSnapshotRequest(source_volume_id=pv.volume_id, name="snap-error")
        first = await co.controller.CreateSnapshot(request)
        assert not first.snapshot.ready_to_use
        async with Operator(slow_cloud) as operator:
            await operator.reset("snapshots", first.snapshot.snapshot_id, "error")
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await co.controller.CreateSnapshot(request)
        assert failed.value.code() == grpc.StatusCode.INTERNAL, failed.value.details()
        snapshot = await co.snapshot(pv, name="snap-error")  # the snapshotter's retry, until ready
        assert snapshot.snapshot_id != first.snapshot.snapshot_id
        await co.delete_snapshot(snapshot.snapshot_id)
    finally:
        await co.delete(pv)


@pytest.mark.skipif(not is_root(), reason="attaches loop devices: run as root")
async def test_tokens_expiring_mid_run_are_renewed_without_the_sidecar_noticing() -> None:
    # DEBUG: the refused requests are read from the controller's cloud request lines, which are debug details.
    options = {"servers": "node-a,node-b", "op_seconds": 0.05, "token_ttl": 2.0, "log_level": "DEBUG"}
    with installation("csx-token-", **options) as cluster:
        assert cluster.emulator is not None
        node_a, node_b = cluster.server_ids()
        policy = RetryPolicy(max_attempts=30)
        async with Sidecars(cluster.controller_socket, cluster.node_handles, policy) as co:
            await co.wait_ready()
            before = count(cluster.emulator, TOKEN_PATH)
            results = []
            for _ in range(3):
                await asyncio.sleep(2.5)  # the token has expired by the next call
                results.append(await lifecycle(co, node_a, node_b))
            # A request sent with a live token and held past its expiry meets a 401 at the cloud.
            cluster.emulator.set_faults([{"method": "GET", "path": r"/volumes/[0-9a-f-]{36}$", "delay": 2.5}])
            results.append(await lifecycle(co, node_a, node_b))
            issued = count(cluster.emulator, TOKEN_PATH) - before
            refused = [line for line in cluster.logs()["controller.log"].splitlines() if "-> 401" in line]
            assert all(result.intact for result in results)
            assert issued >= 4, f"only {issued} tokens issued over four expiries"
            assert refused, "no request met an expired token"
            assert co.retry_total == 0, f"an expired token reached the sidecar: {dict(co.retries)}"
            assert (await settled_census(cluster.emulator)).total == 0
