"""The CSI Identity service: who we are, what we can do, and whether we are ready."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from google.protobuf.wrappers_pb2 import BoolValue

from csi_xloud import DRIVER_NAME, __version__
from csi_xloud._proto import csi_pb2, csi_pb2_grpc
from csi_xloud.rpc.types import Context

log = logging.getLogger(__name__)

# A readiness check returns None when its part is ready, else the reason it is not.
ReadinessCheck = Callable[[], Awaitable[str | None]]

_PLUGIN = csi_pb2.PluginCapability
_PROBE_TIMEOUT_SECONDS = 5.0
NOT_READY_METADATA_KEY = "x-csi-xloud-not-ready"


class IdentityService(csi_pb2_grpc.IdentityServicer):
    """Serves GetPluginInfo, GetPluginCapabilities and Probe for every mode."""

    def __init__(self, *, controller: bool, checks: Sequence[ReadinessCheck] = ()) -> None:
        self._controller = controller
        self._checks = tuple(checks)
        self._last_reasons: str | None = ""  # "" before the first Probe; None while ready

    async def GetPluginInfo(
        self, request: csi_pb2.GetPluginInfoRequest, context: Context
    ) -> csi_pb2.GetPluginInfoResponse:
        return csi_pb2.GetPluginInfoResponse(name=DRIVER_NAME, vendor_version=__version__)

    async def GetPluginCapabilities(
        self, request: csi_pb2.GetPluginCapabilitiesRequest, context: Context
    ) -> csi_pb2.GetPluginCapabilitiesResponse:
        return csi_pb2.GetPluginCapabilitiesResponse(capabilities=self.capabilities())

    def capabilities(self) -> list[csi_pb2.PluginCapability]:
        """The controller services where the controller runs; topology and online expansion always."""
        caps = []
        if self._controller:
            caps.append(_PLUGIN(service=_PLUGIN.Service(type=_PLUGIN.Service.CONTROLLER_SERVICE)))
            caps.append(_PLUGIN(service=_PLUGIN.Service(type=_PLUGIN.Service.GROUP_CONTROLLER_SERVICE)))
        caps.append(_PLUGIN(service=_PLUGIN.Service(type=_PLUGIN.Service.VOLUME_ACCESSIBILITY_CONSTRAINTS)))
        caps.append(_PLUGIN(volume_expansion=_PLUGIN.VolumeExpansion(type=_PLUGIN.VolumeExpansion.ONLINE)))
        return caps

    async def Probe(self, request: csi_pb2.ProbeRequest, context: Context) -> csi_pb2.ProbeResponse:
        reasons = await self.not_ready_reasons()
        if reasons:
            # Spec: a plugin still getting ready answers OK with ready=false. The response has no
            # field for why, so the reasons go to the log and to trailing metadata.
            text = "; ".join(reasons)
            self._log_readiness(text)
            context.set_trailing_metadata(((NOT_READY_METADATA_KEY, text[:1024]),))
            return csi_pb2.ProbeResponse(ready=BoolValue(value=False))
        self._log_readiness(None)
        return csi_pb2.ProbeResponse(ready=BoolValue(value=True))

    def _log_readiness(self, reasons: str | None) -> None:
        """A change of readiness at WARNING (not ready) or INFO (ready); the same answer again at DEBUG."""
        changed, self._last_reasons = reasons != self._last_reasons, reasons
        if reasons is None:
            log.log(logging.INFO if changed else logging.DEBUG, "probe: ready")
        else:
            log.log(logging.WARNING if changed else logging.DEBUG, "probe: not ready: %s", reasons)

    async def not_ready_reasons(self) -> list[str]:
        """Run every check at once; a check that raises or hangs counts as not ready."""
        results = await asyncio.gather(*(self._run(check) for check in self._checks))
        return [reason for reason in results if reason]

    @staticmethod
    async def _run(check: ReadinessCheck) -> str | None:
        try:
            return await asyncio.wait_for(check(), _PROBE_TIMEOUT_SECONDS)
        except TimeoutError:
            return f"readiness check {getattr(check, '__qualname__', check)!r} timed out"
        except Exception as exc:  # a failing check means not ready, never a failed Probe
            return f"{type(exc).__name__}: {exc}"
