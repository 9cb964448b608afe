"""The deadline of the RPC being served, shared with the cloud client's retries and the controller's waits.

The CO's sidecar sends a gRPC deadline with every call; work that outlives it is wasted, since the
sidecar has given up and will call again. So retries and waits stop early enough that the answer
(an error the sidecar retries) still reaches it in time.
"""

from __future__ import annotations

from contextvars import ContextVar

# An instant on time.monotonic (SystemClock's clock); None when the caller sent no deadline.
CALL_DEADLINE: ContextVar[float | None] = ContextVar("csi_xloud_call_deadline", default=None)
# What an answer needs to reach the caller: this much, or a tenth of what is left if that is less.
ANSWER_SECONDS = 1.0


def seconds_left(now: float) -> float | None:
    """Seconds until the call's deadline (negative once past), or None when the call has none."""
    deadline = CALL_DEADLINE.get()
    return None if deadline is None else deadline - now


def within_call(seconds: float, now: float) -> float:
    """How long a step may take: `seconds`, cut so that the call can still answer before its deadline."""
    left = seconds_left(now)
    if left is None:
        return seconds
    return max(0.0, min(seconds, left - min(ANSWER_SECONDS, left / 10)))
