"""Request field checks: sizes to whole GiB, capabilities, parameters, topology."""

from __future__ import annotations

import pytest

from csi_xloud import GIB, TOPOLOGY_KEY
from csi_xloud._proto import csi_pb2
from csi_xloud.rpc.errors import InvalidArgument, OutOfRange
from csi_xloud.validation import (
    FsType,
    MigrationPolicy,
    SnapshotKind,
    check_capabilities,
    fits,
    multi_node_refusal,
    parse_mutable_parameters,
    parse_snapshot_parameters,
    parse_volume_parameters,
    require,
    size_gib,
    zone_allowed,
    zone_from_topology,
)

Mode = csi_pb2.VolumeCapability.AccessMode


def cap(mode: int, *, block: bool = False, fs_type: str = "") -> csi_pb2.VolumeCapability:
    capability = csi_pb2.VolumeCapability(access_mode=Mode(mode=mode))  # type: ignore[arg-type]
    if block:
        capability.block.SetInParent()
    else:
        capability.mount.fs_type = fs_type
    return capability


@pytest.mark.parametrize(
    ("required", "limit", "gib"),
    [
        (0, 0, 1),
        (1, 0, 1),
        (GIB, 0, 1),
        (GIB + 1, 0, 2),
        (10 * GIB, 10 * GIB, 10),
        (0, 5 * GIB, 1),
        (3 * GIB - 1, 3 * GIB, 3),
    ],
)
def test_sizes_round_up_to_whole_gib(required: int, limit: int, gib: int) -> None:
    assert size_gib(csi_pb2.CapacityRange(required_bytes=required, limit_bytes=limit)) == gib


def test_no_capacity_range_is_the_minimum() -> None:
    assert size_gib(None) == 1


@pytest.mark.parametrize(
    ("required", "limit", "error", "fragment"),
    [
        (-1, 0, InvalidArgument, "required_bytes must not be negative"),
        (0, -5, InvalidArgument, "limit_bytes must not be negative"),
        (2 * GIB, GIB, InvalidArgument, "larger than"),
        (GIB + 1, GIB + 100, OutOfRange, "whole GiB"),
        (0, 100 << 20, OutOfRange, "limit_bytes"),
    ],
)
def test_bad_ranges(required: int, limit: int, error: type[Exception], fragment: str) -> None:
    with pytest.raises(error, match=fragment):
        size_gib(csi_pb2.CapacityRange(required_bytes=required, limit_bytes=limit))


def test_fits_checks_both_ends() -> None:
    assert fits(csi_pb2.CapacityRange(required_bytes=GIB), 1)
    assert not fits(csi_pb2.CapacityRange(required_bytes=2 * GIB), 1)
    assert not fits(csi_pb2.CapacityRange(limit_bytes=GIB), 2)
    assert fits(None, 7)


def test_capabilities_summary() -> None:
    needs = check_capabilities(
        [cap(Mode.SINGLE_NODE_WRITER, fs_type="xfs"), cap(Mode.MULTI_NODE_READER_ONLY, block=True)],
        "volume_capabilities",
    )
    assert (needs.block, needs.mount, needs.multi_node, needs.read_only) == (True, True, True, True)
    assert needs.fs_types == {"xfs"}


@pytest.mark.parametrize(
    ("capabilities", "fragment"),
    [
        ([], "volume_capabilities is required"),
        ([csi_pb2.VolumeCapability(access_mode=Mode(mode=Mode.SINGLE_NODE_WRITER))], "access_type"),
        ([cap(Mode.UNKNOWN)], "access_mode is required"),
        ([cap(Mode.SINGLE_NODE_WRITER, fs_type="ntfs")], "'ntfs' is not supported"),
    ],
)
def test_bad_capabilities(capabilities: list[csi_pb2.VolumeCapability], fragment: str) -> None:
    with pytest.raises(InvalidArgument, match=fragment):
        check_capabilities(capabilities, "volume_capabilities")


def test_multi_node_only_for_block_on_multiattach() -> None:
    block_multi = check_capabilities([cap(Mode.MULTI_NODE_MULTI_WRITER, block=True)], "c")
    mount_multi = check_capabilities([cap(Mode.MULTI_NODE_MULTI_WRITER)], "c")
    single = check_capabilities([cap(Mode.SINGLE_NODE_WRITER)], "c")
    assert multi_node_refusal(block_multi, multiattach=True) is None
    assert "multiattach" in (multi_node_refusal(block_multi, multiattach=False) or "")
    assert "block volumes only" in (multi_node_refusal(mount_multi, multiattach=True) or "")
    assert multi_node_refusal(single, multiattach=False) is None


