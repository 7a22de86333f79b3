"""Cost controls on the example project (the demo data), on Postgres and DuckDB, through
the emulator: estimates against what the emulator bills, budgets, dedupe, spend."""

from __future__ import annotations

import csv
import json
import re
from typing import Any

import pytest
from click.testing import CliRunner
from harness.pipeline import Pipeline

from connector.budgets import usd
from connector.cli import main
from connector.commands import estimate, status
from connector.errors import EXIT_BUDGET, EXIT_OK
from connector.estimate import Estimate
from connector.settings import Settings

TICKETS = "ticket_triage"


def _settings(p: Pipeline, *select: str, **changes: Any) -> Settings:
    return Settings(
        project_dir=p.project, profiles_dir=p.project, target=p.target, select=select, **changes
    )


def _models(p: Pipeline) -> None:
    """Seeds and models without the data and unit tests (other e2e tests run those)."""
    p.dbt("seed")
    p.dbt("run")


def _estimates(p: Pipeline, *select: str, **changes: Any) -> dict[str, Estimate]:
    return {e.enrichment: e for e in estimate(_settings(p, *select, **changes))}


def _billed_input(p: Pipeline) -> dict[str, tuple[int, int]]:
    """enrichment -> (succeeded lines, input tokens billed incl. cache writes and reads)."""
    rows = p.query(
        "select r.enrichment, cast(x.line as text) from enrich.results_raw as x "
        "join enrich.batches as b on b.batch_id = x.batch_id "
        "join enrich.requests as r "
        "on r.submission_id = b.submission_id and r.custom_id = x.custom_id"
    )
    billed: dict[str, tuple[int, int]] = {}
    for enrichment, line in rows:
        result = json.loads(line)["result"]
        assert result["type"] == "succeeded", result
        u = result["message"]["usage"]
        tokens = (
            u["input_tokens"]
            + (u.get("cache_creation_input_tokens") or 0)
            + (u.get("cache_read_input_tokens") or 0)
        )
        n, total = billed.get(enrichment, (0, 0))
        billed[enrichment] = (n + 1, total + tokens)
    return billed


def _sync_cli(p: Pipeline, *args: str) -> Any:
    base = [
        "sync", "--project-dir", str(p.project), "--profiles-dir", str(p.project),
        "--target", p.target, "--wait", "--poll-interval", "0", "--reconcile-grace", "0",
        "--max-wait", "900",  # a hang guard for --wait, generous for a busy machine
    ]  # fmt: skip
    return CliRunner().invoke(main, [*base, *args], catch_exceptions=False)


def _row_requests(emulator: Any) -> dict[str, int]:
    """custom_id -> requests the emulator received for it, rows only: a batch body may
    also carry one marker request of its intent (custom_id `be-sub-...`)."""
    by_id: dict[str, int] = emulator.stats()["requests_by_custom_id"]
    return {k: v for k, v in by_id.items() if not k.startswith("be-sub-")}


def _sent_ids(p: Pipeline, enrichment: str) -> list[str]:
    rows = p.query("select custom_id from enrich.requests where enrichment = %s", (enrichment,))
    return [r[0] for r in rows]


