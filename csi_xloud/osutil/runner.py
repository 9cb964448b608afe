"""Runs host commands from argv lists (never a shell), with timeouts, cancellation and a log line each."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import IO

from csi_xloud.osutil.errors import CommandFailed, CommandTimeout, OsUtilError

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_SECONDS = 120.0
# Node images often leave the sbin folders out of PATH; the tools we run live there.
SEARCH_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_KILL_WAIT_SECONDS = 5.0
_READ_CHUNK = 65536

# (exit code, stdout, stderr) of a command that ran to its end.
Outcome = tuple[int, bytes, bytes]


@dataclass(frozen=True, slots=True)
class CommandResult:
    """How one command ended."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    seconds: float


CommandObserver = Callable[[CommandResult], None]


def pidfds_work() -> bool:
    """Whether the kernel hands out process file descriptors (Linux 5.3+, unless a sandbox forbids it)."""
    try:
        fd = os.pidfd_open(os.getpid())
    except (AttributeError, OSError):
        return False
    os.close(fd)
    return True


class Runner:
    """Runs commands as subprocesses of the running event loop; a cancelled call kills its process group.

    With pidfds, the loop itself watches each command's exit (its pidfd) beside its output pipes.
    Python 3.11's asyncio subprocesses wait for each child in a thread of its own instead, which
    costs a short command such as blkid about 0.7 ms more; they remain the fallback without pidfds.
    Either way nothing process-wide changes, so every event loop (a test's too) can run commands.
    """

    def __init__(
        self,
        *,
        default_timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        env: Mapping[str, str] | None = None,
        observers: Sequence[CommandObserver] = (),
        search_path: str = SEARCH_PATH,
        use_pidfds: bool | None = None,
    ) -> None:
        self._default_timeout = default_timeout_seconds
        base = dict(os.environ if env is None else env)
        base["PATH"] = _joined_path(base.get("PATH", ""), search_path)
        base["LC_ALL"] = "C"  # we parse the tools' output
        self._env = base
        self._observers = tuple(observers)
        self._use_pidfds = pidfds_work() if use_pidfds is None else use_pidfds

    def which(self, name: str) -> str | None:
        """The full path of a tool, or None when it is not installed."""
        return shutil.which(name, path=self._env["PATH"])

    async def run(
        self,
        argv: Sequence[str],
        *,
        timeout_seconds: float | None = None,
        ok_codes: Sequence[int] = (0,),
        cancellable: bool = True,
    ) -> CommandResult:
        """Run argv; raise CommandFailed for an exit code outside ok_codes, CommandTimeout when too slow.

        A cancelled call kills its command, unless cancellable is False: then the command (an mkfs or
        a resize, which a kill would leave half done) runs to its end before the cancellation goes on.
        """
        args = _checked_argv(argv)
        timeout = self._default_timeout if timeout_seconds is None else timeout_seconds
        started = time.monotonic()
        try:
            child = await self._start(args)
        except (FileNotFoundError, PermissionError) as exc:
            raise OsUtilError(f"{args[0]} cannot be run (is it installed?): {exc.strerror}") from exc
        try:
            returncode, out, err = await _outcome(child, args, timeout, cancellable=cancellable)
        finally:
            child.close()
        result = CommandResult(
            argv=tuple(args),
            returncode=returncode,
            stdout=out.decode(errors="replace"),
            stderr=err.decode(errors="replace"),
            seconds=time.monotonic() - started,
        )
        self._report(result)
        if result.returncode not in ok_codes:
            raise CommandFailed(list(args), result.returncode, result.stderr or result.stdout)
        return result

    async def _start(self, args: list[str]) -> _Child:
        if self._use_pidfds:
            return _PidfdChild(args, self._env)
        return await _AsyncioChild.start(args, self._env)

    def _report(self, result: CommandResult) -> None:
        log.debug("ran %s -> %d in %.0fms", " ".join(result.argv), result.returncode, result.seconds * 1000)
        for observe in self._observers:
            observe(result)


class _Child:
    """A started command: `exited` resolves once it is reaped, `finished` once its output is read as well."""

    pid: int
    exited: asyncio.Future[None]
    finished: asyncio.Future[Outcome]

    @property
    def returncode(self) -> int | None:
        raise NotImplementedError

    def close(self) -> None:
        """Stop reading the output; a command still running is reaped all the same when it ends."""


