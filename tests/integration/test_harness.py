"""The harness itself: a real cluster, a fresh database per test, dbt in-process."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import psycopg
import pytest
from harness.dbt_runner import DbtHarness
from harness.postgres import PgCluster, PgDatabase

_seen_databases: list[str] = []

PROFILES_YML = """\
harness_probe:
  target: pg
  outputs:
    pg:
      type: postgres
      host: "{{ env_var('PGHOST') }}"
      port: "{{ env_var('PGPORT') | as_number }}"
      user: "{{ env_var('PGUSER') }}"
      password: "{{ env_var('PGPASSWORD', '') }}"
      dbname: "{{ env_var('PGDATABASE') }}"
      schema: analytics
      threads: 1
"""

DBT_PROJECT_YML = """\
name: harness_probe
version: "1.0"
config-version: 2
profile: harness_probe
model-paths: ["models"]
"""


def _write_project(root: Path, model_sql: str) -> Path:
    (root / "models").mkdir(parents=True)
    (root / "dbt_project.yml").write_text(DBT_PROJECT_YML)
    (root / "profiles.yml").write_text(PROFILES_YML)
    (root / "models" / "probe.sql").write_text(textwrap.dedent(model_sql))
    return root


def _user_tables(conninfo: str) -> list[tuple[str, str]]:
    with psycopg.connect(conninfo) as conn:
        rows = conn.execute(
            "select table_schema, table_name from information_schema.tables"
            " where table_schema not in ('pg_catalog', 'information_schema')"
            " order by 1, 2"
        ).fetchall()
    return [(str(s), str(t)) for s, t in rows]


def test_cluster_is_private_and_socket_only(pg_cluster: PgCluster) -> None:
    with psycopg.connect(pg_cluster.conninfo()) as conn:
        settings: dict[str, str] = dict(
            conn.execute(
                "select name, setting from pg_settings where name = any(%s)",
                (["listen_addresses", "fsync", "port", "unix_socket_directories"],),
            ).fetchall()
        )
        assert conn.execute("select current_user").fetchone() == (pg_cluster.user,)
    assert settings["listen_addresses"] == ""
    assert settings["fsync"] == "off"
    assert int(settings["port"]) == pg_cluster.port
    assert settings["unix_socket_directories"] == pg_cluster.host


def test_fresh_database_is_empty_and_writable(pg_db: PgDatabase) -> None:
    assert pg_db.dbname.startswith("test_")
    assert _user_tables(pg_db.conninfo) == []
    with psycopg.connect(pg_db.conninfo) as conn:
        assert conn.execute("select current_database()").fetchone() == (pg_db.dbname,)
        conn.execute("create table leftover (id integer)")
    assert _user_tables(pg_db.conninfo) == [("public", "leftover")]
    _seen_databases.append(pg_db.dbname)


def test_each_test_gets_a_separate_database(pg_db: PgDatabase, pg_cluster: PgCluster) -> None:
    # Runs after the test above, which left a table behind in its own database.
    assert _user_tables(pg_db.conninfo) == []
    assert pg_db.dbname not in _seen_databases
    with psycopg.connect(pg_cluster.conninfo()) as conn:
        names = {r[0] for r in conn.execute("select datname from pg_database").fetchall()}
    assert pg_db.dbname in names
    assert not names & set(_seen_databases), "earlier test databases were not dropped"


def test_env_points_libpq_at_the_test_database(pg_db: PgDatabase) -> None:
    env = pg_db.env
    assert env["PGDATABASE"] == pg_db.dbname
    assert env["PGHOST"] == pg_db.host
    assert env["PGPORT"] == str(pg_db.port)
    conninfo = psycopg.conninfo.make_conninfo(
        host=env["PGHOST"], port=env["PGPORT"], user=env["PGUSER"], dbname=env["PGDATABASE"]
    )
    with psycopg.connect(conninfo) as conn:
        assert conn.execute("select current_database()").fetchone() == (pg_db.dbname,)


def test_dbt_build_creates_the_model_in_the_test_database(
    pg_db: PgDatabase, dbt: DbtHarness, tmp_path: Path
) -> None:
    project = _write_project(
        tmp_path / "probe",
        """\
        {{ config(materialized='table') }}
        select 1 as probe_id, 'hello' as greeting
        union all
        select 2, 'world'
        """,
    )
    dbt.invoke(["build"], project, project, env=pg_db.env)

    with psycopg.connect(pg_db.conninfo) as conn:
        rows = conn.execute("select probe_id, greeting from analytics.probe order by 1").fetchall()
    assert rows == [(1, "hello"), (2, "world")]
    assert (dbt.target_path / "manifest.json").is_file()
    assert not (project / "target").exists(), "--target-path was not honoured"


def test_dbt_failure_raises_with_dbts_message(
    pg_db: PgDatabase, dbt: DbtHarness, tmp_path: Path
) -> None:
    project = _write_project(tmp_path / "broken", "select * from no_such_table_anywhere\n")
    try:
        dbt.invoke(["build"], project, project, env=pg_db.env)
    except AssertionError as exc:
        assert "no_such_table_anywhere" in str(exc)
    else:
        raise AssertionError("a failing dbt build did not raise")
    result = dbt.invoke(["build"], project, project, env=pg_db.env, expect_fail=True)
    assert not result.success


def test_dbt_env_is_set_only_during_the_call(
    pg_db: PgDatabase, dbt: DbtHarness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PGDATABASE", raising=False)
    project = _write_project(tmp_path / "probe", "select 1 as probe_id\n")
    dbt.invoke(["build"], project, project, env=pg_db.env)
    assert "PGDATABASE" not in os.environ


def test_dbt_debug_reaches_the_test_database(
    pg_db: PgDatabase, dbt: DbtHarness, tmp_path: Path
) -> None:
    project = _write_project(tmp_path / "probe", "select 1 as probe_id\n")
    result = dbt.invoke(["debug"], project, project, env=pg_db.env)
    assert result.success
