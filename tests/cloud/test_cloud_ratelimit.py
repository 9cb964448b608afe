"""The client-side token bucket: burst, steady rate, queueing and cancellation."""

from __future__ import annotations

import asyncio

import pytest

from csi_xloud.cloud.ratelimit import TokenBucket


class FrozenClock:
    """Time that only the test moves; sleeps are recorded and wait for the test to release them."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self.release = asyncio.Event()

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        await self.release.wait()


async def test_burst_then_queue_at_the_rate() -> None:
    clock = FrozenClock()
    bucket = TokenBucket(rate=4, burst=2, clock=clock)
    assert await bucket.acquire() is False
    assert await bucket.acquire() is False
    waiting = [asyncio.create_task(bucket.acquire()) for _ in range(3)]
    await asyncio.sleep(0)
    assert clock.sleeps == pytest.approx([0.25, 0.5, 0.75])
    clock.release.set()
    assert await asyncio.gather(*waiting) == [True, True, True]


async def test_refills_with_time_up_to_the_burst() -> None:
    clock = FrozenClock()
    bucket = TokenBucket(rate=1, burst=3, clock=clock)
    for _ in range(3):
        assert await bucket.acquire() is False
    clock.now += 100  # long idle: back to a full burst, not 100 tokens
    for _ in range(3):
        assert await bucket.acquire() is False
    task = asyncio.create_task(bucket.acquire())
    await asyncio.sleep(0)
    assert clock.sleeps == [1.0]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_cancelled_waiter_gives_its_place_back() -> None:
    clock = FrozenClock()
    bucket = TokenBucket(rate=1, burst=1, clock=clock)
    await bucket.acquire()
    task = asyncio.create_task(bucket.acquire())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    follower = asyncio.create_task(bucket.acquire())
    await asyncio.sleep(0)
    assert clock.sleeps == [1.0, 1.0]  # not 2.0: the cancelled caller's reservation was returned
    follower.cancel()
    with pytest.raises(asyncio.CancelledError):
        await follower


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (1, 0)])
def test_bad_bucket(rate: float, burst: int) -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate, burst, FrozenClock())
