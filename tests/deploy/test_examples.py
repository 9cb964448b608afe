"""examples/: valid objects, classes the driver accepts, and references that resolve."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from deploy_support import (
    CHART_DIR,
    EXAMPLES_DIR,
    Obj,
    chart_kube_versions,
    example_files,
    load_documents,
    validate_object,
)

from csi_xloud import DRIVER_NAME, TOPOLOGY_KEY
from csi_xloud.validation import (
    parse_group_snapshot_parameters,
    parse_mutable_parameters,
    parse_snapshot_parameters,
    parse_volume_parameters,
)

VALUES = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
# Classes a default install creates, which examples may use without defining them.
CHART_CLASSES = {
    "StorageClass": {c["name"] for c in VALUES["storageClasses"]},
    "VolumeSnapshotClass": {c["name"] for c in VALUES["volumeSnapshotClasses"]},
    "VolumeAttributesClass": {c["name"] for c in VALUES["volumeAttributesClasses"]},
    "VolumeGroupSnapshotClass": {c["name"] for c in VALUES["volumeGroupSnapshotClasses"]},
}
FILES = example_files()
ALL = {path.name: list(load_documents(path)) for path in FILES}
EVERYTHING = [obj for docs in ALL.values() for obj in docs]


def names(kind: str) -> set[str]:
    defined = {obj["metadata"]["name"] for obj in EVERYTHING if obj["kind"] == kind}
    return defined | CHART_CLASSES.get(kind, set())


def test_every_scenario_has_an_example() -> None:
    assert {path.name for path in FILES} == {
        "pvc-pod.yaml", "snapshot-restore.yaml", "clone.yaml", "expansion.yaml", "raw-block.yaml",
        "backup-snapshot-class.yaml", "retype.yaml", "topology.yaml", "group-snapshot.yaml",
    }


@pytest.mark.parametrize("path", FILES, ids=[path.name for path in FILES])
def test_example_objects_are_valid(path: Path) -> None:
    objects = ALL[path.name]
    assert objects
    for version in chart_kube_versions():
        for obj in objects:
            try:
                validate_object(obj, version)
            except Exception as exc:
                raise AssertionError(f"{path.name}: {obj['kind']} {obj['metadata']['name']}: {exc}") from exc
    assert len({(o["kind"], o["metadata"]["name"]) for o in objects}) == len(objects)


def test_example_classes_belong_to_the_driver_and_parse() -> None:
    for obj in EVERYTHING:
        if obj["kind"] == "StorageClass":
            assert obj["provisioner"] == DRIVER_NAME
            parse_volume_parameters(obj.get("parameters", {}), {})
            for term in obj.get("allowedTopologies", []):
                assert {e["key"] for e in term["matchLabelExpressions"]} == {TOPOLOGY_KEY}
        elif obj["kind"] == "VolumeSnapshotClass":
            assert obj["driver"] == DRIVER_NAME
            parse_snapshot_parameters(obj.get("parameters", {}))
        elif obj["kind"] == "VolumeAttributesClass":
            assert obj["driverName"] == DRIVER_NAME
            parse_mutable_parameters(obj["parameters"])
        elif obj["kind"] == "VolumeGroupSnapshotClass":
            assert obj["driver"] == DRIVER_NAME
            parse_group_snapshot_parameters(obj.get("parameters", {}))


def test_references_resolve() -> None:
    claims = {obj["metadata"]["name"]: obj for obj in EVERYTHING if obj["kind"] == "PersistentVolumeClaim"}
    snapshots = {obj["metadata"]["name"]: obj for obj in EVERYTHING if obj["kind"] == "VolumeSnapshot"}
    for claim in claims.values():
        spec = claim["spec"]
        assert spec["storageClassName"] in names("StorageClass"), claim["metadata"]["name"]
        if "volumeAttributesClassName" in spec:
            assert spec["volumeAttributesClassName"] in names("VolumeAttributesClass")
        source = spec.get("dataSource")
        if source:
            pool = snapshots if source["kind"] == "VolumeSnapshot" else claims
            assert source["name"] in pool, source
            if source["kind"] == "PersistentVolumeClaim":
                origin = claims[source["name"]]["spec"]
                assert origin["storageClassName"] == spec["storageClassName"]
                assert origin["resources"]["requests"]["storage"] == spec["resources"]["requests"]["storage"]
    for snapshot in snapshots.values():
        assert snapshot["spec"]["volumeSnapshotClassName"] in names("VolumeSnapshotClass")
        assert snapshot["spec"]["source"]["persistentVolumeClaimName"] in claims
    for group in (obj for obj in EVERYTHING if obj["kind"] == "VolumeGroupSnapshot"):
        spec = group["spec"]
        assert spec["volumeGroupSnapshotClassName"] in names("VolumeGroupSnapshotClass")
        wanted = spec["source"]["selector"]["matchLabels"].items()
        selected = [c for c in claims.values() if wanted <= c["metadata"].get("labels", {}).items()]
        assert len(selected) >= 2, group["metadata"]["name"]


def pods() -> list[Obj]:
    return [obj for obj in EVERYTHING if obj["kind"] == "Pod"]


def test_pods_use_their_claims_in_the_claims_mode() -> None:
    claims = {obj["metadata"]["name"]: obj for obj in EVERYTHING if obj["kind"] == "PersistentVolumeClaim"}
    assert pods()
    for pod in pods():
        volumes = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod["spec"]["volumes"]}
        for ctr in pod["spec"]["containers"]:
            assert not ctr["image"].endswith(":latest") and ":" in ctr["image"]
            for mount in ctr.get("volumeMounts", []):
                assert claims[volumes[mount["name"]]]["spec"].get("volumeMode", "Filesystem") == "Filesystem"
            for device in ctr.get("volumeDevices", []):
                assert claims[volumes[device["name"]]]["spec"]["volumeMode"] == "Block"


def test_examples_show_the_documented_snapshot_kinds() -> None:
    backup_classes = [o for o in EVERYTHING if o["kind"] == "VolumeSnapshotClass"]
    assert [parse_snapshot_parameters(c["parameters"]).kind.value for c in backup_classes] == ["backup"]
    claims = [o for o in EVERYTHING if o["kind"] == "PersistentVolumeClaim"]
    assert any(claim["spec"].get("volumeMode") == "Block" for claim in claims)
    assert (EXAMPLES_DIR / "clouds.yaml.example").exists()
