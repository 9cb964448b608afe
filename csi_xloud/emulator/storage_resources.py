"""Storage API: the route groups besides volumes."""

from __future__ import annotations

from csi_xloud.emulator.group_ops import GroupOperations
from csi_xloud.emulator.routing import RouteTable
from csi_xloud.emulator.storage_admin import AdminRoutes
from csi_xloud.emulator.storage_attachments import AttachmentRoutes
from csi_xloud.emulator.storage_backup_admin import BackupAdminRoutes
from csi_xloud.emulator.storage_backups import BackupRoutes
from csi_xloud.emulator.storage_core import StorageCore
from csi_xloud.emulator.storage_groups import GroupRoutes
from csi_xloud.emulator.storage_info import InfoRoutes
from csi_xloud.emulator.storage_messages import MessageRoutes
from csi_xloud.emulator.storage_snapshots import SnapshotRoutes
from csi_xloud.emulator.storage_transfers import TransferRoutes
from csi_xloud.emulator.storage_type_access import TypeAccessRoutes
from csi_xloud.emulator.storage_type_encryption import TypeEncryptionRoutes
from csi_xloud.emulator.storage_types import TypeRoutes


def register_resources(core: StorageCore, table: RouteTable, groups: GroupOperations) -> None:
    """Add the non-volume route groups."""
    SnapshotRoutes(core).register(table)
    BackupRoutes(core).register(table)
    TypeRoutes(core).register(table)
    AdminRoutes(core).register(table)
    AttachmentRoutes(core).register(table)
    GroupRoutes(core, groups).register(table)
    TypeAccessRoutes(core).register(table)
    MessageRoutes(core).register(table)
    InfoRoutes(core).register(table)
    BackupAdminRoutes(core).register(table)
    TransferRoutes(core).register(table)
    TypeEncryptionRoutes(core).register(table)
