"""Secrets and access: no secret in any log line or metric, TLS verified by default with a CA bundle
option, the node plugin without cloud credentials, and the rule for a credentials file others can read."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import sqlite3
import ssl
import stat
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import httpx
import pytest
import yaml

from csi_xloud._proto import csi_pb2
from csi_xloud.cloud.client import CloudClient
from csi_xloud.cloud.models import VolumeStatus
from csi_xloud.cloud.settings import load_cloud_settings
from csi_xloud.demo.orchestrator import RetryPolicy, mount_capability
from csi_xloud.emulator.process import EmulatorProcess, free_port
from csi_xloud.metrics import Metrics
from tests.faults.lifecycle import GIB, read_payload, write_payload
from tests.faults.support import MEMBER_CLOUD, FaultCluster, Sidecars, installation, is_root, settled_census

needs_root = pytest.mark.skipif(not is_root(), reason="attaches loop devices and mounts: run as root")

CSI_SECRETS = {
    "csi-password": "Tr0ub4dor-" + uuid.uuid4().hex,
    "csi-token": "tok-" + uuid.uuid4().hex,
}


def cloud_secrets(emulator: EmulatorProcess) -> set[str]:
    """Every password and credential secret in the emulator's clouds.yaml, and every token it issued."""
    clouds = yaml.safe_load(emulator.clouds_yaml.read_text())["clouds"]
    values = set()
    for entry in clouds.values():
        for key in ("password", "application_credential_secret", "token"):
            if entry["auth"].get(key):
                values.add(str(entry["auth"][key]))
    with contextlib.closing(
        sqlite3.connect(f"file:{emulator.data_dir / 'state.sqlite'}?mode=ro", uri=True)
    ) as db:
        values |= {row[0] for row in db.execute("SELECT id FROM records WHERE kind = 'token'")}
    return values


async def lifecycle_with_secrets(co: Sidecars, node: str) -> None:
    """Every RPC that carries CSI secrets gets them, as the sidecars pass a StorageClass's secrets."""
    secrets = dict(CSI_SECRETS)
    ctl, stub = co.controller, co.node_stubs[node]
    kubelet = co.nodes[node].kubelet
    name = f"pvc-{uuid.uuid4()}"
    created = await co.call(
        "CreateVolume",
        ctl.CreateVolume,
        csi_pb2.CreateVolumeRequest(
            name=name,
            capacity_range=csi_pb2.CapacityRange(required_bytes=GIB),
            volume_capabilities=[mount_capability()],
            secrets=secrets,
        ),
    )
    volume_id = created.volume.volume_id
    cap = mount_capability()
    published = await co.call(
        "ControllerPublishVolume",
        ctl.ControllerPublishVolume,
        csi_pb2.ControllerPublishVolumeRequest(
            volume_id=volume_id, node_id=node, volume_capability=cap, secrets=secrets
        ),
    )
    staging = kubelet.staging(volume_id, name, block=False)
    staging.mkdir(parents=True, exist_ok=True)
    pod = str(uuid.uuid4())
    target = kubelet.target(pod, name, block=False)
    target.parent.mkdir(parents=True, exist_ok=True)
    await co.call(
        "NodeStageVolume",
        stub.NodeStageVolume,
        csi_pb2.NodeStageVolumeRequest(
            volume_id=volume_id,
            publish_context=published.publish_context,
            staging_target_path=str(staging),
            volume_capability=cap,
            secrets=secrets,
        ),
    )
    await co.call(
        "NodePublishVolume",
        stub.NodePublishVolume,
        csi_pb2.NodePublishVolumeRequest(
            volume_id=volume_id,
            publish_context=published.publish_context,
            staging_target_path=str(staging),
            target_path=str(target),
            volume_capability=cap,
            secrets=secrets,
        ),
    )
    written = await asyncio.to_thread(write_payload, target, 1 << 20)
    assert await asyncio.to_thread(read_payload, target) == written
    await co.call(
        "ValidateVolumeCapabilities",
        ctl.ValidateVolumeCapabilities,
        csi_pb2.ValidateVolumeCapabilitiesRequest(
            volume_id=volume_id, volume_capabilities=[cap], secrets=secrets
        ),
    )
    snapshot_request = csi_pb2.CreateSnapshotRequest(
        source_volume_id=volume_id, name=f"snap-{uuid.uuid4()}", secrets=secrets
    )
    while True:  # as the snapshotter, until ready_to_use
        snapshot = await co.call("CreateSnapshot", ctl.CreateSnapshot, snapshot_request)
        if snapshot.snapshot.ready_to_use:
            break
        await asyncio.sleep(0.1)
    await co.call("ListSnapshots", ctl.ListSnapshots, csi_pb2.ListSnapshotsRequest(secrets=secrets))
    await co.call(
        "DeleteSnapshot",
        ctl.DeleteSnapshot,
        csi_pb2.DeleteSnapshotRequest(snapshot_id=snapshot.snapshot.snapshot_id, secrets=secrets),
    )
    await co.call(
        "NodeUnpublishVolume",
        stub.NodeUnpublishVolume,
        csi_pb2.NodeUnpublishVolumeRequest(volume_id=volume_id, target_path=str(target)),
    )
    await co.call(
        "NodeUnstageVolume",
        stub.NodeUnstageVolume,
        csi_pb2.NodeUnstageVolumeRequest(volume_id=volume_id, staging_target_path=str(staging)),
    )
    await co.call(
        "ControllerUnpublishVolume",
        ctl.ControllerUnpublishVolume,
        csi_pb2.ControllerUnpublishVolumeRequest(volume_id=volume_id, node_id=node, secrets=secrets),
    )
    await co.call("DeleteVolume", ctl.DeleteVolume,
                  csi_pb2.DeleteVolumeRequest(volume_id=volume_id, secrets=secrets))  # fmt: skip


