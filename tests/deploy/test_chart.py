"""The Helm chart: lint, values schema, and every rendered object valid for every supported Kubernetes."""

from __future__ import annotations

import json
from types import ModuleType
from typing import Any

import helm_python
import jsonschema
import pytest
import yaml
from deploy_support import (
    CHART_DIR,
    EMULATOR_VALUES,
    FULL_VALUES,
    ROOT,
    Obj,
    chart_kube_versions,
    container,
    flag,
    one,
    pod_spec,
    validate_object,
)

VALUES = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
SCHEMA = json.loads((CHART_DIR / "values.schema.json").read_text())


def test_chart_lints_clean_in_strict_mode() -> None:
    for values in (None, FULL_VALUES, EMULATOR_VALUES):
        report = helm_python.lint(CHART_DIR, values, strict=True, kube_version="v1.34.0")
        problems = [m for m in report["messages"] if m["severity"] >= 2]
        assert report["errors"] == [] and problems == [], report


def test_default_and_full_values_meet_the_schema() -> None:
    jsonschema.Draft7Validator.check_schema(SCHEMA)
    jsonschema.validate(VALUES, SCHEMA)
    with helm_python.Chart.load(CHART_DIR) as chart:
        chart.validate_schema(None)
        chart.validate_schema(FULL_VALUES)


def test_schema_describes_every_default_value() -> None:
    """No key in values.yaml that the schema does not name (additionalProperties is false)."""

    def walk(values: Any, schema: Obj, path: str) -> None:
        if isinstance(values, dict) and schema.get("additionalProperties") is False:
            for key, value in values.items():
                assert key in schema["properties"], f"{path}.{key} is not in values.schema.json"
                walk(value, schema["properties"][key], f"{path}.{key}")

    walk(VALUES, SCHEMA, "values")


BAD_VALUES = [
    ({"controller": {"replicas": "two"}}, "/controller/replicas"),
    ({"controller": {"replicas": 0}}, "/controller/replicas"),
    ({"sidecars": {"provisioner": {"image": {"tag": "latest"}}}}, "/sidecars/provisioner/image/tag"),
    ({"sidecars": {"resizer": {"timeout": "ten seconds"}}}, "/sidecars/resizer/timeout"),
    ({"kubeletDir": "var/lib/kubelet"}, "/kubeletDir"),
    ({"logFormat": "xml"}, "/logFormat"),
    ({"node": {"maxVolumesPerNode": 0}}, "/node/maxVolumesPerNode"),
    ({"node": {"metadataUrl": "169.254.169.254"}}, "/node/metadataUrl"),
    ({"storageClasses": [{"name": "a", "parameters": {"csi.storage.k8s.io/fstype": "btrfs"}}]},
     "/storageClasses/0/parameters"),
    ({"storageClasses": [{"name": "a", "parameters": {"tipe": "ssd"}}]}, "/storageClasses/0/parameters"),
    ({"volumeSnapshotClasses": [{"name": "a", "parameters": {"type": "clone"}}]},
     "/volumeSnapshotClasses/0/parameters/type"),
    ({"volumeAttributesClasses": [{"name": "a", "parameters": {"migration-policy": "always"}}]},
     "/volumeAttributesClasses/0/parameters/migration-policy"),
    ({"csiDriver": {"fsGroupPolicy": "Always"}}, "/csiDriver/fsGroupPolicy"),
    ({"fullnameOverride": "Storage_Driver"}, "/fullnameOverride"),
    ({"metrics": {"nodePort": 0}}, "/metrics/nodePort"),
    ({"controller": {"extraVolumeMounts": [{"name": "ca"}]}}, "/controller/extraVolumeMounts/0"),
    ({"controller": {"topologySpreadConstraints": [{"maxSkew": 1}]}}, "/controller/topologySpreadConstraints/0"),
    ({"proxy": {"httpsProxy": 3128}}, "/proxy/httpsProxy"),
    ({"helmTest": {"size": "one gig"}}, "/helmTest/size"),
    ({"controllr": {"replicas": 2}}, "controllr"),
]


