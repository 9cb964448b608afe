"""Cloud credentials and endpoints, read as openstacksdk reads them: clouds.yaml or OS_* variables."""

from __future__ import annotations

import ssl
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml

from csi_xloud.cloud.http import HttpTuning

STORAGE = "block-storage"
COMPUTE = "compute"
INTERFACES = ("public", "internal", "admin")


class BadSettings(ValueError):
    """clouds.yaml or the OS_* variables are missing or wrong; the message names the setting."""


class AuthType(StrEnum):
    PASSWORD = "password"  # noqa: S105 - the auth type's name
    APPLICATION_CREDENTIAL = "v3applicationcredential"
    TOKEN = "token"  # noqa: S105 - the auth type's name
    NONE = "none"


_AUTH_ALIASES = {
    "password": AuthType.PASSWORD, "v3password": AuthType.PASSWORD,
    "v3applicationcredential": AuthType.APPLICATION_CREDENTIAL,
    "applicationcredential": AuthType.APPLICATION_CREDENTIAL,
    "token": AuthType.TOKEN, "v3token": AuthType.TOKEN,
    "none": AuthType.NONE, "noauth": AuthType.NONE,
}

# (setting, its key under a cloud's `auth:` in clouds.yaml, its environment variable)
_AUTH_KEYS = (
    ("auth_url", "OS_AUTH_URL"), ("username", "OS_USERNAME"), ("user_id", "OS_USER_ID"),
    ("password", "OS_PASSWORD"), ("user_domain_name", "OS_USER_DOMAIN_NAME"),
    ("user_domain_id", "OS_USER_DOMAIN_ID"), ("project_name", "OS_PROJECT_NAME"),
    ("project_id", "OS_PROJECT_ID"), ("project_domain_name", "OS_PROJECT_DOMAIN_NAME"),
    ("project_domain_id", "OS_PROJECT_DOMAIN_ID"),
    ("application_credential_id", "OS_APPLICATION_CREDENTIAL_ID"),
    ("application_credential_name", "OS_APPLICATION_CREDENTIAL_NAME"),
    ("application_credential_secret", "OS_APPLICATION_CREDENTIAL_SECRET"), ("token", "OS_TOKEN"),
)
# (setting, top-level key of a cloud in clouds.yaml, environment variable)
_CLOUD_KEYS = (
    ("auth_type", "OS_AUTH_TYPE"), ("region_name", "OS_REGION_NAME"), ("interface", "OS_INTERFACE"),
    ("cacert", "OS_CACERT"), ("verify", "OS_VERIFY"), ("insecure", "OS_INSECURE"),
    ("block_storage_endpoint_override", "OS_BLOCK_STORAGE_ENDPOINT_OVERRIDE"),
    ("volume_endpoint_override", "OS_VOLUME_ENDPOINT_OVERRIDE"),
    ("compute_endpoint_override", "OS_COMPUTE_ENDPOINT_OVERRIDE"),
    ("api_timeout", "OS_API_TIMEOUT"), ("rate_limit", "OS_RATE_LIMIT"),
    ("rate_limit_burst", "OS_RATE_LIMIT_BURST"),
)


@dataclass(frozen=True, slots=True)
class CloudSettings:
    """Everything needed to reach one cloud; secrets are kept out of repr."""

    auth_type: AuthType
    auth_url: str | None = None
    username: str | None = None
    user_id: str | None = None
    password: str | None = field(default=None, repr=False)
    user_domain_name: str | None = None
    user_domain_id: str | None = None
    project_name: str | None = None
    project_id: str | None = None
    project_domain_name: str | None = None
    project_domain_id: str | None = None
    application_credential_id: str | None = None
    application_credential_name: str | None = None
    application_credential_secret: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    region_name: str | None = None
    interface: str = "public"
    verify: bool = True
    cacert: Path | None = None
    endpoint_overrides: Mapping[str, str] = field(default_factory=dict)
    tuning: HttpTuning = field(default_factory=HttpTuning)
    # Requests per second per service ("volume", "compute", "identity"); others use tuning's rate.
    service_rates: Mapping[str, float] = field(default_factory=dict)
    source: str = "environment"

    def rate_for(self, service: str) -> float:
        """The token bucket rate of one service."""
        return self.service_rates.get(service, self.tuning.requests_per_second)

    def tls_verify(self) -> bool | ssl.SSLContext:
        """httpx's `verify`: False, a context trusting the CA bundle, or True for the default store."""
        if not self.verify:
            return False
        return ssl.create_default_context(cafile=str(self.cacert)) if self.cacert is not None else True


