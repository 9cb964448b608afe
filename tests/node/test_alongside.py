"""The helper NodeStage uses to look for the device while it checks the staging path."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from csi_xloud.node.service import _alongside


async def _fails_soon() -> str:
    await asyncio.sleep(0.005)  # the search has started by then
    raise ValueError("bad staging path")


async def _search_that_loses_one_cancellation(finished: list[str]) -> str:
    """Like a device search whose first cancellation asyncio.wait_for swallowed: it goes on looking."""
    with contextlib.suppress(asyncio.CancelledError):  # lost, as when the awaited future had just finished
        await asyncio.sleep(0.05)
    try:
        await asyncio.sleep(30)
    finally:
        finished.append("stopped")
    return "device"


async def test_the_first_error_wins_and_stops_a_second_that_lost_a_cancellation() -> None:
    finished: list[str] = []
    started = time.monotonic()
    with pytest.raises(ValueError, match="bad staging path"):
        await _alongside(_fails_soon(), _search_that_loses_one_cancellation(finished))
    assert finished == ["stopped"]
    assert time.monotonic() - started < 5


async def test_both_results_when_neither_fails() -> None:
    async def later() -> int:
        await asyncio.sleep(0.01)
        return 2

    async def first() -> int:
        return 1

    assert await _alongside(first(), later()) == (1, 2)


async def test_the_second_error_is_raised_when_the_first_succeeds() -> None:
    async def first() -> str:
        await asyncio.sleep(0.01)
        return "path"

    async def second() -> str:
        raise LookupError("no device")

    with pytest.raises(LookupError, match="no device"):
        await _alongside(first(), second())
