"""Shared helpers of the deployment tests: rendering, schema validation, reading pod specs."""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path, PurePosixPath
from types import ModuleType
from typing import Any

import jsonschema
import kubernetes_validate
import yaml
from kubernetes_validate import utils as kv_utils
from referencing import Registry, Resource

ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = ROOT / "deploy" / "helm" / "csi-xloud"
BASE_DIR = ROOT / "deploy" / "kubernetes"
EXAMPLES_DIR = ROOT / "examples"
SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"

Obj = dict[str, Any]

# Custom resources the Kubernetes schemas do not know, and our schema for each.
CRD_SCHEMAS = {
    ("snapshot.storage.k8s.io/v1", "VolumeSnapshotClass"): "volumesnapshotclass.json",
    ("snapshot.storage.k8s.io/v1", "VolumeSnapshot"): "volumesnapshot.json",
    ("groupsnapshot.storage.k8s.io/v1", "VolumeGroupSnapshotClass"): "volumegroupsnapshotclass.json",
    ("groupsnapshot.storage.k8s.io/v1", "VolumeGroupSnapshot"): "volumegroupsnapshot.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "prometheusrule.json",
}

CUSTOM_KUBELET_DIR = "/var/snap/microk8s/common/var/lib/kubelet"

# Every optional part switched on, and every knob moved off its default.
FULL_VALUES: Obj = {
    "kubeletDir": CUSTOM_KUBELET_DIR,
    "storageCapacity": True,
    "csiDriver": {"seLinuxMount": True, "fsGroupPolicy": "File"},
    "logFormat": "text",
    "logLevel": "DEBUG",
    "image": {"digest": "sha256:" + "ab" * 32},
    "imagePullSecrets": [{"name": "registry-login"}],
    "proxy": {"httpProxy": "http://proxy.example.test:3128", "httpsProxy": "http://proxy.example.test:3128",
              "noProxy": "169.254.169.254,.cluster.local"},
    "cloudConfig": {
        "create": True,
        "secretName": "xloud-credentials",
        "cloud": "prod",
        "cloudsYaml": "clouds:\n  prod:\n    auth:\n      auth_url: https://keystone.example.test/v3\n",
    },
    "controller": {
        "replicas": 3,
        "hostNetwork": True,
        "extraArgs": ["--shutdown-grace=20"],
        "podAnnotations": {"example.test/team": "storage"},
        "podDisruptionBudget": {"enabled": True, "maxUnavailable": 1},
        "extraEnv": [{"name": "OS_CACERT", "value": "/etc/xloud-ca/ca.pem"}],
        "extraVolumes": [{"name": "xloud-ca", "configMap": {"name": "xloud-ca"}}],
        "extraVolumeMounts": [{"name": "xloud-ca", "mountPath": "/etc/xloud-ca", "readOnly": True}],
        "topologySpreadConstraints": [
            {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway"},
        ],
    },
    "node": {
        "hostNetwork": False,
        "metadataUrl": "http://metadata.example.test",
        "maxVolumesPerNode": 16,
        "deviceDir": "/dev/disk/by-id",
        "extraArgs": ["--availability-zone=nova"],
        "podLabels": {"example.test/tier": "storage"},
        "extraEnv": [{"name": "TZ", "value": "UTC"}],
        "extraVolumes": [{"name": "host-etc-iscsi", "hostPath": {"path": "/etc/iscsi", "type": "DirectoryOrCreate"}}],
        "extraVolumeMounts": [{"name": "host-etc-iscsi", "mountPath": "/etc/iscsi", "readOnly": True}],
    },
    "metrics": {
        "enabled": True,
        "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
        "prometheusRule": {"enabled": True, "labels": {"release": "prometheus"}, "rpcErrorRatio": 0.05},
        "dashboard": {"enabled": True, "annotations": {"grafana_folder": "Storage"}},
    },
    "storageClasses": [
        {
            "name": "xloud-xfs",
            "default": True,
            "reclaimPolicy": "Retain",
            "volumeBindingMode": "WaitForFirstConsumer",
            "allowVolumeExpansion": True,
            "parameters": {"type": "ssd", "csi.storage.k8s.io/fstype": "xfs", "availability": "nova"},
            "mountOptions": ["noatime"],
            "allowedTopologies": [
                {"matchLabelExpressions": [
                    {"key": "topology.block.csi.xloud.tech/zone", "values": ["nova"]}
                ]}
            ],
        }
    ],
    "volumeSnapshotClasses": [
        {"name": "xloud-snap", "default": True, "deletionPolicy": "Retain",
         "parameters": {"type": "snapshot", "force-create": "false"}},
        {"name": "xloud-incremental", "parameters": {"type": "backup", "incremental": "true"}},
    ],
    "volumeGroupSnapshotClasses": [
        {"name": "xloud-consistent", "default": True, "deletionPolicy": "Retain",
         "parameters": {"group-type": "consistent-snapshots"}},
    ],
    "volumeAttributesClasses": [
        {"name": "xloud-fast", "parameters": {"type": "ssd", "migration-policy": "on-demand"}},
        {"name": "xloud-slow", "parameters": {"type": "hdd", "migration-policy": "never"}},
    ],
}


# The evaluation install of docs/install.md: the emulator in the cluster instead of a cloud.
EMULATOR_VALUES: Obj = {"emulator": {"enabled": True}}


def load_generator() -> ModuleType:
    """The repository's deploy/generate_manifests.py as a module."""
    path = ROOT / "deploy" / "generate_manifests.py"
    spec = importlib.util.spec_from_file_location("generate_manifests", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def flatten(rendered: dict[str, list[Obj]]) -> list[Obj]:
    return [doc for docs in rendered.values() for doc in docs]


def chart_kube_versions() -> list[str]:
    """The Kubernetes minors the chart supports (Chart.yaml kubeVersion) that the schemas cover."""
    chart = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())
    match = re.match(r">=\s*(\d+)\.(\d+)", chart["kubeVersion"])
    assert match, chart["kubeVersion"]
    lowest = (int(match[1]), int(match[2]))
    versions = []
    for version in kv_utils.all_versions():
        major, minor = (int(part) for part in kv_utils.major_minor(version).split("."))
        if (major, minor) >= lowest:
            versions.append(f"{major}.{minor}.0")
    return versions


@cache
def _crd_validator(filename: str) -> jsonschema.protocols.Validator:
    metadata = json.loads((SCHEMA_DIR / "metadata.json").read_text())
    registry: Registry = Registry().with_resource(
        "metadata.json", Resource.from_contents(metadata, default_specification=_draft())
    )
    schema = json.loads((SCHEMA_DIR / filename).read_text())
    return jsonschema.Draft202012Validator(schema, registry=registry)


def _draft() -> Any:
    from referencing.jsonschema import DRAFT202012

    return DRAFT202012


def validate_object(obj: Obj, version: str) -> None:
    """Validate against the Kubernetes schemas of `version` (strict), or our CRD schema."""
    key = (obj.get("apiVersion"), obj.get("kind"))
    if key in CRD_SCHEMAS:
        _crd_validator(CRD_SCHEMAS[key]).validate(obj)  # type: ignore[index]
    else:
        kubernetes_validate.validate(obj, version, strict=True)


def find(objects: list[Obj], kind: str, name: str | None = None) -> list[Obj]:
    return [
        obj for obj in objects
        if obj["kind"] == kind and (name is None or obj["metadata"]["name"] == name)
    ]


def one(objects: list[Obj], kind: str, name: str | None = None) -> Obj:
    found = find(objects, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def pod_spec(workload: Obj) -> Obj:
    spec: Obj = workload["spec"]["template"]["spec"]
    return spec


def container(workload: Obj, name: str) -> Obj:
    matches = [c for c in pod_spec(workload)["containers"] if c["name"] == name]
    assert len(matches) == 1, f"{workload['metadata']['name']} has no container {name}"
    return matches[0]


def expanded_args(ctr: Obj) -> list[str]:
    """The container's args with $(VAR) replaced by its literal env values, as kubelet does."""
    env = {item["name"]: item["value"] for item in ctr.get("env", []) if "value" in item}
    refs = {item["name"] for item in ctr.get("env", []) if "valueFrom" in item}

    def substitute(match: re.Match[str]) -> str:
        name = match[1]
        if name in env:
            return env[name]
        assert name in refs, f"{ctr['name']}: $({name}) is not in its env"
        return f"<{name}>"

    return [re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", substitute, arg) for arg in ctr.get("args", [])]


def flag(ctr: Obj, name: str) -> str | None:
    """The value of --name=value (or True-ish '' for a bare --name) among the expanded args."""
    for arg in expanded_args(ctr):
        if arg == f"--{name}":
            return ""
        if arg.startswith(f"--{name}="):
            return arg.split("=", 1)[1]
    return None


def resolve_path(workload: Obj, ctr: Obj, path: str) -> tuple[str, PurePosixPath]:
    """Which pod volume a container path lives on, and the path inside that volume."""
    target = PurePosixPath(path)
    best: tuple[str, PurePosixPath] | None = None
    best_depth = -1
    for mount in ctr.get("volumeMounts", []):
        mount_path = PurePosixPath(mount["mountPath"])
        if target == mount_path or mount_path in target.parents:
            depth = len(mount_path.parts)
            if depth > best_depth:
                best = (mount["name"], target.relative_to(mount_path))
                best_depth = depth
    assert best is not None, f"{ctr['name']}: {path} is on no volume mount"
    return best


def volume(workload: Obj, name: str) -> Obj:
    matches = [v for v in pod_spec(workload).get("volumes", []) if v["name"] == name]
    assert len(matches) == 1, f"no volume {name}"
    return matches[0]


def example_files() -> list[Path]:
    return sorted(EXAMPLES_DIR.glob("**/*.yaml"))


def load_documents(path: Path) -> Iterator[Obj]:
    for doc in yaml.safe_load_all(path.read_text()):
        if doc:
            yield doc
