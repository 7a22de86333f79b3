"""The warehouse a connector test runs on, for setup and inspection: Postgres (a fresh
database of the session's cluster) or DuckDB (a fresh file in the test's tmp dir).

Tests write their inspection queries once, in the Postgres dialect with `%s`
parameters; DuckDB runs them transpiled by sqlglot, as the connector does its own.
Every DuckDB call opens and closes its own connection, so the file is free for an
`enrich` subprocess between calls.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import duckdb
import psycopg
import pytest
import sqlglot
from psycopg import sql
from sqlglot import exp

from harness.enrich_project import (
    APP_SCHEMA,
    create_flagged_views,
    create_source,
    fetch,
    insert_rows,
)
from harness.postgres import PgCluster, PgDatabase

KINDS = ("postgres", "duckdb")
# not "enrich.duckdb": DuckDB names the catalog after the file, which would then clash
# with the ledger schema "enrich"
DUCKDB_FILE = "warehouse.duckdb"
DEFAULT_KEY = (("item_id", "integer"),)


class Warehouse(Protocol):
    kind: str

    @property
    def env(self) -> dict[str, str]:
        """What dbt and `enrich` read to reach this warehouse (the test profile's target)."""
        ...

    def create_source(
        self,
        name: str,
        rows: Sequence[Sequence[object]],
        key_types: Sequence[tuple[str, str]] = DEFAULT_KEY,
    ) -> None:
        """Create app.<name>_src (key columns..., prompt text) and insert rows."""

    def insert_rows(
        self, name: str, rows: Sequence[Sequence[object]], key_cols: Sequence[str] = ("item_id",)
    ) -> None: ...

    def create_flagged_views(self, project: Path, names: Sequence[str]) -> None:
        """Create the hand-written flagged views directly (no dbt run needed)."""

    def fetch(self, query: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        """Rows of a query written in the Postgres dialect."""
        ...

    def count(self, schema: str, table: str) -> int:
        """Rows in schema.table, whatever characters the names hold."""
        ...

    def ledger_text(self, schema: str) -> str:
        """Every row of every table in the schema, as text."""
        ...


class PostgresWarehouse:
    kind = "postgres"

    def __init__(self, db: PgDatabase) -> None:
        self.db = db

    @property
    def env(self) -> dict[str, str]:
        return {**self.db.env, "BATCH_ENRICH_TARGET": "postgres"}

    def create_source(
        self,
        name: str,
        rows: Sequence[Sequence[object]],
        key_types: Sequence[tuple[str, str]] = DEFAULT_KEY,
    ) -> None:
        create_source(self.db.conninfo, name, rows, key_types)

    def insert_rows(
        self, name: str, rows: Sequence[Sequence[object]], key_cols: Sequence[str] = ("item_id",)
    ) -> None:
        insert_rows(self.db.conninfo, name, rows, key_cols)

    def create_flagged_views(self, project: Path, names: Sequence[str]) -> None:
        create_flagged_views(self.db.conninfo, project, names)

    def fetch(self, query: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        return fetch(self.db.conninfo, query, params)

    def count(self, schema: str, table: str) -> int:
        query = sql.SQL("select count(*) from {}").format(sql.Identifier(schema, table))
        with psycopg.connect(self.db.conninfo) as conn:
            row = conn.execute(query).fetchone()
        assert row is not None
        return int(row[0])

    def ledger_text(self, schema: str) -> str:
        out: list[str] = []
        with psycopg.connect(self.db.conninfo) as conn:
            tables = conn.execute(
                "select table_name from information_schema.tables where table_schema = %s",
                (schema,),
            ).fetchall()
            for (table,) in tables:
                rows = conn.execute(
                    sql.SQL("select t::text from {} as t").format(sql.Identifier(schema, table))
                ).fetchall()
                out += [r[0] for r in rows]
        return "\n".join(out)


def _ident(*parts: str) -> str:
    return ".".join(exp.to_identifier(p, quoted=True).sql("duckdb") for p in parts)


class DuckDBWarehouse:
    kind = "duckdb"

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def env(self) -> dict[str, str]:
        return {"BATCH_ENRICH_TARGET": "duckdb", "BATCH_ENRICH_DUCKDB_PATH": str(self.path)}

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        conn = duckdb.connect(str(self.path))
        try:
            yield conn
        finally:
            conn.close()

    def create_source(
        self,
        name: str,
        rows: Sequence[Sequence[object]],
        key_types: Sequence[tuple[str, str]] = DEFAULT_KEY,
    ) -> None:
        cols = ", ".join(f"{_ident(c)} {t}" for c, t in key_types)
        with self.connect() as conn:
            conn.execute(f"create schema if not exists {_ident(APP_SCHEMA)}")
            conn.execute(
                f"create table if not exists {_ident(APP_SCHEMA, name + '_src')} "
                f"({cols}, prompt text)"
            )
        self.insert_rows(name, rows, [c for c, _ in key_types])

    def insert_rows(
        self, name: str, rows: Sequence[Sequence[object]], key_cols: Sequence[str] = ("item_id",)
    ) -> None:
        names = [*key_cols, "prompt"]
        columns = {f"c{i}": [row[i] for row in rows] for i in range(len(names))}
        # one list per column, unnested side by side (the rows of a test, in one statement)
        unnests = ", ".join(f"unnest(${p})" for p in columns)
        with self.connect() as conn:
            conn.execute(
                f"insert into {_ident(APP_SCHEMA, name + '_src')} "
                f"({', '.join(_ident(n) for n in names)}) select {unnests}",
                columns,
            )

    def create_flagged_views(self, project: Path, names: Sequence[str]) -> None:
        with self.connect() as conn:
            conn.execute("create schema if not exists analytics")
            for name in names:
                body = (project / "models" / f"{name}__flagged.sql").read_text().splitlines()[1:]
                conn.execute(
                    f"create or replace view {_ident('analytics', name + '__flagged')} as "
                    + "\n".join(body)
                )

    def fetch(self, query: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        (duck,) = sqlglot.transpile(query, read="postgres", write="duckdb")
        with self.connect() as conn:
            return [tuple(r) for r in conn.execute(duck, list(params)).fetchall()]

    def count(self, schema: str, table: str) -> int:
        with self.connect() as conn:
            row = conn.execute(f"select count(*) from {_ident(schema, table)}").fetchone()  # noqa: S608
        assert row is not None
        return int(row[0])

    def ledger_text(self, schema: str) -> str:
        out: list[str] = []
        with self.connect() as conn:
            tables = conn.execute(
                "select table_name from information_schema.tables where table_schema = ?",
                [schema],
            ).fetchall()
            for (table,) in tables:
                rows = conn.execute(
                    f"select cast(t as varchar) from {_ident(schema, table)} as t"  # noqa: S608
                ).fetchall()
                out += [r[0] for r in rows]
        return "\n".join(out)


def parse_env(kind: str, root: Path, request: pytest.FixtureRequest) -> dict[str, str]:
    """The environment `dbt parse` needs for a project on this kind of warehouse (parse
    connects to nothing; a DuckDB path under root only has to render). Starts the
    session's Postgres cluster only for Postgres."""
    if kind == "postgres":
        cluster: PgCluster = request.getfixturevalue("pg_cluster")
        return {**cluster.env("postgres"), "BATCH_ENRICH_TARGET": "postgres"}
    return DuckDBWarehouse(root / DUCKDB_FILE).env
