"""Identity (Keystone v3): token issue, validation and revocation, catalog, version discovery."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import json
import secrets
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from csi_xloud.emulator.context import Caller, EmulatorConfig, authenticate
from csi_xloud.emulator.errors import ApiError, keystone_error, unauthorized
from csi_xloud.emulator.identity_directory import Directory
from csi_xloud.emulator.models import AppCredential, Project, Token, User
from csi_xloud.emulator.state import Store

_MALFORMED_TAIL = (
    "The server could not comply with the request since it is either malformed or otherwise incorrect."
    " The client is assumed to be in error."
)
MEMBER_USER = "xloud-member"
ADMIN_USER = "xloud-admin"


def stable_hex(*parts: str) -> str:
    """A 32-hex id derived from names, so ids stay the same across restarts."""
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:32]


def keystone_time(ts: float) -> str:
    """Keystone's timestamp format."""
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000000Z")


def seed_identity(store: Store) -> None:
    """Create the member and admin users and an application credential on first start."""
    if store.all(User):
        return
    member = User(
        stable_hex("user", MEMBER_USER), MEMBER_USER, secrets.token_urlsafe(18), ["member", "reader"]
    )
    admin = User(
        stable_hex("user", ADMIN_USER), ADMIN_USER, secrets.token_urlsafe(18), ["admin", "member", "reader"]
    )
    cred = AppCredential(
        stable_hex("app-credential", MEMBER_USER), "xloud-emulator", secrets.token_urlsafe(24), member.id
    )
    store.put(member, admin, cred)


def prune_tokens(store: Store) -> None:
    """Forget tokens that expired more than an hour ago (Keystone answers for them like for unknown ones)."""
    cutoff = time.time() - 3600
    store.delete(*(t for t in store.all(Token) if t.expires_at < cutoff))


def bad_input(message: str) -> ApiError:
    """Keystone's 400."""
    return keystone_error(400, "Bad Request", message)


