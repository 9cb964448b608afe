"""`csi-xloud classes` against the emulator: one class per type, valid against the Kubernetes schemas."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from csi_xloud import DRIVER_NAME, TOPOLOGY_KEY
from csi_xloud.cloud.models import AvailabilityZone, VolumeType
from csi_xloud.emulator.process import EmulatorProcess
from csi_xloud.ops.classes import ClassOptions, ClassWriter, CloudOffer
from tests.deploy.deploy_support import chart_kube_versions, validate_object
from tests.emulator.helpers import Api
from tests.ops.conftest import cloud_args, csi_xloud

Obj = dict[str, Any]


@pytest.fixture(scope="module")
def zonal_type(emulator: EmulatorProcess) -> Iterator[str]:
    """A type the admin bound to zone-b, as clouds with per-zone backends do."""
    admin = Api(emulator, "xloud-emulator-admin")
    body = {"volume_type": {"name": "Fast NVMe", "extra_specs": {"RESKEY:availability_zones": "zone-b"}}}
    made = admin.volume("POST", "/types", json=body)
    assert made.status_code == 200, made.text
    type_id = made.json()["volume_type"]["id"]
    try:
        yield type_id
    finally:
        admin.volume("DELETE", f"/types/{type_id}")
        admin.close()


def documents(text: str) -> list[Obj]:
    return [doc for doc in yaml.safe_load_all(text) if doc is not None]


def by_kind(objects: list[Obj], kind: str) -> dict[str, Obj]:
    return {obj["metadata"]["name"]: obj for obj in objects if obj["kind"] == kind}


def test_classes_cover_every_type_and_apply_to_every_supported_kubernetes(
    emulator: EmulatorProcess, zonal_type: str
) -> None:
    ran = csi_xloud("classes", *cloud_args(emulator))
    assert ran.code == 0, ran.err
    objects = documents(ran.out)
    for version in chart_kube_versions():
        for obj in objects:
            validate_object(obj, version)
    storage = by_kind(objects, "StorageClass")
    assert set(storage) == {"xloud-standard", "xloud-archive", "xloud-shared", "xloud-fast-nvme"}
    for name, sc in storage.items():
        assert sc["provisioner"] == DRIVER_NAME and sc["allowVolumeExpansion"] is True
        assert sc["volumeBindingMode"] == "WaitForFirstConsumer"
        assert ("allowedTopologies" in sc) is (name == "xloud-fast-nvme")
    zonal = storage["xloud-fast-nvme"]
    assert zonal["parameters"]["type"] == "Fast NVMe"
    assert zonal["allowedTopologies"] == [{"matchLabelExpressions": [{"key": TOPOLOGY_KEY, "values": ["zone-b"]}]}]
    defaults = [n for n, sc in storage.items() if sc["metadata"].get("annotations")]
    assert defaults == ["xloud-standard"]  # the cloud's default type
    snapshots = by_kind(objects, "VolumeSnapshotClass")
    assert {n: c["parameters"]["type"] for n, c in snapshots.items()} == {
        "xloud-snapshot": "snapshot", "xloud-backup": "backup"}
    attributes = by_kind(objects, "VolumeAttributesClass")
    assert {c["parameters"]["type"] for c in attributes.values()} == {"standard", "archive", "shared", "Fast NVMe"}
    assert all(c["driverName"] == DRIVER_NAME for c in attributes.values())
    assert "# multiattach" in ran.out


def test_the_default_class_and_prefixes_are_chosen_by_flags(emulator: EmulatorProcess) -> None:
    ran = csi_xloud("classes", *cloud_args(emulator), "--default-class", "archive", "--prefix", "team-",
                    "--snapshot-prefix", "snap-", "--attributes-prefix", "retype-to-",
                    "--default-snapshot-class", "backup", "--fstype", "xfs")
    assert ran.code == 0, ran.err
    objects = documents(ran.out)
    storage = by_kind(objects, "StorageClass")
    assert [n for n, sc in storage.items() if sc["metadata"].get("annotations")] == ["team-archive"]
    assert {sc["parameters"]["csi.storage.k8s.io/fstype"] for sc in storage.values()} == {"xfs"}
    snapshots = by_kind(objects, "VolumeSnapshotClass")
    assert [n for n, c in snapshots.items() if c["metadata"].get("annotations")] == ["snap-backup"]
    assert "retype-to-standard" in by_kind(objects, "VolumeAttributesClass")


def test_an_unknown_default_class_is_refused_naming_the_types(emulator: EmulatorProcess) -> None:
    ran = csi_xloud("classes", *cloud_args(emulator), "--default-class", "gold")
    assert ran.code == 1 and not ran.out
    assert "no volume type 'gold'" in ran.err and "standard" in ran.err


def test_type_names_become_valid_unique_object_names() -> None:
    types = [VolumeType("a" * 32, "SSD_Tier 1"), VolumeType("b" * 32, "ssd tier-1"), VolumeType("c" * 32, "x" * 90)]
    offer = CloudOffer(types, [AvailabilityZone("nova", True)], None)
    objects = ClassWriter(offer, ClassOptions()).manifests()
    names = [o["metadata"]["name"] for o in objects if o["kind"] == "StorageClass"]
    assert names[0] == "xloud-ssd-tier-1" and names[1] != names[0] and len(names[2]) <= 63
    for obj in objects:
        validate_object(obj, chart_kube_versions()[-1])


def test_a_refused_login_is_one_line_without_the_password(emulator: EmulatorProcess, tmp_path: Path) -> None:
    document = yaml.safe_load(emulator.clouds_yaml.read_text())
    document["clouds"]["xloud-emulator"]["auth"]["password"] = "wrong-Secret-91"
    config = tmp_path / "clouds.yaml"
    config.write_text(yaml.safe_dump(document))
    config.chmod(0o600)
    ran = csi_xloud("classes", *cloud_args(emulator, config))
    assert ran.code == 1 and not ran.out
    assert ran.err.startswith("csi-xloud classes: ") and len(ran.err.splitlines()) == 1, ran.err
    assert f"{emulator.url}/identity/v3 refused user xloud-member" in ran.err
    assert "wrong-Secret-91" not in ran.err


def test_classes_need_only_the_storage_api(emulator: EmulatorProcess) -> None:
    emulator.hide_services(["compute"])
    try:
        ran = csi_xloud("classes", *cloud_args(emulator))
    finally:
        emulator.hide_services([])
    assert ran.code == 0, ran.err
    assert "xloud-standard" in by_kind(documents(ran.out), "StorageClass")
