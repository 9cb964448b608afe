"""A client-side token bucket per service, so a burst of RPCs cannot flood the cloud's API."""

from __future__ import annotations

from csi_xloud.clock import Clock


class TokenBucket:
    """Allows `rate` requests per second on average and `burst` at once; callers beyond wait their turn."""

    def __init__(self, rate: float, burst: int, clock: Clock) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a token bucket needs rate > 0 and burst >= 1")
        self._rate = rate
        self._burst = float(burst)
        self._clock = clock
        self._tokens = float(burst)
        self._updated = clock.monotonic()

    async def acquire(self) -> bool:
        """Take one token, sleeping until it is due; True when the caller had to wait."""
        now = self._clock.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._updated) * self._rate)
        self._updated = now
        # Taking the token before sleeping reserves a place in line: concurrent callers queue up
        # behind each other (the balance goes negative) instead of all waking at the same moment.
        self._tokens -= 1
        if self._tokens >= 0:
            return False
        try:
            await self._clock.sleep(-self._tokens / self._rate)
        except BaseException:
            self._tokens += 1  # a cancelled caller gives its place back
            raise
        return True
