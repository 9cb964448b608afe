"""The named errors of the cloud layer; csi_xloud.rpc.errors maps them to gRPC codes."""

from __future__ import annotations


class CloudError(Exception):
    """An answer from the cloud that is none of the more specific errors below."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        request_id: str | None = None,
        may_still_land: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.request_id = request_id
        # True when a request that changes something left this host and no answer came back:
        # the cloud may still act on it later (a timeout or a connection lost mid-request).
        self.may_still_land = may_still_land

    def __str__(self) -> str:
        suffix = f" (request {self.request_id})" if self.request_id else ""
        return f"{self.message}{suffix}"


class NotFound(CloudError):
    """The resource does not exist (HTTP 404)."""


class Conflict(CloudError):
    """The resource is in a state that refuses the request (HTTP 409, or a state error)."""


class BadRequest(CloudError):
    """The cloud rejected the request as malformed or invalid (HTTP 400)."""


class QuotaExceeded(CloudError):
    """The project's quota does not allow the request (HTTP 413 with a quota body)."""


class Unauthorized(CloudError):
    """Authentication failed or the token was refused (HTTP 401)."""


class Forbidden(CloudError):
    """The credentials lack the role the call needs (HTTP 403)."""


class Unavailable(CloudError):
    """The cloud could not be reached or kept failing (5xx, connection errors, timeouts, throttling)."""


class RolledBack(CloudError):
    """The cloud accepted a change, then undid it: a failed attach or detach, a refused extend."""


class WaitTimeout(CloudError):
    """A resource did not reach the wanted status before the deadline."""


class UnsupportedFeature(CloudError):
    """The cloud's API version is too old for the requested feature."""
