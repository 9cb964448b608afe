"""The chart's alerts and dashboard: promtool accepts and unit-tests the rules, the dashboard's queries
parse, and every metric they name is one the driver's real /metrics serves after real calls."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
import yaml
from deploy_support import Obj, container, flatten, one

from csi_xloud import GIB
from csi_xloud.demo.cluster import Cluster, mounts_below
from csi_xloud.demo.orchestrator import Orchestrator, RetryPolicy, mount_capability
from csi_xloud.emulator.process import free_port, loop_devices_under
from csi_xloud.osutil.filesystem import can_grow_mounted_ext4

PROMETHEUS_DIR = Path(__file__).resolve().parent / "prometheus"
METRIC = re.compile(r"\bcsi_xloud_[a-z0-9_]+\b")
# Grafana's variables, replaced by what they stand for so promtool can parse the queries.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$namespace": ".*"}


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool")
    assert tool is not None, "promtool is missing: scripts/setup installs it (Debian package prometheus)"
    return subprocess.run([tool, *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def rule_groups(objects: list[Obj]) -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = one(objects, "PrometheusRule")["spec"]["groups"]
    return groups


def dashboard(objects: list[Obj]) -> dict[str, Any]:
    config_map = one(objects, "ConfigMap")
    assert list(config_map["data"]) == ["csi-xloud.json"]
    loaded: dict[str, Any] = json.loads(config_map["data"]["csi-xloud.json"])
    return loaded


def dashboard_queries(board: dict[str, Any]) -> list[str]:
    queries = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    assert queries, "the dashboard has no queries"
    return queries


def alert_queries(objects: list[Obj]) -> list[str]:
    return [str(rule["expr"]) for group in rule_groups(objects) for rule in group["rules"]]


def test_the_rules_pass_promtool_check(full_objects: list[Obj], tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": rule_groups(full_objects)}))
    checked = promtool("check", "rules", "rules.yaml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    alerts = {rule["alert"] for group in rule_groups(full_objects) for rule in group["rules"]}
    assert alerts == {"CsiXloudCloudUnreachable", "CsiXloudCloudAuthFailing", "CsiXloudRpcErrorRatio",
                      "CsiXloudTransitionStuck", "CsiXloudNodeNearAttachLimit", "CsiXloudNodeMountFailures"}
    assert "> 0.05" in next(q for q in alert_queries(full_objects) if "rpc_calls_total" in q)  # the value


def test_the_alerts_fire_when_their_unit_tests_say(generator: ModuleType, tmp_path: Path) -> None:
    """promtool's own rule unit tests, on the rules as the default thresholds render them."""
    values = {"metrics": {"enabled": True, "prometheusRule": {"enabled": True}}}
    groups = rule_groups(flatten(generator.render(values)))
    for group in groups:
        for rule in group["rules"]:
            rule.pop("annotations")  # their text is checked above; the tests here are about firing
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}))
    shutil.copy(PROMETHEUS_DIR / "alerts_test.yaml", tmp_path)
    tested = promtool("test", "rules", "alerts_test.yaml", cwd=tmp_path)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_every_dashboard_query_parses(full_objects: list[Obj], tmp_path: Path) -> None:
    rules = []
    for number, query in enumerate(dashboard_queries(dashboard(full_objects))):
        for variable, value in GRAFANA_VARIABLES.items():
            query = query.replace(variable, value)
        assert "$" not in query, f"an unknown Grafana variable in {query}"
        rules.append({"record": f"csi_xloud_dashboard:query{number}", "expr": query})
    (tmp_path / "queries.yaml").write_text(yaml.safe_dump({"groups": [{"name": "queries", "rules": rules}]}))
    checked = promtool("check", "rules", "queries.yaml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_dashboard_reaches_the_grafana_sidecar(full_objects: list[Obj]) -> None:
    config_map = one(full_objects, "ConfigMap")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["annotations"] == {"grafana_folder": "Storage"}
    board = dashboard(full_objects)
    assert board["uid"] == "csi-xloud" and board["title"] == "csi-xloud"
    variables = {v["name"] for v in board["templating"]["list"]}
    assert variables == {"datasource", "namespace"}
    for panel in board["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}" and panel["title"] and panel["description"]
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))