def test_estimate_matches_billed_tokens_and_seed_prices_and_status_reports_spend(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = pipeline
    _models(p)
    sampled = _estimates(p)
    exact = _estimates(p, exact=True)
    prices = p.prices()
    for name, est in sampled.items():
        assert est.requests == est.flagged > 0
        assert "count_tokens" in est.input_method
        assert est.counted == min(64, est.requests)
        # dollars from the seed, computed independently: batch prices, no history yet
        # (so output is half of max_tokens per request)
        price = prices[est.model]
        assert est.output_tokens_expected == est.output_tokens_worst / 2
        want = (
            (
                est.input_tokens * price["input_usd_per_mtok"]
                + est.output_tokens_expected * price["output_usd_per_mtok"]
            )
            / 1e6
            * (1 - price["batch_discount"])
        )
        assert est.usd_expected == pytest.approx(want, rel=1e-12)
        assert exact[name].counted == exact[name].requests

    p.sync()
    p.dbt("run")
    billed = _billed_input(p)
    for name, est in sampled.items():
        lines, tokens = billed[name]
        assert lines == est.requests
        assert abs(est.input_tokens - tokens) <= 0.05 * tokens, (name, est.input_tokens, tokens)
        assert exact[name].input_tokens == tokens  # count_tokens counts what is billed

    # spend: what status reports equals the dbt costs model, today and in total
    costs = dict(
        p.query("select enrichment, sum(total_usd) from analytics.enrich_costs group by 1")
    )
    rows = {r.enrichment: r for r in status(_settings(p))}
    for name in sampled:
        assert rows[name].spend_total_usd == pytest.approx(float(costs[name]), abs=1e-9)
        assert rows[name].spend_today_usd == pytest.approx(float(costs[name]), abs=1e-9)
        assert rows[name].in_flight_estimated_usd == 0

    # without a key: a ratio calibrated on the landed usage of earlier prompt versions
    p.edit_declaration(TICKETS, prompt_version="v2")
    p.dbt("run", "-s", f"{TICKETS}__flagged")  # the only model the version changes
    counted = _estimates(p, TICKETS, exact=True)[TICKETS]
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    calibrated = _estimates(p, TICKETS)[TICKETS]
    assert "calibrated" in calibrated.input_method
    assert "earlier prompt versions" in calibrated.input_method
    assert calibrated.output_method.startswith("mean of")
    assert calibrated.requests == counted.requests
    assert abs(calibrated.input_tokens - counted.input_tokens) <= 0.05 * counted.input_tokens


def _money(text: str, label: str) -> float:
    match = re.search(label + r" \$([0-9.,]+)", text)
    assert match, (label, text)
    return float(match.group(1).replace(",", ""))


def test_budget_sends_oldest_that_fit_exits_4_and_approve_lets_the_rest_through(
    pipeline: Pipeline, emulator: Any
) -> None:
    p = pipeline
    _models(p)
    total = _estimates(p, TICKETS)[TICKETS]
    assert total.usd_expected is not None
    budget = round(total.usd_expected * 0.4, 4)
    p.edit_declaration(TICKETS, budget_usd=budget)  # the connector re-parses; no SQL changes

    # the estimate command and a dry run print the same estimate and send nothing
    project = ["--project-dir", str(p.project), "--profiles-dir", str(p.project)]
    shown = CliRunner().invoke(
        main, ["estimate", *project, "--target", p.target, "-s", TICKETS, "--json"]
    )
    assert shown.exit_code == EXIT_OK, shown.output
    (doc,) = json.loads(shown.stdout)["estimates"]
    assert doc["usd_expected"] == pytest.approx(total.usd_expected, rel=1e-12)
    dry = _sync_cli(p, "--select", TICKETS, "--dry-run", "--json")
    assert dry.exit_code == EXIT_BUDGET
    dry_doc = json.loads(dry.stdout)
    assert dry_doc["estimates"][0]["usd_expected"] == pytest.approx(total.usd_expected, rel=1e-12)
    assert dry_doc["budget_stops"][0]["held_back"] > 0
    assert "--approve-usd" in dry_doc["budget_stops"][0]["message"]
    assert emulator.stats()["requests_received"] == 0
    assert p.query("select count(*) from enrich.deferrals")[0][0] == 0

    first = _sync_cli(p, "--select", TICKETS)
    assert first.exit_code == EXIT_BUDGET, first.output
    message = first.stderr
    assert f"{TICKETS}: estimate $" in message
    assert _money(message, "estimate") == pytest.approx(total.usd_expected, abs=1e-4)
    assert f"budget of {usd(budget)} (budget_usd, per run)" in message
    assert "--approve-usd" in message
    sent_first = _sent_ids(p, TICKETS)
    assert 0 < len(sent_first) < total.requests
    committed = p.query("select sum(estimated_usd) from enrich.requests")[0][0]
    assert committed <= budget
    deferred = {r[0] for r in p.query("select custom_id from enrich.deferrals")}
    assert len(deferred) == total.requests - len(sent_first)
    assert not deferred & set(sent_first)

    # rows held back go first next time, even behind rows that became flagged since;
    # (landed output now calibrates the estimate, so the budget is set against it)
    _append_tickets(p, 5)
    p.dbt("seed", "-s", "example_support_tickets")  # the models over it are views
    remaining = _estimates(p, TICKETS)[TICKETS]
    assert remaining.usd_expected is not None
    p.edit_declaration(TICKETS, budget_usd=round(remaining.usd_expected * 0.5, 6))
    second = _sync_cli(p, "--select", TICKETS)
    assert second.exit_code == EXIT_BUDGET, second.output
    sent_second = set(_sent_ids(p, TICKETS)) - set(sent_first)
    assert sent_second and sent_second <= deferred

    third = _sync_cli(p, "--select", TICKETS, "--approve-usd", "100")
    assert third.exit_code == EXIT_OK, third.output
    sent = _row_requests(emulator)
    assert sum(sent.values()) == total.requests + 5
    assert set(sent.values()) == {1}
    assert p.query("select count(*) from enrich.deferrals")[0][0] == 0


# one warehouse per case below (suite time): the other cases here and
# tests/e2e/test_dedupe_run_wide.py run the same ledger queries on both
@pytest.mark.parametrize("pipeline", ["postgres"], indirect=True)
def test_max_usd_and_the_daily_budget_cap_what_one_day_commits(pipeline: Pipeline) -> None:
    p = pipeline
    _models(p)
    reviews = "review_aspects"
    total = _estimates(p, reviews)[reviews]
    assert total.usd_expected is not None
    capped = _sync_cli(p, "--select", reviews, "--max-usd", f"{total.usd_expected * 0.3:.6f}")
    assert capped.exit_code == EXIT_BUDGET
    assert "--max-usd" in capped.stderr
    spent = p.query("select sum(estimated_usd) from enrich.requests")[0][0]
    assert 0 < spent <= total.usd_expected * 0.3

    rest = _estimates(p, reviews)[reviews].usd_expected  # calibrated on what landed
    assert rest is not None
    daily = round(spent + rest * 0.5, 6)
    p.edit_declaration(reviews, budget_usd_per_day=daily)
    for _ in range(2):  # the second run of the day finds nothing left of the day's budget
        run = _sync_cli(p, "--select", reviews)
        assert run.exit_code == EXIT_BUDGET
        assert "budget_usd_per_day" in run.stderr
    today = p.query("select sum(estimated_usd) from enrich.requests")[0][0]
    assert spent < today <= daily
    assert len(_sent_ids(p, reviews)) < total.requests


def _append_tickets(p: Pipeline, n: int) -> None:
    path = p.project / "seeds" / "examples" / "example_support_tickets.csv"
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    fields = list(rows[0])
    top = max(int(r["ticket_id"]) for r in rows)
    for i in range(1, n + 1):
        rows.insert(0, {**rows[i], "ticket_id": str(top + i), "subject": f"New ticket {i}"})
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def _duplicate_tickets(p: Pipeline, share: float) -> tuple[int, int]:
    """Give `share` of the tickets the subject and body of another; (rows, distinct)."""
    path = p.project / "seeds" / "examples" / "example_support_tickets.csv"
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:  # the demo's texts repeat; make each unique first
        row["body"] += f" (ref {row['ticket_id']})"
    copies = round(len(rows) * share)
    for i in range(copies):
        source = rows[copies + i]
        rows[i]["subject"], rows[i]["body"] = source["subject"], source["body"]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    distinct = {(r["subject"], r["body"]) for r in rows}
    return len(rows), len(distinct)


@pytest.mark.parametrize("pipeline", ["duckdb"], indirect=True)
def test_dedupe_sends_each_distinct_request_once_and_every_key_gets_its_value(
    pipeline: Pipeline, emulator: Any
) -> None:
    p = pipeline
    rows, distinct = _duplicate_tickets(p, 0.3)
    assert distinct == round(rows * 0.7)
    p.edit_declaration(TICKETS, dedupe=True)
    _models(p)
    est = _estimates(p, TICKETS)[TICKETS]
    assert (est.requests, est.shared) == (distinct, rows - distinct)

    report = p.sync(TICKETS)
    p.dbt("run")
    assert sum(_row_requests(emulator).values()) == distinct
    assert sum(s.shared for s in report.submitted) == rows - distinct

    enriched = p.query(
        "select count(*), count(category), "
        "sum(case when is_shared_result then 1 else 0 end) from analytics.ticket_triage__enriched"
    )[0]
    assert tuple(int(v) for v in enriched) == (rows, rows, rows - distinct)
    # every sharing key got exactly the value of the request it rode on
    pairs = p.query(
        "select a.ticket_id, a.category, a.summary, b.category, b.summary "
        "from analytics.ticket_triage__enriched as a "
        "join analytics.ticket_triage__enriched as b "
        "on a.custom_id = b.custom_id and a.ticket_id <> b.ticket_id"
    )
    assert len(pairs) == 2 * (rows - distinct)
    assert all(r[1:3] == r[3:5] for r in pairs)
    saved = {r.enrichment: r.requests_saved for r in status(_settings(p))}
    assert saved[TICKETS] == rows - distinct

    # nothing is flagged again: the sharing keys count as enriched
    assert p.flagged(TICKETS) == {}
    again = p.sync(TICKETS)
    assert sum(s.submitted for s in again.submitted) == 0
