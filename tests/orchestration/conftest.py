"""Fixtures of the orchestration tests (`make test-orchestration`, its own venv with
Airflow and Dagster; not part of `make test`): the example project copied per test on
a DuckDB file, the emulator, and the environment the examples read (docs/orchestration.md).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness.enrich_project import API_KEY
from harness.pipeline import Pipeline, pipeline_in_env
from harness.sync_process import HANG_GUARD_SECONDS
from harness.warehouses import DUCKDB_FILE, DuckDBWarehouse
from orchestration_support import BIN, SYNC_WAIT

from connector.emulator import EmulatorConfig, run_emulator

HOLD = """
import sys, duckdb
conn = duckdb.connect(sys.argv[1])
print("holding", flush=True)
sys.stdin.read()  # until the test closes our stdin
conn.close()
"""


@pytest.fixture
def emulator() -> Iterator[Any]:
    with run_emulator(EmulatorConfig(ended_after_polls=1, seed=11)) as emu:
        yield emu


@pytest.fixture
def pipeline(tmp_path: Path, emulator: Any, monkeypatch: pytest.MonkeyPatch) -> Pipeline:
    """The example project on a fresh DuckDB file, with the environment the examples
    read: the commands of this venv, a build without the package's unit tests, a sync
    that waits for what it submitted, retries without delay."""
    warehouse = DuckDBWarehouse(tmp_path / DUCKDB_FILE)
    pipeline = pipeline_in_env(tmp_path, warehouse, emulator.base_url, API_KEY, monkeypatch)
    monkeypatch.setenv("PATH", f"{BIN}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}")
    monkeypatch.setenv("DBT_PROJECT_DIR", str(pipeline.project))
    monkeypatch.setenv("DBT_PROFILES_DIR", str(pipeline.project))
    monkeypatch.setenv("DBT_BUILD_ARGS", "--exclude-resource-type unit_test")
    monkeypatch.setenv("ENRICH_SYNC_ARGS", SYNC_WAIT)
    monkeypatch.setenv("ENRICH_RETRY_DELAY_SECONDS", "0")
    return pipeline


@pytest.fixture
def held_file(pipeline: Pipeline) -> Iterator[None]:
    """Another process holding the DuckDB file, as a running `enrich sync` does."""
    warehouse = pipeline.warehouse
    assert isinstance(warehouse, DuckDBWarehouse)
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(warehouse.path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "holding"
        yield
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        proc.wait(timeout=HANG_GUARD_SECONDS)  # a hang guard: it exits once stdin closes