class _Source:
    """Raw values from one place (a clouds.yaml entry or the environment) that can name their keys."""

    def __init__(self, values: Mapping[str, Any], names: Mapping[str, str], where: str) -> None:
        self.values = values
        self.names = names
        self.where = where

    def get(self, key: str) -> str | None:
        value = self.values.get(key)
        if value is None or value == "":
            return None
        if isinstance(value, (dict, list)):
            raise BadSettings(f"{self.name(key)} must be a single value")
        return str(value)

    def name(self, key: str) -> str:
        return self.names.get(key, key)


def load_cloud_settings(
    cloud: str | None, cloud_config: Path | None, env: Mapping[str, str], *,
    search_paths: Sequence[Path] | None = None,
) -> CloudSettings:
    """Read the chosen cloud of clouds.yaml, or OS_* variables when no cloud is chosen or found."""
    name = cloud or env.get("OS_CLOUD") or None
    path = config_path(cloud_config, env, search_paths)
    if name is None and path is not None and not _env_has_auth(env):
        clouds = _read_clouds(path)
        if len(clouds) != 1:
            raise BadSettings(f"--cloud (or OS_CLOUD): {path} holds {len(clouds)} clouds; choose one")
        name = next(iter(clouds))
    if name is None:
        return _settings(_env_source(env))
    if path is None:
        raise BadSettings(f"--cloud-config (or OS_CLIENT_CONFIG_FILE): no clouds.yaml holds cloud {name!r}")
    return _settings(_yaml_source(name, path))


def config_path(
    cloud_config: Path | None, env: Mapping[str, str], search: Sequence[Path] | None,
) -> Path | None:
    """The clouds.yaml to read: the one named, else the first of the usual places that exists."""
    from_env = env.get("OS_CLIENT_CONFIG_FILE")
    explicit = cloud_config or (Path(from_env) if from_env else None)
    if explicit is not None:
        if not explicit.is_file():
            raise BadSettings(f"--cloud-config (or OS_CLIENT_CONFIG_FILE): {explicit} is not a readable file")
        return explicit
    if search is None:
        home = Path(env["HOME"]) if env.get("HOME") else None
        search = [Path("clouds.yaml")]
        if home is not None:
            search.append(home / ".config/openstack/clouds.yaml")
        search.append(Path("/etc/openstack/clouds.yaml"))
    return next((p for p in search if p.is_file()), None)


def _env_has_auth(env: Mapping[str, str]) -> bool:
    return any(env.get(var) for var in ("OS_AUTH_URL", "OS_AUTH_TYPE", "OS_TOKEN"))


def _read_clouds(path: Path) -> Mapping[str, Any]:
    _refuse_world_readable(path)
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise BadSettings(f"--cloud-config: cannot read {path}: {type(exc).__name__}") from exc
    clouds = document.get("clouds") if isinstance(document, Mapping) else None
    if not isinstance(clouds, Mapping):
        raise BadSettings(f"--cloud-config: {path} has no 'clouds' mapping")
    return clouds


def _refuse_world_readable(path: Path) -> None:
    """A clouds.yaml holds passwords: refuse one that every user of the host may read.

    An error, not a warning: a warning scrolls past while the secret stays exposed. Mount the
    Secret with defaultMode 0400 or 0440 (the chart does), or chmod the file to 0600.
    """
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise BadSettings(f"--cloud-config: cannot read {path}: {type(exc).__name__}") from exc
    if mode & (stat.S_IROTH | stat.S_IWOTH):
        raise BadSettings(
            f"--cloud-config: {path} is readable or writable by every user (mode {stat.S_IMODE(mode):04o}); "
            "it holds credentials: chmod it to 0600, or mount the Secret with defaultMode 0400"
        )