@pytest.mark.parametrize(("values", "where"), BAD_VALUES, ids=[where for _, where in BAD_VALUES])
def test_helm_rejects_bad_values_naming_the_key(values: Obj, where: str) -> None:
    with helm_python.Chart.load(CHART_DIR) as chart, pytest.raises(helm_python.HelmValuesError) as failure:
        chart.render(values, name="csi-xloud", namespace="kube-system")
    assert where in str(failure.value)


def test_creating_the_secret_requires_its_content(generator: ModuleType) -> None:
    with pytest.raises(helm_python.HelmError, match=r"cloudConfig\.cloudsYaml is required"):
        generator.render({"cloudConfig": {"create": True}})


@pytest.mark.parametrize("version", chart_kube_versions())
def test_every_rendered_object_is_valid(
    version: str, default_objects: list[Obj], full_objects: list[Obj], emulator_objects: list[Obj]
) -> None:
    for obj in default_objects + full_objects + emulator_objects:
        try:
            validate_object(obj, version)
        except Exception as exc:  # the message alone does not say which object
            raise AssertionError(f"{obj['kind']} {obj['metadata']['name']}: {exc}") from exc


def test_supported_versions_reach_the_newest_schemas() -> None:
    versions = chart_kube_versions()
    assert versions[0] == "1.34.0" and len(versions) >= 4, versions


def test_default_rendering_holds_the_expected_objects(default_objects: list[Obj]) -> None:
    kinds = sorted((obj["kind"], obj["metadata"]["name"]) for obj in default_objects)
    assert kinds == sorted([
        ("CSIDriver", "block.csi.xloud.tech"),
        ("ClusterRole", "csi-xloud-attacher"),
        ("ClusterRole", "csi-xloud-provisioner"),
        ("ClusterRole", "csi-xloud-resizer"),
        ("ClusterRole", "csi-xloud-snapshotter"),
        ("ClusterRoleBinding", "csi-xloud-attacher"),
        ("ClusterRoleBinding", "csi-xloud-provisioner"),
        ("ClusterRoleBinding", "csi-xloud-resizer"),
        ("ClusterRoleBinding", "csi-xloud-snapshotter"),
        ("DaemonSet", "csi-xloud-node"),
        ("Deployment", "csi-xloud-controller"),
        ("PodDisruptionBudget", "csi-xloud-controller"),
        ("Role", "csi-xloud-leader-election"),
        ("RoleBinding", "csi-xloud-leader-election"),
        ("ServiceAccount", "csi-xloud-controller"),
        ("ServiceAccount", "csi-xloud-node"),
        ("StorageClass", "xloud-block"),
        ("VolumeSnapshotClass", "xloud-backup"),
        ("VolumeSnapshotClass", "xloud-snapshot"),
        ("VolumeGroupSnapshotClass", "xloud-group-snapshot"),
    ])


def test_full_rendering_adds_the_optional_objects(full_objects: list[Obj]) -> None:
    kinds = {(obj["kind"], obj["metadata"]["name"]) for obj in full_objects}
    assert {
        ("Secret", "xloud-credentials"),
        ("Service", "storage-csi-xloud-controller-metrics"),
        ("Service", "storage-csi-xloud-node-metrics"),
        ("ServiceMonitor", "storage-csi-xloud-controller"),
        ("ServiceMonitor", "storage-csi-xloud-node"),
        ("PrometheusRule", "storage-csi-xloud"),
        ("ConfigMap", "storage-csi-xloud-dashboard"),
        ("Role", "storage-csi-xloud-provisioner-capacity"),
        ("RoleBinding", "storage-csi-xloud-provisioner-capacity"),
        ("VolumeAttributesClass", "xloud-fast"),
        ("VolumeAttributesClass", "xloud-slow"),
        ("StorageClass", "xloud-xfs"),
        ("VolumeGroupSnapshotClass", "xloud-consistent"),
    } <= kinds
    namespaced = [obj for obj in full_objects if "namespace" in obj["metadata"]]
    assert {obj["metadata"]["namespace"] for obj in namespaced} == {"xloud-system"}


