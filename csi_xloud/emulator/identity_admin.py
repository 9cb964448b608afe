"""Identity (Keystone v3) admin API: projects, users, roles, role assignments and the one domain.

Enough for tools that make their own projects and users, give them roles and log in as them. Every
call needs a token with the admin role; everything lives in the `Default` domain (no domain can be
made). Deleting a project or user removes its role assignments; deleting a user revokes its tokens.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from csi_xloud.emulator.context import Caller, EmulatorConfig, authenticate
from csi_xloud.emulator.errors import ApiError, keystone_error
from csi_xloud.emulator.identity_api import project_view
from csi_xloud.emulator.identity_directory import ROLES, Directory, role_id
from csi_xloud.emulator.models import Project, RoleAssignment, Token, User
from csi_xloud.emulator.state import Store

V3 = "/identity/v3"


def _not_found(kind: str, value: str) -> ApiError:
    return keystone_error(404, "Not Found", f"Could not find {kind}: {value}.")


def _bad(message: str) -> ApiError:
    return keystone_error(400, "Bad Request", message)


class IdentityAdminApi:
    """Routes under /identity/v3 for projects, users, roles, role assignments and domains."""

    def __init__(self, store: Store, config: EmulatorConfig) -> None:
        self._store = store
        self._config = config
        self._directory = Directory(store, config)

    def routes(self) -> list[Route]:
        """The Starlette routes of this API."""
        assignment = V3 + "/projects/{project_id}/users/{user_id}/roles/{role_id}"
        return [
            Route(V3 + "/projects", self.list_projects, methods=["GET"]),
            Route(V3 + "/projects", self.create_project, methods=["POST"]),
            Route(V3 + "/projects/{project_id}", self.show_project, methods=["GET"]),
            Route(V3 + "/projects/{project_id}", self.update_project, methods=["PATCH"]),
            Route(V3 + "/projects/{project_id}", self.delete_project, methods=["DELETE"]),
            Route(V3 + "/users", self.list_users, methods=["GET"]),
            Route(V3 + "/users", self.create_user, methods=["POST"]),
            Route(V3 + "/users/{user_id}", self.show_user, methods=["GET"]),
            Route(V3 + "/users/{user_id}", self.update_user, methods=["PATCH"]),
            Route(V3 + "/users/{user_id}", self.delete_user, methods=["DELETE"]),
            Route(V3 + "/users/{user_id}/projects", self.user_projects, methods=["GET"]),
            Route(V3 + "/roles", self.list_roles, methods=["GET"]),
            Route(V3 + "/roles/{role_id}", self.show_role, methods=["GET"]),
            Route(
                V3 + "/projects/{project_id}/users/{user_id}/roles", self.project_user_roles, methods=["GET"]
            ),
            Route(assignment, self.grant, methods=["PUT"]),
            Route(assignment, self.check_grant, methods=["GET", "HEAD"]),
            Route(assignment, self.revoke_grant, methods=["DELETE"]),
            Route(V3 + "/role_assignments", self.role_assignments, methods=["GET"]),
            Route(V3 + "/domains", self.list_domains, methods=["GET"]),
            Route(V3 + "/domains/{domain_id}", self.show_domain, methods=["GET"]),
        ]

    # -- plumbing ---------------------------------------------------------------------------------

    def _admin(self, request: Request, action: str) -> Caller:
        caller = authenticate(request, self._store, self._config)
        if not caller.is_admin:
            raise keystone_error(
                403,
                "Forbidden",
                f"You are not authorized to perform the requested action: identity:{action}.",
            )
        return caller

    @staticmethod
    async def _body(request: Request, key: str) -> dict[str, Any]:
        try:
            body = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError):
            raise _bad("Expecting to find valid JSON in request body.") from None
        value = body.get(key) if isinstance(body, dict) else None
        if not isinstance(value, dict):
            raise _bad(f"'{key}' is a required property")
        return value

    def _links(self, path: str) -> dict[str, Any]:
        return {"self": f"{self._config.identity_url}/{path}", "previous": None, "next": None}

    def _ok(self, body: dict[str, Any], status: int = 200) -> Response:
        return JSONResponse(body, status_code=status, headers={"Vary": "X-Auth-Token"})

    def _check_domain(self, raw: dict[str, Any]) -> None:
        domain = raw.get("domain_id", self._config.domain_id)
        if domain != self._config.domain_id:
            raise _not_found("domain", str(domain))

    @staticmethod
    def _name(raw: dict[str, Any], kind: str) -> str:
        name = raw.get("name")
        longest = 64 if kind == "project" else 255
        if not isinstance(name, str) or not name.strip() or len(name) > longest:
            raise _bad(f"Invalid input for field '{kind}/name'")
        return name

    # -- projects ---------------------------------------------------------------------------------

    def _project(self, request: Request) -> Project:
        project = self._directory.project(request.path_params["project_id"])
        if project is None:
            raise _not_found("project", request.path_params["project_id"])
        return project

    async def list_projects(self, request: Request) -> Response:
        """GET /projects[?name=&domain_id=&enabled=]."""
        self._admin(request, "list_projects")
        projects = self._directory.projects()
        query = request.query_params
        if "name" in query:
            projects = [p for p in projects if p.name == query["name"]]
        if query.get("domain_id", self._config.domain_id) != self._config.domain_id:
            projects = []
        views = [project_view(p, self._config) for p in projects]
        return self._ok({"projects": views, "links": self._links("projects")})

    async def create_project(self, request: Request) -> Response:
        """POST /projects: 201."""
        self._admin(request, "create_project")
        raw = await self._body(request, "project")
        name = self._name(raw, "project")
        self._check_domain(raw)
        if self._directory.project_by_name(name) is not None:
            raise keystone_error(
                409,
                "Conflict",
                "Conflict occurred attempting to store project - it is not permitted to have two projects"
                f" with the same name in the same domain : {name}.",
            )
        project = Project(
            secrets.token_hex(16), name, str(raw.get("description") or ""), bool(raw.get("enabled", True))
        )
        self._store.put(project)
        return self._ok({"project": project_view(project, self._config)}, 201)

    async def show_project(self, request: Request) -> Response:
        """GET /projects/{id}."""
        self._admin(request, "get_project")
        return self._ok({"project": project_view(self._project(request), self._config)})

    async def update_project(self, request: Request) -> Response:
        """PATCH /projects/{id}: name, description, enabled."""
        self._admin(request, "update_project")
        project = self._project(request)
        if project.id == self._config.project_id:
            raise keystone_error(403, "Forbidden", "The emulator's own project cannot be changed.")
        raw = await self._body(request, "project")
        changes: dict[str, Any] = {}
        if "name" in raw:
            changes["name"] = self._name(raw, "project")
        if "description" in raw:
            changes["description"] = str(raw["description"] or "")
        if "enabled" in raw:
            changes["enabled"] = bool(raw["enabled"])
        project = dataclasses.replace(project, **changes)
        self._store.put(project)
        return self._ok({"project": project_view(project, self._config)})

    async def delete_project(self, request: Request) -> Response:
        """DELETE /projects/{id}: 204; its role assignments go too."""
        self._admin(request, "delete_project")
        project = self._project(request)
        if project.id == self._config.project_id:
            raise keystone_error(403, "Forbidden", "The emulator's own project cannot be deleted.")
        doomed = [a for a in self._store.all(RoleAssignment) if a.project_id == project.id]
        self._store.delete(project, *doomed)
        return Response(status_code=204)

    # -- users ------------------------------------------------------------------------------------

    def _user(self, request: Request) -> User:
        user = self._store.get(User, request.path_params["user_id"])
        if user is None:
            raise _not_found("user", request.path_params["user_id"])
        return user

    def _user_view(self, user: User) -> dict[str, Any]:
        view: dict[str, Any] = {
            "id": user.id,
            "name": user.name,
            "domain_id": self._config.domain_id,
            "enabled": user.enabled,
            "password_expires_at": None,
            "options": {},
            "links": {"self": f"{self._config.identity_url}/users/{user.id}"},
        }
        for field in ("default_project_id", "email", "description"):
            if getattr(user, field) is not None:
                view[field] = getattr(user, field)
        return view

    async def list_users(self, request: Request) -> Response:
        """GET /users[?name=]."""
        self._admin(request, "list_users")
        users = self._store.all(User)
        if "name" in request.query_params:
            users = [u for u in users if u.name == request.query_params["name"]]
        return self._ok({"users": [self._user_view(u) for u in users], "links": self._links("users")})

    def _user_fields(self, raw: dict[str, Any]) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        if "password" in raw:
            if not isinstance(raw["password"], str) or not raw["password"]:
                raise _bad("Invalid input for field 'user/password'")
            fields["password"] = raw["password"]
        if "enabled" in raw:
            fields["enabled"] = bool(raw["enabled"])
        for field in ("email", "description", "default_project_id"):
            if field in raw:
                fields[field] = None if raw[field] is None else str(raw[field])
        if fields.get("default_project_id") and self._directory.project(fields["default_project_id"]) is None:
            raise _not_found("project", fields["default_project_id"])
        return fields

    async def create_user(self, request: Request) -> Response:
        """POST /users: 201 (the password is never shown)."""
        self._admin(request, "create_user")
        raw = await self._body(request, "user")
        name = self._name(raw, "user")
        self._check_domain(raw)
        if any(u.name == name for u in self._store.all(User)):
            raise keystone_error(
                409,
                "Conflict",
                f"Conflict occurred attempting to store user - Duplicate entry found with name {name}.",
            )
        fields = {"password": secrets.token_urlsafe(24), **self._user_fields(raw)}
        user = User(secrets.token_hex(16), name, roles=[], **fields)
        self._store.put(user)
        return self._ok({"user": self._user_view(user)}, 201)

    async def show_user(self, request: Request) -> Response:
        """GET /users/{id}."""
        self._admin(request, "get_user")
        return self._ok({"user": self._user_view(self._user(request))})

    async def update_user(self, request: Request) -> Response:
        """PATCH /users/{id}: password, enabled, email, description, default project."""
        self._admin(request, "update_user")
        user = self._user(request)
        raw = await self._body(request, "user")
        changes = self._user_fields(raw)
        if "name" in raw:
            changes["name"] = self._name(raw, "user")
        user = dataclasses.replace(user, **changes)
        self._store.put(user)
        return self._ok({"user": self._user_view(user)})

    async def delete_user(self, request: Request) -> Response:
        """DELETE /users/{id}: 204; its assignments go and its tokens stop working."""
        caller = self._admin(request, "delete_user")
        user = self._user(request)
        if user.roles or user.id == caller.user.id:
            raise keystone_error(403, "Forbidden", "The emulator's own users cannot be deleted.")
        doomed: list[Any] = [a for a in self._store.all(RoleAssignment) if a.user_id == user.id]
        doomed += [t for t in self._store.all(Token) if t.user_id == user.id]
        self._store.delete(user, *doomed)
        return Response(status_code=204)

    async def user_projects(self, request: Request) -> Response:
        """GET /users/{id}/projects: those the user has a role on."""
        caller = authenticate(request, self._store, self._config)
        user = self._user(request)
        if user.id != caller.user.id and not caller.is_admin:
            raise keystone_error(
                403,
                "Forbidden",
                "You are not authorized to perform the requested action: identity:list_user_projects.",
            )
        projects = [p for p in self._directory.projects() if self._directory.roles_on(user, p.id)]
        views = [project_view(p, self._config) for p in projects]
        return self._ok({"projects": views, "links": self._links(f"users/{user.id}/projects")})

    # -- roles and assignments --------------------------------------------------------------------

    def _role_view(self, name: str) -> dict[str, Any]:
        return {
            "id": role_id(name),
            "name": name,
            "domain_id": None,
            "description": None,
            "options": {},
            "links": {"self": f"{self._config.identity_url}/roles/{role_id(name)}"},
        }

    def _role(self, request: Request) -> str:
        wanted = request.path_params["role_id"]
        name = next((r for r in ROLES if role_id(r) == wanted), None)
        if name is None:
            raise _not_found("role", wanted)
        return name

    async def list_roles(self, request: Request) -> Response:
        """GET /roles[?name=]."""
        self._admin(request, "list_roles")
        roles = [r for r in ROLES if request.query_params.get("name", r) == r]
        return self._ok({"roles": [self._role_view(r) for r in roles], "links": self._links("roles")})

    async def show_role(self, request: Request) -> Response:
        """GET /roles/{id}."""
        self._admin(request, "get_role")
        return self._ok({"role": self._role_view(self._role(request))})

    def _grant_parts(self, request: Request) -> tuple[Project, User, str]:
        return self._project(request), self._user(request), self._role(request)

    async def project_user_roles(self, request: Request) -> Response:
        """GET /projects/{p}/users/{u}/roles."""
        self._admin(request, "list_grants")
        project, user = self._project(request), self._user(request)
        roles = self._directory.assigned_roles(user, project.id)
        path = f"projects/{project.id}/users/{user.id}/roles"
        return self._ok({"roles": [self._role_view(r) for r in roles], "links": self._links(path)})

    async def grant(self, request: Request) -> Response:
        """PUT /projects/{p}/users/{u}/roles/{r}: 204."""
        self._admin(request, "create_grant")
        project, user, role = self._grant_parts(request)
        if role not in self._directory.assigned_roles(user, project.id):
            self._store.put(RoleAssignment(f"{user.id}/{project.id}/{role}", user.id, project.id, role))
        return Response(status_code=204)

    async def check_grant(self, request: Request) -> Response:
        """HEAD/GET /projects/{p}/users/{u}/roles/{r}: 204, or 404 without that role."""
        self._admin(request, "check_grant")
        project, user, role = self._grant_parts(request)
        if role not in self._directory.assigned_roles(user, project.id):
            raise _not_found("role assignment", f"{role_id(role)}")
        return Response(status_code=204)

    async def revoke_grant(self, request: Request) -> Response:
        """DELETE /projects/{p}/users/{u}/roles/{r}: 204 (the seed users' own roles stay)."""
        self._admin(request, "revoke_grant")
        project, user, role = self._grant_parts(request)
        stored = self._store.get(RoleAssignment, f"{user.id}/{project.id}/{role}")
        if stored is None:
            if role in self._directory.assigned_roles(user, project.id):
                raise keystone_error(403, "Forbidden", "The emulator's own users keep their roles.")
            raise _not_found("role assignment", role_id(role))
        self._store.delete(stored)
        return Response(status_code=204)

    async def role_assignments(self, request: Request) -> Response:
        """GET /role_assignments[?user.id=&scope.project.id=&role.id=&include_names]."""
        self._admin(request, "list_role_assignments")
        query = request.query_params
        names = "include_names" in query and query["include_names"].lower() not in ("0", "false")
        found = []
        for a in self._directory.assignments():
            if query.get("user.id", a.user_id) != a.user_id:
                continue
            if query.get("scope.project.id", a.project_id) != a.project_id:
                continue
            if query.get("role.id", role_id(a.role)) != role_id(a.role):
                continue
            found.append(self._assignment_view(a, names))
        return self._ok({"role_assignments": found, "links": self._links("role_assignments")})

    def _assignment_view(self, a: RoleAssignment, names: bool) -> dict[str, Any]:
        role: dict[str, Any] = {"id": role_id(a.role)}
        user: dict[str, Any] = {"id": a.user_id}
        project: dict[str, Any] = {"id": a.project_id}
        if names:
            role["name"] = a.role
            found_user = self._store.get(User, a.user_id)
            user.update(name=found_user.name if found_user else "", domain=self._domain_ref())
            found_project = self._directory.project(a.project_id)
            project.update(name=found_project.name if found_project else "", domain=self._domain_ref())
        url = f"{self._config.identity_url}/projects/{a.project_id}/users/{a.user_id}/roles/{role_id(a.role)}"
        return {"role": role, "user": user, "scope": {"project": project}, "links": {"assignment": url}}

    # -- domains ----------------------------------------------------------------------------------

    def _domain_ref(self) -> dict[str, str]:
        return {"id": self._config.domain_id, "name": self._config.domain_name}

    def _domain_view(self) -> dict[str, Any]:
        return {
            **self._domain_ref(),
            "description": "The default domain",
            "enabled": True,
            "tags": [],
            "options": {},
            "links": {"self": f"{self._config.identity_url}/domains/{self._config.domain_id}"},
        }

    async def list_domains(self, request: Request) -> Response:
        """GET /domains[?name=]: the one domain."""
        self._admin(request, "list_domains")
        name = request.query_params.get("name", self._config.domain_name)
        domains = [self._domain_view()] if name == self._config.domain_name else []
        return self._ok({"domains": domains, "links": self._links("domains")})

    async def show_domain(self, request: Request) -> Response:
        """GET /domains/{id}."""
        self._admin(request, "get_domain")
        if request.path_params["domain_id"] != self._config.domain_id:
            raise _not_found("domain", request.path_params["domain_id"])
        return self._ok({"domain": self._domain_view()})
