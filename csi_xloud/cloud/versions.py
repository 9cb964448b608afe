"""Microversion discovery and choice: send the highest version a call needs that the server supports."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from csi_xloud.cloud.errors import BadRequest, NotFound, UnsupportedFeature
from csi_xloud.cloud.models import ApiVersion, VersionRange


@dataclass(frozen=True, slots=True)
class Feature:
    """What a call does, the microversion it cannot do without, and the one whose answers carry the most."""

    description: str
    required: ApiVersion
    preferred: ApiVersion | None = None

    @property
    def best(self) -> ApiVersion:
        return self.preferred if self.preferred is not None else self.required


class VersionSource(Protocol):
    """Whatever can fetch a service's version document."""

    async def version_document(self) -> Mapping[str, Any]: ...


def parse_version_document(body: Mapping[str, Any]) -> VersionRange:
    """Read min/max microversion from `{"version": {...}}` or the CURRENT entry of `{"versions": [...]}`."""
    entries: list[Mapping[str, Any]] = []
    if isinstance(body.get("version"), Mapping):
        entries.append(body["version"])
    raw = body.get("versions")
    if isinstance(raw, Mapping):  # Keystone's root document: {"versions": {"values": [...]}}
        raw = raw.get("values")
    if isinstance(raw, list):
        entries.extend(e for e in raw if isinstance(e, Mapping))
    current = [e for e in entries if str(e.get("status", "")).upper() in ("CURRENT", "SUPPORTED", "STABLE")]
    for entry in current or entries:
        high = _version(entry.get("version") or entry.get("max_version"))
        if high is not None:
            return VersionRange(_version(entry.get("min_version")), high)
    return VersionRange(None, None)


def _version(raw: object) -> ApiVersion | None:
    if not isinstance(raw, str) or not raw:
        return None
    try:
        return ApiVersion.parse(raw)
    except ValueError:
        return None


class MicroversionPicker:
    """Discovers a service's range once and picks the version for each feature."""

    def __init__(self, source: VersionSource, service: str) -> None:
        self._source = source
        self._service = service
        self._range: VersionRange | None = None
        self._lock = asyncio.Lock()

    async def range(self) -> VersionRange:
        """The server's range, fetched on first use and cached."""
        if self._range is None:
            async with self._lock:
                if self._range is None:
                    self._range = await self._discover()
        return self._range

    async def _discover(self) -> VersionRange:
        try:
            return parse_version_document(await self._source.version_document())
        except (NotFound, BadRequest):
            # A gateway that hides the version document: assume the base version only.
            return VersionRange(None, None)

    async def supports(self, feature: Feature) -> bool:
        return (await self.range()).supports(feature.required)

    async def pick(self, feature: Feature) -> ApiVersion:
        """min(preferred, server max); UnsupportedFeature when that is below what the feature requires."""
        server = await self.range()
        if server.max is None:
            if feature.required.minor == 0:
                return feature.required
            raise UnsupportedFeature(
                f"the {self._service} API has no microversions; to {feature.description} it needs "
                f"{feature.required} or newer"
            )
        chosen = min(feature.best, server.max)
        if chosen < feature.required:
            raise UnsupportedFeature(
                f"to {feature.description} the {self._service} API needs microversion {feature.required} or "
                f"newer, but this cloud supports {server.min or '?'} to {server.max}"
            )
        # A server that dropped old versions answers the lowest one it has.
        return max(chosen, server.min) if server.min is not None else chosen
