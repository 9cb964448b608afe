"""The driver starts from exactly the flags the chart gives it, and offers what the chart relies on."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest
from deploy_support import Obj, container, expanded_args, flag, one

from csi_xloud import DRIVER_NAME
from csi_xloud._proto import csi_pb2, csi_pb2_grpc
from csi_xloud.osutil.mounts import check_mount_options

# kubelet's option for CSIDriver.seLinuxMount: context=%q of the pod's label.
KUBELET_SELINUX_OPTION = 'context="system_u:object_r:container_file_t:s0:c98,c99"'
PLUGIN = csi_pb2.PluginCapability
CONTROLLER_RPC = csi_pb2.ControllerServiceCapability.RPC
NODE_RPC = csi_pb2.NodeServiceCapability.RPC


@contextmanager
def driver(args: list[str], socket: Path) -> Iterator[tuple[grpc.Channel, list[str]]]:
    """Run `csi-xloud` with args (the endpoint moved to socket); yield a channel and, after, its logs."""
    args = [f"--endpoint=unix://{socket}" if a.startswith("--endpoint=") else a for a in args]
    process = subprocess.Popen(
        [sys.executable, "-m", "csi_xloud", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ),
    )
    logs: list[str] = []
    try:
        deadline = time.monotonic() + 20
        while not socket.exists():
            if process.poll() is not None:
                raise AssertionError(f"driver exited {process.returncode}: {process.communicate()[1]}")
            if time.monotonic() > deadline:
                raise AssertionError("driver socket never appeared")
            time.sleep(0.05)
        with grpc.insecure_channel(f"unix://{socket}") as channel:
            yield channel, logs
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=30)
        logs.extend(stderr.splitlines())
    assert process.returncode == 0, stderr


def plugin_capabilities(channel: grpc.Channel) -> tuple[set[int], set[int]]:
    """(services, volume expansion kinds) from GetPluginCapabilities."""
    response = csi_pb2_grpc.IdentityStub(channel).GetPluginCapabilities(
        csi_pb2.GetPluginCapabilitiesRequest(), timeout=10
    )
    services = {c.service.type for c in response.capabilities if c.HasField("service")}
    expansion = {c.volume_expansion.type for c in response.capabilities if c.HasField("volume_expansion")}
    return services, expansion


def test_node_plugin_serves_with_the_daemonsets_flags(default_objects: list[Obj], short_tmp: Path) -> None:
    args = expanded_args(container(one(default_objects, "DaemonSet"), "csi-xloud"))
    # The metadata service is pointed at a closed local port: nothing here may reach the real one.
    args.append("--metadata-url=http://127.0.0.1:9")
    with driver(args, short_tmp / "csi.sock") as (channel, logs):
        identity = csi_pb2_grpc.IdentityStub(channel)
        info = identity.GetPluginInfo(csi_pb2.GetPluginInfoRequest(), timeout=10)
        probe = identity.Probe(csi_pb2.ProbeRequest(), timeout=10)
        services, _ = plugin_capabilities(channel)
        node_caps = csi_pb2_grpc.NodeStub(channel).NodeGetCapabilities(
            csi_pb2.NodeGetCapabilitiesRequest(), timeout=10
        )
    assert info.name == DRIVER_NAME
    assert PLUGIN.Service.CONTROLLER_SERVICE not in services
    assert probe.ready.value, "the node's tools are installed here, so the plugin must be ready"
    rpcs = {c.rpc.type for c in node_caps.capabilities}
    # kubelet stages under <kubeletDir>/plugins/kubernetes.io/csi, inside the Bidirectional mount.
    assert {NODE_RPC.STAGE_UNSTAGE_VOLUME, NODE_RPC.EXPAND_VOLUME, NODE_RPC.GET_VOLUME_STATS} <= rpcs
    json_lines = [json.loads(line) for line in logs if line.startswith("{")]
    assert json_lines, "--log-format=json gives JSON lines"


def test_selinux_mount_is_on_only_if_the_node_takes_kubelets_option(default_objects: list[Obj]) -> None:
    """With CSIDriver.seLinuxMount kubelet adds context="..." to every mount; the node must accept it."""
    if one(default_objects, "CSIDriver")["spec"]["seLinuxMount"]:
        assert check_mount_options([KUBELET_SELINUX_OPTION])


@pytest.mark.skipif(
    importlib.util.find_spec("csi_xloud.controller.service") is None,
    reason="the controller service is not part of this build yet",
)
def test_controller_serves_with_the_deployments_flags(full_objects: list[Obj], short_tmp: Path) -> None:
    """Against the emulator: the controller offers every capability the chart's sidecars use."""
    from csi_xloud.emulator.process import EmulatorProcess

    deployment = one(full_objects, "Deployment")
    args = expanded_args(container(deployment, "csi-xloud"))
    with EmulatorProcess(short_tmp / "emu", op_seconds=0.05) as emulator:
        args = [a for a in args if not a.startswith(("--cloud=", "--cloud-config=", "--metrics-address="))]
        args += [f"--cloud-config={emulator.clouds_yaml}", "--cloud=xloud-emulator"]
        with driver(args, short_tmp / "csi.sock") as (channel, _):
            probe = csi_pb2_grpc.IdentityStub(channel).Probe(csi_pb2.ProbeRequest(), timeout=30)
            services, expansion = plugin_capabilities(channel)
            response = csi_pb2_grpc.ControllerStub(channel).ControllerGetCapabilities(
                csi_pb2.ControllerGetCapabilitiesRequest(), timeout=10
            )
    rpcs = {c.rpc.type for c in response.capabilities}
    assert probe.ready.value
    assert {PLUGIN.Service.CONTROLLER_SERVICE, PLUGIN.Service.VOLUME_ACCESSIBILITY_CONSTRAINTS} <= services
    csidriver = one(full_objects, "CSIDriver")["spec"]
    assert (CONTROLLER_RPC.PUBLISH_UNPUBLISH_VOLUME in rpcs) is csidriver["attachRequired"]
    assert {CONTROLLER_RPC.CREATE_DELETE_VOLUME, CONTROLLER_RPC.CLONE_VOLUME} <= rpcs  # csi-provisioner
    assert {CONTROLLER_RPC.CREATE_DELETE_SNAPSHOT, CONTROLLER_RPC.LIST_SNAPSHOTS} <= rpcs  # csi-snapshotter
    assert {CONTROLLER_RPC.EXPAND_VOLUME, CONTROLLER_RPC.MODIFY_VOLUME} <= rpcs  # csi-resizer
    if csidriver["storageCapacity"]:
        assert CONTROLLER_RPC.GET_CAPACITY in rpcs
    # --handle-volume-inuse-error=false is right only for a driver that grows volumes in use.
    assert flag(container(deployment, "csi-resizer"), "handle-volume-inuse-error") == "false"
    assert PLUGIN.VolumeExpansion.ONLINE in expansion
