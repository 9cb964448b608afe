"""`csi-xloud classes`: StorageClasses, VolumeSnapshotClasses and VolumeAttributesClasses from the cloud."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from csi_xloud import DRIVER_NAME, TOPOLOGY_KEY
from csi_xloud.cloud.client import CloudClient
from csi_xloud.cloud.models import AvailabilityZone, VolumeType
from csi_xloud.ops.cloudchecks import type_zones

DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"
DEFAULT_SNAPSHOT_CLASS_ANNOTATION = "snapshot.storage.kubernetes.io/is-default-class"
_NAME_MAX = 63  # a class name is a DNS subdomain; keep it a label so it also fits everywhere else
_NOT_IN_NAME = re.compile(r"[^a-z0-9-]+")

Manifest = dict[str, Any]


@dataclass(frozen=True, slots=True)
class ClassOptions:
    """How the classes are named, which is the default, and the settings every StorageClass shares."""

    prefix: str = "xloud-"
    snapshot_prefix: str = "xloud-"
    attributes_prefix: str = "xloud-"
    default_type: str | None = None  # name or id; None: the cloud's default type
    default_snapshot: str | None = "snapshot"  # snapshot, backup, or None for no default
    fs_type: str = "ext4"
    reclaim_policy: str = "Delete"
    migration_policy: str = "on-demand"


@dataclass(frozen=True, slots=True)
class CloudOffer:
    """What the cloud offers that classes are made of."""

    types: Sequence[VolumeType]
    zones: Sequence[AvailabilityZone]
    default_type_id: str | None


async def read_offer(client: CloudClient) -> CloudOffer:
    """The project's volume types, the zones and the default type, read from the Storage API."""
    types = await client.storage.list_types()
    zones = await client.storage.list_availability_zones()
    default = await client.storage.default_type()
    return CloudOffer(types, zones, default.id if default is not None else None)


def class_name(prefix: str, type_name: str) -> str:
    """A valid object name made of the prefix and a volume type's name."""
    base = _NOT_IN_NAME.sub("-", f"{prefix}{type_name}".lower()).strip("-")
    return base[:_NAME_MAX].rstrip("-") or "xloud"


class ClassWriter:
    """Turns the cloud's offer into class manifests; pure, so tests validate exactly what is printed."""

    def __init__(self, offer: CloudOffer, options: ClassOptions) -> None:
        self._offer = offer
        self._options = options
        self._names = _unique_names(offer.types, options.prefix)
        self._attribute_names = _unique_names(offer.types, options.attributes_prefix)

    def default_type_id(self) -> str | None:
        """The type whose StorageClass is the default: the one asked for, else the cloud's default."""
        wanted = self._options.default_type
        if wanted is None:
            return self._offer.default_type_id
        for volume_type in self._offer.types:
            if wanted in (volume_type.name, volume_type.id):
                return volume_type.id
        known = ", ".join(t.name for t in self._offer.types) or "none"
        raise ValueError(f"--default-class: the cloud has no volume type {wanted!r} (it has: {known})")

    def manifests(self) -> list[Manifest]:
        """StorageClasses, then VolumeSnapshotClasses, then VolumeAttributesClasses."""
        default = self.default_type_id()
        storage = [self.storage_class(t, t.id == default) for t in self._offer.types]
        attributes = [self.attributes_class(t) for t in self._offer.types]
        return [*storage, *self.snapshot_classes(), *attributes]

    def storage_class(self, volume_type: VolumeType, default: bool) -> Manifest:
        options = self._options
        metadata: Manifest = {"name": self._names[volume_type.id]}
        if default:
            metadata["annotations"] = {DEFAULT_CLASS_ANNOTATION: "true"}
        manifest: Manifest = {
            "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": metadata,
            "provisioner": DRIVER_NAME,
            "parameters": {"type": volume_type.name, "csi.storage.k8s.io/fstype": options.fs_type},
            "reclaimPolicy": options.reclaim_policy, "allowVolumeExpansion": True,
            # The scheduler picks the node first, so the volume is made in that node's zone.
            "volumeBindingMode": "WaitForFirstConsumer",
        }
        zones = self._zones_of(volume_type)
        if zones:
            manifest["allowedTopologies"] = [
                {"matchLabelExpressions": [{"key": TOPOLOGY_KEY, "values": zones}]}
            ]
        return manifest

    def snapshot_classes(self) -> list[Manifest]:
        prefix = self._options.snapshot_prefix
        kinds = (("snapshot", {"type": "snapshot"}), ("backup", {"type": "backup", "incremental": "true"}))
        made = []
        for kind, parameters in kinds:
            metadata: Manifest = {"name": class_name(prefix, kind)}
            if self._options.default_snapshot == kind:
                metadata["annotations"] = {DEFAULT_SNAPSHOT_CLASS_ANNOTATION: "true"}
            made.append({
                "apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshotClass",
                "metadata": metadata, "driver": DRIVER_NAME, "deletionPolicy": self._options.reclaim_policy,
                "parameters": parameters,
            })
        return made

    def attributes_class(self, volume_type: VolumeType) -> Manifest:
        return {
            "apiVersion": "storage.k8s.io/v1", "kind": "VolumeAttributesClass",
            "metadata": {"name": self._attribute_names[volume_type.id]}, "driverName": DRIVER_NAME,
            "parameters": {"type": volume_type.name, "migration-policy": self._options.migration_policy},
        }

    def _zones_of(self, volume_type: VolumeType) -> list[str]:
        """The zones a zone-bound type may be created in, as far as the cloud has them."""
        bound = type_zones(volume_type)
        known = {zone.name for zone in self._offer.zones}
        return [zone for zone in bound if not known or zone in known]

    def document(self, cloud: str) -> str:
        """Every manifest as one multi-document YAML stream, with a comment per type on what it is."""
        notes = {self._names[t.id]: _notes(t) for t in self._offer.types}
        parts = [f"# Classes for the volume types of cloud {cloud}, written by `csi-xloud classes`.\n"]
        for manifest in self.manifests():
            name = manifest["metadata"]["name"]
            comment = f"# {notes[name]}\n" if manifest["kind"] == "StorageClass" and notes.get(name) else ""
            parts.append("---\n" + comment + yaml.safe_dump(manifest, sort_keys=False))
        return "".join(parts)


def _notes(volume_type: VolumeType) -> str:
    notes = []
    if volume_type.multiattach:
        notes.append("multiattach: raw block volumes of this type may be ReadWriteMany")
    if not volume_type.is_public:
        notes.append("private type: only projects given access can use it")
    zones = type_zones(volume_type)
    if zones:
        notes.append(f"bound to zones {', '.join(zones)}")
    if volume_type.description:
        notes.append(volume_type.description)
    return "; ".join(notes)


def _unique_names(types: Sequence[VolumeType], prefix: str) -> dict[str, str]:
    """A name per type id; two types whose names clean up alike get their id's start appended."""
    names: dict[str, str] = {}
    taken: set[str] = set()
    for volume_type in types:
        name = class_name(prefix, volume_type.name)
        if name in taken:
            name = class_name(f"{name[: _NAME_MAX - 9]}-", volume_type.id[:8])
        taken.add(name)
        names[volume_type.id] = name
    return names
