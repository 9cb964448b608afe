"""The emulated cloud's backends and the scheduler's choice among them.

Two backends (`ssd`, `hdd`), one pool each. As Cinder's capabilities filter does, every extra spec of a
volume type that is unscoped or scoped `capabilities:` must match the pool's capability of that name
(with Cinder's `<is>`, `<in>`, `<or>`, `s==`, `==`, `>=`, `<=` operators); specs in other scopes
(`vendor:key`) are ignored. A type no pool satisfies leaves its volumes in `error`, with no host.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

from csi_xloud.emulator.models import VolumeType

HOST = "xloud"
BACKENDS = ("ssd", "hdd")
TOTAL_CAPACITY_GIB = 1000
_NUMERIC: dict[str, Callable[[float, float], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    ">=": operator.ge,
    "<=": operator.le,
}


def pool_name(backend: str) -> str:
    """The pool's full name, host@backend#pool, as `os-vol-host-attr:host` shows it."""
    return f"{HOST}@{backend}#{backend}"


def capabilities(backend: str, allocated_gib: int = 0) -> dict[str, Any]:
    """What a backend's pool reports to the scheduler."""
    return {
        "volume_backend_name": backend,
        "pool_name": backend,
        "vendor_name": "Xloud",
        "driver_version": "1.0.0",
        "storage_protocol": "local",
        "total_capacity_gb": TOTAL_CAPACITY_GIB,
        "free_capacity_gb": TOTAL_CAPACITY_GIB - allocated_gib,
        "allocated_capacity_gb": allocated_gib,
        "provisioned_capacity_gb": float(allocated_gib),
        "reserved_percentage": 0,
        "max_over_subscription_ratio": 20.0,
        "thin_provisioning_support": True,
        "thick_provisioning_support": False,
        "multiattach": True,
        "online_extend_support": True,
        "QoS_support": False,
        "sparse_copy_volume": True,
        "filter_function": None,
        "goodness_function": None,
    }


def pick_backend(vtype: VolumeType | None) -> str | None:
    """The first backend whose pool satisfies the type's extra specs, or None."""
    specs = vtype.extra_specs if vtype is not None else {}
    for backend in BACKENDS:
        if satisfies(capabilities(backend), specs):
            return backend
    return None


def satisfies(caps: dict[str, Any], specs: dict[str, str]) -> bool:
    """Whether a pool's capabilities meet a type's extra specs."""
    for key, wanted in specs.items():
        scope, _, name = key.rpartition(":")
        if scope and scope != "capabilities":
            continue
        if name not in caps or not _matches(caps[name], wanted):
            return False
    return True


def _matches(have: Any, wanted: str) -> bool:
    words = wanted.split()
    if not words:
        return str(have) == wanted
    op, args = words[0], words[1:]
    if op == "<is>":
        return bool(args) and str(have).lower() == args[0].lower()
    if op == "<in>":
        return bool(args) and args[0] in str(have)
    if op == "<or>":
        return str(have) in [w for w in args if w != "<or>"]
    if op == "s==":
        return bool(args) and str(have) == args[0]
    if op in _NUMERIC:
        try:
            return _NUMERIC[op](float(have), float(args[0]))
        except (ValueError, TypeError, IndexError):
            return False
    return str(have) == wanted
