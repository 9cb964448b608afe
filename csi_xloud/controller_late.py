"""Creates whose request may still reach the cloud: a retry waits for them instead of creating twice.

Cinder has no idempotency token. When a create request leaves this host and no answer comes
back (a timeout, a connection lost mid-request), the cloud may still act on it after the CO's
retry has looked for the name, found nothing and created another: two volumes, one leaked. So
a retry for such a name answers UNAVAILABLE until the request can no longer be in flight, and
only then creates again; if the late request landed meanwhile, the retry finds it by name.
"""

from __future__ import annotations

import math
from collections.abc import Hashable

from csi_xloud.clock import Clock
from csi_xloud.errors import Unavailable


class LateRequests:
    """Keys (such as ("volume", name)) of creates whose answer was lost, and until when to wait."""

    def __init__(self, clock: Clock, window_seconds: float) -> None:
        self._clock = clock
        self._window_seconds = window_seconds
        self._until: dict[Hashable, float] = {}

    def note(self, key: Hashable) -> None:
        """A create for key was sent and its answer lost."""
        self._until[key] = self._clock.monotonic() + self._window_seconds

    def forget(self, key: Hashable) -> None:
        """The create for key is settled (found by name, or given up)."""
        self._until.pop(key, None)

    def refuse_while_in_flight(self, key: Hashable, what: str) -> None:
        """Raise UNAVAILABLE while an earlier create for key may still land; else allow a new one."""
        until = self._until.get(key)
        if until is None:
            return
        left = until - self._clock.monotonic()
        if left <= 0:
            del self._until[key]
            return
        raise Unavailable(
            f"an earlier request to create {what} got no answer and may still reach the cloud; "
            f"not creating another for {math.ceil(left)}s more (retry later)"
        )
