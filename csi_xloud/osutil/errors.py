"""The named errors of the node OS layer; csi_xloud.rpc.errors maps them to gRPC codes."""

from __future__ import annotations


class OsUtilError(Exception):
    """A host operation failed."""


class CommandFailed(OsUtilError):
    """A command exited non-zero; carries its argv, exit code and stderr."""

    def __init__(self, argv: list[str], returncode: int, stderr: str) -> None:
        super().__init__(f"{argv[0]} exited with {returncode}: {stderr.strip()[:500]}")
        self.argv = argv
        self.returncode = returncode
        self.stderr = stderr


class CommandTimeout(OsUtilError):
    """A command did not finish in time and was killed."""


class NotResponding(OsUtilError):
    """A system call on a path did not return in time: a hung disk, or a dead NFS server or FUSE daemon."""


class DeviceNotFound(OsUtilError):
    """No block device for the volume appeared in time."""


class DeviceHasData(OsUtilError):
    """The device holds a signature we must not destroy (filesystem, partition table, LVM, RAID, LUKS)."""


class PathNotAllowed(OsUtilError):
    """A path is not absolute or escapes the kubelet directory."""


class MountConflict(OsUtilError):
    """A path is already mounted with another source or incompatible options."""


class DeviceTooSmall(OsUtilError):
    """A device holds fewer bytes than the volume should (wrong disk, or a resize not yet seen)."""


class BadMountOption(OsUtilError):
    """A mount flag from a request is not a plain mount option, or would change what gets mounted."""


class MetadataUnavailable(OsUtilError):
    """Neither a config drive nor the metadata service told us who this instance is."""
