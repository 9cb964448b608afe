"""SQLite-backed state: every record is a JSON document, mirrored in memory for fast reads."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from csi_xloud.emulator.models import RECORD_TYPES, R, Record, now


class Store:
    """All emulator state; writes go to SQLite in one transaction before memory changes."""

    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS records (kind TEXT NOT NULL, id TEXT NOT NULL, doc TEXT NOT NULL,"
            " PRIMARY KEY (kind, id))"
        )
        self._db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        self._mem: dict[str, dict[str, Record]] = {kind: {} for kind in RECORD_TYPES}
        for kind, rec_id, doc in self._db.execute("SELECT kind, id, doc FROM records ORDER BY rowid"):
            cls = RECORD_TYPES.get(kind)
            if cls is not None:
                self._mem[kind][rec_id] = cls(**json.loads(doc))

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def get(self, cls: type[R], rec_id: str) -> R | None:
        """The record of that type and id, or None."""
        rec = self._mem[cls.KIND].get(rec_id)
        return rec if isinstance(rec, cls) else None

    def all(self, cls: type[R]) -> list[R]:
        """Every record of a type, oldest first."""
        return [r for r in self._mem[cls.KIND].values() if isinstance(r, cls)]

    def write(self, put: Iterable[Record] = (), delete: Iterable[Record] = ()) -> None:
        """Store and remove records in one transaction."""
        puts, dels = list(put), list(delete)
        rows = [(r.KIND, r.id, json.dumps(dataclasses.asdict(r))) for r in puts]
        self._db.execute("BEGIN")
        try:
            self._db.executemany("INSERT OR REPLACE INTO records (kind, id, doc) VALUES (?, ?, ?)", rows)
            self._db.executemany(
                "DELETE FROM records WHERE kind = ? AND id = ?", [(r.KIND, r.id) for r in dels]
            )
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        for r in puts:
            self._mem[r.KIND][r.id] = r
        for r in dels:
            self._mem[r.KIND].pop(r.id, None)

    def touch(self, cls: type[R], rec_id: str, **changes: Any) -> None:
        """Change fields of a record, stamping updated_at; a record gone meanwhile stays gone."""
        record = self.get(cls, rec_id)
        if record is not None:
            self.put(dataclasses.replace(record, **{"updated_at": now(), **changes}))

    def put(self, *records: Record) -> None:
        """Store records in one transaction."""
        self.write(put=records)

    def delete(self, *records: Record) -> None:
        """Remove records in one transaction."""
        self.write(delete=records)

    def meta(self, key: str) -> Any:
        """A JSON value stored under key, or None."""
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def set_meta(self, key: str, value: Any) -> None:
        """Store a JSON value under key."""
        self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, json.dumps(value)))