def test_volume_parameters() -> None:
    params = parse_volume_parameters(
        {
            "type": "fast",
            "availability": "zone-b",
            "csi.storage.k8s.io/fstype": "XFS",
            "csi.storage.k8s.io/pvc/name": "data",
            "csi.storage.k8s.io/pvc/namespace": "shop",
            "csi.storage.k8s.io/pv/name": "pvc-123",
        },
        {},
    )
    assert (params.volume_type, params.availability_zone, params.fs_type) == ("fast", "zone-b", FsType.XFS)
    assert params.metadata() == {
        "csi.storage.k8s.io/pvc/name": "data",
        "csi.storage.k8s.io/pvc/namespace": "shop",
        "csi.storage.k8s.io/pv/name": "pvc-123",
    }


def test_mutable_type_takes_precedence() -> None:
    assert parse_volume_parameters({"type": "slow"}, {"type": "fast"}).volume_type == "fast"


@pytest.mark.parametrize(
    ("parameters", "fragment"),
    [
        ({"iops": "100"}, "unknown key 'iops'"),
        ({"csi.storage.k8s.io/fstype": "zfs"}, "'zfs' is not supported"),
        ({"type": "x" * 5000}, "larger than 4096 bytes"),
    ],
)
def test_bad_volume_parameters(parameters: dict[str, str], fragment: str) -> None:
    with pytest.raises(InvalidArgument, match=fragment):
        parse_volume_parameters(parameters, {})


def test_snapshot_parameters() -> None:
    assert parse_snapshot_parameters({}).kind is SnapshotKind.SNAPSHOT
    assert parse_snapshot_parameters({}).force is True
    backup = parse_snapshot_parameters(
        {
            "type": "backup",
            "incremental": "true",
            "force-create": "false",
            "csi.storage.k8s.io/volumesnapshot/name": "s",
        }
    )
    assert (backup.kind, backup.incremental, backup.force) == (SnapshotKind.BACKUP, True, False)
    assert backup.metadata == (("csi.storage.k8s.io/volumesnapshot/name", "s"),)


@pytest.mark.parametrize(
    ("parameters", "fragment"),
    [
        ({"type": "mirror"}, "'mirror' is not supported"),
        ({"incremental": "true"}, "only to type=backup"),
        ({"force-create": "maybe"}, "not a boolean"),
        ({"color": "red"}, "unknown key 'color'"),
    ],
)
def test_bad_snapshot_parameters(parameters: dict[str, str], fragment: str) -> None:
    with pytest.raises(InvalidArgument, match=fragment):
        parse_snapshot_parameters(parameters)


def test_mutable_parameters() -> None:
    parsed = parse_mutable_parameters({"type": "fast", "migration-policy": "never"})
    assert (parsed.volume_type, parsed.migration_policy) == ("fast", MigrationPolicy.NEVER)
    with pytest.raises(InvalidArgument, match="unknown key 'iops'"):
        parse_mutable_parameters({"iops": "5"})
    with pytest.raises(InvalidArgument, match="'sometimes'"):
        parse_mutable_parameters({"migration-policy": "sometimes"})


def test_required_strings() -> None:
    assert require("pvc-1", "name") == "pvc-1"
    with pytest.raises(InvalidArgument, match="name is required"):
        require("", "name")
    with pytest.raises(InvalidArgument, match="longer than 128 bytes"):
        require("x" * 129, "name")
    with pytest.raises(InvalidArgument, match="control character"):
        require("bad\x01name", "name")


def test_topology() -> None:
    def topo(zone: str) -> csi_pb2.Topology:
        return csi_pb2.Topology(segments={TOPOLOGY_KEY: zone})

    requirement = csi_pb2.TopologyRequirement(requisite=[topo("a"), topo("b")], preferred=[topo("b")])
    assert zone_from_topology(requirement) == "b"
    assert zone_from_topology(csi_pb2.TopologyRequirement(requisite=[topo("a")])) == "a"
    assert zone_from_topology(None) is None
    assert zone_allowed(requirement, "a") and not zone_allowed(requirement, "c")
    assert zone_allowed(None, "c")
