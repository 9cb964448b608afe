"""Storage API: which projects may use a private volume type (admin only)."""

from __future__ import annotations

import dataclasses
from typing import Any

from starlette.responses import Response

from csi_xloud.emulator.context import json_body
from csi_xloud.emulator.errors import bad_request, conflict, invalid_input, not_found
from csi_xloud.emulator.models import VolumeType
from csi_xloud.emulator.routing import Call, RouteTable
from csi_xloud.emulator.storage_core import StorageCore, no_such_action

ID = r"[^/]+"
PUBLIC_TYPE = "Invalid volume type: Type access modification is not applicable to public volume type."


class TypeAccessRoutes:
    """os-volume-type-access listing and the addProjectAccess / removeProjectAccess actions."""

    def __init__(self, core: StorageCore) -> None:
        self._core = core
        self._store = core.store

    def register(self, table: RouteTable) -> None:
        """Add this group's routes."""
        table.add("GET", f"types/(?P<id>{ID})/os-volume-type-access", self.list_access)
        table.add("POST", f"types/(?P<id>{ID})/action", self.action)

    def _type(self, call: Call) -> VolumeType:
        vtype = self._store.get(VolumeType, call.params["id"])
        if vtype is None:
            raise not_found(f"Volume type {call.params['id']} could not be found.")
        return vtype

    async def list_access(self, call: Call) -> Response:
        """GET /types/{id}/os-volume-type-access: the projects given access to a private type."""
        self._core.require_admin(call, "volume_extension:volume_type_access:get_all_for_type")
        vtype = self._type(call)
        if vtype.is_public:
            raise not_found("Access list not available for public volume types.")
        access = [{"volume_type_id": vtype.id, "project_id": p} for p in vtype.projects]
        return self._core.ok({"volume_type_access": access})

    async def action(self, call: Call) -> Response:
        """POST /types/{id}/action: addProjectAccess or removeProjectAccess."""
        body = await json_body(call.request)
        if not isinstance(body, dict) or len(body) != 1:
            raise bad_request("Invalid request body")
        ((name, arg),) = body.items()
        if name not in ("addProjectAccess", "removeProjectAccess"):
            raise no_such_action(name)
        self._core.require_admin(call, f"volume_extension:volume_type_access:{name}")
        project = _project(name, arg)
        vtype = self._type(call)
        if vtype.is_public:
            raise bad_request(PUBLIC_TYPE)
        combination = f"{vtype.id} / {project} combination"
        if name == "addProjectAccess":
            if project in vtype.projects:
                raise conflict(f"Volume type access for {combination} already exists.")
            projects = [*vtype.projects, project]
        else:
            if project not in vtype.projects:
                raise not_found(f"Volume type access not found for {combination}.")
            projects = [p for p in vtype.projects if p != project]
        self._store.put(dataclasses.replace(vtype, projects=projects))
        return self._core.accepted()


def _project(action: str, arg: Any) -> str:
    if not isinstance(arg, dict) or "project" not in arg:
        raise invalid_input(action, arg, "'project' is a required property")
    project = arg["project"]
    if not isinstance(project, str) or not project:
        raise invalid_input("project", project, f"{project!r} is not of type 'string'")
    return project
