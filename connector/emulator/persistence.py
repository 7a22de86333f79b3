"""The optional state file: batches survive a restart of the emulator.

A SQLite database; every change is one transaction, so a crash leaves either the old
or the new state, never half of one. An item's params are kept until it has been
processed, then replaced by its result line, so a batch interrupted mid-processing is
processed again on the next start. Stats, the prompt cache and the current fault spec
are not persisted (each batch keeps the spec it was created under).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import orjson

from connector.emulator.state import Batch

FORMAT_VERSION = "2"
_SCHEMA = """
create table if not exists meta (key text primary key, value text not null);
create table if not exists batches (id text primary key, doc text not null);
create table if not exists items (
    batch_id text not null,
    idx integer not null,
    custom_id text not null,
    params blob,          -- until processed
    result_type text,     -- once processed
    line blob,            -- once processed
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
        """The clock offset and every stored batch, oldest first. Batches whose items
        were not all processed come back with `pending` params and `ready` unset."""
        row = self._db.execute("select value from meta where key = 'clock_offset'").fetchone()
        offset = float(row[0]) if row else 0.0
        batches = []
        for (doc,) in self._db.execute("select doc from batches order by id").fetchall():
            meta = orjson.loads(doc)
            items = self._db.execute(
                "select custom_id, params, result_type, line from items"
                " where batch_id = ? order by idx",
                (meta["id"],),
            ).fetchall()
            batch = Batch(
                id=meta["id"],
                created_at=meta["created_at"],
                custom_ids=[item[0] for item in items],
            )
            for key in meta.keys() - {"id", "created_at"}:
                setattr(batch, key, meta[key])
            if any(item[3] is None for item in items):
                batch.pending = [orjson.loads(item[1]) for item in items]
            else:
                batch.result_types = [item[2] for item in items]
                batch.lines = [bytes(item[3]) for item in items]
                batch.ready.set()
            batches.append(batch)
        return offset, batches

    def insert(self, batch: Batch) -> None:
        """A new batch with its items' params, in one transaction."""
        params = [orjson.dumps(p) for p in batch.pending or []]
        rows = zip(
            [batch.id] * batch.size, range(batch.size), batch.custom_ids, params, strict=True
        )
        with self._db:
            self._db.execute("insert into batches values (?, ?)", (batch.id, _doc(batch)))
            self._db.executemany(
                "insert into items (batch_id, idx, custom_id, params) values (?, ?, ?, ?)", rows
            )

    def save_results(self, batch: Batch) -> None:
        """Replace the items' params by their result lines, in one transaction."""
        ids = [batch.id] * batch.size
        rows = zip(batch.result_types, batch.lines, ids, range(batch.size), strict=True)
        with self._db:
            self._db.executemany(
                "update items set result_type = ?, line = ?, params = null"
                " where batch_id = ? and idx = ?",
                rows,
            )
            self._db.execute("update batches set doc = ? where id = ?", (_doc(batch), batch.id))

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
