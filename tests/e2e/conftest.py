"""End-to-end fixtures: the example project copied per test, Postgres, the emulator."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness.pipeline import Pipeline
from harness.postgres import PgDatabase

from connector.emulator import EmulatorConfig, run_emulator


@pytest.fixture
def emulator() -> Iterator[Any]:
    with run_emulator(EmulatorConfig(seed=21)) as emu:
        yield emu


@pytest.fixture
def pipeline(
    tmp_path: Path, pg_db: PgDatabase, emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> Pipeline:
    for key, value in pg_db.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("BATCH_ENRICH_TARGET", "postgres")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", emulator.base_url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-e2e")
    monkeypatch.setenv("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    return Pipeline(tmp_path, pg_db.conninfo)
