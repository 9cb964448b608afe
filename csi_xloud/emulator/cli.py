"""`csi-xloud emulator` / `python -m csi_xloud.emulator`: flags and the serve loop."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from pathlib import Path
from types import FrameType

# The web stack is imported in run() only, so the flags and --help answer without it (the
# `emulator` extra installs it; `csi-xloud emulator` says so when it is missing).


def _listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"--listen must be HOST:PORT, got {value!r}")
    return host, int(port)


def _non_negative(value: str) -> float:
    number = float(value)
    if number < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return number


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return number


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the emulator's flags to a parser."""
    parser.add_argument(
        "--listen", required=True, type=_listen, help="HOST:PORT to serve on, e.g. 127.0.0.1:8900"
    )
    parser.add_argument("--data-dir", required=True, type=Path, help="directory holding all state and data")
    parser.add_argument(
        "--servers", default="node-a,node-b", help="compute servers: NAME[@ZONE][,NAME[@ZONE]...]"
    )
    parser.add_argument(
        "--op-seconds", type=_non_negative, default=1.0, help="how long each asynchronous transition takes"
    )
    parser.add_argument(
        "--token-ttl", type=_non_negative, default=3600.0, help="Keystone token lifetime in seconds"
    )
    parser.add_argument(
        "--max-page-size", type=_positive_int, default=1000,
        help="most items one list page holds, as Cinder's osapi_max_limit (default 1000)",
    )
    parser.add_argument("--log-level", default="warning", help="log level")


def run(args: argparse.Namespace) -> int:
    """Serve until SIGTERM/SIGINT; 0 on a clean stop, 2 on bad flags."""
    import uvicorn

    from csi_xloud.emulator.app import Emulator, parse_servers

    class _Server(uvicorn.Server):
        """uvicorn's server, ending with status 0 after SIGTERM/SIGINT instead of re-raising the signal."""

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            if self.should_exit and sig == signal.SIGINT:
                self.force_exit = True
            else:
                self.should_exit = True

    logging.basicConfig(
        level=str(args.log_level).upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    host, port = args.listen
    try:
        servers = parse_servers(args.servers)
    except ValueError as exc:
        logging.getLogger(__name__).error("%s", exc)
        return 2
    emulator = Emulator(
        Path(args.data_dir).resolve(), f"http://{host}:{port}", servers, args.op_seconds, args.token_ttl,
        args.max_page_size,
    )
    emulator.write_files()
    config = uvicorn.Config(
        emulator.app(),
        host=host,
        port=port,
        log_level=str(args.log_level).lower(),
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=5,
        # Longer than clients' idle pools keep connections, so a reused connection is never closed under them.
        timeout_keep_alive=120,
        backlog=4096,
        limit_concurrency=None,
    )
    server = _Server(config)
    asyncio.run(server.serve())
    return 0 if server.started else 1


def main(argv: list[str] | None = None) -> int:
    """Parse argv and run."""
    parser = argparse.ArgumentParser(
        prog="csi-xloud emulator", description="Local Xloud cloud for tests and demos"
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))
