"""Runs host commands from argv lists (never a shell), with timeouts, cancellation and a log line each."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from csi_xloud.osutil.errors import CommandFailed, CommandTimeout, OsUtilError

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_SECONDS = 120.0
# Node images often leave the sbin folders out of PATH; the tools we run live there.
SEARCH_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_KILL_WAIT_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class CommandResult:
    """How one command ended."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    seconds: float


CommandObserver = Callable[[CommandResult], None]


class Runner:
    """Runs commands as asyncio subprocesses; a cancelled call kills its command's process group."""

    def __init__(
        self,
        *,
        default_timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        env: Mapping[str, str] | None = None,
        observers: Sequence[CommandObserver] = (),
        search_path: str = SEARCH_PATH,
    ) -> None:
        self._default_timeout = default_timeout_seconds
        base = dict(os.environ if env is None else env)
        base["PATH"] = _joined_path(base.get("PATH", ""), search_path)
        base["LC_ALL"] = "C"  # we parse the tools' output
        self._env = base
        self._observers = tuple(observers)

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
            process = await asyncio.create_subprocess_exec(
                *args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=self._env,
                start_new_session=True,
            )
        except (FileNotFoundError, PermissionError) as exc:
            raise OsUtilError(f"{args[0]} cannot be run (is it installed?): {exc.strerror}") from exc
        communicating = asyncio.ensure_future(process.communicate())
        try:
            out, err = await asyncio.wait_for(
                communicating if cancellable else asyncio.shield(communicating), timeout
            )
        except TimeoutError:
            await _kill(process)
            log.warning("command timed out after %.1fs: %s", timeout, " ".join(args))
            raise CommandTimeout(f"{args[0]} did not finish within {timeout:g}s") from None
        except asyncio.CancelledError:
            if cancellable:
                await _kill(process)
                log.info("command cancelled: %s", " ".join(args))
            else:
                log.warning("call cancelled while %s runs; letting it finish first", args[0])
                with contextlib.suppress(Exception):
                    await communicating
            raise
        result = CommandResult(
            argv=tuple(args),
            returncode=process.returncode if process.returncode is not None else -1,
            stdout=out.decode(errors="replace"),
            stderr=err.decode(errors="replace"),
            seconds=time.monotonic() - started,
        )
        self._report(result)
        if result.returncode not in ok_codes:
            raise CommandFailed(list(args), result.returncode, result.stderr or result.stdout)
        return result

    def _report(self, result: CommandResult) -> None:
        log.debug("ran %s -> %d in %.0fms", " ".join(result.argv), result.returncode, result.seconds * 1000)
        for observe in self._observers:
            observe(result)


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


async def _kill(process: asyncio.subprocess.Process) -> None:
    """Kill the command and whatever it started, then reap it."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(process.wait()), _KILL_WAIT_SECONDS)
