"""Compute API: a server's instance actions (os-instance-actions), what each attach or detach did."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.responses import JSONResponse, Response

from csi_xloud.emulator.errors import not_found
from csi_xloud.emulator.models import InstanceAction, Server
from csi_xloud.emulator.routing import Call, RouteTable
from csi_xloud.emulator.state import Store


class InstanceActionRoutes:
    """GET /servers/{id}/os-instance-actions[/{request_id}], newest first, events from 2.1."""

    def __init__(self, store: Store, server: Callable[[str], Server]) -> None:
        self._store = store
        self._server = server

    def register(self, table: RouteTable) -> None:
        """Add this group's routes."""
        table.add("GET", "servers/(?P<id>[^/]+)/os-instance-actions", self.list_actions)
        table.add("GET", "servers/(?P<id>[^/]+)/os-instance-actions/(?P<req>[^/]+)", self.show_action)

    def _actions(self, call: Call) -> list[InstanceAction]:
        server = self._server(call.params["id"])
        mine = [
            a for a in self._store.all(InstanceAction)
            if a.server_id == server.id and (a.project_id == call.project_id or call.caller.is_admin)
        ]
        return sorted(mine, key=lambda a: a.start_time, reverse=True)

    async def list_actions(self, call: Call) -> Response:
        """The server's actions, newest first."""
        return JSONResponse({"instanceActions": [_action_view(a, call) for a in self._actions(call)]})

    async def show_action(self, call: Call) -> Response:
        """One action with its event."""
        action = next((a for a in self._actions(call) if a.id == call.params["req"]), None)
        if action is None:
            raise not_found("Action not found")
        view = _action_view(action, call)
        view["events"] = [_event_view(action, call)]
        return JSONResponse({"instanceAction": view})


def _action_view(action: InstanceAction, call: Call) -> dict[str, Any]:
    view: dict[str, Any] = {
        "action": action.action,
        "instance_uuid": action.server_id,
        "message": "Error" if action.result == "Error" else None,
        "project_id": action.project_id,
        "request_id": action.id,
        "start_time": action.start_time,
        "user_id": action.user_id,
    }
    if call.mv.at_least("2.58"):
        view["updated_at"] = action.updated_at
    return view


def _event_view(action: InstanceAction, call: Call) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event": action.event,
        "start_time": action.start_time,
        "finish_time": action.finish_time,
        "result": action.result,
    }
    if call.caller.is_admin:
        event["traceback"] = None
    if call.mv.at_least("2.62"):
        event["hostId"] = ""
    if call.mv.at_least("2.84"):
        event["details"] = action.details
    return event
