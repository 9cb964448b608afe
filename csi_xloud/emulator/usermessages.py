"""User messages: what Cinder tells a project about an asynchronous operation that failed.

An event id is `VOLUME_<resource type>_<action id>_<detail id>` and the text `<action>:<detail>`, with
Cinder's action and detail codes; messages are kept for 30 days.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from csi_xloud.emulator.chaos import REQUEST_ID
from csi_xloud.emulator.models import Message, new_id
from csi_xloud.emulator.state import Store

KEEP = dt.timedelta(days=30)


@dataclass(frozen=True, slots=True)
class Event:
    """One kind of failure a user message reports."""

    resource_type: str
    action_id: str
    action: str
    detail_id: str
    detail: str

    @property
    def event_id(self) -> str:
        """Cinder's event id."""
        return f"VOLUME_{self.resource_type}_{self.action_id}_{self.detail_id}"

    @property
    def text(self) -> str:
        """The user_message."""
        return f"{self.action}:{self.detail}"


NO_VALID_BACKEND = Event(
    "VOLUME", "001", "schedule allocate volume", "003", "Could not find any available weighted backend."
)
CREATE_FAILED = Event(
    "VOLUME", "008", "create volume from backend storage", "012", "Driver failed to create the volume."
)
EXTEND_NO_BACKEND = Event(
    "VOLUME", "007", "extend volume", "003", "Could not find any available weighted backend."
)
EXTEND_FAILED = Event("VOLUME", "007", "extend volume", "010", "Volume Driver failed to extend volume.")
SNAPSHOT_FAILED = Event("VOLUME_SNAPSHOT", "009", "create snapshot", "013", "Snapshot failed to create.")


def record(store: Store, project_id: str, event: Event, resource_uuid: str) -> Message:
    """Store a message about a resource, with the id of the request that started the operation."""
    created = dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)
    message = Message(
        id=new_id(),
        project_id=project_id,
        event_id=event.event_id,
        user_message=event.text,
        resource_type=event.resource_type,
        resource_uuid=resource_uuid,
        request_id=REQUEST_ID.get(),
        created_at=created.isoformat(timespec="microseconds"),
        guaranteed_until=(created + KEEP).isoformat(timespec="microseconds"),
    )
    store.put(message)
    return message
