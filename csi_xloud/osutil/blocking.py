"""Blocking system calls (stat, statvfs, ioctl, reads of /proc and /sys) run off the event loop, in time.

A stat on a dead NFS server or FUSE daemon, or an ioctl on a stuck disk, can sleep in the kernel for
ever. Run on the event loop it would stall every other call of the node plugin; run here it stalls only
the call that touched the path. The threads are daemons that a new one joins whenever none is idle,
so a thread that never returns holds up neither the other calls nor the process's exit; while one
stays stuck, further calls on the same path are refused at once instead of piling up behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from csi_xloud.osutil.errors import NotResponding

T = TypeVar("T")

DEFAULT_TIMEOUT_SECONDS = 10.0
_MAX_IDLE_THREADS = 4


class _Threads:
    """Daemon threads taking jobs from one queue; a new one starts for a job whenever none is idle."""

    def __init__(self, max_idle: int = _MAX_IDLE_THREADS) -> None:
        self._jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0  # threads waiting for a job that no submitted job has claimed yet
        self._max_idle = max_idle

    def submit(self, job: Callable[[], None]) -> None:
        self._jobs.put(job)
        with self._lock:
            if self._idle:
                self._idle -= 1  # an idle thread will take it
                return
        threading.Thread(target=self._work, name="csi-xloud blocking call", daemon=True).start()

    def _work(self) -> None:
        while True:
            self._jobs.get()()
            with self._lock:
                if self._idle >= self._max_idle:
                    return
                self._idle += 1


class BlockingCalls:
    """Runs a blocking callable in a worker thread and waits for it at most timeout_seconds."""

    def __init__(self, timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS) -> None:
        self._timeout = timeout_seconds
        self._stuck: dict[str, float] = {}  # path -> monotonic time its stuck call started
        self._threads = _Threads()

    async def call(self, path: Path | str, function: Callable[..., T], *args: Any) -> T:
        """function(*args), which touches path; NotResponding when it takes longer than the deadline."""
        key = str(path)
        since = self._stuck.get(key)
        if since is not None:
            raise NotResponding(
                f"{key} has not answered a call made {time.monotonic() - since:.0f}s ago "
                "(a hung device, or a dead NFS server or FUSE daemon?)"
            )
        loop = asyncio.get_running_loop()
        done: asyncio.Future[T] = loop.create_future()
        started = time.monotonic()
        self._threads.submit(functools.partial(self._run, loop, done, key, function, args))
        try:
            return await asyncio.wait_for(asyncio.shield(done), self._timeout)
        except TimeoutError:
            self._stuck[key] = started
            raise NotResponding(
                f"{key} did not answer within {self._timeout:g}s "
                "(a hung device, or a dead NFS server or FUSE daemon?)"
            ) from None
        finally:
            if not done.done():  # given up on (deadline or cancellation): its outcome will find no reader
                done.add_done_callback(_discard_outcome)

    def _run(
        self, loop: asyncio.AbstractEventLoop, done: asyncio.Future[T], key: str,
        function: Callable[..., T], args: tuple[Any, ...],
    ) -> None:
        """The thread's body: call, then hand the outcome to the loop (which may have closed meanwhile)."""
        settle: Callable[[], None]
        try:
            result = function(*args)
        except Exception as exc:
            settle = functools.partial(self._settle, done, key, functools.partial(done.set_exception, exc))
        else:
            settle = functools.partial(self._settle, done, key, functools.partial(done.set_result, result))
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(settle)

    def _settle(self, done: asyncio.Future[T], key: str, outcome: Callable[[], None]) -> None:
        self._stuck.pop(key, None)
        if not done.done():
            outcome()


def _discard_outcome(future: asyncio.Future[Any]) -> None:
    """Retrieve an outcome nobody waits for, so asyncio does not report it as never retrieved."""
    if not future.cancelled():
        future.exception()
