"""BlockingCalls: a call that never returns costs one thread and one deadline, never the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import threading
import time

import pytest

from csi_xloud.osutil.blocking import BlockingCalls
from csi_xloud.osutil.errors import NotResponding


async def test_results_and_errors_come_back_as_if_called_here() -> None:
    calls = BlockingCalls(timeout_seconds=5)
    assert await calls.call("/a", lambda x: x * 2, 21) == 42
    assert await calls.call("/a", lambda: None) is None

    def refuse() -> None:
        raise OSError(errno.ENOTCONN, "Transport endpoint is not connected")

    with pytest.raises(OSError) as raised:
        await calls.call("/a", refuse)
    assert raised.value.errno == errno.ENOTCONN


async def test_a_hung_call_times_out_while_the_loop_runs_on_and_its_path_is_refused_until_it_returns() -> None:
    calls = BlockingCalls(timeout_seconds=0.3)
    release = threading.Event()
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    started = time.monotonic()
    try:
        with pytest.raises(NotResponding, match=r"/dead did not answer within 0.3s"):
            await calls.call("/dead", release.wait)
    finally:
        ticker.cancel()
    assert 0.3 <= time.monotonic() - started < 1.0
    assert ticks >= 10  # the loop kept running while the thread slept

    with pytest.raises(NotResponding, match=r"/dead has not answered a call made"):
        await calls.call("/dead", lambda: "never called")
    assert await calls.call("/alive", lambda: "other paths answer") == "other paths answer"

    release.set()  # the stuck call returns at last: its path is usable again
    for _ in range(100):
        try:
            assert await calls.call("/dead", lambda: "back") == "back"
            break
        except NotResponding:
            await asyncio.sleep(0.01)
    else:
        pytest.fail("the path stayed refused after its call returned")


async def test_a_cancelled_caller_leaves_no_stuck_record() -> None:
    calls = BlockingCalls(timeout_seconds=5)
    release = threading.Event()
    waiting = asyncio.create_task(calls.call("/slow", release.wait))
    await asyncio.sleep(0.05)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    release.set()
    await asyncio.sleep(0.05)
    assert await calls.call("/slow", lambda: "ok") == "ok"


async def test_an_error_arriving_after_the_deadline_is_not_reported_as_lost(caplog: pytest.LogCaptureFixture) -> None:
    calls = BlockingCalls(timeout_seconds=0.1)
    release = threading.Event()

    def hang_then_fail() -> None:
        release.wait()
        raise OSError(errno.ENOTCONN, "Transport endpoint is not connected")

    with pytest.raises(NotResponding):
        await calls.call("/gone", hang_then_fail)
    release.set()
    for _ in range(100):  # the path is usable again once the late outcome has arrived
        with contextlib.suppress(NotResponding):
            await calls.call("/gone", lambda: None)
            break
        await asyncio.sleep(0.01)
    gc.collect()
    await asyncio.sleep(0)
    assert "never retrieved" not in caplog.text