def test_every_object_carries_the_release_labels(objects: list[Obj]) -> None:
    for obj in objects:
        labels = obj["metadata"].get("labels", {})
        assert labels.get("app.kubernetes.io/name") == "csi-xloud", obj["metadata"]["name"]
        assert labels.get("app.kubernetes.io/part-of") == "csi-xloud", obj["metadata"]["name"]


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        ({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "x"},
          "spec": {"selector": {}, "template": {"spec": {"containers": [{"name": "a", "imag": "b"}]}}}},
         "imag"),
        ({"apiVersion": "storage.k8s.io/v1", "kind": "CSIDriver", "metadata": {"name": "x"},
          "spec": {"attachRequired": "yes"}}, "yes"),
        ({"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshotClass",
          "metadata": {"name": "x"}, "deletionPolicy": "Delete"}, "driver"),
        ({"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot", "metadata": {"name": "x"},
          "spec": {"source": {"persistentVolumeClaimName": "a", "volumeSnapshotContentName": "b"}}}, "oneOf"),
        ({"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor", "metadata": {"name": "x"},
          "spec": {"selector": {}, "endpoints": [{"prot": "metrics"}]}}, "prot"),
    ],
    ids=["unknown-field", "wrong-type", "crd-required", "crd-one-of", "crd-unknown-field"],
)
def test_validation_catches_broken_objects(broken: Obj, message: str) -> None:
    """The validator the tests above rely on does reject what a cluster would reject."""
    with pytest.raises(Exception, match=message):
        validate_object(broken, "1.34.0")


def test_the_evaluation_install_runs_the_emulator_and_wires_the_driver_to_it(
    default_objects: list[Obj], emulator_objects: list[Obj]
) -> None:
    added = {(o["kind"], o["metadata"]["name"]) for o in emulator_objects} - {
        (o["kind"], o["metadata"]["name"]) for o in default_objects
    }
    assert added == {("Deployment", "csi-xloud-emulator")}
    assert ("PodDisruptionBudget", "csi-xloud-controller") not in {
        (o["kind"], o["metadata"]["name"]) for o in emulator_objects
    }
    emulator = one(emulator_objects, "Deployment", "csi-xloud-emulator")
    controller = one(emulator_objects, "Deployment", "csi-xloud-controller")
    node = one(emulator_objects, "DaemonSet", "csi-xloud-node")
    for workload in (emulator, controller, node):
        assert pod_spec(workload)["hostNetwork"] is True  # the emulator answers on the node's 127.0.0.1
    assert emulator["spec"]["strategy"] == {"type": "Recreate"}
    assert container(emulator, "emulator")["securityContext"]["privileged"] is True
    assert flag(container(emulator, "emulator"), "listen") == "127.0.0.1:8900"
    assert flag(container(node, "csi-xloud"), "metadata-url") == (
        "http://127.0.0.1:8900/_emulator/metadata/<NODE_NAME>"
    )
    assert controller["spec"]["replicas"] == 1
    (term,) = pod_spec(controller)["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert term["labelSelector"]["matchLabels"].items() <= emulator["spec"]["template"]["metadata"]["labels"].items()
    driver = container(controller, "csi-xloud")
    assert driver["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert driver["securityContext"]["readOnlyRootFilesystem"] is True
    # The emulator image the release workflow publishes next to the driver image, at the same version.
    chart = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    assert container(emulator, "emulator")["image"] == f"{values['image']['repository']}-emulator:{chart['appVersion']}"
    workflow = (ROOT / ".github" / "workflows" / "release.yml").read_text()
    assert f"EMULATOR_IMAGE: {values['emulator']['image']['repository']}" in workflow


def test_controller_host_network_is_a_value(default_objects: list[Obj], full_objects: list[Obj]) -> None:
    assert "hostNetwork" not in pod_spec(one(default_objects, "Deployment"))
    spec = pod_spec(one(full_objects, "Deployment"))
    assert (spec["hostNetwork"], spec["dnsPolicy"]) == (True, "ClusterFirstWithHostNet")
