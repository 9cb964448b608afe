"""libblkid and libc's mount(2) called in the process, sparing a blkid or mount process per call.

`blkid -p` and `mount` cost about 3 and 2 ms each, mostly starting the process; the same work done
here through ctypes costs a fraction of that. Both are optional: where util-linux's libblkid.so.1 or
the C library cannot be loaded, the callers run the commands as before. The calls block (they read
the device, the kernel mounts it), so callers run them in a thread.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

# blkid.h: which superblock values to read (label, uuid, type, secondary type, usage, version) and
# the partition table details, as `blkid -p` asks for them.
_SUBLKS_FLAGS = (1 << 1) | (1 << 3) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 8)
_PARTS_ENTRY_DETAILS = 1 << 2
# blkid_do_safeprobe's answers besides 0 (found exactly one signature).
SAFEPROBE_NOTHING = 1
SAFEPROBE_AMBIVALENT = -2
PROBE_KEYS = ("TYPE", "USAGE", "PTTYPE", "LABEL")


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """blkid_do_safeprobe's code and the values it found (TYPE, USAGE, PTTYPE, LABEL)."""

    code: int
    values: dict[str, str]
    errno: int = 0


class LibBlkid:
    """A low-level probe of a device with libblkid, as `blkid -p` makes it (no cache, every signature)."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self._lib = lib
        vp, cint, cstr = ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p
        out_str, out_size = ctypes.POINTER(cstr), ctypes.POINTER(ctypes.c_size_t)
        for name, args, result in (
            ("blkid_new_probe_from_filename", [cstr], vp),
            ("blkid_free_probe", [vp], None),
            ("blkid_probe_enable_superblocks", [vp, cint], cint),
            ("blkid_probe_set_superblocks_flags", [vp, cint], cint),
            ("blkid_probe_enable_partitions", [vp, cint], cint),
            ("blkid_probe_set_partitions_flags", [vp, cint], cint),
            ("blkid_do_safeprobe", [vp], cint),
            ("blkid_probe_lookup_value", [vp, cstr, out_str, out_size], cint),
        ):
            function = getattr(lib, name)
            function.argtypes, function.restype = args, result

    @classmethod
    def load(cls, name: str = "libblkid.so.1") -> LibBlkid | None:
        """The library, or None where it is not installed (then `blkid` is run instead)."""
        try:
            return cls(ctypes.CDLL(name, use_errno=True))
        except (OSError, AttributeError):
            return None

    def probe(self, device: Path) -> ProbeResult:
        """Probe once (blocking): code 0 with the values, SAFEPROBE_NOTHING, SAFEPROBE_AMBIVALENT or -1."""
        lib = self._lib
        probe = lib.blkid_new_probe_from_filename(os.fsencode(device))
        if not probe:
            return ProbeResult(-1, {}, ctypes.get_errno())
        try:
            lib.blkid_probe_enable_superblocks(probe, 1)
            lib.blkid_probe_set_superblocks_flags(probe, _SUBLKS_FLAGS)
            lib.blkid_probe_enable_partitions(probe, 1)
            lib.blkid_probe_set_partitions_flags(probe, _PARTS_ENTRY_DETAILS)
            code = lib.blkid_do_safeprobe(probe)
            if code != 0:
                return ProbeResult(code, {}, ctypes.get_errno() if code < 0 else 0)
            values = {}
            for key in PROBE_KEYS:
                data, size = ctypes.c_char_p(), ctypes.c_size_t()
                if lib.blkid_probe_lookup_value(probe, key.encode(), ctypes.byref(data), ctypes.byref(size)):
                    continue  # not found
                values[key] = (data.value or b"").decode(errors="replace")
            return ProbeResult(0, values)
        finally:
            lib.blkid_free_probe(probe)


# linux/mount.h: the flags mount(8) turns these options into; every other option it hands to the
# filesystem in the data string.
MOUNT_FLAGS: dict[str, tuple[int, bool]] = {
    # option: (flag, set it: True / clear it: False)
    "ro": (1, True), "rw": (1, False),
    "nosuid": (2, True), "suid": (2, False),
    "nodev": (4, True), "dev": (4, False),
    "noexec": (8, True), "exec": (8, False),
    "sync": (16, True), "async": (16, False),
    "dirsync": (128, True),
    "noatime": (1024, True), "atime": (1024, False),
    "nodiratime": (2048, True), "diratime": (2048, False),
    "silent": (32768, True), "loud": (32768, False),
    "relatime": (1 << 21, True), "norelatime": (1 << 21, False),
    "strictatime": (1 << 24, True),
    "lazytime": (1 << 25, True), "nolazytime": (1 << 25, False),
    "defaults": (0, True),
}
# Options the filesystems we stage take as data, which mount(8) passes on unchanged.
DATA_OPTIONS = frozenset({"nouuid", "discard", "nodiscard"})


def syscall_mount_args(options: Sequence[str]) -> tuple[int, str] | None:
    """(flags, data) for mount(2) exactly as mount(8) would pass them, or None when only mount(8) can
    do it (SELinux contexts, options it handles itself, anything not in the tables)."""
    flags = 0
    data: list[str] = []
    for option in options:
        if option in MOUNT_FLAGS:
            flag, on = MOUNT_FLAGS[option]
            flags = flags | flag if on else flags & ~flag
        elif option in DATA_OPTIONS:
            data.append(option)
        else:
            return None
    return flags, ",".join(data)


class LibcMount:
    """mount(2) from the C library."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self._mount = lib.mount
        self._mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                                ctypes.c_char_p]
        self._mount.restype = ctypes.c_int

    @classmethod
    def load(cls) -> LibcMount | None:
        try:
            return cls(ctypes.CDLL(None, use_errno=True))
        except (OSError, AttributeError):
            return None

    def mount(self, source: Path, target: Path, fs_type: str, flags: int, data: str) -> int:
        """Mount (blocking); 0, or the errno it failed with."""
        done = self._mount(os.fsencode(source), os.fsencode(target), fs_type.encode(), flags,
                           data.encode() if data else None)
        return 0 if done == 0 else ctypes.get_errno()
