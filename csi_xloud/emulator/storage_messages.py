"""Storage API: user messages (3.3+), filtered, sorted and paged from 3.5."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from csi_xloud.emulator.errors import not_found
from csi_xloud.emulator.models import Message
from csi_xloud.emulator.routing import Call, RouteTable
from csi_xloud.emulator.storage_core import StorageCore

ID = r"[^/]+"
PAGE_PARAMS = {"limit", "marker", "offset", "sort", "sort_key", "sort_dir"}
FILTERS = ("resource_uuid", "resource_type", "event_id", "request_id", "message_level")
SORT_KEYS = {"id", "created_at", "event_id", "resource_type", "resource_uuid", "message_level", "request_id"}


class MessageRoutes:
    """GET /messages, GET and DELETE /messages/{id}."""

    def __init__(self, core: StorageCore) -> None:
        self._core = core
        self._store = core.store

    def register(self, table: RouteTable) -> None:
        """Add this group's routes."""
        table.add("GET", "messages", self.list_messages)
        table.add("GET", f"messages/(?P<id>{ID})", self.show)
        table.add("DELETE", f"messages/(?P<id>{ID})", self.delete)

    def _view(self, call: Call, message: Message) -> dict[str, Any]:
        return {
            "id": message.id,
            "event_id": message.event_id,
            "user_message": message.user_message,
            "message_level": message.message_level,
            "created_at": message.created_at,
            "guaranteed_until": message.guaranteed_until,
            "request_id": message.request_id,
            "links": self._core.views.links(call.project_id, "messages", message.id),
            "resource_type": message.resource_type,
            "resource_uuid": message.resource_uuid,
        }

    def _message(self, call: Call) -> Message:
        if not call.mv.at_least("3.3"):
            raise not_found()
        message = self._store.get(Message, call.params["id"])
        if message is None or (message.project_id != call.project_id and not call.caller.is_admin):
            raise not_found(f"Message {call.params['id']} could not be found.")
        return message

    async def list_messages(self, call: Call) -> Response:
        """GET /messages: before 3.5 every message of the project, newest first, query ignored."""
        if not call.mv.at_least("3.3"):
            raise not_found()
        messages = [m for m in self._store.all(Message) if m.project_id == call.project_id]
        if not call.mv.at_least("3.5"):
            messages.sort(key=lambda m: (m.created_at, m.id), reverse=True)
            return self._core.ok({"messages": [self._view(call, m) for m in messages]})
        self._core.reject_invalid_filters(call, set(FILTERS), PAGE_PARAMS)
        for field in FILTERS:
            if field in call.query:
                messages = [m for m in messages if str(getattr(m, field)) == call.query[field]]
        keys = self._core.sort_keys(call, SORT_KEYS)
        messages = self._core.sort(messages, keys, lambda m, k: getattr(m, k, None))
        page, links = self._core.page(call, messages, "messages", "Message")
        body: dict[str, Any] = {"messages": [self._view(call, m) for m in page]}
        if links:
            body["messages_links"] = links
        return self._core.ok(body)

    async def show(self, call: Call) -> Response:
        """GET /messages/{id}."""
        return self._core.ok({"message": self._view(call, self._message(call))})

    async def delete(self, call: Call) -> Response:
        """DELETE /messages/{id}: 204."""
        self._store.delete(self._message(call))
        return Response(status_code=204)
