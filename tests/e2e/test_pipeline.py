"""The whole loop on real Postgres and on DuckDB, the official SDK and the emulator:
dbt build -> enrich sync --wait -> dbt build, on the two example enrichments."""

from __future__ import annotations

import json
from collections import Counter
from decimal import Decimal
from typing import Any

from harness.pipeline import Pipeline

TICKETS = 300
REVIEWS = 150


def _outcome_ids(p: Pipeline, enrichment: str, error_type: str) -> set[str]:
    rows = p.query(
        """
        select r.custom_id from enrich.requests as r
        join enrich.batches as b using (submission_id)
        join enrich.results_raw as x on x.batch_id = b.batch_id and x.custom_id = r.custom_id
        where r.enrichment = %s
          and x.line -> 'result' -> 'error' -> 'error' ->> 'type' = %s
        """,
        (enrichment, error_type),
    )
    return {cid for (cid,) in rows}


def test_examples_flow_through_and_changes_are_flagged_precisely(
    pipeline: Pipeline, emulator: Any
) -> None:
    p = pipeline
    p.build(unit_tests=True)  # the package's unit tests, once per warehouse
    assert len(p.flagged("ticket_triage")) == TICKETS
    assert set(p.flagged("review_aspects").values()) == {"new"}
    emulator.set_faults("item_api_error=0.06,item_invalid_request=0.04,seed=4")

    # dbt's column tests run in the first build and the last cycle's (suite time: they
    # are 85 of the 133 nodes of each build)
    p.cycle(column_tests=False)

    # both examples landed and are enriched, with lineage
    enriched = p.query(
        "select count(*), count(category), count(distinct batch_id), min(attempt), "
        "bool_and(prompt_version = 'v1') from analytics.ticket_triage__enriched"
    )[0]
    retry_ids = _outcome_ids(p, "ticket_triage", "api_error")
    terminal_ids = _outcome_ids(p, "ticket_triage", "invalid_request_error")
    assert retry_ids and terminal_ids
    assert enriched[0] == TICKETS
    assert enriched[1] == TICKETS - len(retry_ids) - len(terminal_ids)
    assert enriched[3] == 1 and enriched[4] is True
    categories = {
        c
        for (c,) in p.query(
            "select distinct category from analytics.ticket_triage__enriched "
            "where category is not null"
        )
    }
    assert categories <= {"billing", "bug", "feature_request", "account", "other"}
    aspects = p.query(
        "select count(*) from analytics.review_aspects__enriched where aspects is not null"
    )
    assert aspects[0][0] > 0

    # api_error comes back as `retry`; invalid_request_error does not come back
    flagged = p.flagged("ticket_triage")
    assert set(flagged) == retry_ids
    assert set(flagged.values()) == {"retry"}
    emulator.set_faults("")
    p.cycle(column_tests=False)
    assert p.flagged("ticket_triage") == {}
    assert p.flagged("review_aspects") == {}
    # a second cycle with no changes flags (and sends) nothing
    quiet = p.cycle(column_tests=False)
    assert sum(s.submitted for s in quiet.submitted) == 0
    assert p.flagged("ticket_triage") == {}

    # editing one ticket flags exactly that row as input_changed
    p.edit_seed_row(
        "example_support_tickets", "ticket_id", "1007", "body", "Now it is urgent: nothing loads."
    )
    p.build(column_tests=False)
    assert p.flagged("ticket_triage") == {"1007": "input_changed"}
    p.cycle(column_tests=False)

    # bumping prompt_version flags every row as prompt_changed; history keeps v1
    p.edit_declaration("ticket_triage", prompt_version="v2")
    p.build(column_tests=False)
    flagged = p.flagged("ticket_triage")
    assert set(flagged.values()) == {"prompt_changed"}
    # every row, the invalid_request_error ones too: their request changed
    assert len(flagged) == TICKETS
    p.cycle()
    versions = dict(
        p.query(
            "select prompt_version, count(*) from analytics.enrich_history "
            "where enrichment = 'ticket_triage' group by 1"
        )
    )
    assert versions["v1"] >= TICKETS - len(terminal_ids)
    assert versions["v2"] == TICKETS
    assert (
        p.query(
            "select count(*) from analytics.ticket_triage__enriched where prompt_version = 'v2'"
        )[0][0]
        == TICKETS
    )
    # reconciliation: every submitted request has one terminal outcome (dbt test passed
    # inside build); check the model's view of it too
    bad = p.query(
        "select count(*) from analytics.enrich_reconciliation "
        "where not coalesce(is_reconciled, false)"
    )
    assert bad[0][0] == 0


