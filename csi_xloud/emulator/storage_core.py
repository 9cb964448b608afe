"""What the Storage API's route groups share: lookups, validation, views and response builders."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable
from typing import Any

from starlette.responses import JSONResponse, Response

from csi_xloud.emulator.context import EmulatorConfig
from csi_xloud.emulator.errors import ApiError, bad_request, forbidden, invalid_input, not_found
from csi_xloud.emulator.models import Attachment, Backup, Server, Snapshot, Volume, VolumeType
from csi_xloud.emulator.ops import Operations
from csi_xloud.emulator.quotas import Quotas
from csi_xloud.emulator.routing import Call
from csi_xloud.emulator.state import Store
from csi_xloud.emulator.views import StorageViews

DEFAULT_TYPE = "standard"
_TRUE = (True, "True", "TRUE", "true", "1", "ON", "On", "on", "YES", "Yes", "yes", "y", "t")
_FALSE = (False, "False", "FALSE", "false", "0", "OFF", "Off", "off", "NO", "No", "no", "n", "f")


def no_such_action(name: str) -> ApiError:
    """The 400 for an action a resource does not have."""
    return bad_request(
        f"There is no such action: {name}. Verify the request body and Content-Type header and try again."
    )


def parse_bool(field: str, value: Any) -> bool:
    """A Cinder boolean parameter, or its schema error."""
    if (value in _TRUE and not isinstance(value, int | float)) or value is True:
        return True
    if (value in _FALSE and not isinstance(value, int | float)) or value is False:
        return False
    allowed = ", ".join(repr(v) for v in (*_TRUE, *_FALSE))
    raise invalid_input(field, value, f"{value!r} is not one of [{allowed}]")


def parse_size(field: str, value: Any, minimum: int = 1) -> int:
    """A size in GiB as Cinder's schema accepts it (integer or digit string)."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise invalid_input(field, value, f"{value!r} is not of type 'integer', 'string', 'null'")
    if isinstance(value, str) and not value.isdigit():
        raise invalid_input(field, value, f"{value!r} does not match '^[0-9]+$'")
    number = int(value)
    if number < minimum:
        raise invalid_input(field, value, f"{number} is less than the minimum of {minimum}")
    return number


def check_metadata(metadata: Any) -> dict[str, str]:
    """A metadata object with string keys and values up to 255 characters."""
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise invalid_input("metadata", metadata, f"{metadata!r} is not of type 'object'")
    for key, value in metadata.items():
        if not isinstance(value, str):
            raise invalid_input(key, value, f"{value!r} is not of type 'string'")
        if not key or len(key) > 255 or len(value) > 255:
            raise bad_request(f"Invalid input received: metadata item {key!r} is too long or empty.")
    return dict(metadata)


