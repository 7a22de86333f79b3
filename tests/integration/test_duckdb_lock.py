"""A DuckDB file held by another process: `enrich` says who holds it and what to do,
exits 5, and changes nothing; once the file is free the same command goes on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from harness.enrich_project import KEY_TYPES
from harness.sync_process import HANG_GUARD_SECONDS
from harness.warehouses import DuckDBWarehouse

from connector.errors import EXIT_LOCKED

pytestmark = pytest.mark.parametrize("warehouse_kind", ["duckdb"], indirect=True)

HOLD = """
import sys, duckdb
conn = duckdb.connect(sys.argv[1])
conn.execute("create table if not exists main.held (x integer)")
print("holding", flush=True)
sys.stdin.read()  # until the test closes our stdin
conn.close()
"""


@contextmanager
def held(path: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the file open for writing, as `dbt build` does."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "holding"
        yield proc
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        proc.wait(timeout=HANG_GUARD_SECONDS)  # a hang guard: it exits once stdin closes


def _enrich(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "connector", *args, "--project-dir", str(project)],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_SECONDS,  # a hang guard only, generous for a busy machine
    )


def test_locked_file_is_reported_with_its_holder_and_exit_5(
    enrich_env: DuckDBWarehouse, enrich_project: Path, emulator: Any
) -> None:
    enrich_env.create_source("items", [(i, f"item {i}") for i in range(20)], KEY_TYPES["items"])
    enrich_env.create_flagged_views(enrich_project, ["items"])

    with held(enrich_env.path) as holder:
        out = _enrich(enrich_project, "sync", "--select", "items")
        as_json = _enrich(enrich_project, "status", "--json")

    assert out.returncode == EXIT_LOCKED == 5, out.stderr[-2000:]
    message = out.stderr
    assert str(enrich_env.path) in message
    assert f"process {holder.pid}" in message  # which process holds it
    assert "Wait for `dbt build`" in message and "run them in sequence" in message
    assert "never writes the file from two processes at once" in message
    assert "Traceback" not in message
    assert as_json.returncode == 5
    assert json.loads(as_json.stdout)["exit_code"] == 5
    # nothing was written: no ledger, nothing sent
    assert emulator.stats()["requests_received"] == 0
    assert enrich_env.fetch(
        "select count(*) from information_schema.schemata where schema_name = 'enrich'"
    ) == [(0,)]

    # once the other process is done, the same command does the work
    again = _enrich(enrich_project, "sync", "--select", "items", "--wait", "--poll-interval", "0")
    assert again.returncode == 0, again.stderr[-2000:]
    assert enrich_env.fetch("select count(*) from enrich.results_raw") == [(20,)]


def test_enrich_leaves_the_file_free_for_dbt_when_it_is_done(
    enrich_env: DuckDBWarehouse, enrich_project: Path
) -> None:
    """In-process sync (the ledger created by an in-process `dbt run-operation`) must not
    keep the file once it returns: the next `dbt build` runs in another process."""
    from connector.settings import Settings
    from connector.sync import sync

    enrich_env.create_source("items", [(1, "one")], KEY_TYPES["items"])
    enrich_env.create_flagged_views(enrich_project, ["items"])
    report = sync(Settings(project_dir=enrich_project, select=("items",), poll_interval=0.0))
    assert report.errors == []

    with held(enrich_env.path):  # would fail to lock if this process still held the file
        pass
