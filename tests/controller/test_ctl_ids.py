"""In-process checks of the controller's ids, tokens and volume conditions (no cloud needed)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from csi_xloud.cloud.models import Backup, BackupStatus, Volume, VolumeStatus
from csi_xloud.controller.ids import (
    ContentSource,
    SnapshotPhase,
    SnapshotToken,
    SourceKind,
    backup_snapshot_id,
    parse_snapshot_id,
    volume_token,
)
from csi_xloud.controller.views import ConditionJudge, snapshot_message
from csi_xloud.rpc.errors import Aborted

UUID = "0e4f3f7a-3c3a-4f55-9d43-7f1d1b0c2a11"


def test_snapshot_ids_name_snapshots_plainly_and_backups_with_a_prefix() -> None:
    assert backup_snapshot_id(UUID) == f"backup:{UUID}"
    assert parse_snapshot_id(f"backup:{UUID}") is not None
    ref = parse_snapshot_id(f"backup:{UUID}")
    assert ref is not None and ref.backup and ref.storage_id == UUID
    plain = parse_snapshot_id(UUID)
    assert plain is not None and not plain.backup
    for bad in ("../volumes", "backup:", "a/b", "backup:x y"):
        assert parse_snapshot_id(bad) is None


def test_content_sources_round_trip() -> None:
    for kind in SourceKind:
        source = ContentSource(kind, UUID)
        assert ContentSource.parse(str(source)) == source
    assert ContentSource.parse("disk:" + UUID) is None
    assert ContentSource.parse("snapshot:") is None


def test_list_tokens() -> None:
    assert volume_token("") is None
    assert volume_token(UUID) == UUID
    with pytest.raises(Aborted):
        volume_token("x/../y")
    token = SnapshotToken(SnapshotPhase.BACKUPS, UUID)
    assert SnapshotToken.parse(str(token)) == token
    assert SnapshotToken.parse("b:") == SnapshotToken(SnapshotPhase.BACKUPS, None)
    assert SnapshotToken.parse("") == SnapshotToken(SnapshotPhase.SNAPSHOTS, None)
    for bad in ("x:" + UUID, UUID, "s:a/b"):
        with pytest.raises(Aborted):
            SnapshotToken.parse(bad)


def test_backup_snapshot_message_is_ready_only_when_available() -> None:
    creating = Backup(UUID, "b", "v", 2, BackupStatus.CREATING, raw_status="creating")
    message = snapshot_message(creating)
    assert (
        message.snapshot_id == f"backup:{UUID}" and not message.ready_to_use and message.size_bytes == 2 << 30
    )


def test_conditions() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    judge = ConditionJudge(lambda: now, stuck_seconds=60)

    def volume(status: str, age_seconds: float) -> Volume:
        return Volume(
            UUID,
            "v",
            1,
            VolumeStatus(status),
            raw_status=status,
            updated_at=now - timedelta(seconds=age_seconds),
        )

    assert not judge.condition(volume("available", 3600)).abnormal
    assert not judge.condition(volume("attaching", 30)).abnormal
    assert judge.condition(volume("attaching", 120)).abnormal
    assert judge.condition(volume("error", 0)).abnormal
    unknown = Volume(UUID, "v", 1, VolumeStatus.UNKNOWN, raw_status="weird")
    assert "weird" in judge.condition(unknown).message
