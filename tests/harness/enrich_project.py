"""A throwaway dbt project that installs batch_enrich as a local package and declares
one enrichment over a table the test fills. Its flagged view is hand-written: the
connector must not rely on the package's flagging to avoid double submission.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import psycopg
import yaml
from dbt.cli.main import dbtRunner
from psycopg import sql

from connector.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]
API_KEY = "sk-ant-test-SECRET-do-not-leak-0123456789"
LEDGER_SCHEMA = "enrich"
APP_SCHEMA = "app"

PROFILES = """
batch_enrich:
  target: "{{ env_var('BATCH_ENRICH_TARGET', 'postgres') }}"
  outputs:
    postgres:
      type: postgres
      host: "{{ env_var('PGHOST') }}"
      port: "{{ env_var('PGPORT') | as_number }}"
      user: "{{ env_var('PGUSER') }}"
      password: "{{ env_var('PGPASSWORD', '') }}"
      dbname: "{{ env_var('PGDATABASE') }}"
      schema: analytics
      threads: 1
    duckdb:
      type: duckdb
      path: "{{ env_var('BATCH_ENRICH_DUCKDB_PATH') }}"
      schema: analytics
      threads: 1
"""


def default_declaration() -> dict[str, Any]:
    return {
        "primary_key": "item_id",
        "model": "claude-haiku-4-5",
        "max_tokens": 200,
        "system": "You label items.",
        "output_schema": {
            "type": "object",
            "properties": {
                "label": {"type": "string", "enum": ["good", "bad", "unsure"]},
                "score": {"type": "integer", "minimum": 1, "maximum": 5},
            },
            "required": ["label", "score"],
            "additionalProperties": False,
        },
        "prompt_version": "v1",
        "max_attempts": 3,
        "max_requests_per_batch": 400,
    }


def sample_declarations() -> dict[str, dict[str, Any]]:
    """items: integer key; docs: text key, small byte limit; pairs: composite key;
    broken: an invalid declaration that must not stop the others."""
    docs = default_declaration() | {
        "primary_key": "doc_key",
        "max_batch_bytes": 20_000,
        "max_requests_per_batch": 1000,
    }
    pairs = default_declaration() | {"primary_key": ["region", "seq"]}
    broken = default_declaration() | {"max_tokens": "lots"}
    return {"items": default_declaration(), "docs": docs, "pairs": pairs, "broken": broken}


KEY_TYPES: dict[str, list[tuple[str, str]]] = {
    "items": [("item_id", "integer")],
    "docs": [("doc_key", "text")],
    "pairs": [("region", "text"), ("seq", "integer")],
    "broken": [("item_id", "integer")],
}


def write_project(
    root: Path,
    declarations: Mapping[str, Mapping[str, Any]] | None = None,
    key_columns: Mapping[str, Sequence[str]] | None = None,
    ledger_schema: str = LEDGER_SCHEMA,
) -> Path:
    """Write the project; one enrichment per declaration, input table app.<name>_src."""
    declarations = declarations or {"items": default_declaration()}
    key_columns = key_columns or {}
    project = root / "project"
    models = project / "models"
    models.mkdir(parents=True, exist_ok=True)
    (project / "dbt_project.yml").write_text(
        yaml.safe_dump(
            {
                "name": "connector_test",
                "version": "1.0.0",
                "config-version": 2,
                "profile": "batch_enrich",
                "model-paths": ["models"],
                "vars": {
                    "batch_enrich_examples": False,
                    "batch_enrich_ledger_schema": ledger_schema,
                },
            }
        )
    )
    (project / "packages.yml").write_text(yaml.safe_dump({"packages": [{"local": str(REPO_ROOT)}]}))
    (project / "profiles.yml").write_text(PROFILES)
    schema_yml: dict[str, Any] = {"version": 2, "models": []}
    for name, decl in declarations.items():
        pk = decl["primary_key"]
        keys = list(key_columns.get(name, [pk] if isinstance(pk, str) else pk))
        cols = ", ".join(keys)
        src = f"{APP_SCHEMA}.{name}_src"
        # dbt model files (test fixtures), not SQL run by the test process
        (models / f"{name}.sql").write_text(f"select {cols}, prompt from {src}\n")  # noqa: S608
        flagged = "{{ config(materialized='view') }}\nselect " + cols + ", prompt from " + src
        (models / f"{name}__flagged.sql").write_text(flagged + "\n")
        schema_yml["models"].append(
            {"name": name, "config": {"materialized": "view", "meta": {"enrich": dict(decl)}}}
        )
    (models / "schema.yml").write_text(yaml.safe_dump(schema_yml, sort_keys=False))
    return project


def dbt_prepare(project: Path, env: Mapping[str, str]) -> None:
    """`dbt deps` and `dbt parse` once; the manifest does not depend on the database."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    os.environ["DBT_SEND_ANONYMOUS_USAGE_STATS"] = "false"
    try:
        for args in (["deps"], ["parse"]):
            res = dbtRunner().invoke(
                ["--quiet", *args, "--project-dir", str(project), "--profiles-dir", str(project)]
            )
            assert res.success, f"dbt {args} failed: {res.exception}"
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def create_source(
    conninfo: str,
    name: str,
    rows: Sequence[Sequence[object]],
    key_types: Sequence[tuple[str, str]] = (("item_id", "integer"),),
) -> None:
    """Create app.<name>_src (key columns..., prompt text) and insert rows."""
    table = sql.Identifier(APP_SCHEMA, f"{name}_src")
    cols = sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(t))
        for c, t in key_types  # type: ignore[arg-type]
    )
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(sql.SQL("create schema if not exists {}").format(sql.Identifier(APP_SCHEMA)))
        conn.execute(sql.SQL("create table if not exists {} ({}, prompt text)").format(table, cols))
        insert_rows(conninfo, name, rows, [c for c, _ in key_types])


