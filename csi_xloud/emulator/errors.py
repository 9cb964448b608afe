"""API errors rendered in the bodies Cinder, Nova and Keystone use."""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse, Response

_GENERIC_400 = (
    "The server could not comply with the request since it is either malformed or otherwise incorrect."
)


class ApiError(Exception):
    """An error answer: HTTP status plus the JSON body to send."""

    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status} {body}")
        self.status = status
        self.body = body
        self.headers = headers or {}

    def response(self) -> Response:
        """The error as a Starlette response."""
        return JSONResponse(self.body, status_code=self.status, headers=self.headers)


def fault(status: int, kind: str, message: str, **extra: Any) -> ApiError:
    """A Cinder/Nova style error: {"kind": {"code": status, "message": message}}."""
    return ApiError(status, {kind: {"code": status, "message": message, **extra}})


def bad_request(message: str = _GENERIC_400) -> ApiError:
    """400 badRequest."""
    return fault(400, "badRequest", message)


def not_found(message: str = "The resource could not be found.") -> ApiError:
    """404 itemNotFound."""
    return fault(404, "itemNotFound", message)


def forbidden(message: str) -> ApiError:
    """403 forbidden."""
    return fault(403, "forbidden", message)


def conflict(message: str) -> ApiError:
    """409 conflictingRequest."""
    return fault(409, "conflictingRequest", message)


def over_limit(message: str) -> ApiError:
    """413 overLimit (quota exceeded)."""
    return fault(413, "overLimit", message, retryAfter="0")


def invalid_input(field: str, value: Any, reason: str) -> ApiError:
    """The jsonschema validation error Cinder and Nova answer."""
    return bad_request(f"Invalid input for field/attribute {field}. Value: {value}. {reason}")


def unexpected_properties(field: str, value: Any, extra: list[str]) -> ApiError:
    """The schema error for a body carrying keys it may not have; the first one is named."""
    return invalid_input(field, value, f"Additional properties are not allowed ({extra[0]!r} was unexpected)")


def keystone_error(status: int, title: str, message: str) -> ApiError:
    """A Keystone error body (401s get their WWW-Authenticate header from the Identity API)."""
    headers = {"Vary": "X-Auth-Token"}
    return ApiError(status, {"error": {"code": status, "message": message, "title": title}}, headers)


def unauthorized(identity_url: str) -> ApiError:
    """401 as Keystone and keystonemiddleware answer it."""
    err = keystone_error(401, "Unauthorized", "The request you have made requires authentication.")
    err.headers["WWW-Authenticate"] = f'Keystone uri="{identity_url}"'
    return err
