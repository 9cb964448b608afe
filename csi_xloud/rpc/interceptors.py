"""Per-call plumbing: request id, one log line per call, secret-free debug bodies, errors -> status.

The log line of a call that changes something (create, delete, attach, stage, publish, expand...)
is INFO and names what it touched; every other call (Probe, capabilities, volume stats, lists,
gets), which sidecars and the kubelet repeat all day, logs at DEBUG. Failures add a WARNING.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from functools import cache
from typing import TYPE_CHECKING, Any, cast

import grpc
from google.protobuf import text_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from csi_xloud._proto import csi_pb2
from csi_xloud.deadline import CALL_DEADLINE
from csi_xloud.metrics import Metrics
from csi_xloud.requestid import REQUEST_ID, new_request_id
from csi_xloud.rpc.errors import status_for
from csi_xloud.rpc.types import Context

log = logging.getLogger("csi_xloud.rpc")

if TYPE_CHECKING:
    _InterceptorBase = grpc.aio.ServerInterceptor[Any, Any]
else:
    _InterceptorBase = grpc.aio.ServerInterceptor

REDACTED = "<redacted>"
STATE_CHANGING_METHODS = frozenset({
    "CreateVolume", "DeleteVolume", "ControllerPublishVolume", "ControllerUnpublishVolume",
    "ControllerExpandVolume", "ControllerModifyVolume", "CreateSnapshot", "DeleteSnapshot",
    "NodeStageVolume", "NodeUnstageVolume", "NodePublishVolume", "NodeUnpublishVolume", "NodeExpandVolume",
    "CreateVolumeGroupSnapshot", "DeleteVolumeGroupSnapshot",
})  # fmt: skip
# Request fields that say what a call is about (none is a secret), in the order the line shows them.
_SUBJECT_FIELDS = ("name", "volume_id", "source_volume_id", "snapshot_id", "group_snapshot_id", "node_id")
UnaryBehavior = Callable[[Any, Context], Awaitable[Any]]


class CallInterceptor(_InterceptorBase):
    """Wraps every unary CSI call with a request id, logging, metrics and error mapping."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        wrapped = self._wrap(handler_call_details.method, cast(UnaryBehavior, handler.unary_unary))
        return grpc.unary_unary_rpc_method_handler(
            wrapped,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def _wrap(self, full_method: str, behavior: UnaryBehavior) -> UnaryBehavior:
        method = full_method.rsplit("/", 1)[-1]
        level = logging.INFO if method in STATE_CHANGING_METHODS else logging.DEBUG

        async def call(request: Any, context: Context) -> Any:
            request_id = new_request_id()
            token = REQUEST_ID.set(request_id)
            started = time.monotonic()
            remaining = context.time_remaining()
            deadline = CALL_DEADLINE.set(None if remaining is None else started + remaining)
            code = grpc.StatusCode.OK
            in_flight = self._metrics.rpc_in_flight.labels(method)
            in_flight.inc()
            response = None
            try:
                if log.isEnabledFor(logging.DEBUG):
                    log.debug("%s request: %s", method, describe(request))
                try:
                    response = await behavior(request, context)
                except asyncio.CancelledError:
                    code = grpc.StatusCode.CANCELLED
                    raise
                except Exception as exc:
                    aborted = _code_of_abort(context)
                    if aborted is not None:  # the handler called context.abort() itself
                        code = aborted
                        raise
                    code, message = _status_of(exc, method, request_id)
                    await context.abort(code, message)  # raises, ending the call with that status
                    raise  # not reached: abort() always raises
                if log.isEnabledFor(logging.DEBUG):
                    log.debug("%s response: %s", method, describe(response))
                return response
            finally:
                elapsed = time.monotonic() - started
                in_flight.dec()
                self._metrics.rpc_calls.labels(method, code.name).inc()
                self._metrics.rpc_seconds.labels(method, code.name).observe(elapsed)
                if log.isEnabledFor(level):
                    about = subject(request, response)
                    log.log(level, "%s %s %.1fms%s", method, code.name, elapsed * 1000.0, about)
                CALL_DEADLINE.reset(deadline)
                REQUEST_ID.reset(token)

        return call


def subject(request: Message, response: Message | None) -> str:
    """ ' name=pvc-1 volume_id=...': the ids a call names, and the id a create made."""
    parts = [f"{key}={getattr(request, key)}" for key in _SUBJECT_FIELDS if getattr(request, key, "")]
    made = next((getattr(response, kind) for kind in ("volume", "snapshot", "group_snapshot")
                 if hasattr(response, kind)), None)
    for key in ("volume_id", "snapshot_id", "group_snapshot_id"):
        value = getattr(made, key, "")
        if value and f"{key}={value}" not in parts:
            parts.append(f"-> {key}={value}")
    return "".join(f" {part}" for part in parts)


def _code_of_abort(context: Context) -> grpc.StatusCode | None:
    """The code a handler already set with context.abort(), if it did."""
    code = context.code()
    if code is None or code == grpc.StatusCode.OK:
        return None
    if isinstance(code, grpc.StatusCode):
        return code
    return None


def _status_of(exc: Exception, method: str, request_id: str) -> tuple[grpc.StatusCode, str]:
    """The status the one error table gives; an unknown error is INTERNAL with the request id."""
    mapped = status_for(exc)
    if mapped is None:
        log.error("%s failed unexpectedly", method, exc_info=exc)
        return grpc.StatusCode.INTERNAL, f"internal error ({type(exc).__name__}); request id {request_id}"
    log.warning("%s: %s: %s", method, mapped[0].name, mapped[1])
    return mapped


def describe(message: Message) -> str:
    """One-line text of a message with every csi_secret field's values replaced."""
    return text_format.MessageToString(redacted(message), as_one_line=True)


def redacted(message: Message) -> Message:
    """A copy of the message where every field marked csi_secret (at any depth) is redacted."""
    if not _has_secrets(message.DESCRIPTOR):
        return message
    copy = type(message)()
    copy.CopyFrom(message)
    _redact_in_place(copy)
    return copy


def _redact_in_place(message: Message) -> None:
    for field, value in message.ListFields():
        if _is_secret(field):
            _blank(message, field, value)
        elif field.message_type is not None and _has_secrets(field.message_type):
            for child in _child_messages(field, value):
                _redact_in_place(child)


def _blank(message: Message, field: FieldDescriptor, value: Any) -> None:
    if _is_map(field):
        for key in list(value):
            value[key] = REDACTED
    elif field.type == FieldDescriptor.TYPE_STRING:
        setattr(message, field.name, REDACTED)
    else:
        message.ClearField(field.name)


def _child_messages(field: FieldDescriptor, value: Any) -> list[Message]:
    if _is_map(field):
        return [item for item in value.values() if isinstance(item, Message)]
    if field.is_repeated:
        return list(value)
    return [value]


def _is_map(field: FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


def _is_secret(field: FieldDescriptor) -> bool:
    return bool(field.GetOptions().Extensions[csi_pb2.csi_secret])


@cache
def _has_secrets(descriptor: Descriptor) -> bool:
    """Whether a message type holds a secret field anywhere below it (cached per type)."""
    return _scan(descriptor, frozenset())


def _scan(descriptor: Descriptor, seen: frozenset[str]) -> bool:
    if descriptor.full_name in seen:
        return False
    seen = seen | {descriptor.full_name}
    for field in descriptor.fields:
        if _is_secret(field):
            return True
        if field.message_type is not None and _scan(field.message_type, seen):
            return True
    return False
