"""The controller's side of `csi-xloud doctor`: the credentials file, Keystone, the catalog and the cloud."""

from __future__ import annotations

import dataclasses
import math
import stat
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from csi_xloud.cloud.auth import identity_url
from csi_xloud.cloud.client import CloudClient
from csi_xloud.cloud.compute import ATTACH
from csi_xloud.cloud.errors import CloudError, Unauthorized, Unavailable
from csi_xloud.cloud.models import QuotaItem, QuotaUsage, VersionRange, VolumeType
from csi_xloud.cloud.settings import AuthType, BadSettings, CloudSettings, config_path, load_cloud_settings
from csi_xloud.cloud.storage import BACKUP_METADATA, CREATE_FROM_BACKUP, ONLINE_EXTEND, VOLUME_SHOW
from csi_xloud.cloud.versions import Feature
from csi_xloud.metrics import Metrics
from csi_xloud.ops.checks import Finding, Outcome, fail, ok, warn

# The most requests one CSI operation costs once the waiter has learned (ControllerPublishVolume:
# look-up, attach, one shared poll, the final view; BENCHMARKS.md).
REQUESTS_PER_OPERATION = 4
# A quota this full gets a warning: a few more PVCs and CreateVolume fails.
QUOTA_WARN_SHARE = 0.9
QUOTA_RESOURCES = ("volumes", "gigabytes", "snapshots", "backups", "backup_gigabytes")
# Extra spec that binds a volume type to some availability zones.
TYPE_ZONES_SPEC = "RESKEY:availability_zones"
# Features worth a warning when the cloud lacks them: the driver still runs without them.
STORAGE_FEATURES = (VOLUME_SHOW, ONLINE_EXTEND, BACKUP_METADATA, CREATE_FROM_BACKUP)
_DOCTOR_RETRY_SECONDS = 1.0
_DOCTOR_TIMEOUT_SECONDS = 15.0


@dataclass(frozen=True, slots=True)
class CloudTarget:
    """Which cloud to check, given as the driver's `--cloud`/`--cloud-config` are, and the load to expect."""

    cloud: str | None = None
    cloud_config: Path | None = None
    expected_ops_per_second: float = 5.0


def type_zones(volume_type: VolumeType) -> list[str]:
    """The availability zones a type is bound to (empty when it may be created anywhere)."""
    raw = volume_type.extra_specs.get(TYPE_ZONES_SPEC, "")
    return [zone.strip() for zone in raw.split(",") if zone.strip()]


def describe_identity(settings: CloudSettings) -> str:
    """Who we authenticate as, without any secret: user and project, or the credential's id."""
    if settings.auth_type is AuthType.APPLICATION_CREDENTIAL:
        name = settings.application_credential_id or settings.application_credential_name
        return f"application credential {name}"
    if settings.auth_type is AuthType.TOKEN:
        return "the configured token (OS_TOKEN)"
    user = settings.username or settings.user_id or "?"
    domain = settings.user_domain_name or settings.user_domain_id
    project = settings.project_name or settings.project_id or "?"
    return f"user {user}" + (f" (domain {domain})" if domain else "") + f", project {project}"


