"""The backlog as data: the marts enrich_backlog and enrich_backlog_rows, the generic
test batch_enrich.backlog_age, and `enrich status`, on Postgres and DuckDB, with the
example project, the official SDK and the emulator.

Cost per warehouse: one build of the example project (450 flagged rows), one sync
without --wait, three runs of the backlog models and four `dbt test` of them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from dbt.cli.main import dbtRunner
from harness.pipeline import Pipeline, pipeline_in_env
from harness.warehouses import Warehouse

from connector.cli import main
from connector.emulator import EmulatorConfig, run_emulator
from connector.settings import Settings
from connector.sync import sync

BACKLOG_MODELS = "enrich_backlog_rows enrich_backlog"
COUNTS = {"ticket_triage": 300, "review_aspects": 150}  # the example seeds
FLAGGED_TEST = "batch_enrich_backlog_age_enrich_backlog_oldest_flagged_age_hours"
IN_FLIGHT_TEST = "batch_enrich_backlog_age_enrich_backlog_oldest_in_flight_age_hours"


@pytest.fixture
def emulator() -> Iterator[Any]:
    # batches stay in progress until polled a few times: a sync without --wait leaves
    # them in flight
    with run_emulator(EmulatorConfig(seed=23, ended_after_polls=3)) as emu:
        yield emu


@pytest.fixture
def pipeline(
    warehouse: Warehouse, tmp_path: Path, emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> Pipeline:
    return pipeline_in_env(tmp_path, warehouse, emulator.base_url, "sk-ant-backlog", monkeypatch)


def backlog(p: Pipeline) -> dict[str, dict[str, Any]]:
    columns = (
        "enrichment, rows_flagged, rows_flagged_new, rows_flagged_retry, oldest_flagged_at, "
        "oldest_flagged_age_hours, rows_in_flight, requests_in_flight, "
        "oldest_in_flight_age_hours"
    )
    names = [c.strip() for c in columns.split(",")]
    rows = p.query(f"select {columns} from analytics.enrich_backlog")  # noqa: S608
    return {r[0]: dict(zip(names, r, strict=True)) for r in rows}


def status_json(p: Pipeline) -> dict[str, dict[str, Any]]:
    where = ["--project-dir", str(p.project), "--profiles-dir", str(p.project)]
    result = CliRunner().invoke(main, ["status", "--json", "--target", p.target, *where])
    assert result.exit_code == 0, result.output
    return {r["enrichment"]: r for r in json.loads(result.stdout)["enrichments"]}


def backlog_tests(p: Pipeline, variables: dict[str, float]) -> dict[str, str]:
    """The backlog tests' statuses (pass, warn, fail) under these threshold vars."""
    args = ["test", "--select", "enrich_backlog", "--vars", json.dumps(variables)]
    args += ["--project-dir", str(p.project), "--profiles-dir", str(p.project)]
    result = dbtRunner().invoke([*args, "--target", p.target])
    return {
        r.node.name: str(r.status)
        for r in getattr(result.result, "results", None) or []
        if "backlog_age" in r.node.name
    }


def test_backlog_counts_flagged_and_in_flight_rows_and_its_tests_warn_and_fail(
    pipeline: Pipeline,
) -> None:
    p = pipeline
    # the backlog runs the flagged queries over the input models, which the first build
    # creates (a model of the package cannot ref them): the next run counts them
    p.build(column_tests=False)  # the backlog and its tests are the point here
    p.dbt("run", "--select", BACKLOG_MODELS)
    before = backlog(p)
    assert set(before) == set(COUNTS)
    for name, n in COUNTS.items():
        row = before[name]
        assert (row["rows_flagged"], row["rows_flagged_new"], row["rows_flagged_retry"]) == (
            n,
            n,
            0,
        )
        assert row["oldest_flagged_age_hours"] >= 0
        assert (row["rows_in_flight"], row["oldest_in_flight_age_hours"]) == (0, None)

    # a row keeps the time it was first found flagged, through a rebuild of the ledger
    # models: on Postgres it drops the flagged views (cascade) and creates them again,
    # and the backlog, built in between, still counts every row
    p.dbt("run", "--select", "int_enrich__request_outcomes+")
    after = backlog(p)
    assert {n: r["rows_flagged"] for n, r in after.items()} == COUNTS
    assert {n: r["oldest_flagged_at"] for n, r in after.items()} == {
        n: r["oldest_flagged_at"] for n, r in before.items()
    }
    assert after["ticket_triage"]["oldest_flagged_age_hours"] > 0

    # enrich status shows the same, from the table and the ledger
    status = status_json(p)
    for name, n in COUNTS.items():
        assert status[name]["flagged_rows"] == n
        assert status[name]["flagged_by_reason"] == {"new": n}
        assert status[name]["oldest_flagged_age_hours"] > 0
        assert (status[name]["in_flight_rows"], status[name]["oldest_in_flight_age_hours"]) == (
            0,
            None,
        )
        assert status[name]["backlog_computed_at"] is not None

    # the thresholds (the default vars passed in every build): 0 hours warns, or fails
    # at the error level
    statuses = backlog_tests(p, {"batch_enrich_backlog_warn_after_hours": 0})
    assert statuses == {FLAGGED_TEST: "warn", IN_FLIGHT_TEST: "pass"}
    assert backlog_tests(p, {"batch_enrich_backlog_error_after_hours": 0})[FLAGGED_TEST] == "fail"

    # submitted, not landed: in flight in the ledger, and in the next build
    report = sync(
        Settings(
            project_dir=p.project,
            profiles_dir=p.project,
            target=p.target,
            wait=False,
            poll_interval=0.0,
            reconcile_grace_seconds=0.0,
        )
    )
    assert not report.errors, report.errors
    status = status_json(p)
    for name, n in COUNTS.items():
        assert status[name]["in_flight_rows"] == n
        assert status[name]["oldest_in_flight_age_hours"] >= 0
        assert status[name]["flagged_rows"] == n  # as of the last build
    # the ledger-derived models and the backlog, after the sync
    p.dbt("run", "--select", "+" + BACKLOG_MODELS.replace(" ", " +"))
    flying = backlog(p)
    for name, n in COUNTS.items():
        assert (flying[name]["rows_flagged"], flying[name]["oldest_flagged_age_hours"]) == (0, None)
        assert (flying[name]["rows_in_flight"], flying[name]["requests_in_flight"]) == (n, n)
        assert flying[name]["oldest_in_flight_age_hours"] > 0
    assert status_json(p)["ticket_triage"]["flagged_rows"] == 0
    statuses = backlog_tests(p, {"batch_enrich_in_flight_warn_after_hours": 0})
    assert statuses == {FLAGGED_TEST: "pass", IN_FLIGHT_TEST: "warn"}
    statuses = backlog_tests(p, {"batch_enrich_in_flight_error_after_hours": 0})
    assert statuses[IN_FLIGHT_TEST] == "fail"
