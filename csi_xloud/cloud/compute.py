"""The Compute API (Nova): servers and their volume attachments."""

from __future__ import annotations

import dataclasses
from typing import Any
from urllib.parse import parse_qs, urlsplit

from csi_xloud.cloud.errors import NotFound
from csi_xloud.cloud.http import ServiceHttp
from csi_xloud.cloud.models import ApiVersion, Attachment, Server, VersionRange
from csi_xloud.cloud.versions import Feature, MicroversionPicker

V2_1 = ApiVersion(2, 1)
# 2.89 adds the Storage attachment_id to attachment views (and drops the volume id as `id`).
ATTACHMENTS = Feature("list volume attachments", V2_1, ApiVersion(2, 89))
ATTACH = Feature("attach a volume", V2_1, ApiVersion(2, 89))
SERVERS = Feature("show servers", V2_1)
# 2.84 adds each event's `details`: why it failed, in words a project member may read.
ACTIONS = Feature("show instance actions", V2_1, ApiVersion(2, 84))


class ComputeApi:
    """Calls of the Compute API used by the controller."""

    def __init__(self, http: ServiceHttp) -> None:
        self._http = http
        self._versions = MicroversionPicker(http, "compute")

    async def versions(self) -> VersionRange:
        """The microversion range the Compute API supports (discovered once, then cached)."""
        return await self._versions.range()

    async def get_server(self, server_id: str) -> Server:
        """One server; NotFound when it does not exist."""
        version = await self._pick(SERVERS)
        answer = await self._http.request("GET", f"servers/{server_id}", microversion=version)
        return Server.from_api(answer.field("server"))

    async def list_server_ids(self, *, page_size: int = 1000) -> frozenset[str]:
        """The ids of every server of the project (all pages)."""
        ids: set[str] = set()
        params = {"limit": str(page_size)}
        while True:
            answer = await self._http.request(
                "GET", "servers", params=params, microversion=await self._pick(SERVERS)
            )
            page = [str(s["id"]) for s in answer.body.get("servers") or () if s.get("id")]
            ids.update(page)
            marker = _next_marker(answer.body.get("servers_links"))
            if marker is None or not page:
                return frozenset(ids)
            params = {"limit": str(page_size), "marker": marker}

    async def attach_volume(self, server_id: str, volume_id: str, *, device: str | None = None) -> Attachment:
        """Start attaching a volume (it goes reserved, attaching, in-use); Conflict when it is in use."""
        body: dict[str, Any] = {"volumeId": volume_id}
        if device is not None:
            body["device"] = device
        answer = await self._http.request(
            "POST", f"servers/{server_id}/os-volume_attachments", json={"volumeAttachment": body},
            microversion=await self._pick(ATTACH), idempotent=False,
        )
        attachment = Attachment.from_api(answer.field("volumeAttachment"))
        return dataclasses.replace(attachment, request_id=answer.request_id)

    async def list_attachments(self, server_id: str) -> list[Attachment]:
        """Every volume attached to a server; NotFound when the server does not exist."""
        answer = await self._http.request(
            "GET", f"servers/{server_id}/os-volume_attachments", microversion=await self._pick(ATTACHMENTS),
        )
        return [Attachment.from_api(a) for a in answer.body.get("volumeAttachments") or ()]

    async def get_attachment(self, server_id: str, volume_id: str) -> Attachment:
        """The attachment of a volume to a server; NotFound when it is not attached there."""
        answer = await self._http.request(
            "GET", f"servers/{server_id}/os-volume_attachments/{volume_id}",
            microversion=await self._pick(ATTACHMENTS),
        )
        return Attachment.from_api(answer.field("volumeAttachment"))

    async def detach_volume(self, server_id: str, volume_id: str) -> str | None:
        """Start detaching a volume from a server (the request id, naming its instance action);
        NotFound when it is not attached there."""
        answer = await self._http.request(
            "DELETE", f"servers/{server_id}/os-volume_attachments/{volume_id}",
            microversion=await self._pick(ATTACHMENTS),
        )
        return answer.request_id

    async def action_failure(self, server_id: str, request_id: str) -> str | None:
        """Why the instance action a request started failed, in the cloud's words; None if it says nothing."""
        try:
            answer = await self._http.request(
                "GET", f"servers/{server_id}/os-instance-actions/{request_id}",
                microversion=await self._pick(ACTIONS),
            )
        except NotFound:
            return None
        action = answer.field("instanceAction")
        failed = [e for e in action.get("events") or () if str(e.get("result") or "").lower() == "error"]
        for event in failed:
            if event.get("details"):
                return f"{event.get('event')}: {event['details']}"
        if failed:
            return f"{failed[0].get('event')} failed"
        return str(action.get("message") or "") or None

    async def _pick(self, feature: Feature) -> ApiVersion:
        return await self._versions.pick(feature)


def _next_marker(links: Any) -> str | None:
    """The marker of a `next` link, if the listing has more pages."""
    for link in links or ():
        if isinstance(link, dict) and link.get("rel") == "next":
            markers = parse_qs(urlsplit(str(link.get("href") or "")).query).get("marker")
            if markers:
                return markers[0]
    return None
