"""Type names for grpc.aio objects shared by the services."""

from __future__ import annotations

from typing import Any, TypeAlias

import grpc

# grpc's runtime classes are not generic; only the type stubs are, hence the strings.
Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"
