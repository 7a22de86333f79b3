"""The API key never reaches a table, a log or an error; config names are identifiers."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from harness.enrich_project import (
    API_KEY,
    KEY_TYPES,
    dbt_prepare,
    default_declaration,
    with_,
    write_project,
)
from harness.sync_process import HANG_GUARD_SECONDS  # a hang guard only
from harness.warehouses import Warehouse, parse_env

from connector.emulator import EmulatorConfig, run_emulator
from connector.settings import Settings
from connector.sync import sync


def test_api_key_is_nowhere_in_ledger_logs_or_errors(
    enrich_env: Warehouse,
    enrich_project: Path,
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    enrich_env.create_source("items", [(i, f"item {i}") for i in range(30)], KEY_TYPES["items"])
    enrich_env.create_flagged_views(enrich_project, ["items"])
    monkeypatch.setenv("ANTHROPIC_LOG", "debug")
    caplog.set_level(logging.DEBUG)

    sync(settings)
    assert enrich_env.fetch("select count(*) from enrich.results_raw")[0][0] == 30

    # a subprocess at the highest verbosity (with work to do), and one whose key the
    # API refuses
    enrich_env.insert_rows("items", [(i, f"item {i}") for i in range(30, 35)])
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
            "--debug-http",
            "--poll-interval",
            "0",
            "--wait",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_SECONDS,
    )
    assert verbose.returncode == 0, verbose.stderr[-2000:]
    assert "DEBUG" in verbose.stderr  # debug logging really was on
    enrich_env.insert_rows("items", [(i, f"item {i}") for i in range(35, 40)])
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
            timeout=HANG_GUARD_SECONDS,
        )
    assert refused.returncode == 3, refused.stderr[-2000:]

    for text in (
        enrich_env.ledger_text("enrich"),
        caplog.text,
        verbose.stdout + verbose.stderr,
        refused.stdout + refused.stderr,
    ):
        assert API_KEY not in text
        assert API_KEY[-12:] not in text


def test_refused_key_stops_the_run_with_exit_3_and_consumes_no_attempts(
    enrich_env: Warehouse, enrich_project: Path
) -> None:
    enrich_env.create_source("items", [(1, "one"), (2, "two")], KEY_TYPES["items"])
    enrich_env.create_flagged_views(enrich_project, ["items"])
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
            timeout=HANG_GUARD_SECONDS,
        )
    assert out.returncode == 3, out.stderr
    assert "refused the account" in out.stderr and "ANTHROPIC_API_KEY" in out.stderr
    assert API_KEY not in out.stderr + out.stdout
    rows = enrich_env.fetch("select status from enrich.batches")
    assert [s for (s,) in rows] == ["abandoned"]  # intent recorded, then released


@pytest.fixture(scope="module")
def weird_project(
    tmp_path_factory: pytest.TempPathFactory, warehouse_kind: str, request: pytest.FixtureRequest
) -> Path:
    root = tmp_path_factory.mktemp(f"weird-{warehouse_kind}")
    project = write_project(
        root,
        {"items": default_declaration()},
        ledger_schema='led"ger; drop table app.items_src; --',
    )
    dbt_prepare(project, parse_env(warehouse_kind, root, request))
    return project


def test_schema_names_with_quotes_and_semicolons_are_identifiers(
    enrich_env: Warehouse, weird_project: Path, settings: Settings, emulator: Any
) -> None:
    enrich_env.create_source("items", [(i, f"item {i}") for i in range(10)], KEY_TYPES["items"])
    enrich_env.create_flagged_views(weird_project, ["items"])

    report = sync(with_(settings, project_dir=weird_project))

    assert report.errors == []
    schema = 'led"ger; drop table app.items_src; --'
    assert enrich_env.count(schema, "results_raw") == 10
    assert enrich_env.fetch("select count(*) from app.items_src")[0][0] == 10


def _sync_cli(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "connector", "sync", "--project-dir", str(project), *args],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_SECONDS,
    )


def test_prompts_reach_the_log_only_with_debug_http(
    enrich_env: Warehouse, enrich_project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = "PROMPT-TEXT-7f3a"
    enrich_env.create_source("items", [(1, f"{marker} one")], KEY_TYPES["items"])
    enrich_env.create_flagged_views(enrich_project, ["items"])
    monkeypatch.setenv("ANTHROPIC_LOG", "debug")  # the SDK's own switch does not open it

    quiet = _sync_cli(enrich_project, "--select", "items", "-vv", "--dry-run", "--exact")
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    assert "count_tokens" in quiet.stderr  # the SDK's request lines are logged...
    assert marker not in quiet.stderr + quiet.stdout  # ...without their bodies

    debug = _sync_cli(enrich_project, "--select", "items", "-vv", "--debug-http", "--dry-run")
    assert debug.returncode == 0, debug.stderr[-2000:]
    assert marker in debug.stderr  # what --debug-http is documented to show