class CloudDoctor:
    """Runs the controller's checks in order; later checks need the earlier ones, so a failure stops them."""

    def __init__(self, target: CloudTarget, env: Mapping[str, str], metrics: Metrics | None = None) -> None:
        self._target = target
        self._env = env
        self._metrics = metrics or Metrics()

    async def run(self) -> list[Finding]:
        """Every controller check's finding, in order."""
        findings: list[Finding] = []
        settings = self._settings(findings)
        if settings is None:
            return findings
        async with CloudClient(_patient_once(settings), self._metrics) as client:
            if not await self._authenticated(client, settings, findings):
                return findings
            if not await self._catalog(client, findings):
                return findings
            steps: tuple[Callable[[CloudClient], Awaitable[list[Finding]]], ...] = (
                self._microversions, self._zones, self._types, self._quotas,
            )
            for step in steps:
                findings.extend(await step(client))
        findings.append(self._rate_limit(settings))
        return findings

    # -- credentials file ---------------------------------------------------------------------------

    def _settings(self, findings: list[Finding]) -> CloudSettings | None:
        target = self._target
        try:
            path = config_path(target.cloud_config, self._env, None)
        except BadSettings as exc:
            findings.append(fail("clouds.yaml", str(exc), "pass --cloud-config with a readable file"))
            return None
        if path is not None:
            findings.append(self._file_finding(path))
            if findings[-1].outcome is Outcome.FAIL:
                return None
        try:
            settings = load_cloud_settings(target.cloud, target.cloud_config, self._env)
        except BadSettings as exc:
            findings.append(fail("cloud settings", str(exc), "correct that key in clouds.yaml"))
            return None
        findings.append(ok("cloud settings", f"{settings.source}: {settings.auth_type.value} auth as "
                           f"{describe_identity(settings)}, region {settings.region_name or '(any)'}, "
                           f"interface {settings.interface}"))
        return settings

    @staticmethod
    def _file_finding(path: Path) -> Finding:
        try:
            info = path.stat()
            with path.open("rb"):
                pass
        except OSError as exc:
            return fail("clouds.yaml", f"{path} cannot be read: {exc.strerror}",
                        "mount the Secret readable by the driver's user (defaultMode 0440 with fsGroup)")
        mode = stat.S_IMODE(info.st_mode)
        if mode & (stat.S_IROTH | stat.S_IWOTH):
            return fail("clouds.yaml", f"{path} is readable or writable by every user (mode {mode:04o}) "
                        "and holds credentials; the driver refuses it",
                        f"chmod 0600 {path}, or mount the Secret with defaultMode 0400 or 0440")
        return ok("clouds.yaml", f"{path} is readable and private (mode {mode:04o}, owner uid {info.st_uid})")

    # -- identity and catalog -----------------------------------------------------------------------

    async def _authenticated(
        self, client: CloudClient, settings: CloudSettings, findings: list[Finding],
    ) -> bool:
        if settings.auth_type is AuthType.NONE:
            findings.append(ok("auth", "auth type none: no Keystone, endpoints from the overrides"))
            return True
        where = identity_url(settings.auth_url or "")
        who = describe_identity(settings)
        try:
            await client.auth.token()
            project = await client.auth.project_id()
        except Unauthorized as exc:
            by_password = settings.auth_type is AuthType.PASSWORD
            secret, holder = ("password", "user") if by_password else ("secret", "credential")
            findings.append(fail(
                "auth", f"the identity API at {where} refused {who}: wrong {secret}, or no such "
                f"{holder} ({exc.message})",
                f"correct the {secret} of {who} in {settings.source} (Keystone answers alike for a wrong "
                f"{secret} and an unknown name), then update the Secret",
            ))
            return False
        except Unavailable as exc:
            findings.append(fail("auth", f"cannot reach the identity API at {where}: {exc.message}",
                                 "check auth_url, and that this pod may reach it (egress rules, proxy, DNS)"))
            return False
        except CloudError as exc:
            findings.append(fail("auth", f"the identity API at {where} failed for {who}: {exc}",
                                 "check auth_url and the user's role in the project"))
            return False
        findings.append(ok("auth", f"{where} issued a token to {who} (project id {project})"))
        return True

    async def _catalog(self, client: CloudClient, findings: list[Finding]) -> bool:
        settings = client.settings
        region = f", region {settings.region_name}" if settings.region_name else ""
        where = f"{settings.interface} interface{region}"
        reached = True
        for check, service, role in (("catalog storage", "volume", "volumes live in"),
                                     ("catalog compute", "compute", "volumes attach through")):
            try:
                url = await client.auth.endpoint(service)
            except CloudError as exc:
                findings.append(fail(
                    check, f"{exc.message}; {role} it",
                    f"set region_name and interface in clouds.yaml to ones the catalog publishes {service} "
                    f"for, or set {'block_storage' if service == 'volume' else 'compute'}_endpoint_override",
                ))
                reached = False
                continue
            findings.append(ok(check, f"{url} ({where})"))
        return reached

    # -- what the cloud offers ----------------------------------------------------------------------

    async def _microversions(self, client: CloudClient) -> list[Finding]:
        findings = []
        try:
            storage = await client.storage.versions()
        except CloudError as exc:
            return [fail("storage API", f"the Storage API does not answer: {exc}",
                         "check that the catalog's Storage endpoint is reachable from this pod")]
        missing = [f for f in STORAGE_FEATURES if not _supports(storage, f)]
        text = f"Storage microversions {storage.min or '-'} to {storage.max or '(none)'}"
        if missing:
            lacking = "; ".join(f"to {f.description} needs {f.required}" for f in missing)
            findings.append(warn("storage API", f"{text}: {lacking}",
                                 "those features fail with a clear error; ask the cloud's operator for a "
                                 "newer Storage API"))
        else:
            findings.append(ok("storage API", f"{text}: every feature the driver uses"))
        try:
            compute = await client.compute.versions()
        except CloudError as exc:
            return [*findings, fail("compute API", f"the Compute API does not answer: {exc}",
                                    "check that the catalog's Compute endpoint is reachable from this pod")]
        text = f"Compute microversions {compute.min or '-'} to {compute.max or '(none)'}"
        if not _supports(compute, ATTACH):
            findings.append(fail("compute API", f"{text}: to {ATTACH.description} needs {ATTACH.required}",
                                 "the driver cannot attach volumes on this cloud"))
        else:
            findings.append(ok("compute API", f"{text}: volume attachments work"))
        return findings

    async def _zones(self, client: CloudClient) -> list[Finding]:
        try:
            zones = await client.storage.list_availability_zones()
        except CloudError as exc:
            return [warn("zones", f"cannot list the Storage API's availability zones: {exc}",
                         "set StorageClass `availability` by hand; node zones must match the cloud's")]
        if not zones:
            return [fail("zones", "the Storage API lists no availability zone",
                         "ask the cloud's operator: volumes cannot be placed")]
        down = [z.name for z in zones if not z.available]
        names = ", ".join(z.name for z in zones)
        if down:
            return [warn("zones", f"{names}; not taking volumes: {', '.join(down)}",
                         "keep PVCs off those zones (allowedTopologies) until the cloud is fixed")]
        return [ok("zones", f"{names} (topology key values the nodes must report)")]

    async def _types(self, client: CloudClient) -> list[Finding]:
        try:
            types = await client.storage.list_types()
            default = await client.storage.default_type()
        except CloudError as exc:
            return [fail("volume types", f"cannot list volume types: {exc}",
                         "the project needs the reader or member role on the Storage API")]
        if not types:
            return [fail("volume types", "the project sees no volume type",
                         "ask the cloud's operator for a public type or access to a private one")]
        described = []
        for volume_type in types:
            notes = [note for note, present in (
                ("default", default is not None and default.id == volume_type.id),
                ("multiattach", volume_type.multiattach), ("private", not volume_type.is_public),
            ) if present]
            zones = type_zones(volume_type)
            if zones:
                notes.append("zones " + "/".join(zones))
            described.append(volume_type.name + (f" ({', '.join(notes)})" if notes else ""))
        return [ok("volume types", ", ".join(described))]

    async def _quotas(self, client: CloudClient) -> list[Finding]:
        try:
            usage = await client.storage.get_quota_usage()
        except CloudError as exc:  # a role without quota access (Forbidden) included
            return [warn("quotas", f"cannot read the project's quotas: {exc}",
                         "give the user the reader role, or check quotas by hand before large rollouts")]
        return [_quota_finding(resource, usage) for resource in QUOTA_RESOURCES if usage.get(resource)]

    # -- the driver's own limits --------------------------------------------------------------------

    def _rate_limit(self, settings: CloudSettings) -> Finding:
        expected = self._target.expected_ops_per_second
        needed = expected * REQUESTS_PER_OPERATION
        rates = {"Storage": settings.rate_for("volume"), "Compute": settings.rate_for("compute")}
        text = ", ".join(f"{name} {rate:g}/s" for name, rate in rates.items())
        # Ten seconds of that load leave as the bucket (burst) and the rate allow.
        wanted = 10 * needed
        binding = {name: rate for name, rate in rates.items()
                   if settings.tuning.burst_for(rate) + 10 * rate < wanted}
        if binding:
            name, rate = min(binding.items(), key=lambda item: item[1])
            queued = math.ceil((wanted - settings.tuning.burst_for(rate)) / rate - 10)
            return warn("rate limit", f"{text}: {expected:g} operations/s need about {needed:g} requests/s "
                        f"(~{REQUESTS_PER_OPERATION} each), so the {name} limit binds: a 10 s burst queues "
                        f"about {queued} s more", "raise rate_limit in clouds.yaml if the cloud allows it")
        return ok("rate limit", f"{text}: room for {expected:g} operations/s (~{needed:g} requests/s)")


