"""The committed stubs match a fresh generation from proto/csi.proto, and the proto is v1.12.0's."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from google.protobuf.descriptor import FieldDescriptor

from csi_xloud._proto import csi_pb2

ROOT = Path(__file__).resolve().parents[2]


def _generator():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("gen_proto", ROOT / "scripts" / "gen_proto.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_stubs_match_a_fresh_generation(tmp_path: Path) -> None:
    written = _generator().generate(tmp_path / "_proto")
    committed = ROOT / "csi_xloud" / "_proto"
    names = sorted(path.name for path in written)
    assert names == sorted(p.name for p in committed.iterdir() if p.suffix in (".py", ".pyi"))
    for path in written:
        assert path.read_text() == (committed / path.name).read_text(), (
            f"{path.name} is stale: run scripts/gen_proto.py"
        )


def test_stubs_import_by_package_qualified_name() -> None:
    text = (ROOT / "csi_xloud" / "_proto" / "csi_pb2_grpc.py").read_text()
    assert "from csi_xloud._proto import csi_pb2 as csi__pb2" in text
    assert "\nimport csi_pb2" not in text


def test_services_and_methods_of_the_spec() -> None:
    services = {s.name: [m.name for m in s.methods] for s in csi_pb2.DESCRIPTOR.services_by_name.values()}
    assert set(services) == {"Identity", "Controller", "GroupController", "SnapshotMetadata", "Node"}
    assert services["Identity"] == ["GetPluginInfo", "GetPluginCapabilities", "Probe"]
    assert "ControllerModifyVolume" in services["Controller"] and len(services["Controller"]) == 15
    assert services["Node"] == [
        "NodeStageVolume",
        "NodeUnstageVolume",
        "NodePublishVolume",
        "NodeUnpublishVolume",
        "NodeGetVolumeStats",
        "NodeExpandVolume",
        "NodeGetCapabilities",
        "NodeGetInfo",
    ]
    assert csi_pb2.DESCRIPTOR.package == "csi.v1"


# (message, field, number, type) facts from the v1.12.0 spec: these are the wire protocol.
WIRE_FACTS = [
    ("CreateVolumeRequest", "name", 1, FieldDescriptor.TYPE_STRING),
    ("CreateVolumeRequest", "secrets", 5, FieldDescriptor.TYPE_MESSAGE),
    ("CreateVolumeRequest", "accessibility_requirements", 7, FieldDescriptor.TYPE_MESSAGE),
    ("CreateVolumeRequest", "mutable_parameters", 8, FieldDescriptor.TYPE_MESSAGE),
    ("CapacityRange", "limit_bytes", 2, FieldDescriptor.TYPE_INT64),
    ("Volume", "content_source", 4, FieldDescriptor.TYPE_MESSAGE),
    ("ControllerPublishVolumeRequest", "readonly", 4, FieldDescriptor.TYPE_BOOL),
    ("ListVolumesResponse", "next_token", 2, FieldDescriptor.TYPE_STRING),
    ("Snapshot", "creation_time", 4, FieldDescriptor.TYPE_MESSAGE),
    ("Snapshot", "group_snapshot_id", 6, FieldDescriptor.TYPE_STRING),
    ("NodeStageVolumeRequest", "volume_capability", 4, FieldDescriptor.TYPE_MESSAGE),
    ("NodeGetInfoResponse", "max_volumes_per_node", 2, FieldDescriptor.TYPE_INT64),
    ("NodeExpandVolumeRequest", "secrets", 6, FieldDescriptor.TYPE_MESSAGE),
    ("ControllerModifyVolumeRequest", "mutable_parameters", 3, FieldDescriptor.TYPE_MESSAGE),
    ("GetMetadataDeltaRequest", "base_snapshot_id", 1, FieldDescriptor.TYPE_STRING),
]


@pytest.mark.parametrize(("message", "field", "number", "kind"), WIRE_FACTS)
def test_field_numbers_and_types(message: str, field: str, number: int, kind: int) -> None:
    descriptor = csi_pb2.DESCRIPTOR.message_types_by_name[message].fields_by_name[field]
    assert (descriptor.number, descriptor.type) == (number, kind)


def test_secret_fields_are_marked() -> None:
    secret_fields = [
        (message.name, field.name)
        for message in csi_pb2.DESCRIPTOR.message_types_by_name.values()
        for field in message.fields
        if field.GetOptions().Extensions[csi_pb2.csi_secret]
    ]
    assert ("CreateVolumeRequest", "secrets") in secret_fields
    assert ("NodeStageVolumeRequest", "secrets") in secret_fields
    assert ("GetMetadataAllocatedRequest", "secrets") in secret_fields
    assert len(secret_fields) == 19
