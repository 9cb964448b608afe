"""The driver's settings: frozen dataclasses, validated once when built from the CLI."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

DEFAULT_KUBELET_DIR = Path("/var/lib/kubelet")
DEFAULT_DEVICE_DIR = Path("/dev/disk/by-id")
DEFAULT_METADATA_URL = "http://169.254.169.254"
# A virtio-blk disk takes one PCI slot; an instance has 32 slots on its root bus, of which the
# root disk, the NIC, the memory balloon, the serial/RNG devices and the config drive use
# about 6. 25 data disks leaves head room and matches what Nova attaches reliably.
DEFAULT_MAX_VOLUMES_PER_NODE = 25


class Mode(StrEnum):
    ALL = "all"
    CONTROLLER = "controller"
    NODE = "node"

    @property
    def runs_controller(self) -> bool:
        return self in (Mode.ALL, Mode.CONTROLLER)

    @property
    def runs_node(self) -> bool:
        return self in (Mode.ALL, Mode.NODE)


class LogFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


class ConfigError(ValueError):
    """A setting is missing or wrong; the message names the setting."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where the gRPC server listens: a unix socket path, or a TCP port on loopback for debugging."""

    scheme: str  # "unix" or "tcp"
    address: str  # the socket path, or "host:port"

    @classmethod
    def parse(cls, value: str) -> Endpoint:
        if value.startswith("unix://"):
            path = value[len("unix://") :]
            if not path.startswith("/"):
                raise ConfigError(f"--endpoint: unix socket path must be absolute, got {value!r}")
            return cls("unix", path)
        if value.startswith("tcp://"):
            hostport = value[len("tcp://") :]
            host, sep, port = hostport.rpartition(":")
            if not sep or not port.isdigit() or not host:
                raise ConfigError(f"--endpoint: expected tcp://HOST:PORT, got {value!r}")
            return cls("tcp", hostport)
        raise ConfigError(f"--endpoint: expected unix:///path or tcp://HOST:PORT, got {value!r}")

    @property
    def grpc_target(self) -> str:
        return f"unix://{self.address}" if self.scheme == "unix" else self.address

    def __str__(self) -> str:
        return f"{self.scheme}://{self.address}"


@dataclass(frozen=True, slots=True)
class DriverConfig:
    """Every flag of `csi-xloud driver`."""

    endpoint: Endpoint
    mode: Mode
    cloud: str | None = None
    cloud_config: Path | None = None
    node_id: str | None = None
    availability_zone: str | None = None
    device_dir: Path = DEFAULT_DEVICE_DIR
    metadata_url: str = DEFAULT_METADATA_URL
    kubelet_dir: Path = DEFAULT_KUBELET_DIR
    max_volumes_per_node: int = DEFAULT_MAX_VOLUMES_PER_NODE
    metrics_address: tuple[str, int] | None = None
    log_format: LogFormat = LogFormat.TEXT
    log_level: str = "INFO"
    shutdown_grace_seconds: float = 25.0

    def __post_init__(self) -> None:
        if self.max_volumes_per_node < 1:
            raise ConfigError("--max-volumes-per-node must be at least 1")
        if not self.kubelet_dir.is_absolute():
            raise ConfigError("--kubelet-dir must be an absolute path")
        if not self.device_dir.is_absolute():
            raise ConfigError("--device-dir must be an absolute path")
        if not self.metadata_url.startswith(("http://", "https://")):
            raise ConfigError("--metadata-url must be an http(s) URL")


def parse_hostport(value: str, flag: str) -> tuple[str, int]:
    """Parse HOST:PORT (an empty host means all interfaces)."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{flag}: expected HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port)
