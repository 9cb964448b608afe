"""Prometheus metrics of one process, held by one object built in main and handed to each layer that records.

Pure collectors, no gRPC: the cloud client counts its requests and waits here as the RPC layer counts calls.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
# Transitions run from a second (a create) to many minutes (a backup, a migration).
_WAIT_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800, 3600)


class Metrics:
    """All collectors of one driver process, on its own registry (no module globals)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.rpc_calls = Counter(
            "csi_xloud_rpc_calls",
            "CSI calls served, by method and gRPC code",
            ["method", "code"],
            registry=self.registry,
        )
        self.rpc_seconds = Histogram(
            "csi_xloud_rpc_duration_seconds",
            "CSI call latency, by method and gRPC code",
            ["method", "code"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.cloud_requests = Counter(
            "csi_xloud_cloud_requests",
            "HTTP requests to the cloud, by service, method and status",
            ["service", "method", "status"],
            registry=self.registry,
        )
        self.cloud_seconds = Histogram(
            "csi_xloud_cloud_request_duration_seconds",
            "Cloud request latency, by service and method",
            ["service", "method"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.cloud_operation_seconds = Histogram(
            "csi_xloud_cloud_operation_duration_seconds",
            "Cloud request latency and outcome, by service, operation (path with ids as {id}) and status",
            ["service", "operation", "status"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.cloud_in_flight = Gauge(
            "csi_xloud_cloud_requests_in_flight",
            "Cloud requests sent and not yet answered, by service",
            ["service"],
            registry=self.registry,
        )
        self.rpc_in_flight = Gauge(
            "csi_xloud_rpc_in_flight",
            "CSI calls being served, by method",
            ["method"],
            registry=self.registry,
        )
        self.wait_seconds = Histogram(
            "csi_xloud_cloud_wait_duration_seconds",
            "Time spent waiting for a resource to leave a transitional status, by resource, the status "
            "waited on (creating, attaching, deleting->gone...) and outcome (done, failed, timeout...)",
            ["resource", "transition", "outcome"],
            buckets=_WAIT_BUCKETS,
            registry=self.registry,
        )
        self.waits_in_flight = Gauge(
            "csi_xloud_cloud_waits_in_flight",
            "Waits for a status change going on now, by resource",
            ["resource"],
            registry=self.registry,
        )
        self.node_attachments = Gauge(
            "csi_xloud_node_attachments",
            "Volumes attached to each node (Compute server), as last seen by ControllerPublishVolume",
            ["node"],
            registry=self.registry,
        )
        self.attach_limit = Gauge(
            "csi_xloud_node_attach_limit",
            "The most volumes one node may have attached (--max-volumes-per-node of this process)",
            registry=self.registry,
        )
        self.node_commands = Histogram(
            "csi_xloud_node_command_duration_seconds",
            "Host commands the node plugin ran (mkfs, mount, resize...), by command and outcome",
            ["command", "outcome"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.ready = Gauge(
            "csi_xloud_ready",
            "1 when a readiness check passes (cloud reachable and credentials accepted; node tools), else 0",
            ["check"],
            registry=self.registry,
        )
        self.cloud_throttled = Counter(
            "csi_xloud_cloud_throttled",
            "Cloud requests delayed by rate limits (429/413 or the local bucket)",
            ["service", "reason"],
            registry=self.registry,
        )
