"""GetCapacity's work: what the project's Storage quota still allows, overall and for a volume type.

Zones share a project's quota, so the answer is the same for every accessible_topology.
An unlimited quota is reported as the largest int64: the CO then never rules a node out for space.
"""

from __future__ import annotations

from dataclasses import dataclass

from csi_xloud import GIB
from csi_xloud.cloud.models import Limits, QuotaItem, QuotaUsage
from csi_xloud.cloud.storage import StorageApi
from csi_xloud.controller.volumes import resolve_type

UNLIMITED_BYTES = (1 << 63) - 1


@dataclass(frozen=True, slots=True)
class Capacity:
    """Bytes still available, and the largest single volume (None when the cloud sets no maximum)."""

    available_bytes: int
    maximum_volume_bytes: int | None


class CapacityReader:
    """Reads quota usage and limits from the Storage API."""

    def __init__(self, storage: StorageApi) -> None:
        self._storage = storage

    async def capacity(self, volume_type: str | None) -> Capacity:
        usage = await self._storage.get_quota_usage()
        items = [usage.gigabytes]
        if volume_type is not None:
            type_name = (await resolve_type(self._storage, volume_type, "parameters[type]")).name
            items.append(usage.gigabytes_for_type(type_name))
        limits = await self._storage.get_limits()
        return Capacity(_available(items), _maximum(usage, limits))


def _available(items: list[QuotaItem | None]) -> int:
    """The smallest free amount among the quotas that apply (limit - in use - reserved)."""
    free = [item.free for item in items if item is not None and item.free is not None]
    return min(free) * GIB if free else UNLIMITED_BYTES


def _maximum(usage: QuotaUsage, limits: Limits) -> int | None:
    """The per-volume limit: the `per_volume_gigabytes` quota or the cloud's published maximum size."""
    candidates = [gib for gib in (usage.max_volume_size_gib, limits.max_volume_size_gib) if gib is not None]
    return min(candidates) * GIB if candidates else None
