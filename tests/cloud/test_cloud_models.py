"""Models built from the JSON shapes the Storage, Compute and Identity APIs answer with."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from csi_xloud.cloud.answers import error_message
from csi_xloud.cloud.errors import UnsupportedFeature
from csi_xloud.cloud.models import (
    ApiVersion,
    Attachment,
    Backup,
    Limits,
    QuotaUsage,
    Server,
    Snapshot,
    SnapshotStatus,
    VersionRange,
    Volume,
    VolumeStatus,
    VolumeType,
)
from csi_xloud.cloud.versions import Feature, MicroversionPicker, parse_version_document

IN_USE_VOLUME = {
    "id": "69d2defb-b33b-4ee4-bd25-8cd6552fbed5",
    "status": "in-use",
    "size": 1,
    "availability_zone": "nova",
    "created_at": "2026-11-27T05:04:58.000000",
    "name": "att-vol",
    "description": None,
    "volume_type": "ssd-standard",
    "snapshot_id": None,
    "source_volid": None,
    "metadata": {"k": "v"},
    "bootable": "false",
    "encrypted": False,
    "multiattach": False,
    "migration_status": None,
    "volume_type_id": "ed8e5f0e-d491-411a-a1a3-b88238c82830",
    "attachments": [
        {
            "id": "69d2defb-b33b-4ee4-bd25-8cd6552fbed5",
            "attachment_id": "330790c6-c28a-497a-b910-c6667d2dcc37",
            "volume_id": "69d2defb-b33b-4ee4-bd25-8cd6552fbed5",
            "server_id": "89445fa7-dbf2-419f-a427-a9ae23566275",
            "host_name": "compute-1",
            "device": "/dev/vdb",
            "attached_at": "2026-11-27T05:04:58.000000",
        }
    ],
}

# Exchanges recorded from a real Compute service, kept beside the emulator's tests.
SAMPLES = Path(__file__).resolve().parents[1] / "emulator" / "api_samples" / "nova"


def test_volume_from_api() -> None:
    volume = Volume.from_api(IN_USE_VOLUME)
    assert volume.status is VolumeStatus.IN_USE and volume.raw_status == "in-use"
    assert volume.size_gib == 1 and volume.volume_type == "ssd-standard" and volume.metadata == {"k": "v"}
    assert volume.bootable is False and volume.multiattach is False
    assert volume.created_at == datetime(2026, 11, 27, 5, 4, 58, tzinfo=UTC)
    assert volume.attached_server_ids == ("89445fa7-dbf2-419f-a427-a9ae23566275",)
    attachment = volume.attachments[0]
    assert (
        attachment.attachment_id == "330790c6-c28a-497a-b910-c6667d2dcc37" and attachment.device == "/dev/vdb"
    )


def test_unknown_status_is_kept_raw() -> None:
    volume = Volume.from_api({"id": "v", "status": "quarantined", "size": "2"})
    assert volume.status is VolumeStatus.UNKNOWN and volume.raw_status == "quarantined"
    assert volume.size_gib == 2
    assert VolumeStatus.ERROR_EXTENDING.is_error and not VolumeStatus.EXTENDING.is_error


def test_snapshot_and_backup_from_api() -> None:
    snapshot = Snapshot.from_api(
        {
            "id": "s1",
            "name": "snap-1",
            "volume_id": "v1",
            "status": "available",
            "size": 1,
            "metadata": {"s": "1"},
            "os-extended-snapshot-attributes:progress": "100%",
            "created_at": "2026-11-27T05:04:00.000000",
        }
    )
    assert snapshot.status is SnapshotStatus.AVAILABLE and snapshot.progress == "100%"
    backup = Backup.from_api(
        {
            "id": "b1",
            "status": "error",
            "size": 1,
            "name": "bk-incr",
            "volume_id": "v1",
            "is_incremental": True,
            "has_dependent_backups": False,
            "fail_reason": "chunk store full",
            "availability_zone": "nova",
            "container": "6e/b0/b1",
            "metadata": {"kind": "incr"},
        }
    )
    assert backup.status.is_error and backup.is_incremental and backup.fail_reason == "chunk store full"


def test_type_quota_limits_server_attachment() -> None:
    vtype = VolumeType.from_api(
        {"id": "t1", "name": "multi", "extra_specs": {"multiattach": "<is> True"}, "qos_specs_id": None}
    )
    assert vtype.multiattach
    assert not VolumeType.from_api({"id": "t2", "name": "plain", "extra_specs": {}}).multiattach

    quota = QuotaUsage.from_api(
        {
            "id": "p1",
            "gigabytes": {"limit": 1000, "in_use": 2, "reserved": 1},
            "gigabytes_ssd-standard": {"limit": -1, "in_use": 2, "reserved": 0},
            "per_volume_gigabytes": {"limit": 50, "in_use": 0, "reserved": 0},
        }
    )
    assert quota.gigabytes is not None and quota.gigabytes.free == 997
    per_type = quota.gigabytes_for_type("ssd-standard")
    assert per_type is not None and per_type.unlimited and per_type.free is None
    assert quota.max_volume_size_gib == 50

    limits = Limits.from_api(
        {
            "rate": [],
            "absolute": {"maxTotalVolumeGigabytes": 1000, "totalGigabytesUsed": 3, "maxTotalVolumes": -1},
        }
    )
    assert limits.max_total_volume_gigabytes == 1000 and limits.total_gigabytes_used == 3
    assert limits.max_total_volumes is None

    server = Server.from_api(
        {"id": "s", "name": "nvs-a", "status": "ACTIVE", "OS-EXT-AZ:availability_zone": "nova"}
    )
    assert server.availability_zone == "nova" and server.attached_volume_ids == ()
    recorded = json.loads((SAMPLES / "op_02_attach_v2_1.json").read_text())
    show = next(x for x in recorded["exchanges"] if "volumes_attached" in x["label"])
    body = show["response"]["body"]["server"]
    assert Server.from_api(body).attached_volume_ids == tuple(
        v["id"] for v in body["os-extended-volumes:volumes_attached"]
    )
    assert len(Server.from_api(body).attached_volume_ids) >= 2
    old = Attachment.from_api({"id": "v1", "serverId": "s", "volumeId": "v1", "device": "/dev/vdb"})
    new = Attachment.from_api(
        {
            "serverId": "s",
            "volumeId": "v1",
            "device": "/dev/sdb",
            "attachment_id": "a1",
            "tag": None,
            "delete_on_termination": False,
        }
    )
    assert old.id == new.id == "v1" and new.attachment_id == "a1"


def test_api_versions_order_numerically() -> None:
    assert ApiVersion.parse("3.9") < ApiVersion.parse("3.42") < ApiVersion.parse("3.71")
    assert str(ApiVersion.parse("v2.1")) == "2.1"
    for bad in ("3", "3.x", "", "three.1"):
        with pytest.raises(ValueError):
            ApiVersion.parse(bad)


@pytest.mark.parametrize(
    ("document", "low", "high"),
    [
        (
            {"versions": [{"id": "v3.0", "status": "CURRENT", "version": "3.71", "min_version": "3.0"}]},
            "3.0",
            "3.71",
        ),
        (
            {"version": {"id": "v2.1", "status": "CURRENT", "version": "2.104", "min_version": "2.1"}},
            "2.1",
            "2.104",
        ),
        (
            {
                "versions": [
                    {"id": "v2.0", "status": "SUPPORTED", "version": "", "min_version": ""},
                    {"id": "v2.1", "status": "CURRENT", "version": "2.95", "min_version": "2.1"},
                ]
            },
            "2.1",
            "2.95",
        ),
    ],
)
def test_version_documents(document: dict[str, object], low: str, high: str) -> None:
    assert parse_version_document(document) == VersionRange(ApiVersion.parse(low), ApiVersion.parse(high))


def test_keystone_document_has_no_microversions() -> None:
    document = {"versions": {"values": [{"id": "v3.14", "status": "stable"}]}}
    assert parse_version_document(document) == VersionRange(None, None)


class Document:
    def __init__(self, body: dict[str, object]) -> None:
        self.body = body
        self.calls = 0

    async def version_document(self) -> dict[str, object]:
        self.calls += 1
        return self.body


async def test_picker_sends_the_highest_needed_version() -> None:
    source = Document({"versions": [{"status": "CURRENT", "version": "3.50", "min_version": "3.0"}]})
    picker = MicroversionPicker(source, "volume")
    assert await picker.pick(Feature("show", ApiVersion(3, 0), ApiVersion(3, 63))) == ApiVersion(3, 50)
    assert await picker.pick(Feature("extend online", ApiVersion(3, 42))) == ApiVersion(3, 42)
    assert await picker.pick(Feature("plain", ApiVersion(3, 0))) == ApiVersion(3, 0)
    with pytest.raises(
        UnsupportedFeature,
        match=r"to do it the volume API needs microversion 3\.51 or newer, "
        r"but this cloud supports 3\.0 to 3\.50",
    ):
        await picker.pick(Feature("do it", ApiVersion(3, 51)))
    assert source.calls == 1


async def test_picker_respects_the_server_minimum() -> None:
    source = Document({"versions": [{"status": "CURRENT", "version": "3.71", "min_version": "3.27"}]})
    picker = MicroversionPicker(source, "volume")
    assert await picker.pick(Feature("plain", ApiVersion(3, 0))) == ApiVersion(3, 27)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"badRequest": {"code": 400, "message": "Invalid input for field/attribute size."}},
            "Invalid input for field/attribute size.",
        ),
        (
            {
                "error": {
                    "code": 401,
                    "message": "The request you have made requires authentication.",
                    "title": "Unauthorized",
                }
            },
            "The request you have made requires authentication.",
        ),
        (
            {"message": "The resource could not be found.<br /><br />\n\n\n", "code": "404 Not Found"},
            "The resource could not be found.",
        ),
        (
            {"computeFault": {"code": 406, "message": "Version 2.200 is not supported by the API."}},
            "Version 2.200 is not supported by the API.",
        ),
        ({}, None),
    ],
)
def test_error_messages(body: dict[str, object], message: str | None) -> None:
    assert error_message(body) == message
