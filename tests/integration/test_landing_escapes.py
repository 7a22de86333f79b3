"""A result line whose JSON text holds a lone surrogate escape lands, neutralised (real
warehouses, SDK and emulator with its `output_lone_surrogate` fault)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from harness.enrich_project import KEY_TYPES
from harness.warehouses import Warehouse

from connector.emulator import EmulatorConfig, FaultSpec, run_emulator
from connector.settings import Settings
from connector.sync import sync

ROWS = 40


def test_a_lone_surrogate_in_a_result_line_lands_as_u_fffd_with_a_warning(
    enrich_env: Warehouse,
    enrich_project: Path,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    enrich_env.create_source("items", [(i, f"item {i}") for i in range(ROWS)], KEY_TYPES["items"])
    enrich_env.create_flagged_views(enrich_project, ["items"])
    faults = FaultSpec.parse("output_lone_surrogate=0.3")
    caplog.set_level(logging.WARNING, logger="connector")

    with run_emulator(EmulatorConfig(ended_after_polls=1, seed=7, faults=faults)) as emulator:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", emulator.base_url)
        report = sync(settings)
        fired = emulator.stats()["faults_fired"].get("output_lone_surrogate", 0)

    assert report.errors == []
    assert [p for r in report.landing for p in r.problems] == []
    assert 0 < fired < ROWS
    assert report.in_flight == 0
    # every line landed, and each one reads as JSON where Postgres jsonb (the parse
    # models' type) and DuckDB's JSON functions read it
    texts = enrich_env.fetch(
        "select custom_id, cast(line as jsonb) -> 'result' -> 'message' -> 'content' -> 0 "
        "->> 'text' from enrich.results_raw"
    )
    assert len(texts) == ROWS
    fixed = {cid for cid, text in texts if text.endswith("\ufffd")}
    # the fault may also hit a batch's marker request, whose line is not kept
    (batches,) = enrich_env.fetch("select count(*) from enrich.batches")[0]
    assert fired - batches <= len(fixed) <= fired
    # the rest of each fixed line is intact: its text is the structured output, then U+FFFD
    for cid, text in texts:
        if cid in fixed:
            assert text.startswith('{"label":') and text.count("\ufffd") == 1
    warned = {
        r.getMessage().split("custom_id=")[1].split(":")[0]
        for r in caplog.records
        if "lone surrogate escape" in r.getMessage()
    }
    assert {cid for cid in warned if not cid.startswith("be-sub-")} == fixed  # markers aside