def check_name(field: str, value: Any) -> str | None:
    """A name or description, as Cinder checks it."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise invalid_input(field, value, f"{value!r} is not of type 'string', 'null'")
    if field == "name" and len(value) > 255:
        raise bad_request(f"Invalid input received: name has {len(value)} characters, more than 255.")
    return value


def filter_by(items: list[Any], call: Call, fields: tuple[str, ...]) -> list[Any]:
    """Items whose named fields equal the query parameters given for them."""
    for field in fields:
        if field in call.query:
            items = [i for i in items if str(getattr(i, field)) == call.query[field]]
    return items


class StorageCore:
    """Shared state and lookups of the Storage API."""

    def __init__(self, store: Store, ops: Operations, config: EmulatorConfig) -> None:
        self.store = store
        self.ops = ops
        self.config = config
        self.views = StorageViews(config.base_url)
        self.quotas = Quotas(store)

    # -- responses --------------------------------------------------------------------------------

    @staticmethod
    def ok(body: Any, status: int = 200) -> Response:
        """A JSON answer."""
        return JSONResponse(body, status_code=status)

    @staticmethod
    def accepted() -> Response:
        """202 with no body."""
        return Response(status_code=202)

    # -- lookups ----------------------------------------------------------------------------------

    def volume(self, call: Call, volume_id: str) -> Volume:
        """A volume of the caller's project, or 404."""
        vol = self.store.get(Volume, volume_id)
        if vol is None or (vol.project_id != call.project_id and not call.caller.is_admin):
            raise not_found(f"Volume {volume_id} could not be found.")
        return vol

    def snapshot(self, call: Call, snapshot_id: str) -> Snapshot:
        """A snapshot of the caller's project, or 404."""
        snap = self.store.get(Snapshot, snapshot_id)
        if snap is None or (snap.project_id != call.project_id and not call.caller.is_admin):
            raise not_found(f"Snapshot {snapshot_id} could not be found.")
        return snap

    def backup(self, call: Call, backup_id: str) -> Backup:
        """A backup of the caller's project, or 404."""
        backup = self.store.get(Backup, backup_id)
        if backup is None or (backup.project_id != call.project_id and not call.caller.is_admin):
            raise not_found(f"Backup {backup_id} could not be found.")
        return backup

    def volume_type(self, name_or_id: str) -> VolumeType:
        """A type by id or name, or Cinder's 404."""
        for vtype in self.store.all(VolumeType):
            if name_or_id in (vtype.id, vtype.name):
                return vtype
        raise not_found(f"Volume type with name {name_or_id} could not be found.")

    @staticmethod
    def type_visible(call: Call, vtype: VolumeType) -> bool:
        """Public types, and private ones the caller's project was given access to (admins see all)."""
        return vtype.is_public or call.caller.is_admin or call.project_id in vtype.projects

    def usable_type(self, call: Call, name_or_id: str) -> VolumeType:
        """A type the caller may create volumes of; a private one without access is 404 by its id."""
        vtype = self.volume_type(name_or_id)
        if not self.type_visible(call, vtype):
            raise not_found(f"Volume type {vtype.id} could not be found.")
        return vtype

    def default_type(self) -> VolumeType:
        """The default volume type."""
        return self.volume_type(DEFAULT_TYPE)

    def type_name(self, type_id: str) -> str:
        """Name of a type id ('' when gone)."""
        vtype = self.store.get(VolumeType, type_id)
        return vtype.name if vtype else ""

    def zones(self) -> list[str]:
        """Availability zones (those of the servers)."""
        zones: list[str] = []
        for server in self.store.all(Server):
            if server.availability_zone not in zones:
                zones.append(server.availability_zone)
        return zones or ["nova"]

    @staticmethod
    def require_admin(call: Call, policy: str) -> None:
        """403 for a non-admin caller."""
        if not call.caller.is_admin:
            raise forbidden(f"Policy doesn't allow {policy} to be performed.")

    def volume_body(self, call: Call, vol: Volume, admin_attrs: bool = True) -> dict[str, Any]:
        """The full volume view for a caller."""
        return self.volume_bodies(call, [vol], admin_attrs)[0]

    def volume_bodies(self, call: Call, vols: list[Volume], admin_attrs: bool = True) -> list[dict[str, Any]]:
        """Full volume views, looking servers, types and attachments up once."""
        servers = {s.id: s for s in self.store.all(Server)}
        types = {t.id: t for t in self.store.all(VolumeType)}
        wanted = {v.id for v in vols}
        attachments: dict[str, list[Attachment]] = {}
        for att in self.store.all(Attachment):
            if att.volume_id in wanted:
                attachments.setdefault(att.volume_id, []).append(att)
        return [
            self.views.volume(
                vol,
                call.mv,
                call.caller,
                types.get(vol.type_id),
                attachments.get(vol.id, []),
                servers,
                admin_attrs,
            )
            for vol in vols
        ]

    def attachments(self) -> list[Attachment]:
        """Every attachment."""
        return self.store.all(Attachment)

    # -- listing ----------------------------------------------------------------------------------

    def page(
        self, call: Call, items: list[Any], collection: str, not_found_kind: str
    ) -> tuple[list[Any], list[dict[str, str]] | None]:
        """Apply marker, offset and limit (capped at the max page size); a full page gets a next link to
        the same list (detail or not)."""
        marker = call.query.get("marker")
        if marker:
            ids = [i.id for i in items]
            if marker not in ids:
                raise not_found(f"{not_found_kind} {marker} could not be found.")
            items = items[ids.index(marker) + 1 :]
        items = items[_offset(call) :]
        raw_limit = call.query.get("limit")
        limit = self.config.max_page_size
        if raw_limit is not None:
            try:
                asked = int(raw_limit)
            except ValueError:
                raise bad_request("limit param must be an integer") from None
            if asked < 0:
                raise bad_request("limit param must be positive")
            # As Cinder: a page never holds more than osapi_max_limit items, whatever was asked.
            limit = min(asked, limit)
        page = items[:limit]
        if not page or len(page) < limit:
            return page, None
        params = [(k, v) for k, v in call.query.multi_items() if k != "marker"]
        query = urllib.parse.urlencode([*params, ("marker", page[-1].id)])
        if call.request.url.path.rstrip("/").endswith("/detail"):
            collection = f"{collection}/detail"
        return page, self.views.collection_link(call.project_id, collection, query)

    @staticmethod
    def in_listed_projects(call: Call, project_id: str) -> bool:
        """Whether a list shows a project's records: the caller's, or an admin's all_tenants pick."""
        if call.caller.is_admin and call.query.get("all_tenants") in ("1", "true", "True"):
            return bool(call.query.get("project_id", project_id) == project_id)
        return project_id == call.project_id

    @staticmethod
    def reject_invalid_filters(call: Call, allowed: set[str], not_filters: set[str]) -> None:
        """From 3.33 a non-admin may filter only by the configured keys (resource_filters.json)."""
        if call.caller.is_admin or not call.mv.at_least("3.33"):
            return
        invalid = [k for k in call.query if k not in not_filters and k not in allowed]
        if invalid:
            raise bad_request(f"Invalid filters {','.join(invalid)} are found in query options.")

    @staticmethod
    def wants_count(call: Call) -> bool:
        """with_count=true (3.45): the answer carries the number of items across all pages."""
        return call.mv.at_least("3.45") and call.query.get("with_count", "").lower() in ("true", "1")

    @staticmethod
    def sort_keys(call: Call, allowed: set[str]) -> list[tuple[str, bool]]:
        """(key, descending) pairs from sort= or sort_key/sort_dir; created_at desc by default."""
        raw = call.query.get("sort")
        pairs: list[tuple[str, bool]] = []
        if raw:
            for part in raw.split(","):
                key, _, direction = part.strip().partition(":")
                pairs.append((key, (direction or "desc").lower() == "desc"))
        elif call.query.get("sort_key"):
            keys = call.query["sort_key"].split(",")
            dirs = call.query.get("sort_dir", "desc").split(",")
            pairs = [
                (k, (dirs[i] if i < len(dirs) else dirs[-1]).lower() == "desc") for i, k in enumerate(keys)
            ]
        for key, _ in pairs:
            if key not in allowed:
                raise bad_request("Invalid input received: Invalid sort key")
        return pairs or [("created_at", True)]

    @staticmethod
    def sort(items: list[Any], keys: list[tuple[str, bool]], value: Callable[[Any, str], Any]) -> list[Any]:
        """Stable multi-key sort; id breaks ties in the last key's direction."""
        result = sorted(items, key=lambda i: str(i.id), reverse=keys[-1][1])
        for key, desc in reversed(keys):

            def sort_key(item: Any, k: str = key) -> tuple[int, Any]:
                return _sortable(value(item, k))

            result = sorted(result, key=sort_key, reverse=desc)
        return result

    @staticmethod
    def parse_metadata_filter(raw: str) -> dict[str, str]:
        """metadata={"k":"v"} or the python-dict form clients send."""
        for candidate in (raw, raw.replace("'", '"')):
            try:
                value = json.loads(candidate)
            except ValueError:
                continue
            if isinstance(value, dict):
                return {str(k): str(v) for k, v in value.items()}
        raise bad_request(f"Invalid input received: Invalid metadata filter {raw}")


def _offset(call: Call) -> int:
    raw = call.query.get("offset")
    if raw is None:
        return 0
    try:
        offset = int(raw)
    except ValueError:
        raise bad_request("offset must be an integer") from None
    if offset < 0:
        raise bad_request("offset must be >= 0")
    return offset


def _sortable(value: Any) -> tuple[int, Any]:
    if value is None:
        return (0, "")
    if isinstance(value, bool | int):
        return (1, int(value))
    return (2, str(value))
