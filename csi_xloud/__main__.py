"""The `csi-xloud` command: the one place that reads the environment and builds real objects."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from csi_xloud import __version__
from csi_xloud._proto import csi_pb2_grpc
from csi_xloud.clock import SystemClock
from csi_xloud.config import (
    DEFAULT_DEVICE_DIR,
    DEFAULT_KUBELET_DIR,
    DEFAULT_MAX_VOLUMES_PER_NODE,
    DEFAULT_METADATA_URL,
    ConfigError,
    DriverConfig,
    Endpoint,
    LogFormat,
    Mode,
    parse_hostport,
)
from csi_xloud.identity import IdentityService, ReadinessCheck
from csi_xloud.inflight import InFlight
from csi_xloud.metrics import Metrics
from csi_xloud.ops import cli as ops_cli
from csi_xloud.rpc.health import ReadinessMonitor, serve_health
from csi_xloud.rpc.interceptors import CallInterceptor
from csi_xloud.rpc.logs import configure_logging
from csi_xloud.rpc.server import CsiServer, EndpointInUse, Registration

if TYPE_CHECKING:  # each mode imports its own service where it is built
    from csi_xloud.controller.service import ControllerService
    from csi_xloud.node.service import NodeService

log = logging.getLogger("csi_xloud")

EXIT_USAGE = 2
# What the `emulator` extra installs; the emulator and the demo need it, the driver does not.
# The emulator's web stack, and the emulator and demo themselves (the image leaves both out).
EMULATOR_EXTRA_MODULES = ("starlette", "uvicorn", "csi_xloud.emulator", "csi_xloud.demo")

AddFlags = Callable[[argparse.ArgumentParser], None]


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad or missing flag in one line and exits 2, never a traceback.

    A command built with `later_flags` gets its flags only when it is chosen or its help is shown,
    so `csi-xloud driver` never imports the emulator or the demo.
    """

    def __init__(self, *args: Any, later_flags: AddFlags | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._later_flags = later_flags

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        self._add_later_flags()
        return super().parse_known_args(args, namespace)

    def format_help(self) -> str:
        self._add_later_flags()
        return super().format_help()

    def _add_later_flags(self) -> None:
        if self._later_flags is not None:
            add, self._later_flags = self._later_flags, None
            add(self)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="csi-xloud", description="Kubernetes CSI driver for Xloud Block Storage")
    parser.add_argument("--version", action="version", version=f"csi-xloud {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    _add_driver_arguments(commands.add_parser("driver", help="serve the CSI driver"))
    commands.add_parser("emulator", help="run a local Xloud cloud", later_flags=_add_emulator_arguments)
    commands.add_parser(
        "demo", help="walk volumes through their life on a local Xloud", later_flags=_add_demo_arguments
    )
    ops_cli.add_doctor_arguments(commands.add_parser("doctor", help="check the cloud or this node"))
    ops_cli.add_classes_arguments(commands.add_parser("classes", help="print classes for the cloud's types"))
    return parser


def _add_emulator_arguments(parser: argparse.ArgumentParser) -> None:
    _require_emulator_extra("emulator")
    from csi_xloud.emulator import cli as emulator_cli  # its web stack loads only in run()

    emulator_cli.add_arguments(parser)


def _add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    _require_emulator_extra("demo")
    from csi_xloud.demo import scenario as demo

    demo.add_arguments(parser)


def _add_driver_arguments(driver: argparse.ArgumentParser) -> None:
    driver.add_argument(
        "--endpoint", help="unix:///path/csi.sock or tcp://127.0.0.1:PORT (default: $CSI_ENDPOINT)"
    )
    driver.add_argument("--mode", required=True, choices=[mode.value for mode in Mode])
    driver.add_argument("--cloud", help="cloud name in clouds.yaml (default: $OS_CLOUD)")
    driver.add_argument(
        "--cloud-config", type=Path, help="clouds.yaml path (default: $OS_CLIENT_CONFIG_FILE)"
    )
    driver.add_argument("--node-id", help="instance id of this node (default: config drive, then metadata)")
    driver.add_argument("--availability-zone", help="zone of this node (default: from instance metadata)")
    driver.add_argument("--device-dir", type=Path, default=DEFAULT_DEVICE_DIR)
    driver.add_argument("--metadata-url", default=DEFAULT_METADATA_URL)
    driver.add_argument("--kubelet-dir", type=Path, default=DEFAULT_KUBELET_DIR)
    driver.add_argument("--max-volumes-per-node", type=int, default=DEFAULT_MAX_VOLUMES_PER_NODE)
    driver.add_argument("--metrics-address", help="HOST:PORT to serve Prometheus metrics on")
    driver.add_argument(
        "--log-format", choices=[fmt.value for fmt in LogFormat], default=LogFormat.TEXT.value
    )
    driver.add_argument("--log-level", default="INFO", type=_log_level)
    driver.add_argument(
        "--shutdown-grace", type=float, default=25.0, help="seconds in-flight calls get on SIGTERM"
    )


def _log_level(value: str) -> str:
    if value.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise argparse.ArgumentTypeError(f"unknown log level {value!r}")
    return value.upper()


def driver_config(args: argparse.Namespace, env: Mapping[str, str]) -> DriverConfig:
    """Turn parsed flags (and CSI_ENDPOINT) into a validated DriverConfig."""
    endpoint = args.endpoint or env.get("CSI_ENDPOINT")
    if not endpoint:
        raise ConfigError("--endpoint is required (or set CSI_ENDPOINT)")
    return DriverConfig(
        endpoint=Endpoint.parse(endpoint),
        mode=Mode(args.mode),
        cloud=args.cloud,
        cloud_config=args.cloud_config,
        node_id=args.node_id,
        availability_zone=args.availability_zone,
        device_dir=args.device_dir,
        metadata_url=args.metadata_url,
        kubelet_dir=args.kubelet_dir,
        max_volumes_per_node=args.max_volumes_per_node,
        metrics_address=parse_hostport(args.metrics_address, "--metrics-address")
        if args.metrics_address
        else None,
        log_format=LogFormat(args.log_format),
        log_level=args.log_level,
        shutdown_grace_seconds=args.shutdown_grace,
    )


@dataclass
class Parts:
    """What the chosen mode serves, what Probe checks, what readiness watches, what to close at the end.

    Probe (and so the livenessprobe) checks only the process's own health; what it depends on, the
    cloud above all, is watched in `readiness` (see rpc/health.py).
    """

    registrations: list[Registration] = field(default_factory=list)
    checks: list[ReadinessCheck] = field(default_factory=list)
    readiness: dict[str, ReadinessCheck] = field(default_factory=dict)
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    # Called once the server is up, for background work of the parts.
    starters: list[Callable[[], None]] = field(default_factory=list)


def build_parts(config: DriverConfig, metrics: Metrics, env: Mapping[str, str]) -> Parts:
    """Build the services of the configured mode; Identity always."""
    parts = Parts()
    if config.mode.runs_controller:
        _add_controller(parts, config, metrics, env)
    if config.mode.runs_node:
        _add_node(parts, config, metrics)
    identity = IdentityService(controller=config.mode.runs_controller, checks=parts.checks)
    parts.registrations.insert(
        0, lambda server: csi_pb2_grpc.add_IdentityServicer_to_server(identity, server)
    )
    return parts


def _add_controller(parts: Parts, config: DriverConfig, metrics: Metrics, env: Mapping[str, str]) -> None:
    controller = build_controller_service(config, metrics, env)
    groups = controller.group_service()
    parts.registrations.append(
        lambda server: csi_pb2_grpc.add_ControllerServicer_to_server(controller, server)
    )
    parts.registrations.append(
        lambda server: csi_pb2_grpc.add_GroupControllerServicer_to_server(groups, server)
    )
    parts.readiness["cloud"] = controller.readiness
    parts.closers.append(controller.aclose)
    parts.starters.append(controller.start)


def _add_node(parts: Parts, config: DriverConfig, metrics: Metrics) -> None:
    node = build_node_service(config, metrics)
    parts.registrations.append(lambda server: csi_pb2_grpc.add_NodeServicer_to_server(node, server))
    parts.checks.append(node.readiness)
    parts.readiness["node-tools"] = node.readiness


def build_controller_service(
    config: DriverConfig, metrics: Metrics, env: Mapping[str, str]
) -> ControllerService:
    """The controller with a cloud client from --cloud/--cloud-config (or OS_* variables)."""
    from csi_xloud.cloud.client import CloudClient  # only where the controller runs
    from csi_xloud.cloud.settings import BadSettings, load_cloud_settings
    from csi_xloud.controller.service import ControllerService

    try:
        settings = load_cloud_settings(config.cloud, config.cloud_config, env)
    except BadSettings as exc:
        raise ConfigError(str(exc)) from exc
    cloud = CloudClient(settings, metrics)
    return ControllerService(cloud, InFlight(), max_volumes_per_node=config.max_volumes_per_node,
                             metrics=metrics)


def build_node_service(config: DriverConfig, metrics: Metrics | None = None) -> NodeService:
    """The node service with real collaborators (no I/O happens until the first call)."""
    from csi_xloud.node.service import NodeService, command_recorder  # the node never loads the cloud client
    from csi_xloud.osutil.blocking import BlockingCalls
    from csi_xloud.osutil.devices import DeviceFinder
    from csi_xloud.osutil.filesystem import Filesystems
    from csi_xloud.osutil.libs import LibBlkid, LibcMount
    from csi_xloud.osutil.metadata import MetadataReader
    from csi_xloud.osutil.mounts import Mounter
    from csi_xloud.osutil.paths import PathGuard
    from csi_xloud.osutil.runner import Runner
    from csi_xloud.osutil.stats import Stats

    runner = Runner(observers=[command_recorder(metrics)] if metrics is not None else ())
    if metrics is not None:
        metrics.attach_limit.set(config.max_volumes_per_node)  # what NodeGetInfo tells kubelet
    blocking = BlockingCalls()  # one deadline and one record of stuck paths for every system call
    stats = Stats(blocking=blocking)
    mounter = Mounter(runner, blocking=blocking, libc=LibcMount.load())
    filesystems = Filesystems(runner, LibBlkid.load())
    return NodeService(
        runner=runner,
        devices=DeviceFinder(runner, stats, SystemClock(), config.device_dir, blocking=blocking),
        filesystems=filesystems,
        mounter=mounter,
        stats=stats,
        paths=PathGuard(config.kubelet_dir, blocking),
        metadata=MetadataReader(filesystems, mounter, config.metadata_url, blocking=blocking),
        inflight=InFlight(),
        node_id=config.node_id,
        availability_zone=config.availability_zone,
        max_volumes_per_node=config.max_volumes_per_node,
        blocking=blocking,
    )


async def run_driver(config: DriverConfig, env: Mapping[str, str]) -> int:
    """Serve until SIGTERM/SIGINT, then drain calls in flight and close the parts."""
    metrics = Metrics()
    parts = build_parts(config, metrics, env)
    monitor = ReadinessMonitor(parts.readiness, metrics)
    http = None
    if config.metrics_address is not None:
        host, port = config.metrics_address
        http = serve_health(host or "0.0.0.0", port, metrics.registry, monitor)  # noqa: S104 - operator's choice
        log.info("serving metrics, /readyz and /healthz on %s:%d", host, port)
    server = CsiServer(
        config.endpoint, parts.registrations, [CallInterceptor(metrics)], config.shutdown_grace_seconds
    )
    watching = asyncio.create_task(monitor.run_forever())
    try:
        await server.start()
        for start in parts.starters:
            start()
        await server.serve_until_signalled()
    finally:
        watching.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watching
        await server.stop()
        for close in parts.closers:
            await close()
        if http is not None:
            http.shutdown()
            http.server_close()
    return 0


def _driver(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    config = driver_config(args, env)
    configure_logging(config.log_format, config.log_level)
    log.info("csi-xloud %s starting in %s mode", __version__, config.mode.value)
    return asyncio.run(run_driver(config, env))


class MissingExtra(Exception):
    """A command needs packages of an extra that is not installed."""


def _require_emulator_extra(command: str) -> None:
    missing = [name for name in EMULATOR_EXTRA_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise MissingExtra(
            f"`csi-xloud {command}` needs the emulator extra ({', '.join(missing)} not installed): "
            "pip install 'csi-xloud[emulator]'"
        )


def _emulator(args: argparse.Namespace) -> int:
    _require_emulator_extra("emulator")
    from csi_xloud.emulator import cli as emulator_cli

    return emulator_cli.run(args)


def _demo(args: argparse.Namespace) -> int:
    _require_emulator_extra("demo")
    from csi_xloud.demo import scenario as demo

    configure_logging(LogFormat.TEXT, "WARNING")
    return demo.run(args, sys.stdout)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `csi-xloud` console script."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except MissingExtra as exc:
        sys.stderr.write(f"csi-xloud: error: {exc}\n")
        return 1
    env = dict(os.environ)
    try:
        if args.command == "driver":
            return _driver(args, env)
        if args.command == "emulator":
            return _emulator(args)
        if args.command in ("doctor", "classes"):
            configure_logging(LogFormat.TEXT, "ERROR")
            if args.command == "doctor":
                return ops_cli.run_doctor(args, env, sys.stdout)
            return ops_cli.run_classes(args, env, sys.stdout, sys.stderr)
        if args.command == "demo":
            return _demo(args)
        parser.error(f"unknown command {args.command!r}")
    except ConfigError as exc:
        sys.stderr.write(f"csi-xloud: error: {exc}\n")
        return EXIT_USAGE
    except (EndpointInUse, MissingExtra) as exc:
        sys.stderr.write(f"csi-xloud: error: {exc}\n")
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