class IdentityApi:
    """Routes under /identity."""

    def __init__(self, store: Store, config: EmulatorConfig) -> None:
        self._store = store
        self._config = config
        self._issued = 0
        # Service types left out of the catalog (a test hook: a cloud whose catalog lacks a service).
        self.hidden_services: frozenset[str] = frozenset()
        self._directory = Directory(store, config)

    def routes(self) -> list[Route]:
        """The Starlette routes of this API."""
        return [
            Route("/identity", self.versions, methods=["GET"]),
            Route("/identity/", self.versions, methods=["GET"]),
            Route("/identity/v3", self.version, methods=["GET"]),
            Route("/identity/v3/", self.version, methods=["GET"]),
            Route("/identity/v3/auth/tokens", self.issue, methods=["POST"]),
            Route("/identity/v3/auth/tokens", self.validate, methods=["GET", "HEAD"]),
            Route("/identity/v3/auth/tokens", self.revoke, methods=["DELETE"]),
            Route("/identity/v3/auth/catalog", self.catalog_route, methods=["GET"]),
            Route("/identity/v3/auth/projects", self.projects, methods=["GET"]),
            Route("/identity/v3/auth/domains", self.domains, methods=["GET"]),
            Route("/identity/v3/auth/system", self.system, methods=["GET"]),
        ]

    def _version_doc(self) -> dict[str, Any]:
        return {
            "id": "v3.14",
            "status": "stable",
            "updated": "2020-04-07T00:00:00Z",
            "links": [{"rel": "self", "href": f"{self._config.identity_url}/"}],
            "media-types": [
                {"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}
            ],
        }

    async def versions(self, request: Request) -> Response:
        """GET /identity: 300 with the one version."""
        headers = {"Location": f"{self._config.identity_url}/", "Vary": "X-Auth-Token"}
        return JSONResponse({"versions": {"values": [self._version_doc()]}}, status_code=300, headers=headers)

    async def version(self, request: Request) -> Response:
        """GET /identity/v3."""
        return JSONResponse({"version": self._version_doc()}, headers={"Vary": "X-Auth-Token"})

    async def issue(self, request: Request) -> Response:
        """POST /auth/tokens with the password, application_credential or token method."""
        try:
            body = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError):
            raise bad_input(f"Expecting to find valid JSON in request body. {_MALFORMED_TAIL}") from None
        auth = body.get("auth") if isinstance(body, dict) else None
        if not isinstance(auth, dict):
            raise bad_input(f"Expecting to find auth in request body. {_MALFORMED_TAIL}")
        identity = auth.get("identity")
        if not isinstance(identity, dict):
            raise bad_input("'identity' is a required property")
        methods = identity.get("methods")
        if not isinstance(methods, list) or not methods or not all(isinstance(m, str) for m in methods):
            raise bad_input("Invalid input for field 'identity/methods'")
        token = self._authenticate(identity, methods, auth.get("scope"))
        self._store.put(token)
        self._issued += 1
        if self._issued % 500 == 0:
            prune_tokens(self._store)
        headers = {"X-Subject-Token": token.id, "Vary": "X-Auth-Token"}
        body = self._token_body(token, "nocatalog" not in request.query_params)
        return JSONResponse(body, status_code=201, headers=headers)

    def _authenticate(self, identity: dict[str, Any], methods: list[str], scope: Any) -> Token:
        for method in methods:
            if method not in ("password", "application_credential", "token"):
                err = keystone_error(
                    401, "Unauthorized", "Attempted to authenticate with an unsupported method."
                )
                err.body["error"]["identity"] = {"methods": ["password", "token", "application_credential"]}
                raise err
            if not isinstance(identity.get(method), dict):
                raise bad_input(f"Expecting to find {method} in identity. {_MALFORMED_TAIL}")
        if "token" in methods:
            return self._rescope(identity["token"])
        if "application_credential" in methods:
            return self._by_app_credential(identity["application_credential"], scope)
        return self._by_password(identity["password"], scope)

    def _new_token(
        self, user: User, methods: list[str], project_id: str | None = None, app_cred_id: str | None = None
    ) -> Token:
        issued = time.time()
        project_id = project_id or self._config.project_id
        return Token(
            id="gAAAAA" + secrets.token_urlsafe(96),
            user_id=user.id,
            project_id=project_id,
            methods=methods,
            issued_at=issued,
            expires_at=issued + self._config.token_ttl,
            audit_id=base64.urlsafe_b64encode(secrets.token_bytes(16)).decode().rstrip("="),
            app_cred_id=app_cred_id,
            roles=None
            if project_id == self._config.project_id
            else self._directory.roles_on(user, project_id),
        )

    def _generic_401(self) -> ApiError:
        return keystone_error(401, "Unauthorized", "The request you have made requires authentication.")

    def _find_user(self, raw: Any) -> User | None:
        if not isinstance(raw, dict):
            raise bad_input(f"Expecting to find user in password. {_MALFORMED_TAIL}")
        users = self._store.all(User)
        if "id" in raw:
            return next((u for u in users if u.id == raw["id"]), None)
        if "name" not in raw:
            raise bad_input(f"Expecting to find id or name in user. {_MALFORMED_TAIL}")
        domain = raw.get("domain")
        if not isinstance(domain, dict):
            raise bad_input(f"Expecting to find domain in user. {_MALFORMED_TAIL}")
        if not self._domain_matches(domain):
            return None
        return next((u for u in users if u.name == raw["name"]), None)

    def _domain_matches(self, domain: dict[str, Any]) -> bool:
        return bool(
            domain.get("id", self._config.domain_id) == self._config.domain_id
            and domain.get("name", self._config.domain_name) == self._config.domain_name
        )

    def _scoped_project(self, scope: Any, user: User) -> Project:
        """The project a password token is for: the one asked, else the user's default, else the seed
        project; the user needs a role on it (the emulator issues no unscoped tokens)."""
        if scope is None:
            default = self._directory.project(user.default_project_id or "")
            project = default if default is not None else self._directory.seed_project()
        else:
            project = self._asked_project(scope)
        if not project.enabled or not self._directory.roles_on(user, project.id):
            raise self._generic_401()
        return project

    def _asked_project(self, scope: Any) -> Project:
        asked = scope.get("project") if isinstance(scope, dict) else None
        if not isinstance(asked, dict):
            raise self._generic_401()
        found = None
        if "id" in asked:
            found = self._directory.project(str(asked["id"]))
        elif "name" in asked:
            domain = asked.get("domain")
            if not isinstance(domain, dict) or not self._domain_matches(domain):
                raise self._generic_401()
            found = self._directory.project_by_name(str(asked["name"]))
        if found is None or ("name" in asked and asked["name"] != found.name):
            raise self._generic_401()
        return found

    def _by_password(self, password: dict[str, Any], scope: Any) -> Token:
        user = self._find_user(password.get("user"))
        raw = password.get("user")
        given = raw.get("password") if isinstance(raw, dict) else None
        if user is None or not isinstance(given, str) or not secrets.compare_digest(given, user.password):
            raise self._generic_401()
        if not user.enabled:
            raise self._generic_401()
        project = self._scoped_project(scope, user)
        return self._new_token(user, ["password"], project.id)

    def _by_app_credential(self, raw: dict[str, Any], scope: Any) -> Token:
        if scope is not None:
            err = keystone_error(
                401,
                "Unauthorized",
                "Error authenticating with application credential:"
                " Application credentials cannot request a scope.",
            )
            err.body["error"]["identity"] = {}
            raise err
        creds = self._store.all(AppCredential)
        if "id" in raw:
            cred = next((c for c in creds if c.id == raw["id"]), None)
            if cred is None:
                raise keystone_error(404, "Not Found", f"Could not find Application Credential: {raw['id']}.")
        else:
            user = self._find_user(raw.get("user"))
            cred = next(
                (c for c in creds if user and c.user_id == user.id and c.name == raw.get("name")), None
            )
            if cred is None:
                raise self._generic_401()
        secret = raw.get("secret")
        user = self._store.get(User, cred.user_id)
        if user is None or not isinstance(secret, str) or not secrets.compare_digest(secret, cred.secret):
            raise self._generic_401()
        return self._new_token(user, ["application_credential"], app_cred_id=cred.id)

    def _rescope(self, raw: dict[str, Any]) -> Token:
        if "id" not in raw:
            raise bad_input("Invalid input for field 'identity/token': 'id' is a required property")
        old = self._store.get(Token, str(raw["id"]))
        if old is None:
            raise keystone_error(404, "Not Found", "Could not recognize Fernet token")
        if old.revoked or old.expires_at <= time.time():
            raise keystone_error(404, "Not Found", "Failed to validate token")
        user = self._store.get(User, old.user_id)
        if user is None:
            raise self._generic_401()
        methods = ["token", *[m for m in old.methods if m != "token"]]
        token = self._new_token(user, methods, old.project_id, old.app_cred_id)
        # A rescoped token never outlives the one it came from.
        return dataclasses.replace(token, expires_at=min(token.expires_at, old.expires_at))

    def _caller(self, request: Request) -> Caller:
        return authenticate(request, self._store, self._config)

    def _subject(self, request: Request) -> Token:
        self._caller(request)
        subject = self._store.get(Token, request.headers.get("x-subject-token", ""))
        if subject is None:
            raise keystone_error(404, "Not Found", "Could not recognize Fernet token")
        if subject.revoked or subject.expires_at <= time.time():
            raise keystone_error(404, "Not Found", "Failed to validate token")
        return subject

    async def validate(self, request: Request) -> Response:
        """GET/HEAD /auth/tokens: validate X-Subject-Token."""
        try:
            subject = self._subject(request)
        except ApiError as err:
            if request.method == "HEAD":
                return Response(status_code=err.status, headers=err.headers)
            raise
        headers = {"X-Subject-Token": subject.id, "Vary": "X-Auth-Token"}
        if request.method == "HEAD":
            return Response(status_code=200, headers=headers)
        return JSONResponse(
            self._token_body(subject, "nocatalog" not in request.query_params), headers=headers
        )

    async def revoke(self, request: Request) -> Response:
        """DELETE /auth/tokens: revoke X-Subject-Token."""
        subject = self._subject(request)
        self._store.put(dataclasses.replace(subject, revoked=True))
        return Response(status_code=204)

    async def catalog_route(self, request: Request) -> Response:
        """GET /auth/catalog."""
        self._caller(request)
        caller = self._caller(request)
        links = {"self": f"{self._config.identity_url}/auth/catalog"}
        body = {"catalog": self.catalog(caller.project_id), "links": links}
        return JSONResponse(body, headers={"Vary": "X-Auth-Token"})

    async def projects(self, request: Request) -> Response:
        """GET /auth/projects: those the caller has a role on."""
        caller = self._caller(request)
        links = {"self": f"{self._config.identity_url}/auth/projects", "previous": None, "next": None}
        projects = [
            self._project_view(p, with_links=True)
            for p in self._directory.projects()
            if p.enabled and self._directory.roles_on(caller.user, p.id)
        ]
        return JSONResponse({"projects": projects, "links": links})

    async def domains(self, request: Request) -> Response:
        """GET /auth/domains: the domain, for users with a role on it (the admin)."""
        caller = self._caller(request)
        domains = []
        if caller.is_admin:
            domains.append(
                {
                    "id": self._config.domain_id,
                    "name": self._config.domain_name,
                    "description": "The default domain",
                    "enabled": True,
                    "tags": [],
                    "options": {},
                    "links": {"self": f"{self._config.identity_url}/domains/{self._config.domain_id}"},
                }
            )
        links = {"self": f"{self._config.identity_url}/auth/domains", "previous": None, "next": None}
        return JSONResponse({"domains": domains, "links": links})

    async def system(self, request: Request) -> Response:
        """GET /auth/system: system scope is offered to the admin."""
        caller = self._caller(request)
        links = {"self": f"{self._config.identity_url}/auth/system"}
        return JSONResponse({"system": [{"all": True}] if caller.is_admin else [], "links": links})

    def _project_view(self, project: Project, with_links: bool = False) -> dict[str, Any]:
        if not with_links:
            return {
                "domain": {"id": self._config.domain_id, "name": self._config.domain_name},
                "id": project.id,
                "name": project.name,
            }
        return project_view(project, self._config)

    def catalog(self, project_id: str) -> list[dict[str, Any]]:
        """Service catalog of a project: volumev3, compute and identity, public and internal, one region."""
        base = self._config.base_url
        services = [
            ("compute", "nova", f"{base}/compute/v2.1"),
            ("volumev3", "cinderv3", f"{base}/volume/v3/{project_id}"),
            ("identity", "keystone", f"{base}/identity/v3"),
        ]
        return [
            {
                "endpoints": [
                    {
                        "id": stable_hex("endpoint", stype, interface),
                        "interface": interface,
                        "region_id": self._config.region,
                        "url": url,
                        "region": self._config.region,
                    }
                    for interface in ("public", "internal")
                ],
                "id": stable_hex("service", stype),
                "type": stype,
                "name": name,
            }
            for stype, name, url in services
            if stype not in self.hidden_services
        ]

    def _token_body(self, token: Token, with_catalog: bool) -> dict[str, Any]:
        user = self._store.get(User, token.user_id)
        assert user is not None
        body: dict[str, Any] = {
            "methods": token.methods,
            "user": {
                "domain": {"id": self._config.domain_id, "name": self._config.domain_name},
                "id": user.id,
                "name": user.name,
                "password_expires_at": None,
            },
            "audit_ids": [token.audit_id],
            "expires_at": keystone_time(token.expires_at),
            "issued_at": keystone_time(token.issued_at),
            "project": self._project_view(
                self._directory.project(token.project_id) or self._directory.seed_project()
            ),
            "is_domain": False,
            "roles": [
                {"id": stable_hex("role", r), "name": r}
                for r in (token.roles if token.roles is not None else user.roles)
            ],
        }
        if token.app_cred_id:
            cred = self._store.get(AppCredential, token.app_cred_id)
            body["application_credential"] = {
                "id": token.app_cred_id,
                "name": cred.name if cred else "",
                "restricted": True,
            }
        if with_catalog:
            body["catalog"] = self.catalog(token.project_id)
        return {"token": body}

    def require_caller(self, request: Request) -> Caller:
        """The caller of a request to another API, or 401."""
        try:
            return self._caller(request)
        except ApiError:
            raise unauthorized(self._config.identity_url) from None


def project_view(project: Project, config: EmulatorConfig) -> dict[str, Any]:
    """A project as GET /v3/projects shows it."""
    return {
        "id": project.id,
        "name": project.name,
        "domain_id": config.domain_id,
        "description": project.description,
        "enabled": project.enabled,
        "parent_id": config.domain_id,
        "is_domain": False,
        "tags": [],
        "options": {},
        "links": {"self": f"{config.identity_url}/projects/{project.id}"},
    }