def insert_rows(
    conninfo: str,
    name: str,
    rows: Sequence[Sequence[object]],
    key_cols: Sequence[str] = ("item_id",),
) -> None:
    table = sql.Identifier(APP_SCHEMA, f"{name}_src")
    cols = sql.SQL(", ").join(sql.Identifier(c) for c in [*key_cols, "prompt"])
    copy_sql = sql.SQL("copy {} ({}) from stdin").format(table, cols)
    with (
        psycopg.connect(conninfo, autocommit=True) as conn,
        conn.cursor() as cur,
        cur.copy(copy_sql) as copy,
    ):
        for row in rows:
            copy.write_row(row)


def create_flagged_views(conninfo: str, project: Path, names: Sequence[str]) -> None:
    """Create the hand-written flagged views directly (no dbt run needed)."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("create schema if not exists analytics")
        for name in names:
            body = (project / "models" / f"{name}__flagged.sql").read_text().splitlines()[1:]
            conn.execute(
                sql.SQL("create or replace view {} as {}").format(
                    sql.Identifier("analytics", f"{name}__flagged"),
                    sql.SQL("\n".join(body)),  # type: ignore[arg-type]
                )
            )


def fetch(conninfo: str, query: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(conninfo) as conn:
        return [tuple(r) for r in conn.execute(query, params).fetchall()]  # type: ignore[arg-type]


def with_(settings: Settings, **changes: Any) -> Settings:
    return dataclasses.replace(settings, **changes)


def write_package_project(
    root: Path,
    models: Mapping[str, str],
    properties: Sequence[Mapping[str, Any]] = (),
    project_vars: Mapping[str, Any] | None = None,
    name: str = "installer",
    macros: Mapping[str, str] | None = None,
) -> Path:
    """A project that installs this repository as a package (packages.yml `local:`) and
    uses the package's own macros: models/<name>.sql for each entry of `models` (dbt
    model files, written verbatim), `properties` as models/schema.yml, macros/<name>.sql
    for each entry of `macros`. `project_vars`
    are the project's vars, exactly as given (none: no vars at all). Run `dbt deps`
    before anything else."""
    project = root / name
    (project / "models").mkdir(parents=True, exist_ok=True)
    conf: dict[str, Any] = {
        "name": name,
        "version": "1.0.0",
        "config-version": 2,
        "profile": "batch_enrich",
        "model-paths": ["models"],
    }
    if project_vars is not None:
        conf["vars"] = dict(project_vars)
    (project / "dbt_project.yml").write_text(yaml.safe_dump(conf, sort_keys=False))
    (project / "packages.yml").write_text(yaml.safe_dump({"packages": [{"local": str(REPO_ROOT)}]}))
    (project / "profiles.yml").write_text(PROFILES)
    for model, body in models.items():
        (project / "models" / f"{model}.sql").write_text(body)
    for macro, body in (macros or {}).items():
        (project / "macros").mkdir(exist_ok=True)
        (project / "macros" / f"{macro}.sql").write_text(body)
    if properties:
        schema = {"version": 2, "models": [dict(p) for p in properties]}
        (project / "models" / "schema.yml").write_text(
            yaml.safe_dump(schema, sort_keys=False, allow_unicode=False)
        )
    return project