def _yaml_source(name: str, path: Path) -> _Source:
    entry = _read_clouds(path).get(name)
    if not isinstance(entry, Mapping):
        raise BadSettings(f"--cloud: cloud {name!r} is not in {path}")
    auth = entry.get("auth") or {}
    if not isinstance(auth, Mapping):
        raise BadSettings(f"clouds.{name}.auth in {path} must be a mapping")
    values = {k: v for k, v in entry.items() if k != "auth"}
    values.update({k: auth.get(k) for k, _ in _AUTH_KEYS if k in auth})
    names = {k: f"clouds.{name}.auth.{k}" for k, _ in _AUTH_KEYS}
    names.update({k: f"clouds.{name}.{k}" for k, _ in _CLOUD_KEYS})
    return _Source(values, names, f"cloud {name!r} of {path}")


def _env_source(env: Mapping[str, str]) -> _Source:
    pairs = _AUTH_KEYS + _CLOUD_KEYS
    values = {key: env.get(var) for key, var in pairs}
    if values["project_name"] is None:
        values["project_name"] = env.get("OS_TENANT_NAME")
    return _Source(values, dict(pairs), "OS_* environment variables")


def _settings(src: _Source) -> CloudSettings:
    auth_type = _auth_type(src)
    text = {key: src.get(key) for key, _ in _AUTH_KEYS}
    _default_domains(text)
    _require_auth(auth_type, text, src)
    return CloudSettings(
        auth_type=auth_type,
        **text,
        region_name=src.get("region_name"),
        interface=_interface(src),
        verify=_verify(src),
        cacert=_cacert(src),
        endpoint_overrides=_overrides(auth_type, src),
        tuning=_tuning(src),
        service_rates=_service_rates(src),
        source=src.where,
    )


def _auth_type(src: _Source) -> AuthType:
    raw = src.get("auth_type")
    if raw is None:
        if src.get("token"):
            return AuthType.TOKEN
        if src.get("application_credential_secret"):
            return AuthType.APPLICATION_CREDENTIAL
        return AuthType.PASSWORD
    try:
        return _AUTH_ALIASES[raw.lower()]
    except KeyError:
        choices = ", ".join(t.value for t in AuthType)
        raise BadSettings(f"{src.name('auth_type')}: unsupported auth type {raw!r} (use {choices})") from None


def _default_domains(text: dict[str, str | None]) -> None:
    """A user or project given by name lives in the `default` domain unless a domain is named."""
    if text["username"] and not (text["user_domain_name"] or text["user_domain_id"]):
        text["user_domain_id"] = "default"
    if text["project_name"] and not (text["project_domain_name"] or text["project_domain_id"]):
        text["project_domain_id"] = "default"


def _require_auth(auth_type: AuthType, text: Mapping[str, str | None], src: _Source) -> None:
    def need(*alternatives: str) -> None:
        if not any(text[a] for a in alternatives):
            names = " or ".join(src.name(a) for a in alternatives)
            raise BadSettings(f"{names} is required for auth type {auth_type.value} ({src.where})")

    if auth_type is AuthType.NONE:
        return
    need("auth_url")
    url = text["auth_url"] or ""
    if not url.startswith(("http://", "https://")):
        raise BadSettings(f"{src.name('auth_url')} must be an http(s) URL")
    if auth_type is AuthType.PASSWORD:
        need("username", "user_id")
        need("password")
        need("project_id", "project_name")
    elif auth_type is AuthType.APPLICATION_CREDENTIAL:
        need("application_credential_secret")
        need("application_credential_id", "application_credential_name")
        if not text["application_credential_id"]:
            need("username", "user_id")
    else:
        need("token")


