"""Who is who in the emulated Keystone: projects, roles and role assignments.

The seed project (the emulator's own, from its configuration) always exists, and the seed users'
`roles` are their roles on it; projects and users made through the admin API are records, their roles
RoleAssignment records.
"""

from __future__ import annotations

import hashlib

from csi_xloud.emulator.context import EmulatorConfig
from csi_xloud.emulator.models import Project, RoleAssignment, User
from csi_xloud.emulator.state import Store

ROLES = ("admin", "member", "reader")
# Keystone's default implied roles: admin implies member, member implies reader.
IMPLIES = {"admin": ("member",), "member": ("reader",)}


def role_id(name: str) -> str:
    """The stable id of a role (as the token bodies have always shown it)."""
    return hashlib.sha256(f"role/{name}".encode()).hexdigest()[:32]


class Directory:
    """Lookups shared by token issue and the admin API."""

    def __init__(self, store: Store, config: EmulatorConfig) -> None:
        self._store = store
        self._config = config

    def seed_project(self) -> Project:
        """The emulator's own project."""
        return Project(self._config.project_id, self._config.project_name, "", True)

    def projects(self) -> list[Project]:
        """Every project, the seed project first."""
        return [self.seed_project(), *self._store.all(Project)]

    def project(self, project_id: str) -> Project | None:
        """A project by id."""
        return next((p for p in self.projects() if p.id == project_id), None)

    def project_by_name(self, name: str) -> Project | None:
        """A project by name (all live in the one domain)."""
        return next((p for p in self.projects() if p.name == name), None)

    def assigned_roles(self, user: User, project_id: str) -> list[str]:
        """The roles given to the user on a project (not those they imply)."""
        roles = list(user.roles) if project_id == self._config.project_id else []
        for assignment in self._store.all(RoleAssignment):
            if assignment.user_id == user.id and assignment.project_id == project_id:
                roles.append(assignment.role)
        return list(dict.fromkeys(roles))

    def roles_on(self, user: User, project_id: str) -> list[str]:
        """The user's effective roles on a project, implied ones included (what a token carries)."""
        roles = self.assigned_roles(user, project_id)
        for role in roles:  # grows while it runs: implied roles imply in turn
            roles.extend(IMPLIES.get(role, ()))
        return list(dict.fromkeys(roles))

    def assignments(self) -> list[RoleAssignment]:
        """Every role assignment, the seed users' implicit ones included."""
        implicit = [
            RoleAssignment(f"{u.id}/{self._config.project_id}/{r}", u.id, self._config.project_id, r)
            for u in self._store.all(User)
            for r in u.roles
        ]
        return implicit + self._store.all(RoleAssignment)
