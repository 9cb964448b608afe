"""Error answers of Keystone, Cinder and Nova turned into the named errors, in one place."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from csi_xloud.cloud.errors import (
    BadRequest,
    CloudError,
    Conflict,
    Forbidden,
    NotFound,
    QuotaExceeded,
    Unauthorized,
    Unavailable,
    UnsupportedFeature,
)

if TYPE_CHECKING:
    from csi_xloud.cloud.http import Answer

# Cinder and Nova answer a request refused because of the resource's state with 400, not 409.
_STATE_ERROR = re.compile(
    r"Invalid (volume|snapshot|backup):|status must be|is already attached|Cannot detach|"
    r"currently (in-use|attached)|must not be migrating",
    re.IGNORECASE,
)
_QUOTA = re.compile(r"quota|LimitExceeded|SizeExceeds|exceeded for", re.IGNORECASE)
_BY_STATUS: Mapping[int, type[CloudError]] = {
    400: BadRequest, 401: Unauthorized, 403: Forbidden, 404: NotFound, 409: Conflict, 406: UnsupportedFeature,
    413: QuotaExceeded, 502: Unavailable, 503: Unavailable, 504: Unavailable,
}


def error_message(body: Mapping[str, Any]) -> str | None:
    """The message of an error body: `{"<kind>": {"message": ...}}`, Keystone's `{"error": {...}}` or flat."""
    if isinstance(body.get("message"), str):
        return _clean(body["message"])
    for value in body.values():
        if isinstance(value, Mapping) and isinstance(value.get("message"), str):
            return _clean(value["message"])
    return None


def _clean(message: str) -> str:
    return message.split("<br />")[0].strip()


def is_rate_limit(answer: Answer) -> bool:
    """429, or 413 that carries Retry-After and is not about a quota."""
    if answer.status == 429:
        return True
    if answer.status != 413:
        return False
    message = error_message(answer.body) or ""
    return "retry-after" in answer.headers and not _QUOTA.search(message)


def error_from_answer(service: str, answer: Answer) -> CloudError:
    """The named error for a non-2xx answer, with the cloud's message and request id."""
    message = error_message(answer.body) or f"HTTP {answer.status}"
    kind = _BY_STATUS.get(answer.status)
    if kind is None:
        # Any 5xx leaves the outcome open (a 500 to a create may still have made the volume), so it
        # is Unavailable: the CO keeps retrying, and the retry finds what the cloud made by name.
        kind = Unavailable if answer.status >= 500 else CloudError
    if kind is BadRequest and _STATE_ERROR.search(message):
        kind = Conflict
    if kind is QuotaExceeded and not _QUOTA.search(message) and "Request Entity Too Large" in message:
        kind = BadRequest
    return kind(f"{service} API: {message}", status=answer.status, request_id=answer.request_id)