def test_costs_equal_usage_times_prices_with_the_batch_discount(pipeline: Pipeline) -> None:
    p = pipeline
    p.build(column_tests=False)  # dbt's column tests: after the cycle (suite time)
    p.cycle()
    prices = p.prices()
    expected = Decimal(0)
    for (line,) in p.query("select cast(line as text) from enrich.results_raw"):
        result = json.loads(line)["result"]
        if result["type"] != "succeeded":
            continue
        msg = result["message"]
        usage = msg["usage"]
        price = prices[msg["model"]]
        split = usage.get("cache_creation") or {}
        w1h = split.get("ephemeral_1h_input_tokens") or 0
        w5m = (usage.get("cache_creation_input_tokens") or 0) - w1h
        usd = (
            (
                usage["input_tokens"] * price["input_usd_per_mtok"]
                + w5m * price["input_usd_per_mtok"] * price["cache_write_5m_multiplier"]
                + w1h * price["input_usd_per_mtok"] * price["cache_write_1h_multiplier"]
                + (usage.get("cache_read_input_tokens") or 0)
                * price["input_usd_per_mtok"]
                * price["cache_read_multiplier"]
                + usage["output_tokens"] * price["output_usd_per_mtok"]
            )
            / 1e6
            * (1 - price["batch_discount"])
        )
        expected += Decimal(str(usd))
    got = p.query("select sum(total_usd) from analytics.enrich_costs")[0][0]
    assert expected > 0
    assert abs(Decimal(str(got)) - expected) < Decimal("1e-9")
    per_day = p.query("select sum(total_usd) from analytics.enrich_costs_daily")[0][0]
    assert abs(Decimal(str(per_day)) - expected) < Decimal("1e-9")


def test_retries_stop_at_max_attempts(pipeline: Pipeline, emulator: Any) -> None:
    p = pipeline
    p.build(column_tests=False)  # dbt's column tests: after the last cycle (suite time)
    emulator.set_faults("item_api_error=1.0")
    for attempt in range(1, 4):  # review_aspects declares max_attempts 3
        p.cycle("review_aspects", column_tests=attempt == 3)
    assert p.flagged("review_aspects") == {}
    attempts = Counter(
        n
        for (n,) in p.query(
            "select count(*) from enrich.requests "
            "where enrichment = 'review_aspects' group by custom_id"
        )
    )
    assert attempts == {3: REVIEWS}
    failures = p.query(
        "select failure_type, count(*) from analytics.enrich_failures "
        "where enrichment = 'review_aspects' group by 1"
    )
    assert failures == [("errored_retryable", 3 * REVIEWS)]
    assert (
        p.query(
            "select count(*) from analytics.review_aspects__enriched where aspects is not null"
        )[0][0]
        == 0
    )


def test_invalid_outputs_are_failures_never_enriched_values(
    pipeline: Pipeline, emulator: Any
) -> None:
    p = pipeline
    p.build(column_tests=False)  # dbt's column tests: after the cycle (suite time)
    emulator.set_faults("output_schema_violation=0.1,output_not_json=0.05,seed=8")
    p.cycle("ticket_triage")
    invalid = p.query(
        "select custom_id, failure_reason from analytics.enrich_failures "
        "where enrichment = 'ticket_triage' and failure_type = 'succeeded_invalid'"
    )
    assert invalid, "the emulator's invalid outputs should show up as failures"
    assert all(reason for _, reason in invalid)
    ids = [cid for cid, _ in invalid]
    leaked = p.query(
        "select count(*) from analytics.ticket_triage__enriched "
        "where custom_id in (select unnest(cast(%s as text[]))) and category is not null",
        (ids,),
    )
    assert leaked[0][0] == 0


def test_truncated_outputs_are_repaired_with_doubled_max_tokens(
    pipeline: Pipeline, emulator: Any
) -> None:
    p = pipeline
    p.edit_declaration("ticket_triage", max_tokens=12)
    p.build(column_tests=False)  # dbt's column tests: after the last cycle (suite time)
    p.cycle("ticket_triage", column_tests=False)
    truncated = p.query(
        "select count(*) from analytics.enrich_failures "
        "where enrichment = 'ticket_triage' and failure_type = 'truncated'"
    )[0][0]
    assert truncated > 0
    flagged = p.query(
        "select flag_reason, max_tokens, count(*) "
        "from analytics.ticket_triage__flagged group by 1, 2"
    )
    assert ("repair", 24, truncated) in flagged
    p.cycle("ticket_triage")
    repaired = p.query(
        "select count(*) from analytics.ticket_triage__enriched "
        "where attempt = 2 and category is not null"
    )[0][0]
    assert repaired > 0
    sent = p.query(
        "select max_tokens, count(*) from enrich.requests where flag_reason = 'repair' group by 1"
    )
    assert sent == [(24, truncated)]
