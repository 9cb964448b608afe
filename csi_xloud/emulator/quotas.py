"""Cinder quotas: defaults, per-project overrides, usage and the 413 answers."""

from __future__ import annotations

from typing import Any

from csi_xloud.emulator.errors import ApiError, over_limit
from csi_xloud.emulator.models import Backup, QuotaSet, Snapshot, Volume, VolumeType
from csi_xloud.emulator.state import Store

DEFAULTS: dict[str, int] = {
    "volumes": 10,
    "per_volume_gigabytes": -1,
    "snapshots": 10,
    "gigabytes": 1000,
    "backups": 10,
    "backup_gigabytes": 1000,
    "groups": 10,
}
PER_TYPE = ("volumes", "gigabytes", "snapshots")
# Quota classes are stored as quota sets under this prefix; the 'default' class sets the defaults.
CLASS_PREFIX = "quota-class:"


class Quotas:
    """Limits and usage of a project."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def keys(self) -> list[str]:
        """Every quota key, per-type ones included."""
        keys = [k for k in DEFAULTS if k != "groups"]
        for vtype in self._store.all(VolumeType):
            keys.extend(f"{res}_{vtype.name}" for res in PER_TYPE)
        return [*keys, "groups"]

    def defaults(self) -> dict[str, int]:
        """Default limits: Cinder's, as the 'default' quota class changed them."""
        limits = {k: DEFAULTS.get(k, -1) for k in self.keys()}
        override = self._store.get(QuotaSet, f"{CLASS_PREFIX}default")
        if override is not None:
            limits.update({k: v for k, v in override.limits.items() if k in limits})
        return limits

    def class_view(self, name: str) -> dict[str, Any]:
        """The quota_class_set body of a class."""
        return {**self.limits(f"{CLASS_PREFIX}{name}"), "id": name}

    def update_class(self, name: str, raw: Any) -> dict[str, Any]:
        """Apply a PUT body's quota_class_set (same rules as a project's)."""
        self.update(f"{CLASS_PREFIX}{name}", raw, "quota_class_set")
        limits = self.limits(f"{CLASS_PREFIX}{name}")
        return limits

    def limits(self, project_id: str) -> dict[str, int]:
        """Effective limits of a project."""
        override = self._store.get(QuotaSet, project_id)
        limits = self.defaults()
        if override is not None:
            limits.update({k: v for k, v in override.limits.items() if k in limits})
        return limits

    def usage(self, project_id: str) -> dict[str, int]:
        """What a project uses now."""
        types = {t.id: t.name for t in self._store.all(VolumeType)}
        usage = dict.fromkeys(self.keys(), 0)
        volumes = [v for v in self._store.all(Volume) if v.project_id == project_id]
        snaps = [s for s in self._store.all(Snapshot) if s.project_id == project_id]
        backups = [b for b in self._store.all(Backup) if b.project_id == project_id]
        vol_types = {v.id: types.get(v.type_id, "") for v in volumes}
        usage["volumes"] = len(volumes)
        usage["gigabytes"] = sum(v.size for v in volumes) + sum(s.size for s in snaps)
        usage["snapshots"] = len(snaps)
        usage["backups"] = len(backups)
        usage["backup_gigabytes"] = sum(b.size for b in backups)
        for v in volumes:
            self._bump(usage, f"volumes_{vol_types[v.id]}", 1)
            self._bump(usage, f"gigabytes_{vol_types[v.id]}", v.size)
        for s in snaps:
            tname = vol_types.get(s.volume_id, "")
            self._bump(usage, f"snapshots_{tname}", 1)
            self._bump(usage, f"gigabytes_{tname}", s.size)
        return usage

    @staticmethod
    def _bump(usage: dict[str, int], key: str, amount: int) -> None:
        if key in usage:
            usage[key] += amount

    def check_volume(self, project_id: str, size: int, type_name: str, count: int = 1) -> None:
        """413 unless a new volume of size GiB fits."""
        limits, usage = self.limits(project_id), self.usage(project_id)
        per_volume = limits["per_volume_gigabytes"]
        if per_volume >= 0 and size > per_volume:
            raise over_limit(
                f"VolumeSizeExceedsLimit: Requested volume size {size}G is larger than maximum allowed limit"
                f" {per_volume}G."
            )
        self._check_count(limits, usage, "volumes", count)
        self._check_count(limits, usage, f"volumes_{type_name}", count)
        self._check_gigabytes(limits, usage, "gigabytes", size)
        self._check_gigabytes(limits, usage, f"gigabytes_{type_name}", size)

    def check_extend(self, project_id: str, delta: int, type_name: str) -> None:
        """413 unless growing a volume by delta GiB fits."""
        limits, usage = self.limits(project_id), self.usage(project_id)
        self._check_gigabytes(limits, usage, "gigabytes", delta)
        self._check_gigabytes(limits, usage, f"gigabytes_{type_name}", delta)

    def check_snapshot(self, project_id: str, size: int, type_name: str, count: int = 1) -> None:
        """413 unless `count` new snapshots of `size` GiB in all fit."""
        limits, usage = self.limits(project_id), self.usage(project_id)
        for key in ("snapshots", f"snapshots_{type_name}"):
            limit = limits.get(key, -1)
            if limit >= 0 and usage.get(key, 0) + count > limit:
                raise over_limit(
                    f"SnapshotLimitExceeded: Maximum number of snapshots allowed ({limit}) exceeded"
                )
        self._check_gigabytes(limits, usage, "gigabytes", size)

    def check_backup(self, project_id: str, size: int) -> None:
        """413 unless a new backup fits."""
        limits, usage = self.limits(project_id), self.usage(project_id)
        if limits["backups"] >= 0 and usage["backups"] + 1 > limits["backups"]:
            raise over_limit(
                f"BackupLimitExceeded: Maximum number of backups allowed ({limits['backups']}) exceeded"
            )
        limit = limits["backup_gigabytes"]
        if limit >= 0 and usage["backup_gigabytes"] + size > limit:
            raise over_limit(
                "VolumeBackupSizeExceedsAvailableQuota: Requested"
                " backup exceeds allowed Backup gigabytes quota."
                f" Requested {size}G, quota is {limit}G and {usage['backup_gigabytes']}G has been consumed."
            )

    @staticmethod
    def _check_count(limits: dict[str, int], usage: dict[str, int], key: str, count: int) -> None:
        limit = limits.get(key, -1)
        if limit >= 0 and usage.get(key, 0) + count > limit:
            raise over_limit(
                "VolumeLimitExceeded: Maximum number of volumes"
                f" allowed ({limit}) exceeded for quota '{key}'."
            )

    @staticmethod
    def _check_gigabytes(limits: dict[str, int], usage: dict[str, int], key: str, size: int) -> None:
        limit = limits.get(key, -1)
        if limit >= 0 and usage.get(key, 0) + size > limit:
            raise over_limit(
                "VolumeSizeExceedsAvailableQuota: Requested volume or snapshot exceeds allowed"
                f" {key} quota. Requested {size}G, quota is {limit}G"
                f" and {usage.get(key, 0)}G has been consumed."
            )

    def view(self, project_id: str, with_usage: bool) -> dict[str, Any]:
        """The quota_set body."""
        limits = self.limits(project_id)
        if not with_usage:
            return {**limits, "id": project_id}
        usage = self.usage(project_id)
        body: dict[str, Any] = {
            k: {"limit": v, "in_use": usage.get(k, 0), "reserved": 0} for k, v in limits.items()
        }
        return {**body, "id": project_id}

    def update(self, project_id: str, raw: Any, field: str = "quota_set") -> dict[str, int]:
        """Apply a PUT body's quota_set; 400 for non-integers or unknown keys."""
        if not isinstance(raw, dict):
            raise ApiError(400, {"badRequest": {"code": 400, "message": f"'{field}' is a required property"}})
        known = set(self.keys())
        override = self._store.get(QuotaSet, project_id)
        limits = dict(override.limits) if override else {}
        for key, value in raw.items():
            if key in ("tenant_id", "id"):
                continue
            if key not in known:
                raise ApiError(
                    400, {"badRequest": {"code": 400, "message": f"Bad key(s) in quota set: {key}"}}
                )
            if (
                isinstance(value, bool)
                or not isinstance(value, int | str)
                or not str(value).lstrip("-").isdigit()
            ):
                raise ApiError(400, {"badRequest": {"code": 400, "message": f"{key} must be an integer"}})
            number = int(value)
            if number < -1:
                raise ApiError(400, {"badRequest": {"code": 400, "message": f"{key} must be >= -1"}})
            limits[key] = number
        self._store.put(QuotaSet(project_id, limits))
        return self.limits(project_id)

    def reset(self, project_id: str) -> None:
        """Back to defaults."""
        override = self._store.get(QuotaSet, project_id)
        if override is not None:
            self._store.delete(override)
