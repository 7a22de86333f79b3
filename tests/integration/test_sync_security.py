"""The API key never reaches a table, a log or an error; config names are identifiers."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest
from harness.enrich_project import (
    API_KEY,
    KEY_TYPES,
    create_flagged_views,
    create_source,
    dbt_prepare,
    default_declaration,
    fetch,
    insert_rows,
    with_,
    write_project,
)
from harness.postgres import PgCluster, PgDatabase
from psycopg import sql

from connector.emulator import EmulatorConfig, run_emulator
from connector.settings import Settings
from connector.sync import sync


def _all_ledger_text(conninfo: str, schema: str) -> str:
    out: list[str] = []
    with psycopg.connect(conninfo) as conn:
        tables = conn.execute(
            "select table_name from information_schema.tables where table_schema = %s", (schema,)
        ).fetchall()
        for (table,) in tables:
            rows = conn.execute(
                sql.SQL("select t::text from {} as t").format(sql.Identifier(schema, table))
            ).fetchall()
            out += [r[0] for r in rows]
    return "\n".join(out)


def test_api_key_is_nowhere_in_ledger_logs_or_errors(
    enrich_env: PgDatabase,
    enrich_project: Path,
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    create_source(
        enrich_env.conninfo, "items", [(i, f"item {i}") for i in range(30)], KEY_TYPES["items"]
    )
    create_flagged_views(enrich_env.conninfo, enrich_project, ["items"])
    monkeypatch.setenv("ANTHROPIC_LOG", "debug")
    caplog.set_level(logging.DEBUG)

    sync(settings)
    assert fetch(enrich_env.conninfo, "select count(*) from enrich.results_raw")[0][0] == 30

    # a subprocess at the highest verbosity (with work to do), and one whose key the
    # API refuses
    insert_rows(enrich_env.conninfo, "items", [(i, f"item {i}") for i in range(30, 35)])
    env = dict(os.environ)
    verbose = subprocess.run(
        [
            sys.executable,
            "-m",
            "connector",
            "sync",
            "--project-dir",
            str(enrich_project),
            "--select",
            "items",
            "-vv",
            "--poll-interval",
            "0",
            "--wait",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert verbose.returncode == 0, verbose.stderr[-2000:]
    assert "DEBUG" in verbose.stderr  # debug logging really was on
    insert_rows(enrich_env.conninfo, "items", [(i, f"item {i}") for i in range(35, 40)])
    with run_emulator(EmulatorConfig(api_key="sk-ant-the-only-valid-key")) as strict:
        env["ANTHROPIC_BASE_URL"] = strict.base_url
        refused = subprocess.run(
            [
                sys.executable,
                "-m",
                "connector",
                "sync",
                "--project-dir",
                str(enrich_project),
                "--select",
                "items",
                "-vv",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert refused.returncode == 3, refused.stderr[-2000:]

    for text in (
        _all_ledger_text(enrich_env.conninfo, "enrich"),
        caplog.text,
        verbose.stdout + verbose.stderr,
        refused.stdout + refused.stderr,
    ):
        assert API_KEY not in text
        assert API_KEY[-12:] not in text


def test_refused_key_stops_the_run_with_exit_3_and_consumes_no_attempts(
    enrich_env: PgDatabase, enrich_project: Path
) -> None:
    create_source(enrich_env.conninfo, "items", [(1, "one"), (2, "two")], KEY_TYPES["items"])
    create_flagged_views(enrich_env.conninfo, enrich_project, ["items"])
    with run_emulator(EmulatorConfig(api_key="sk-ant-the-only-valid-key")) as strict:
        env = dict(os.environ, ANTHROPIC_BASE_URL=strict.base_url)
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "connector",
                "sync",
                "--project-dir",
                str(enrich_project),
                "--select",
                "items",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert out.returncode == 3, out.stderr
    assert "refused the account" in out.stderr and "ANTHROPIC_API_KEY" in out.stderr
    assert API_KEY not in out.stderr + out.stdout
    rows = fetch(enrich_env.conninfo, "select status from enrich.batches")
    assert [s for (s,) in rows] == ["abandoned"]  # intent recorded, then released


@pytest.fixture(scope="module")
def weird_project(tmp_path_factory: pytest.TempPathFactory, pg_cluster: PgCluster) -> Path:
    project = write_project(
        tmp_path_factory.mktemp("weird"),
        {"items": default_declaration()},
        ledger_schema='led"ger; drop table app.items_src; --',
    )
    dbt_prepare(project, pg_cluster.env("postgres"))
    return project


def test_schema_names_with_quotes_and_semicolons_are_identifiers(
    enrich_env: PgDatabase, weird_project: Path, settings: Settings, emulator: Any
) -> None:
    create_source(
        enrich_env.conninfo, "items", [(i, f"item {i}") for i in range(10)], KEY_TYPES["items"]
    )
    create_flagged_views(enrich_env.conninfo, weird_project, ["items"])

    report = sync(with_(settings, project_dir=weird_project))

    assert report.errors == []
    schema = 'led"ger; drop table app.items_src; --'
    count = fetch(
        enrich_env.conninfo,
        sql.SQL("select count(*) from {}")
        .format(sql.Identifier(schema, "results_raw"))
        .as_string(None),  # type: ignore[arg-type]
    )
    assert count[0][0] == 10
    assert fetch(enrich_env.conninfo, "select count(*) from app.items_src")[0][0] == 10
