"""ListVolumes and ListSnapshots: Storage API pages behind CSI tokens.

ListVolumes' token is the Storage marker itself (the last volume id of the page before).
ListSnapshots walks snapshots, then backups; its token says which and from which marker
(ids.SnapshotToken). A token the cloud does not know (its marker was deleted,
or it was never ours) is answered ABORTED, and the CO lists again from the start.

Snapshots and backups still `creating` are listed with ready_to_use=false: the Storage API
fixes their point in time when it accepts the request, so they are cut; failed ones and
ones being deleted are left out.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from csi_xloud.cloud import errors as cloud
from csi_xloud.cloud.models import Backup, Page, Snapshot, Volume
from csi_xloud.cloud.storage import StorageApi
from csi_xloud.controller.ids import SnapshotPhase, SnapshotToken, is_storage_id, volume_token
from csi_xloud.controller.snapshots import Item, is_failed, is_gone
from csi_xloud.rpc.errors import Aborted

T = TypeVar("T")
Fetch = Callable[[int | None, str | None], Awaitable[Page[T]]]


@dataclass(frozen=True, slots=True)
class Listing(Generic[T]):
    """One CSI page: items and the token of the next page ("" on the last)."""

    items: tuple[T, ...]
    next_token: str = ""


async def _page(fetch: Fetch[T], limit: int | None, marker: str | None) -> Page[T]:
    """One Storage page; an unknown marker means the token is stale."""
    try:
        return await fetch(limit, marker)
    except (cloud.NotFound, cloud.BadRequest):
        if marker is None:
            raise
        raise Aborted(f"starting_token {marker!r} is no longer valid; list again from the start") from None


async def _gather(fetch: Fetch[T], limit: int | None, marker: str | None) -> tuple[list[T], str | None]:
    """Up to limit items (all when None) from marker on, and the marker of what is left."""
    items: list[T] = []
    while limit is None or len(items) < limit:
        page = await _page(fetch, None if limit is None else limit - len(items), marker)
        items.extend(page.items)
        marker = page.next_marker
        if marker is None or not page.items:
            return items, None
    return items, marker


class Lister:
    """Pages through volumes, snapshots and backups."""

    def __init__(self, storage: StorageApi) -> None:
        self._storage = storage

    async def volumes(self, limit: int | None, starting_token: str) -> Listing[Volume]:
        def fetch(size: int | None, marker: str | None) -> Awaitable[Page[Volume]]:
            return self._storage.list_volumes(limit=size, marker=marker)

        items, marker = await _gather(fetch, limit, volume_token(starting_token))
        return Listing(tuple(items), marker or "")

    async def snapshots(self, limit: int | None, starting_token: str, source_volume_id: str) -> Listing[Item]:
        """Snapshots, then backups, optionally of one volume; none in deletion or failed."""
        token = SnapshotToken.parse(starting_token)
        if source_volume_id and not is_storage_id(source_volume_id):
            return Listing(())
        volume_id = source_volume_id or None
        found: list[Item] = []
        marker = token.marker
        if token.phase is SnapshotPhase.SNAPSHOTS:
            snapshots, marker = await _gather(self._snapshot_fetch(volume_id), limit, marker)
            found.extend(snapshots)
            if marker is not None:
                return _listing(found, SnapshotToken(SnapshotPhase.SNAPSHOTS, marker))
            if limit is not None and len(found) >= limit:
                return _listing(found, SnapshotToken(SnapshotPhase.BACKUPS, None))
        remaining = None if limit is None else limit - len(found)
        backups, marker = await _gather(self._backup_fetch(volume_id), remaining, marker)
        found.extend(backups)
        return _listing(found, SnapshotToken(SnapshotPhase.BACKUPS, marker) if marker else None)

    def _snapshot_fetch(self, volume_id: str | None) -> Fetch[Snapshot]:
        def fetch(size: int | None, marker: str | None) -> Awaitable[Page[Snapshot]]:
            return self._storage.list_snapshots(limit=size, marker=marker, volume_id=volume_id)

        return fetch

    def _backup_fetch(self, volume_id: str | None) -> Fetch[Backup]:
        def fetch(size: int | None, marker: str | None) -> Awaitable[Page[Backup]]:
            return self._storage.list_backups(limit=size, marker=marker, volume_id=volume_id)

        return fetch


def _listing(found: list[Item], token: SnapshotToken | None) -> Listing[Item]:
    usable = tuple(item for item in found if not is_gone(item) and not is_failed(item))
    return Listing(usable, str(token) if token is not None else "")