def _supports(versions: VersionRange, feature: Feature) -> bool:
    if versions.max is None:
        return feature.required.minor == 0
    return versions.supports(feature.required)


def _quota_finding(resource: str, usage: QuotaUsage) -> Finding:
    item: QuotaItem | None = usage.get(resource)
    assert item is not None
    check = f"quota {resource}"
    if item.unlimited:
        return ok(check, f"unlimited ({item.in_use} in use)")
    used = item.in_use + item.reserved
    text = f"{used} of {item.limit} used"
    if item.free == 0:
        return fail(check, f"{text}: creates fail with RESOURCE_EXHAUSTED",
                    "delete what is no longer needed, or ask the cloud's operator for a higher quota")
    if item.limit and used >= QUOTA_WARN_SHARE * item.limit:
        return warn(check, f"{text}: {item.free} left", "ask for a higher quota before it runs out")
    return ok(check, text)


def _patient_once(settings: CloudSettings) -> CloudSettings:
    """The driver's settings with fewer retries and a shorter timeout: a check should answer in seconds."""
    tuning = dataclasses.replace(
        settings.tuning, retry_seconds=_DOCTOR_RETRY_SECONDS,
        timeout_seconds=min(settings.tuning.timeout_seconds, _DOCTOR_TIMEOUT_SECONDS),
    )
    return dataclasses.replace(settings, tuning=tuning)
