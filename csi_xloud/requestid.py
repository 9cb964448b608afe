"""The id of the call being served: set per RPC, logged on every line, sent to the cloud with its requests."""

from __future__ import annotations

import uuid
from contextvars import ContextVar

REQUEST_ID: ContextVar[str] = ContextVar("csi_xloud_request_id", default="-")


def new_request_id() -> str:
    """Make an id in OpenStack's form, so it reads the same in our logs and the cloud's."""
    return f"req-{uuid.uuid4()}"
