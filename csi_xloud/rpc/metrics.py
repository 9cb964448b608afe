"""Prometheus metrics, held by one object built in main and handed to whoever records."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


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
        self.cloud_throttled = Counter(
            "csi_xloud_cloud_throttled",
            "Cloud requests delayed by rate limits (429/413 or the local bucket)",
            ["service", "reason"],
            registry=self.registry,
        )
