"""Fixtures for connector integration tests: a dbt project with the package installed,
the emulator over real HTTP, and the environment `enrich` reads."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness.enrich_project import API_KEY, dbt_prepare, sample_declarations, write_project
from harness.postgres import PgCluster, PgDatabase

from connector.emulator import EmulatorConfig, run_emulator
from connector.settings import Settings


@pytest.fixture(scope="session")
def enrich_project(tmp_path_factory: pytest.TempPathFactory, pg_cluster: PgCluster) -> Path:
    project = write_project(tmp_path_factory.mktemp("enrich"), sample_declarations())
    dbt_prepare(project, pg_cluster.env("postgres"))
    return project


@pytest.fixture
def emulator() -> Iterator[Any]:
    with run_emulator(EmulatorConfig(ended_after_polls=1, seed=7)) as emu:
        yield emu


@pytest.fixture
def enrich_env(pg_db: PgDatabase, emulator: Any, monkeypatch: pytest.MonkeyPatch) -> PgDatabase:
    for key, value in pg_db.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", emulator.base_url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", API_KEY)
    monkeypatch.setenv("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    return pg_db


@pytest.fixture
def settings(enrich_project: Path) -> Settings:
    return Settings(
        project_dir=enrich_project,
        select=("items",),
        wait=True,
        poll_interval=0.0,
        reconcile_grace_seconds=0.0,
        max_wait_seconds=60.0,
    )