@needs_root
async def test_no_secret_in_any_log_line_or_metric_at_debug_level() -> None:
    options = {"op_seconds": 0.05, "log_level": "DEBUG", "serve_metrics": True, "token_ttl": 3.0}
    with installation("csx-secrets-", **options) as cluster:
        assert cluster.emulator is not None
        node = cluster.server_ids()[0]
        async with Sidecars(
            cluster.controller_socket, cluster.node_handles, RetryPolicy(max_attempts=40)
        ) as co:
            await co.wait_ready()
            # Failures and renewals log too: a refused create, and a token that expires mid-run.
            cluster.emulator.set_faults([{"method": "POST", "path": r"/volumes$", "status": 503, "count": 1}])
            await lifecycle_with_secrets(co, node)
            await asyncio.sleep(3.2)
            await lifecycle_with_secrets(co, node)
            assert (await settled_census(cluster.emulator)).total == 0
        metrics = await scrape(cluster)
        logs = cluster.logs()
        secrets = cloud_secrets(cluster.emulator) | set(CSI_SECRETS.values())
    assert len(secrets) >= 4  # passwords, the credential secret, tokens, the CSI secrets
    controller_log = logs["controller.log"]
    assert "CreateVolume request:" in controller_log and "<redacted>" in controller_log, (
        "no debug body logged"
    )
    assert "NodeStageVolume request:" in "".join(logs.values())
    leaks = [
        (source, value[:6] + "...")
        for source, text in {**logs, **metrics}.items()
        for value in secrets
        if value in text
    ]
    assert leaks == [], f"secret values found in: {leaks}"
    assert len(metrics) == 1 + len(cluster.nodes)


async def scrape(cluster: FaultCluster) -> dict[str, str]:
    async with httpx.AsyncClient(timeout=5) as http:
        return {
            f"metrics of {label}": (await http.get(f"http://127.0.0.1:{port}/metrics")).text
            for label, port in cluster.metrics_ports.items()
        }


# -- TLS ------------------------------------------------------------------------------------------


