"""Storage API: snapshots, backups, types, qos-specs, quotas, limits and zones."""

from __future__ import annotations

from csi_xloud.emulator.routing import RouteTable
from csi_xloud.emulator.storage_core import StorageCore


def register_resources(core: StorageCore, table: RouteTable) -> None:
    """Add the non-volume route groups."""
