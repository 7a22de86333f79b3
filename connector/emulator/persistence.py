"""The optional state file: batches survive a restart of the emulator.

A SQLite database; every change is one transaction, so a crash leaves either the old
or the new state, never half of one. Stats, the prompt cache and the fault spec are
not persisted.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import orjson

from connector.emulator.state import Batch

FORMAT_VERSION = "1"
_SCHEMA = """
create table if not exists meta (key text primary key, value text not null);
create table if not exists batches (id text primary key, doc text not null);
create table if not exists items (
    batch_id text not null,
    idx integer not null,
    custom_id text not null,
    result_type text not null,
    line blob not null,
    primary key (batch_id, idx)
);
"""


class StateFile:
    """Reads and writes batches; callers serialise access (the store holds its lock)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = sqlite3.connect(path, check_same_thread=False)
        self._db.execute("pragma journal_mode=wal")
        self._db.execute("pragma synchronous=normal")
        with self._db:
            self._db.executescript(_SCHEMA)
            row = self._db.execute("select value from meta where key = 'format'").fetchone()
            if row is None:
                self._db.execute("insert into meta values ('format', ?)", (FORMAT_VERSION,))
            elif row[0] != FORMAT_VERSION:
                raise ValueError(f"{path}: unsupported emulator state format {row[0]!r}")

    def load(self) -> tuple[float, list[Batch]]:
        """The clock offset and every stored batch, oldest first."""
        row = self._db.execute("select value from meta where key = 'clock_offset'").fetchone()
        offset = float(row[0]) if row else 0.0
        batches = []
        for (doc,) in self._db.execute("select doc from batches order by id"):
            meta = orjson.loads(doc)
            items = self._db.execute(
                "select custom_id, result_type, line from items where batch_id = ? order by idx",
                (meta["id"],),
            ).fetchall()
            batch = Batch(
                id=meta["id"],
                created_at=meta["created_at"],
                custom_ids=[item[0] for item in items],
                result_types=[item[1] for item in items],
                lines=[bytes(item[2]) for item in items],
            )
            for key in meta.keys() - {"id", "created_at"}:
                setattr(batch, key, meta[key])
            batches.append(batch)
        return offset, batches

    def insert(self, batch: Batch) -> None:
        rows = zip(
            [batch.id] * batch.size,
            range(batch.size),
            batch.custom_ids,
            batch.result_types,
            batch.lines,
            strict=True,
        )
        with self._db:
            self._db.execute("insert into batches values (?, ?)", (batch.id, _doc(batch)))
            self._db.executemany("insert into items values (?, ?, ?, ?, ?)", rows)

    def update(self, batch: Batch) -> None:
        with self._db:
            self._db.execute("update batches set doc = ? where id = ?", (_doc(batch), batch.id))

    def delete(self, batch_id: str) -> None:
        with self._db:
            self._db.execute("delete from items where batch_id = ?", (batch_id,))
            self._db.execute("delete from batches where id = ?", (batch_id,))

    def save_clock(self, offset: float) -> None:
        with self._db:
            self._db.execute(
                "insert or replace into meta values ('clock_offset', ?)", (repr(offset),)
            )

    def close(self) -> None:
        self._db.close()


def _doc(batch: Batch) -> str:
    return orjson.dumps(batch.meta()).decode()
