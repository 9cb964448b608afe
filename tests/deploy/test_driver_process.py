"""The node plugin starts from exactly the flags the DaemonSet gives it and answers on its socket."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import grpc
from deploy_support import Obj, container, expanded_args, one

from csi_xloud import DRIVER_NAME
from csi_xloud._proto import csi_pb2, csi_pb2_grpc
from csi_xloud.osutil.mounts import check_mount_options

# kubelet's option for CSIDriver.seLinuxMount: context=%q of the pod's label.
KUBELET_SELINUX_OPTION = 'context="system_u:object_r:container_file_t:s0:c98,c99"'


def wait_for_socket(path: Path, process: subprocess.Popen[str], seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        if process.poll() is not None:
            raise AssertionError(f"driver exited {process.returncode}: {process.communicate()[1]}")
        if time.monotonic() > deadline:
            raise AssertionError("driver socket never appeared")
        time.sleep(0.05)


def test_node_plugin_serves_with_the_daemonsets_flags(default_objects: list[Obj], short_tmp: Path) -> None:
    args = expanded_args(container(one(default_objects, "DaemonSet"), "csi-xloud"))
    socket = short_tmp / "csi.sock"
    # Only the socket moves (the pod's /csi is the host's plugin dir); the metadata service is
    # pointed at a closed local port so that nothing here can reach the real one.
    args = [f"--endpoint=unix://{socket}" if a.startswith("--endpoint=") else a for a in args]
    args.append("--metadata-url=http://127.0.0.1:9")
    process = subprocess.Popen(
        [sys.executable, "-m", "csi_xloud", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ),
    )
    try:
        wait_for_socket(socket, process)
        with grpc.insecure_channel(f"unix://{socket}") as channel:
            identity = csi_pb2_grpc.IdentityStub(channel)
            info = identity.GetPluginInfo(csi_pb2.GetPluginInfoRequest(), timeout=10)
            capabilities = identity.GetPluginCapabilities(csi_pb2.GetPluginCapabilitiesRequest(), timeout=10)
            probe = identity.Probe(csi_pb2.ProbeRequest(), timeout=10)
        assert info.name == DRIVER_NAME
        services = {c.service.type for c in capabilities.capabilities if c.HasField("service")}
        assert csi_pb2.PluginCapability.Service.CONTROLLER_SERVICE not in services
        assert probe.ready.value, "the node's tools are installed here, so the plugin must be ready"
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    assert lines, "--log-format=json from the chart gives JSON log lines"


def test_selinux_mount_is_on_only_if_the_node_takes_kubelets_option(default_objects: list[Obj]) -> None:
    """With CSIDriver.seLinuxMount kubelet adds context="..." to every mount; the node must accept it."""
    if one(default_objects, "CSIDriver")["spec"]["seLinuxMount"]:
        assert check_mount_options([KUBELET_SELINUX_OPTION])
