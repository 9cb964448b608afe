"""Keeps every path a request names inside one root folder, after symlinks are resolved."""

from __future__ import annotations

import os
from pathlib import Path

from csi_xloud.osutil.blocking import BlockingCalls
from csi_xloud.osutil.errors import PathNotAllowed


class PathGuard:
    """Accepts only absolute paths that stay strictly below the root once resolved."""

    def __init__(self, root: Path, blocking: BlockingCalls | None = None) -> None:
        self._root = root
        self._blocking = blocking or BlockingCalls()

    async def check(self, raw: str, field: str) -> Path:
        """The resolved path, or PathNotAllowed naming the field; resolving stats every part (in a thread)."""
        if "\x00" in raw:
            raise PathNotAllowed(f"{field} contains a NUL byte")
        if not raw.startswith("/"):
            raise PathNotAllowed(f"{field} must be an absolute path, got {raw!r}")
        # Not strict: a missing tail or a broken mount must not hide where the path leads.
        resolved, root = await self._blocking.call(raw, _resolve, raw, self._root)
        if resolved == root or not resolved.is_relative_to(root):
            raise PathNotAllowed(f"{field} {raw!r} resolves to {resolved}, outside {root}")
        return resolved


def _resolve(raw: str, root: Path) -> tuple[Path, Path]:
    return Path(os.path.realpath(raw)), Path(os.path.realpath(root))
