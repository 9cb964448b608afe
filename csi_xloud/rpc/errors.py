"""The one table from domain errors to gRPC status codes.

RPC handlers raise ``DriverError`` subclasses for what they decide themselves
(bad arguments, conflicts) and let the cloud and OS layers' named errors pass;
the interceptor turns any of them into a status with ``status_for``.
"""

from __future__ import annotations

import grpc

from csi_xloud.cloud import errors as cloud
from csi_xloud.osutil import errors as osu


class DriverError(Exception):
    """An error the driver decided on, carrying its gRPC code."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(DriverError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(DriverError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(DriverError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(DriverError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class OutOfRange(DriverError):
    code = grpc.StatusCode.OUT_OF_RANGE


class ResourceExhausted(DriverError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Aborted(DriverError):
    code = grpc.StatusCode.ABORTED


class Unavailable(DriverError):
    code = grpc.StatusCode.UNAVAILABLE


class Unimplemented(DriverError):
    code = grpc.StatusCode.UNIMPLEMENTED


class Internal(DriverError):
    code = grpc.StatusCode.INTERNAL


# Most specific class first: the first isinstance match wins.
ERROR_CODES: tuple[tuple[type[BaseException], grpc.StatusCode], ...] = (
    (cloud.NotFound, grpc.StatusCode.NOT_FOUND),
    (cloud.Conflict, grpc.StatusCode.FAILED_PRECONDITION),
    (cloud.BadRequest, grpc.StatusCode.INVALID_ARGUMENT),
    (cloud.QuotaExceeded, grpc.StatusCode.RESOURCE_EXHAUSTED),
    # The CO did nothing wrong when our own cloud credentials fail; retrying helps once they are fixed.
    (cloud.Unauthorized, grpc.StatusCode.UNAVAILABLE),
    (cloud.Forbidden, grpc.StatusCode.PERMISSION_DENIED),
    (cloud.Unavailable, grpc.StatusCode.UNAVAILABLE),
    # The operation may still finish in the cloud; the sidecar retries and finds it.
    (cloud.WaitTimeout, grpc.StatusCode.DEADLINE_EXCEEDED),
    (cloud.UnsupportedFeature, grpc.StatusCode.FAILED_PRECONDITION),
    (cloud.CloudError, grpc.StatusCode.INTERNAL),
    (osu.PathNotAllowed, grpc.StatusCode.INVALID_ARGUMENT),
    (osu.BadMountOption, grpc.StatusCode.INVALID_ARGUMENT),
    (osu.DeviceHasData, grpc.StatusCode.FAILED_PRECONDITION),
    (osu.MountConflict, grpc.StatusCode.ALREADY_EXISTS),
    (osu.DeviceNotFound, grpc.StatusCode.NOT_FOUND),
    (osu.DeviceTooSmall, grpc.StatusCode.FAILED_PRECONDITION),
    (osu.CommandTimeout, grpc.StatusCode.DEADLINE_EXCEEDED),
    (osu.NotResponding, grpc.StatusCode.DEADLINE_EXCEEDED),
    (osu.MetadataUnavailable, grpc.StatusCode.UNAVAILABLE),
    (osu.OsUtilError, grpc.StatusCode.INTERNAL),
    (TimeoutError, grpc.StatusCode.DEADLINE_EXCEEDED),
)


def status_for(exc: BaseException) -> tuple[grpc.StatusCode, str] | None:
    """The gRPC code and message for a known error, or None for an unexpected one."""
    if isinstance(exc, DriverError):
        return exc.code, exc.message
    for error_type, code in ERROR_CODES:
        if isinstance(exc, error_type):
            return code, str(exc) or error_type.__name__
    return None
