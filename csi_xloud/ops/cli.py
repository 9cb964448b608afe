"""`csi-xloud doctor` and `csi-xloud classes`: their flags, and the objects they run with."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from csi_xloud.config import (
    DEFAULT_DEVICE_DIR,
    DEFAULT_KUBELET_DIR,
    DEFAULT_MAX_VOLUMES_PER_NODE,
    DEFAULT_METADATA_URL,
    ConfigError,
    Mode,
)
from csi_xloud.ops.checks import Finding, failed, write_report

if TYPE_CHECKING:
    from csi_xloud.ops.nodechecks import NodeDoctor

EXIT_FAILED = 1


def _add_cloud_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cloud", help="cloud name in clouds.yaml (default: $OS_CLOUD)")
    parser.add_argument(
        "--cloud-config", type=Path, help="clouds.yaml path (default: $OS_CLIENT_CONFIG_FILE)"
    )


def _positive(value: str) -> float:
    number = float(value)
    if not number > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {value!r}")
    return number


def add_doctor_arguments(parser: argparse.ArgumentParser) -> None:
    """The doctor's flags: the driver's own, for the mode being checked."""
    parser.add_argument("--mode", choices=[mode.value for mode in Mode], default=Mode.CONTROLLER.value,
                        help="which side to check: the controller's cloud, or this node")
    _add_cloud_arguments(parser)
    parser.add_argument("--expected-ops-per-second", type=_positive, default=5.0,
                        help="peak volume operations per second, to judge the rate limit (default 5)")
    parser.add_argument("--node-id", help="instance id of this node (default: config drive, then metadata)")
    parser.add_argument("--availability-zone", help="zone of this node (default: from instance metadata)")
    parser.add_argument("--device-dir", type=Path, default=DEFAULT_DEVICE_DIR)
    parser.add_argument("--metadata-url", default=DEFAULT_METADATA_URL)
    parser.add_argument("--kubelet-dir", type=Path, default=DEFAULT_KUBELET_DIR)
    parser.add_argument("--max-volumes-per-node", type=int, default=DEFAULT_MAX_VOLUMES_PER_NODE)


def add_classes_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `classes`: the cloud, names, the defaults and the shared StorageClass settings."""
    _add_cloud_arguments(parser)
    parser.add_argument("--prefix", default="xloud-", help="StorageClass name prefix (default xloud-)")
    parser.add_argument("--snapshot-prefix", help="VolumeSnapshotClass name prefix (default: --prefix)")
    parser.add_argument("--attributes-prefix", help="VolumeAttributesClass name prefix (default: --prefix)")
    parser.add_argument("--default-class", metavar="TYPE",
                        help="volume type whose StorageClass is the default (default: the cloud's)")
    parser.add_argument("--default-snapshot-class", choices=["snapshot", "backup", "none"],
                        default="snapshot")
    parser.add_argument("--fstype", choices=["ext4", "xfs"], default="ext4")
    parser.add_argument("--reclaim-policy", choices=["Delete", "Retain"], default="Delete")
    parser.add_argument("--migration-policy", choices=["on-demand", "never"], default="on-demand",
                        help="what a retype through a VolumeAttributesClass may do")


def run_doctor(args: argparse.Namespace, env: Mapping[str, str], out: TextIO) -> int:
    """Run the checks of the chosen mode, print one line each; 1 when any failed."""
    mode = Mode(args.mode)
    if args.max_volumes_per_node < 1:
        raise ConfigError("--max-volumes-per-node must be at least 1")
    findings = asyncio.run(_doctor(args, mode, env))
    write_report(findings, out)
    return EXIT_FAILED if failed(findings) else 0


async def _doctor(args: argparse.Namespace, mode: Mode, env: Mapping[str, str]) -> list[Finding]:
    findings: list[Finding] = []
    if mode.runs_controller:
        from csi_xloud.ops.cloudchecks import CloudDoctor, CloudTarget

        target = CloudTarget(args.cloud, args.cloud_config, args.expected_ops_per_second)
        findings += await CloudDoctor(target, env).run()
    if mode.runs_node:
        findings += await _node_doctor(args).run()
    return findings


def _node_doctor(args: argparse.Namespace) -> NodeDoctor:
    from csi_xloud.ops.nodechecks import NodeDoctor, NodeTarget
    from csi_xloud.osutil.filesystem import Filesystems
    from csi_xloud.osutil.metadata import MetadataReader
    from csi_xloud.osutil.mounts import Mounter
    from csi_xloud.osutil.runner import Runner

    target = NodeTarget(
        device_dir=args.device_dir, kubelet_dir=args.kubelet_dir, metadata_url=args.metadata_url,
        max_volumes_per_node=args.max_volumes_per_node, node_id=args.node_id,
        availability_zone=args.availability_zone,
    )
    runner = Runner()
    mounter = Mounter(runner)
    metadata = MetadataReader(Filesystems(runner), mounter, args.metadata_url)
    return NodeDoctor(target, runner=runner, mounter=mounter, metadata=metadata)


def run_classes(args: argparse.Namespace, env: Mapping[str, str], out: TextIO, err: TextIO) -> int:
    """Read the cloud and print the classes; 1 with a one-line reason when the cloud cannot be read."""
    from csi_xloud.cloud.errors import CloudError

    try:
        out.write(asyncio.run(_classes(args, env)))
    except (CloudError, ValueError) as exc:
        err.write(f"csi-xloud classes: {exc}\n")
        return EXIT_FAILED
    return 0


async def _classes(args: argparse.Namespace, env: Mapping[str, str]) -> str:
    from csi_xloud.cloud.auth import identity_url
    from csi_xloud.cloud.client import CloudClient
    from csi_xloud.cloud.errors import Unauthorized
    from csi_xloud.cloud.settings import BadSettings, load_cloud_settings
    from csi_xloud.metrics import Metrics
    from csi_xloud.ops.classes import ClassOptions, ClassWriter, read_offer
    from csi_xloud.ops.cloudchecks import describe_identity

    try:
        settings = load_cloud_settings(args.cloud, args.cloud_config, env)
    except BadSettings as exc:
        raise ConfigError(str(exc)) from exc
    options = ClassOptions(
        prefix=args.prefix,
        snapshot_prefix=args.snapshot_prefix if args.snapshot_prefix is not None else args.prefix,
        attributes_prefix=args.attributes_prefix if args.attributes_prefix is not None else args.prefix,
        default_type=args.default_class,
        default_snapshot=None if args.default_snapshot_class == "none" else args.default_snapshot_class,
        fs_type=args.fstype, reclaim_policy=args.reclaim_policy, migration_policy=args.migration_policy,
    )
    async with CloudClient(settings, Metrics()) as client:
        try:
            offer = await read_offer(client)
        except Unauthorized as exc:
            where = identity_url(settings.auth_url or "")
            raise Unauthorized(f"the identity API at {where} refused {describe_identity(settings)} "
                               f"({exc.message}); `csi-xloud doctor` says more") from exc
    cloud = args.cloud or env.get("OS_CLOUD") or settings.source
    return ClassWriter(offer, options).document(cloud)
