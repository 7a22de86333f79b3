"""Fixtures for connector integration tests: a dbt project with the package installed,
the emulator over real HTTP, and the environment `enrich` reads.

Every test that uses them runs once per warehouse (`warehouse_kind`: Postgres, DuckDB);
a test may narrow that with `@pytest.mark.parametrize("warehouse_kind", [...],
indirect=True)`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness.enrich_project import API_KEY, dbt_prepare, sample_declarations, write_project
from harness.warehouses import (
    DUCKDB_FILE,
    KINDS,
    DuckDBWarehouse,
    PostgresWarehouse,
    Warehouse,
    parse_env,
)

from connector.emulator import EmulatorConfig, run_emulator
from connector.settings import Settings


@pytest.fixture(scope="session", params=KINDS)
def warehouse_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


@pytest.fixture(scope="session")
def enrich_project(
    tmp_path_factory: pytest.TempPathFactory, warehouse_kind: str, request: pytest.FixtureRequest
) -> Path:
    root = tmp_path_factory.mktemp(f"enrich-{warehouse_kind}")
    project = write_project(root, sample_declarations())
    dbt_prepare(project, parse_env(warehouse_kind, root, request))
    return project


@pytest.fixture
def emulator() -> Iterator[Any]:
    with run_emulator(EmulatorConfig(ended_after_polls=1, seed=7)) as emu:
        yield emu


@pytest.fixture
def warehouse(warehouse_kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Warehouse:
    """An empty warehouse of this kind for one test."""
    if warehouse_kind == "postgres":
        return PostgresWarehouse(request.getfixturevalue("pg_db"))
    return DuckDBWarehouse(tmp_path / DUCKDB_FILE)


@pytest.fixture
def enrich_env(warehouse: Warehouse, emulator: Any, monkeypatch: pytest.MonkeyPatch) -> Warehouse:
    for key, value in warehouse.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", emulator.base_url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", API_KEY)
    monkeypatch.setenv("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    return warehouse


@pytest.fixture
def settings(enrich_project: Path) -> Settings:
    return Settings(
        project_dir=enrich_project,
        select=("items",),
        wait=True,
        poll_interval=0.0,
        reconcile_grace_seconds=0.0,
        # a hang guard for --wait (the emulator ends batches after one poll), generous so
        # that a busy machine never trips it
        max_wait_seconds=900.0,
    )