def test_the_controller_is_ready_by_its_cloud_and_live_by_itself(full_objects: list[Obj], default_objects: list[Obj]) -> None:
    driver = container(one(full_objects, "Deployment"), "csi-xloud")
    assert driver["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert driver["livenessProbe"]["httpGet"]["port"] == "healthz"  # the livenessprobe sidecar's Probe
    assert "readinessProbe" not in container(one(default_objects, "Deployment"), "csi-xloud")


# -- the names against a real driver ------------------------------------------------------------


@dataclass
class MeteredCluster(Cluster):
    """The test installation, with every driver process serving /metrics on a port of its own."""

    metrics_ports: dict[str, int] = field(default_factory=dict)

    def _controller_flags(self) -> list[str]:
        return [*super()._controller_flags(), *self._metrics_flag("controller")]

    def _node_flags(self, server: dict[str, object], kubelet: Path) -> list[str]:
        return [*super()._node_flags(server, kubelet), *self._metrics_flag(str(server["id"]))]

    def _metrics_flag(self, who: str) -> list[str]:
        self.metrics_ports[who] = free_port()
        return ["--metrics-address", f"127.0.0.1:{self.metrics_ports[who]}"]


def exported_samples(port: int) -> set[str]:
    """The sample names a driver's /metrics holds (HELP and TYPE lines alone do not count)."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return {line.split("{", 1)[0].split(" ", 1)[0] for line in text.splitlines() if line and line[0] != "#"}


def sample(port: int, series: str) -> float:
    """The value of one series (name and labels as the exposition writes them) on a driver's /metrics."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    values = [line.rsplit(" ", 1)[1] for line in text.splitlines() if line.startswith(series + " ")]
    assert len(values) == 1, f"{series} not served"
    return float(values[0])


@pytest.mark.skipif(os.geteuid() != 0, reason="a node stages a volume on a loop device: run as root")
async def test_every_metric_the_rules_and_dashboard_name_is_served_by_the_driver(full_objects: list[Obj]) -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="csx-metrics-"))
    installation = MeteredCluster(data_dir, servers="node-a", op_seconds=0.05)
    try:
        with installation:
            assert installation.emulator is not None
            # One answer of the cloud's own rate limit, as a busy cloud gives.
            installation.emulator.set_faults([{"method": "GET", "path": "/volumes/detail", "status": 429,
                                               "count": 1, "retry_after": 0}])
            node_id = installation.server_ids()[0]
            async with Orchestrator(installation.controller_socket, installation.node_handles,
                                    RetryPolicy(max_attempts=50)) as co:
                await co.wait_ready()
                # Growing a mounted ext4 needs CAP_SYS_RESOURCE, which some sandboxes withhold.
                pv = await co.provision(GIB, mount_capability("ext4" if can_grow_mounted_ext4() else "xfs"))
                await co.attach(pv, node_id)
                controller_port = installation.metrics_ports["controller"]
                assert sample(controller_port, f'csi_xloud_node_attachments{{node="{node_id}"}}') == 1
                assert sample(controller_port, "csi_xloud_node_attach_limit") == 25
                await co.stage(pv, node_id)
                pod = str(uuid.uuid4())
                await co.publish(pv, node_id, pod)
                await co.expand(pv, 2 * GIB, (node_id, pod))
                await co.unpublish(pv, node_id, pod)
                await co.unstage(pv, node_id)
                await co.detach(pv, node_id)
                assert sample(controller_port, f'csi_xloud_node_attachments{{node="{node_id}"}}') == 0
                await co.delete(pv)
            served = set().union(*(exported_samples(port) for port in installation.metrics_ports.values()))
    finally:
        leftovers = mounts_below(data_dir), loop_devices_under(data_dir)
        shutil.rmtree(data_dir, ignore_errors=True)
    assert leftovers == ([], [])
    named = {name for query in [*dashboard_queries(dashboard(full_objects)), *alert_queries(full_objects)]
             for name in METRIC.findall(query)}
    missing = sorted(named - served)
    assert not missing, f"named by the dashboard or the alerts but not served by the driver: {missing}"
    # And the other way: every family the driver serves is on the dashboard.
    families = {re.sub(r"_(bucket|count|sum|total|created)$", "", name) for name in served
                if name.startswith("csi_xloud_")}
    graphed = {re.sub(r"_(bucket|count|sum|total)$", "", name) for name in named}
    assert families - graphed <= {"csi_xloud_cloud_request_duration_seconds"}, families - graphed
