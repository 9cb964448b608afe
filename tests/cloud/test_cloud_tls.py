"""TLS: verification is on by default, a CA bundle (`cacert`) is trusted, and `verify: false` turns it off."""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from csi_xloud.cloud.client import CloudClient
from csi_xloud.cloud.errors import Unavailable
from csi_xloud.cloud.settings import COMPUTE, STORAGE, load_cloud_settings
from csi_xloud.metrics import Metrics

VERSIONS = {"versions": [{"id": "v3.0", "status": "CURRENT", "version": "3.71", "min_version": "3.0"}]}


class Versions(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps(VERSIONS).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def https_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """An HTTPS server on 127.0.0.1 with a fresh self-signed certificate; yields its URL and the cert."""
    if shutil.which("openssl") is None:
        pytest.fail("the openssl command is needed to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), Versions)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", cert
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def env_for(url: str, **extra: str) -> dict[str, str]:
    return {
        "OS_AUTH_TYPE": "none",
        "OS_PROJECT_ID": "p1",
        "OS_BLOCK_STORAGE_ENDPOINT_OVERRIDE": f"{url}/volume/v3/p1",
        "OS_COMPUTE_ENDPOINT_OVERRIDE": f"{url}/compute/v2.1",
        **extra,
    }


async def discover(env: dict[str, str]) -> str:
    settings = load_cloud_settings(None, None, env, search_paths=[])
    assert STORAGE in settings.endpoint_overrides and COMPUTE in settings.endpoint_overrides
    async with CloudClient(settings, Metrics()) as client:
        return str((await client.storage.versions()).max)


async def test_unknown_certificate_is_refused_by_default(https_server: tuple[str, Path]) -> None:
    url, _ = https_server
    with pytest.raises(Unavailable, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        await discover(env_for(url))


async def test_cacert_is_trusted(https_server: tuple[str, Path]) -> None:
    url, cert = https_server
    assert await discover(env_for(url, OS_CACERT=str(cert))) == "3.71"


async def test_insecure_turns_verification_off(https_server: tuple[str, Path]) -> None:
    url, _ = https_server
    assert await discover(env_for(url, OS_INSECURE="true")) == "3.71"
