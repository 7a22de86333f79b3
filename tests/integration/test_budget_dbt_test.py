"""The package's generic test `batch_enrich.max_pending_usd` gates `dbt build` on the
estimated cost of what an enrichment's flagged view holds, on Postgres and on DuckDB,
with the example project, the official SDK and the emulator."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from dbt.cli.main import dbtRunner
from harness.pipeline import COLUMN_TESTS, Pipeline, pipeline_in_env
from harness.warehouses import Warehouse

from connector.emulator import EmulatorConfig, run_emulator

TICKETS = 300
TICKET_MAX_TOKENS = 300  # models/examples/_examples.yml
AUDIT_SCHEMA = "analytics_dbt_test__audit"
ANSI = re.compile(r"\x1b\[[0-9;]*m")
COLUMNS = (
    "enrichment, pending_requests, estimated_input_tokens, estimated_output_tokens, "
    "bytes_per_token, bytes_per_token_source, landed_requests, estimated_usd, max_usd, message"
)


@pytest.fixture
def emulator() -> Iterator[Any]:
    with run_emulator(EmulatorConfig(seed=17)) as emu:
        yield emu


@pytest.fixture
def pipeline(
    warehouse: Warehouse, tmp_path: Path, emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> Pipeline:
    return pipeline_in_env(
        tmp_path, warehouse, emulator.base_url, "sk-ant-budget-test", monkeypatch
    )


@dataclass
class DbtRun:
    success: bool
    log: list[str] = field(default_factory=list)
    statuses: dict[str, str] = field(default_factory=dict)  # node name -> status

    def budget_tests(self) -> dict[str, str]:
        return {n: s for n, s in self.statuses.items() if "max_pending_usd" in n}


def dbt(p: Pipeline, command: str, max_pending_usd: float | None = None, *extra: str) -> DbtRun:
    """One dbt command on the copied project, with its whole log and per-node statuses."""
    args = [command, *extra, "--project-dir", str(p.project), "--profiles-dir", str(p.project)]
    args += ["--target", p.target]
    if max_pending_usd is not None:
        args += ["--vars", json.dumps({"batch_enrich_max_pending_usd": max_pending_usd})]
    run = DbtRun(success=False)
    callback = lambda event: run.log.append(ANSI.sub("", str(event.info.msg)))  # noqa: E731
    result = dbtRunner(callbacks=[callback]).invoke(args)
    run.success = result.success
    for node_result in getattr(result.result, "results", None) or []:
        run.statuses[node_result.node.name] = str(node_result.status)
    return run


def build(p: Pipeline, max_pending_usd: float | None = None, *extra: str) -> DbtRun:
    """`dbt build` without the package's unit tests and dbt's column tests (the e2e
    tests run those): the budget gate is the point here."""
    skip = ["--exclude-resource-type", "unit_test"]
    skip += ["--exclude", *(f"test_name:{name}" for name in COLUMN_TESTS)]
    return dbt(p, "build", max_pending_usd, *skip, *extra)


def run_gate(p: Pipeline, max_pending_usd: float) -> DbtRun:
    """Only the budget tests, with failing rows stored in the audit schema."""
    return dbt(
        p, "test", max_pending_usd, "--select", "test_name:max_pending_usd", "--store-failures"
    )


def failing_rows(p: Pipeline) -> dict[str, dict[str, Any]]:
    """The stored failing rows of the budget tests, by enrichment."""
    tables = p.query(
        "select table_name from information_schema.tables "
        "where table_schema = %s and table_name like %s",
        (AUDIT_SCHEMA, "%max_pending_usd%"),
    )
    rows: dict[str, dict[str, Any]] = {}
    names = [c.strip() for c in COLUMNS.split(",")]
    for (table,) in tables:
        query = f"select {COLUMNS} from {AUDIT_SCHEMA}.{table}"  # noqa: S608
        for row in p.query(query):
            rows[row[0]] = dict(zip(names, row, strict=True))
    return rows


def spent(p: Pipeline, enrichment: str) -> float:
    (total,) = p.query(
        "select sum(total_usd) from analytics.enrich_costs where enrichment = %s", (enrichment,)
    )[0]
    return float(total)


TRIAGE_TEST = "batch_enrich_max_pending_usd_ticket_triage__flagged_ticket_triage"
REVIEWS_TEST = "batch_enrich_max_pending_usd_review_aspects__flagged_review_aspects"


def test_build_fails_over_the_threshold_and_names_the_enrichment(pipeline: Pipeline) -> None:
    p = pipeline
    run = build(p, 0.01)
    assert not run.success
    assert run.budget_tests() == {TRIAGE_TEST: "fail", REVIEWS_TEST: "fail"}
    assert f"Failure in test {TRIAGE_TEST} (models/examples/_examples.yml)" in run.log, run.log

    assert run_gate(p, 0.01).budget_tests() == {TRIAGE_TEST: "fail", REVIEWS_TEST: "fail"}
    rows = failing_rows(p)
    assert set(rows) == {"ticket_triage", "review_aspects"}
    triage = rows["ticket_triage"]
    # nothing landed yet: 4 bytes per token, and half of max_tokens out per request
    assert triage["pending_requests"] == TICKETS
    assert (triage["bytes_per_token_source"], float(triage["bytes_per_token"])) == ("default", 4.0)
    assert triage["landed_requests"] == 0
    assert float(triage["estimated_output_tokens"]) == TICKETS * TICKET_MAX_TOKENS / 2
    assert float(triage["max_usd"]) == pytest.approx(0.01)
    assert float(triage["estimated_usd"]) > 0.01
    estimate = f"{float(triage['estimated_usd']):.6f}"
    assert triage["message"] == (
        f"ticket_triage: {TICKETS} pending requests estimated at ${estimate} at batch prices, "
        "over the threshold of $0.01"
    )

    # a threshold just above an estimate passes, one just below it fails
    usd = float(triage["estimated_usd"])
    reviews = float(rows["review_aspects"]["estimated_usd"])
    assert usd != reviews
    low, high = sorted([usd, reviews])
    gate = run_gate(p, low * 1.001)
    assert sorted(gate.budget_tests().values()) == ["fail", "pass"]
    assert gate.budget_tests()[TRIAGE_TEST] == ("fail" if usd == high else "pass")
    assert run_gate(p, high * 1.001).budget_tests() == {TRIAGE_TEST: "pass", REVIEWS_TEST: "pass"}

    # with dedupe, rows that share a request (the same prompt) are estimated once
    (distinct_prompts,) = p.query("select count(distinct prompt) from analytics.ticket_triage")[0]
    assert 0 < distinct_prompts < TICKETS
    p.edit_declaration("ticket_triage", dedupe=True)
    assert not build(p, 0.01, "--store-failures").success
    assert failing_rows(p)["ticket_triage"]["pending_requests"] == distinct_prompts


def test_the_estimate_follows_landed_usage(pipeline: Pipeline) -> None:
    p = pipeline
    # the default var (50 USD) lets the example through
    assert build(p).budget_tests() == {TRIAGE_TEST: "pass", REVIEWS_TEST: "pass"}
    p.sync("ticket_triage")
    build(p)
    cost_v1 = spent(p, "ticket_triage")
    assert cost_v1 > 0

    # the same requests again, under a new prompt_version (not part of the params)
    p.edit_declaration("ticket_triage", prompt_version="v2")
    run = build(p, cost_v1 / 2, "--store-failures")
    assert not run.success and run.budget_tests()[TRIAGE_TEST] == "fail"
    triage = failing_rows(p)["ticket_triage"]
    assert triage["pending_requests"] == TICKETS
    assert triage["bytes_per_token_source"] == "landed"
    assert triage["landed_requests"] == TICKETS
    (avg_output,) = p.query(
        "select avg(output_tokens) from analytics.enrich_costs where enrichment = 'ticket_triage'"
    )[0]
    assert float(triage["estimated_output_tokens"]) == pytest.approx(TICKETS * float(avg_output))
    # the flagged rows' request bytes, estimated in SQL, are the bytes the connector sent
    (sent_bytes,) = p.query(
        "select sum(params_bytes) from enrich.requests where enrichment = 'ticket_triage'"
    )[0]
    pending_bytes = float(triage["estimated_input_tokens"]) * float(triage["bytes_per_token"])
    assert pending_bytes == pytest.approx(float(sent_bytes), rel=1e-9)
    # so, calibrated on these very requests, the estimate is what they cost
    assert float(triage["estimated_usd"]) == pytest.approx(cost_v1, rel=0.01)
    assert run_gate(p, cost_v1 * 1.1).budget_tests()[TRIAGE_TEST] == "pass"
