"""A non-blocking per-key guard: a second call for a busy key is answered ABORTED at once."""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from contextlib import contextmanager

from csi_xloud.rpc.errors import Aborted


class InFlight:
    """Keys of operations in progress. Keys are tuples such as ("attachment", volume_id, node_id).

    The server runs on one event loop, so a plain set is race-free: the check and the add
    happen without an await between them.
    """

    def __init__(self) -> None:
        self._busy: set[Hashable] = set()

    def __contains__(self, key: Hashable) -> bool:
        return key in self._busy

    def __len__(self) -> int:
        return len(self._busy)

    @contextmanager
    def guard(self, *keys: Hashable) -> Iterator[None]:
        """Hold every key for the duration of the block, or raise Aborted if any is busy."""
        for key in keys:
            if key in self._busy:
                raise Aborted(f"an operation on {_describe(key)} is already in progress; retry later")
        self._busy.update(keys)
        try:
            yield
        finally:
            self._busy.difference_update(keys)


def _describe(key: Hashable) -> str:
    if isinstance(key, tuple) and key and isinstance(key[0], str):
        return f"{key[0]} " + "/".join(str(part) for part in key[1:])
    return str(key)