class _PidfdChild(_Child):
    """A child of subprocess.Popen whose pidfd and output pipes the running loop watches."""

    def __init__(self, args: list[str], env: Mapping[str, str]) -> None:
        self._loop = asyncio.get_running_loop()
        self._process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            start_new_session=True,
            bufsize=0,
        )
        assert self._process.stdout is not None and self._process.stderr is not None
        self.pid = self._process.pid
        self.exited = self._loop.create_future()
        self.finished = self._loop.create_future()
        self._out = bytearray()
        self._err = bytearray()
        self._pipes: dict[int, tuple[IO[bytes], bytearray]] = {
            self._process.stdout.fileno(): (self._process.stdout, self._out),
            self._process.stderr.fileno(): (self._process.stderr, self._err),
        }
        try:
            # Nobody reaps the child before its pidfd reports the end, so the pid cannot be reused here.
            pidfd = os.pidfd_open(self.pid)
        except BaseException:
            self._process.kill()
            self._process.wait()
            self.close()
            raise
        self._loop.add_reader(pidfd, self._reap, pidfd)
        for fd in self._pipes:
            os.set_blocking(fd, False)
            self._loop.add_reader(fd, self._read, fd)

    @property
    def returncode(self) -> int | None:
        return self._process.returncode

    def _read(self, fd: int) -> None:
        try:
            chunk = os.read(fd, _READ_CHUNK)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if chunk:
            self._pipes[fd][1].extend(chunk)
            return
        self._close_pipe(fd)
        self._settle()

    def _reap(self, pidfd: int) -> None:
        self._loop.remove_reader(pidfd)
        os.close(pidfd)
        self._process.wait()  # the pidfd said it ended: this returns at once
        if not self.exited.done():
            self.exited.set_result(None)
        self._settle()

    def _settle(self) -> None:
        if self._pipes or not self.exited.done() or self.finished.done():
            return
        code = self._process.returncode
        self.finished.set_result((-1 if code is None else code, bytes(self._out), bytes(self._err)))

    def _close_pipe(self, fd: int) -> None:
        self._loop.remove_reader(fd)
        self._pipes.pop(fd)[0].close()

    def close(self) -> None:
        for fd in list(self._pipes):
            self._close_pipe(fd)


class _AsyncioChild(_Child):
    """An asyncio subprocess, for kernels without pidfds."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self._process = process
        self.pid = process.pid
        self.exited = asyncio.ensure_future(self._wait())
        self.finished = asyncio.ensure_future(self._communicate())

    @classmethod
    async def start(cls, args: list[str], env: Mapping[str, str]) -> _AsyncioChild:
        process = await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            start_new_session=True,
        )
        return cls(process)

    @property
    def returncode(self) -> int | None:
        return self._process.returncode

    async def _wait(self) -> None:
        await self._process.wait()

    async def _communicate(self) -> Outcome:
        out, err = await self._process.communicate()
        code = self._process.returncode
        return -1 if code is None else code, out, err

    def close(self) -> None:
        for task in (self.finished, self.exited):
            task.cancel()


async def _outcome(child: _Child, args: list[str], limit_seconds: float, *, cancellable: bool) -> Outcome:
    """The command's outcome within the time limit; it is killed after it, and on cancellation if allowed."""
    try:
        # Shielded: neither the time limit nor a cancellation may cancel the child's own future.
        return await asyncio.wait_for(asyncio.shield(child.finished), limit_seconds)
    except TimeoutError:
        await _kill(child)
        log.warning("command timed out after %.1fs: %s", limit_seconds, " ".join(args))
        raise CommandTimeout(f"{args[0]} did not finish within {limit_seconds:g}s") from None
    except asyncio.CancelledError:
        if cancellable:
            await _kill(child)
            log.debug("command cancelled: %s", " ".join(args))
        else:
            log.warning("call cancelled while %s runs; letting it finish first", args[0])
            with contextlib.suppress(Exception):
                await asyncio.shield(child.finished)
        raise


async def _kill(child: _Child) -> None:
    """Kill the command and whatever it started, then give it a while to be reaped."""
    if child.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(child.exited), _KILL_WAIT_SECONDS)


def _checked_argv(argv: Sequence[str]) -> list[str]:
    args = list(argv)
    if not args or not all(isinstance(arg, str) for arg in args):
        raise OsUtilError(f"a command is a non-empty list of strings, got {argv!r}")
    if any("\x00" in arg for arg in args):
        raise OsUtilError(f"command argument contains a NUL byte: {args!r}")
    return args


def _joined_path(current: str, extra: str) -> str:
    parts = [p for p in current.split(":") if p]
    parts += [p for p in extra.split(":") if p and p not in parts]
    return ":".join(parts)
