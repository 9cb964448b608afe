"""Keeps every path a request names inside one root folder, after symlinks are resolved."""

from __future__ import annotations

import os
from pathlib import Path

from csi_xloud.osutil.errors import PathNotAllowed


class PathGuard:
    """Accepts only absolute paths that stay strictly below the root once resolved."""

    def __init__(self, root: Path) -> None:
        self._root = root

    def check(self, raw: str, field: str) -> Path:
        """The resolved path, or PathNotAllowed naming the field."""
        if "\x00" in raw:
            raise PathNotAllowed(f"{field} contains a NUL byte")
        if not os.path.isabs(raw):
            raise PathNotAllowed(f"{field} must be an absolute path, got {raw!r}")
        # Not strict: a missing tail or a broken mount must not hide where the path leads.
        resolved = Path(os.path.realpath(raw))
        root = Path(os.path.realpath(self._root))
        if resolved == root or not resolved.is_relative_to(root):
            raise PathNotAllowed(f"{field} {raw!r} resolves to {resolved}, outside {root}")
        return resolved
