"""End-to-end fixtures: the example project copied per test, on Postgres and on DuckDB,
with the emulator."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness.pipeline import Pipeline, pipeline_in_env
from harness.postgres import PgDatabase
from harness.warehouses import (
    DUCKDB_FILE,
    KINDS,
    DuckDBWarehouse,
    PostgresWarehouse,
    Warehouse,
)

from connector.emulator import EmulatorConfig, run_emulator


@pytest.fixture
def emulator() -> Iterator[Any]:
    with run_emulator(EmulatorConfig(seed=21)) as emu:
        yield emu


@pytest.fixture(params=KINDS)
def pipeline(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    emulator: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> Pipeline:
    warehouse: Warehouse
    if request.param == "postgres":
        db: PgDatabase = request.getfixturevalue("pg_db")
        warehouse = PostgresWarehouse(db)
    else:
        warehouse = DuckDBWarehouse(tmp_path / DUCKDB_FILE)
    return pipeline_in_env(tmp_path, warehouse, emulator.base_url, "sk-ant-e2e", monkeypatch)