def _interface(src: _Source) -> str:
    value = (src.get("interface") or "public").lower().removesuffix("url")
    if value not in INTERFACES:
        raise BadSettings(f"{src.name('interface')}: expected one of {', '.join(INTERFACES)}, got {value!r}")
    return value


def _flag(src: _Source, key: str) -> bool | None:
    raw = src.get(key)
    if raw is None:
        return None
    lowered = raw.strip().lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise BadSettings(f"{src.name(key)}: expected true or false, got {raw!r}")


def _verify(src: _Source) -> bool:
    verify, insecure = _flag(src, "verify"), _flag(src, "insecure")
    if verify is not None:
        return verify
    return not insecure if insecure is not None else True


def _cacert(src: _Source) -> Path | None:
    raw = src.get("cacert")
    if raw is None:
        return None
    path = Path(raw)
    if not path.is_file():
        raise BadSettings(f"{src.name('cacert')}: {raw} is not a readable file")
    try:
        ssl.create_default_context(cafile=str(path))
    except (ssl.SSLError, OSError):
        raise BadSettings(f"{src.name('cacert')}: {raw} holds no usable CA certificate") from None
    return path


def _overrides(auth_type: AuthType, src: _Source) -> dict[str, str]:
    found = {
        STORAGE: src.get("block_storage_endpoint_override") or src.get("volume_endpoint_override"),
        COMPUTE: src.get("compute_endpoint_override"),
    }
    for service, url in found.items():
        if url is not None and not url.startswith(("http://", "https://")):
            key = "block_storage_endpoint_override" if service == STORAGE else "compute_endpoint_override"
            raise BadSettings(f"{src.name(key)} must be an http(s) URL")
    if auth_type is AuthType.NONE:
        required = ((STORAGE, "block_storage_endpoint_override"), (COMPUTE, "compute_endpoint_override"))
        for service, key in required:
            if found[service] is None:
                raise BadSettings(f"{src.name(key)} is required for auth type none (there is no catalog)")
    return {k: v for k, v in found.items() if v is not None}


def _number(src: _Source, key: str, *, minimum: float) -> float | None:
    raw = src.get(key)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise BadSettings(f"{src.name(key)}: expected a number, got {raw!r}") from None
    if value < minimum or value != value:
        raise BadSettings(f"{src.name(key)}: must be at least {minimum:g}, got {raw!r}")
    return value


_RATE_SERVICES = {"block-storage": "volume", "block_storage": "volume", "volume": "volume",
                  "volumev3": "volume", "compute": "compute", "identity": "identity"}


def _service_rates(src: _Source) -> dict[str, float]:
    """`rate_limit` as openstacksdk allows it: one number, or a mapping of service type to number."""
    raw = src.values.get("rate_limit")
    if not isinstance(raw, Mapping):
        return {}
    rates: dict[str, float] = {}
    for key, value in raw.items():
        service = _RATE_SERVICES.get(str(key))
        if service is None:
            raise BadSettings(f"{src.name('rate_limit')}.{key}: unknown service (use block-storage, compute "
                              "or identity)")
        number = _number(_Source({"v": value}, {"v": f"{src.name('rate_limit')}.{key}"}, src.where), "v",
                         minimum=0.001)
        if number is not None:
            rates[service] = number
    return rates


def _tuning(src: _Source) -> HttpTuning:
    defaults = HttpTuning()
    timeout = _number(src, "api_timeout", minimum=0.001)
    rate = None if isinstance(src.values.get("rate_limit"), Mapping) else _number(src, "rate_limit",
                                                                                   minimum=0.001)
    burst = _number(src, "rate_limit_burst", minimum=1)
    if burst is not None and burst != int(burst):
        raise BadSettings(f"{src.name('rate_limit_burst')} must be a whole number of requests")
    return HttpTuning(
        timeout_seconds=timeout if timeout is not None else defaults.timeout_seconds,
        requests_per_second=rate if rate is not None else defaults.requests_per_second,
        burst=int(burst) if burst is not None else defaults.burst,
    )