def make_pki(folder: Path) -> tuple[Path, Path, Path]:
    """A self-signed CA and a server certificate for 127.0.0.1 signed by it: (ca, cert, key)."""
    ca_key, ca, key, csr, cert, ext = (folder / n for n in ("ca.key", "ca.pem", "srv.key", "srv.csr", "srv.pem",
                                                             "ext.cnf"))  # fmt: skip
    run = [("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca,
            "-days", "2", "-subj", "/CN=csi-xloud test CA"),
           ("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr,
            "-subj", "/CN=127.0.0.1")]  # fmt: skip
    for argv in run:
        subprocess.run([str(a) for a in argv], check=True, capture_output=True)
    ext.write_text("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
    subprocess.run(
        [str(a) for a in ("openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
                          "-out", cert, "-days", "2", "-extfile", ext)],
        check=True, capture_output=True,
    )  # fmt: skip
    return ca, cert, key


@contextlib.asynccontextmanager
async def tls_proxy(upstream_port: int, cert: Path, key: Path) -> AsyncIterator[int]:
    """A TLS endpoint on 127.0.0.1 that forwards every connection to the emulator's plain port."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async def serve(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        up_r, up_w = await asyncio.open_connection("127.0.0.1", upstream_port)
        await asyncio.gather(pipe(client_r, up_w), pipe(up_r, client_w))

    port = free_port()
    server = await asyncio.start_server(serve, "127.0.0.1", port, ssl=context)
    try:
        yield port
    finally:
        server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 2)


@pytest.fixture(scope="module")
def tls_cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EmulatorProcess, Path]]:
    folder = tmp_path_factory.mktemp("tls")
    with EmulatorProcess(folder / "cloud", op_seconds=0.02) as emulator:
        yield emulator, folder


def tls_clouds_yaml(emulator: EmulatorProcess, folder: Path, port: int, **settings: object) -> Path:
    """The member cloud, every endpoint behind the TLS proxy, plus the given settings."""
    entry = dict(yaml.safe_load(emulator.clouds_yaml.read_text())["clouds"][MEMBER_CLOUD])
    base = f"https://127.0.0.1:{port}"
    entry["auth"] = {**entry["auth"], "auth_url": f"{base}/identity/v3"}
    project = entry["auth"]["project_id"]
    entry["block_storage_endpoint_override"] = f"{base}/volume/v3/{project}"
    entry["compute_endpoint_override"] = f"{base}/compute/v2.1"
    entry.update(settings)
    path = folder / f"clouds-{uuid.uuid4().hex[:6]}.yaml"
    path.touch(mode=0o600)
    path.write_text(yaml.safe_dump({"clouds": {MEMBER_CLOUD: entry}}))
    return path


async def test_tls_is_verified_by_default_and_a_ca_bundle_makes_it_work(
    tls_cloud: tuple[EmulatorProcess, Path],
) -> None:
    emulator, folder = tls_cloud
    ca, cert, key = make_pki(folder)
    async with tls_proxy(emulator.port, cert, key) as port:
        default = load_cloud_settings(MEMBER_CLOUD, tls_clouds_yaml(emulator, folder, port), {})
        with_ca = load_cloud_settings(
            MEMBER_CLOUD, tls_clouds_yaml(emulator, folder, port, cacert=str(ca)), {}
        )
        insecure = load_cloud_settings(
            MEMBER_CLOUD, tls_clouds_yaml(emulator, folder, port, verify=False), {}
        )
        assert default.verify is True and default.tls_verify() is True  # on unless turned off
        async with CloudClient(default, Metrics()) as cloud:
            refusal = await cloud.readiness()
        assert refusal is not None and "certificate" in refusal.lower(), refusal
        async with CloudClient(with_ca, Metrics()) as cloud:
            assert await cloud.readiness() is None
            volume = await cloud.storage.create_volume("over-tls", 1)
            await cloud.storage.wait_for_volume(volume.id, VolumeStatus.AVAILABLE, timeout_seconds=20)
            await cloud.storage.delete_volume(volume.id)
            await cloud.storage.wait_for_volume_deleted(volume.id, timeout_seconds=20)
        async with CloudClient(insecure, Metrics()) as cloud:  # an explicit opt-out is honoured
            assert await cloud.readiness() is None


async def test_a_controller_process_reaches_the_cloud_through_its_ca_bundle(
    tls_cloud: tuple[EmulatorProcess, Path], short_tmp: Path
) -> None:
    emulator, folder = tls_cloud
    ca, cert, key = make_pki(folder)
    async with tls_proxy(emulator.port, cert, key) as port:
        for settings, ready in (({"cacert": str(ca)}, True), ({}, False)):
            config = tls_clouds_yaml(emulator, folder, port, **settings)
            socket = short_tmp / f"ctl-{ready}.sock"
            metrics_port = free_port()
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "csi_xloud", "driver", "--mode", "controller", "--endpoint",
                f"unix://{socket}", "--cloud", MEMBER_CLOUD, "--cloud-config", str(config),
                "--metrics-address", f"127.0.0.1:{metrics_port}",
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            try:
                for _ in range(200):
                    if socket.exists():
                        break
                    await asyncio.sleep(0.05)
                async with grpc.aio.insecure_channel(f"unix://{socket}") as channel:
                    from csi_xloud._proto import csi_pb2_grpc

                    probe = await csi_pb2_grpc.IdentityStub(channel).Probe(csi_pb2.ProbeRequest(), timeout=20)
                # Liveness stays green either way (a restart would not fix trust); readiness says why.
                assert probe.ready.value, settings
                readyz = await _first_readiness(metrics_port)
                assert (readyz.status_code == 200) is ready, readyz.text
                if not ready:
                    assert "cloud:" in readyz.text and "certificate" in readyz.text.lower(), readyz.text
            finally:
                process.terminate()
                await process.wait()


async def _first_readiness(port: int) -> httpx.Response:
    """GET /readyz once the driver's first round of readiness checks has run."""
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        for _ in range(200):
            with contextlib.suppress(httpx.TransportError):
                answer = await http.get("/readyz")
                if answer.text != "not checked yet\n":
                    return answer
            await asyncio.sleep(0.1)
    raise AssertionError("the driver never answered /readyz with a result")


# -- the node plugin holds no credentials ---------------------------------------------------------


async def test_the_node_plugin_never_reads_cloud_credentials(short_tmp: Path) -> None:
    """Every place clouds.yaml could be found is a FIFO: whoever opened one would block there."""
    home = short_tmp / "home"
    (home / ".config/openstack").mkdir(parents=True)
    kubelet, devices = short_tmp / "kubelet", short_tmp / "by-id"
    kubelet.mkdir()
    devices.mkdir()
    traps = [home / ".config/openstack/clouds.yaml", short_tmp / "clouds.yaml", short_tmp / "env-clouds.yaml"]
    for trap in traps:
        os.mkfifo(trap, 0o600)
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "OS_CLOUD": MEMBER_CLOUD,
        "OS_CLIENT_CONFIG_FILE": str(traps[2]),
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
    }
    socket = short_tmp / "node.sock"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-X", "importtime", "-m", "csi_xloud", "driver", "--mode", "node", "--endpoint",
        f"unix://{socket}", "--node-id", str(uuid.uuid4()), "--availability-zone", "zone-a", "--device-dir",
        str(devices), "--kubelet-dir", str(kubelet), "--metadata-url", "http://127.0.0.1:9",
        cwd=short_tmp, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        for _ in range(200):
            if socket.exists():
                break
            await asyncio.sleep(0.05)
        async with grpc.aio.insecure_channel(f"unix://{socket}") as channel:
            from csi_xloud._proto import csi_pb2_grpc

            # The socket file can appear a moment before the server listens on it (a loaded machine).
            info = await csi_pb2_grpc.NodeStub(channel).NodeGetInfo(
                csi_pb2.NodeGetInfoRequest(), timeout=10, wait_for_ready=True
            )
            probe = await csi_pb2_grpc.IdentityStub(channel).Probe(csi_pb2.ProbeRequest(), timeout=10)
        assert info.node_id and probe.ready.value
        for trap in traps:
            with pytest.raises(OSError) as nobody:
                os.close(os.open(trap, os.O_WRONLY | os.O_NONBLOCK))
            assert nobody.value.errno == errno.ENXIO, f"{trap.name} is held open by the node plugin"
    finally:
        process.terminate()
        _, stderr = await process.communicate()
    imported = [line.rsplit("|", 1)[-1].strip() for line in stderr.decode().splitlines() if "|" in line]
    assert "csi_xloud.osutil.mounts" in imported, "the import trace is missing"
    # The node shares the cloud's error classes (the one error table) and nothing else of it.
    credential_code = ("csi_xloud.cloud.settings", "csi_xloud.cloud.client", "csi_xloud.cloud.auth",
                       "csi_xloud.cloud.http", "csi_xloud.controller.service")  # fmt: skip
    assert not [m for m in imported if m.startswith(credential_code)]


# -- a credentials file others can read ----------------------------------------------------------
# The rule (refuse a clouds.yaml every user may read or write) is tested in tests/cloud and
# tests/foundation on plain files; here on the shape a Kubernetes Secret volume has: the file is a
# symlink (clouds.yaml -> ..data/clouds.yaml -> ..<timestamp>/clouds.yaml), lstat shows 0777, and
# the mode that counts is the target's (the Secret's defaultMode).


def secret_volume(folder: Path, text: str, mode: int) -> Path:
    """A folder laid out as the kubelet lays out a Secret volume; returns the clouds.yaml path in it."""
    volume = folder / f"secret-{mode:o}-{uuid.uuid4().hex[:6]}"
    timestamped = volume / "..2026_11_27_07_00_00.000000001"
    timestamped.mkdir(parents=True)
    (timestamped / "clouds.yaml").write_text(text)
    (timestamped / "clouds.yaml").chmod(mode)
    (volume / "..data").symlink_to(timestamped.name)
    (volume / "clouds.yaml").symlink_to("..data/clouds.yaml")
    return volume / "clouds.yaml"


def controller_start(config: Path, folder: Path) -> tuple[int | None, str]:
    """Start a controller on config; (exit code or None while it serves, its output)."""
    socket, log = folder / f"c-{uuid.uuid4().hex[:6]}.sock", folder / f"c-{uuid.uuid4().hex[:6]}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "csi_xloud", "driver", "--mode", "controller", "--endpoint", f"unix://{socket}",
             "--cloud", MEMBER_CLOUD, "--cloud-config", str(config)],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        for _ in range(300):
            if socket.exists() or process.poll() is not None:
                break
            subprocess.run(["sleep", "0.05"], check=False)
        code = process.poll()
    finally:
        process.terminate()
        process.wait()
    return code, log.read_text()


@pytest.mark.parametrize(("mode", "starts"), [(0o440, True), (0o400, True), (0o644, False)])
def test_credentials_in_a_secret_volume_are_judged_by_the_files_mode(
    tls_cloud: tuple[EmulatorProcess, Path], short_tmp: Path, mode: int, starts: bool
) -> None:
    emulator, _ = tls_cloud
    config = secret_volume(short_tmp, emulator.clouds_yaml.read_text(), mode)
    assert stat.S_IMODE(config.lstat().st_mode) == 0o777  # what a symlink shows
    code, output = controller_start(config, short_tmp)
    password = yaml.safe_load(emulator.clouds_yaml.read_text())["clouds"][MEMBER_CLOUD]["auth"]["password"]
    assert password not in output
    if starts:
        assert code is None, output
    else:
        assert code == 2 and f"mode {mode:04o}" in output, output
