"""Pilot runs in the dbt package, on Postgres and DuckDB: unswitched pilot outputs stay
out of the current values (enriched table, enrich_history.is_current,
enrich_costs_by_row's value), enrich_pilot_comparison puts them beside the live ones
field by field, enrich_pilot_summary rates and prices them, and a switch (a non-pilot
request of the pilot's version) makes them live.

A copy of the example project whose ticket_triage declaration is at prompt_version v2
(the pilot's version, as after a user edited it before `enrich pilot`), and fabricated
ledger rows shaped like the connector's and the API's. Expected values are computed
here, independently of the SQL. Cost per warehouse: three dbt builds (the last of the
models downstream of the results only), the last two each followed by a run of the
backlog and summary models (see `rebuild`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from harness.pipeline import COLUMN_TESTS, Pipeline
from harness.warehouses import DuckDBWarehouse, PostgresWarehouse, Warehouse

HAIKU = "claude-haiku-4-5"
HAIKU_PRICES = (1.0, 5.0)  # USD per million input / output tokens (the price seed)
T0 = dt.datetime(2026, 4, 1, 9, 0, tzinfo=dt.UTC)
PILOT = ("ticket_triage", HAIKU, "v2")
FIELDS = ("category", "urgency", "summary")


# -- API lines -----------------------------------------------------------------------


def _compact(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))


@dataclass(frozen=True)
class Usage:
    input_tokens: int
    output_tokens: int

    def batch_usd(self) -> float:
        price_in, price_out = HAIKU_PRICES
        return (self.input_tokens * price_in + self.output_tokens * price_out) / 1e6 * 0.5


def succeeded(custom_id: str, output_text: str, usage: Usage) -> str:
    message = {
        "model": f"{HAIKU}-20251001",
        "id": f"msg_01{hashlib.sha256(custom_id.encode()).hexdigest()[:22]}",
        "type": "message",
        "role": "assistant",
        "content": [{"type": "text", "text": output_text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": usage.input_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": usage.output_tokens,
            "service_tier": "batch",
        },
    }
    return _compact({"custom_id": custom_id, "result": {"type": "succeeded", "message": message}})


def errored(custom_id: str) -> str:
    error = {"type": "error", "error": {"type": "api_error", "message": "Internal server error"}}
    return _compact({"custom_id": custom_id, "result": {"type": "errored", "error": error}})


def expired(custom_id: str) -> str:
    return _compact({"custom_id": custom_id, "result": {"type": "expired"}})


# -- the ledger ----------------------------------------------------------------------


@dataclass
class Request:
    ticket: int
    request_hash: str
    line: str | None
    flag_reason: str = "pilot"
    prompt_version: str = "v2"
    attempt: int = 1


def execute(warehouse: Warehouse, statement: str, params: Sequence[object]) -> None:
    """One statement with %s parameters, on either warehouse."""
    if isinstance(warehouse, PostgresWarehouse):
        with psycopg.connect(warehouse.db.conninfo) as conn:
            conn.execute(statement, params)  # type: ignore[arg-type]
    else:
        assert isinstance(warehouse, DuckDBWarehouse)
        with warehouse.connect() as conn:
            conn.execute(statement.replace("%s", "?"), list(params))


class Ledger:
    """Batches, requests and result lines, written the way the connector writes them."""

    def __init__(self, warehouse: Warehouse) -> None:
        self.warehouse = warehouse
        self.count = 0

    def add(self, status: str, requests: Sequence[Request], landed_at: dt.datetime) -> str:
        self.count += 1
        submission_id = f"sub_{self.count:032x}"
        batch_id = f"msgbatch_01PilotBatch{self.count:08d}"
        landed = status == "landed"
        types = [json.loads(r.line)["result"]["type"] for r in requests if r.line]
        counts = [types.count(t) if landed else None for t in ("succeeded", "errored", "expired")]
        execute(
            self.warehouse,
            "insert into enrich.batches (submission_id, batch_id, enrichment, status, "
            "request_count, body_bytes, processing_status, succeeded_count, errored_count, "
            "canceled_count, expired_count, intent_at, submitted_at, ended_at, landed_at, "
            "landed_lines) values (%s, %s, 'ticket_triage', %s, %s, 1000, %s, %s, %s, %s, %s, "
            "%s, %s, %s, %s, %s)",
            [
                submission_id,
                batch_id,
                status,
                len(requests),
                "ended" if landed else "in_progress",
                counts[0],
                counts[1],
                0 if landed else None,
                counts[2],
                landed_at - dt.timedelta(hours=2),
                landed_at - dt.timedelta(hours=2),
                landed_at if landed else None,
                landed_at if landed else None,
                len(types) if landed else None,
            ],
        )
        for r in requests:
            execute(
                self.warehouse,
                "insert into enrich.requests (submission_id, custom_id, enrichment, "
                "primary_key, request_hash, input_hash, attempt, flag_reason, model, "
                "prompt_version, max_tokens, params_bytes) values (%s, %s, 'ticket_triage', "
                "%s, %s, null, %s, %s, %s, %s, 300, 500)",
                [
                    submission_id,
                    str(r.ticket),
                    _compact({"ticket_id": r.ticket}),
                    r.request_hash,
                    r.attempt,
                    r.flag_reason,
                    HAIKU,
                    r.prompt_version,
                ],
            )
            if landed and r.line is not None:
                execute(
                    self.warehouse,
                    "insert into enrich.results_raw (batch_id, custom_id, result_type, line, "
                    "landed_at) values (%s, %s, %s, %s, %s)",
                    [
                        batch_id,
                        str(r.ticket),
                        json.loads(r.line)["result"]["type"],
                        r.line,
                        landed_at,
                    ],
                )
        return batch_id


def triage(category: str, urgency: float, summary: str) -> str:
    return _compact({"category": category, "urgency": urgency, "summary": summary})


def v1_hash(ticket: int) -> str:
    """A v1 request's hash: any hash but the current declaration's."""
    return hashlib.md5(f"v1 request of {ticket}".encode()).hexdigest()  # noqa: S324


# -- the scenario --------------------------------------------------------------------

LIVE = {  # ticket: the v1 output (valid, live)
    1101: ("billing", 3, "Charged twice for March."),
    1102: ("bug", 4, "Export fails."),
    1103: ("account", 2, "Reset mail missing."),
    1104: ("other", 1, "Thanks."),
}
PILOT_USAGE = {
    1101: Usage(500, 40),
    1102: Usage(520, 44),
    1103: Usage(480, 38),
    1105: Usage(610, 52),
}


@pytest.fixture
def pilot_project(
    warehouse: Warehouse, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Pipeline:
    for key, value in warehouse.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    p = Pipeline(tmp_path, warehouse)
    p.edit_declaration("ticket_triage", prompt_version="v2")
    return p


def rebuild(p: Pipeline, *select: str) -> None:
    """`dbt build` without the unit tests and dbt's column tests (suite time)."""
    skip = ["--exclude", *(f"test_name:{name}" for name in COLUMN_TESTS)]
    p.dbt("build", *select, "--exclude-resource-type", "unit_test", *skip)


def _rows(p: Pipeline, sql: str, params: tuple[Any, ...] = ()) -> dict[Any, tuple[Any, ...]]:
    return {row[0]: row[1:] for row in p.query(sql, params)}


def test_unswitched_pilot_is_compared_not_shown_and_a_switch_makes_it_live(
    pilot_project: Pipeline, warehouse: Warehouse
) -> None:
    p = pilot_project
    p.build(column_tests=False)
    current = dict(
        p.query(
            "select ticket_id, request_hash from analytics.ticket_triage__flagged "
            "where ticket_id between 1101 and 1107"
        )
    )
    assert len(current) == 7

    ledger = Ledger(warehouse)
    live_batch = ledger.add(
        "landed",
        [Request(t, v1_hash(t), succeeded(str(t), triage(*v), Usage(400, 30)), "new", "v1")
         for t, v in LIVE.items()],
        T0,
    )  # fmt: skip
    pilot_lines = {
        # same category, urgency 3.0 (the number 3), summary differing in case and spaces
        1101: succeeded(
            "1101", triage("billing", 3.0, "  charged TWICE\n for  march. "), PILOT_USAGE[1101]
        ),
        # another category and urgency, the same summary
        1102: succeeded("1102", triage("feature_request", 2, "Export fails."), PILOT_USAGE[1102]),
        # urgency out of range: invalid
        1103: succeeded("1103", triage("account", 7, "Reset mail."), PILOT_USAGE[1103]),
        1104: errored("1104"),
        1105: expired("1105"),  # retried below
    }
    pilot_batch = ledger.add(
        "landed",
        [Request(t, current[t], line) for t, line in pilot_lines.items()],
        T0 + dt.timedelta(days=1),
    )
    retry_line = succeeded("1105", triage("bug", 5, "Crash on start."), PILOT_USAGE[1105])
    retry_batch = ledger.add(
        "landed", [Request(1105, current[1105], retry_line, attempt=2)], T0 + dt.timedelta(days=2)
    )
    ledger.add("submitted", [Request(1106, current[1106], None)], T0 + dt.timedelta(days=2))
    rebuild(p)

    # -- before the switch: the enriched table shows what is live -------------------------
    enriched = _rows(
        p,
        "select ticket_id, category, urgency, summary, prompt_version, is_output_current "
        "from analytics.ticket_triage__enriched where ticket_id between 1101 and 1106",
    )
    for ticket, values in LIVE.items():
        assert enriched[ticket] == (*values, "v1", False), ticket
    assert enriched[1105] == enriched[1106] == (None,) * 5
    history = _rows(
        p,
        "select batch_id || '/' || custom_id, is_pilot, is_current from analytics.enrich_history",
    )
    assert history == {
        **{f"{live_batch}/{t}": (False, True) for t in LIVE},
        **{f"{pilot_batch}/{t}": (True, False) for t in (1101, 1102)},
        f"{retry_batch}/1105": (True, False),
    }
    by_row = _rows(
        p,
        "select key_custom_id, request_count, has_value, value_batch_id, total_usd, value_usd "
        "from analytics.enrich_costs_by_row",
    )
    live_usd = Usage(400, 30).batch_usd()
    assert by_row["1101"][:3] == (2, True, live_batch)
    assert float(by_row["1101"][3]) == pytest.approx(live_usd + PILOT_USAGE[1101].batch_usd())
    assert float(by_row["1101"][4]) == pytest.approx(live_usd)
    assert by_row["1105"][:3] == (2, False, None)  # paid for, not the value
    assert float(by_row["1105"][3]) == pytest.approx(PILOT_USAGE[1105].batch_usd())
    assert p.query(
        "select enrichment, model, prompt_version, first_intent_at "
        "from analytics.int_enrich__live_versions"
    ) == [("ticket_triage", HAIKU, "v1", T0 - dt.timedelta(hours=2))]

    # -- the comparison, field by field -------------------------------------------------
    comparison = _rows(
        p,
        "select cast(key_custom_id as text) || '.' || field, live_value, pilot_value, is_match, "
        "live_prompt_version, pilot_outcome, pilot_failure_type, pilot_attempt "
        "from analytics.enrich_pilot_comparison "
        "where enrichment = %s and pilot_model = %s and pilot_prompt_version = %s",
        PILOT,
    )
    assert set(comparison) == {f"{t}.{f}" for t in range(1101, 1107) for f in FIELDS}
    values = {k: v[:3] for k, v in comparison.items()}
    assert values == {
        "1101.category": ("billing", "billing", True),
        "1101.urgency": ("3", "3.0", True),  # compared as numbers
        "1101.summary": ("Charged twice for March.", "  charged TWICE\n for  march. ", True),
        "1102.category": ("bug", "feature_request", False),  # an enum: exactly
        "1102.urgency": ("4", "2", False),
        "1102.summary": ("Export fails.", "Export fails.", True),
        # invalid, errored, in flight: no pilot value; 1105: no live value
        **{f"1103.{f}": (str(v), None, None) for f, v in zip(FIELDS, LIVE[1103], strict=True)},
        **{f"1104.{f}": (str(v), None, None) for f, v in zip(FIELDS, LIVE[1104], strict=True)},
        "1105.category": (None, "bug", None),
        "1105.urgency": (None, "5", None),
        "1105.summary": (None, "Crash on start.", None),
        **{f"1106.{f}": (None, None, None) for f in FIELDS},
    }
    pilots = {k.split(".")[0]: v[3:] for k, v in comparison.items()}
    assert pilots == {
        "1101": ("v1", "succeeded_valid", None, 1),
        "1102": ("v1", "succeeded_valid", None, 1),
        "1103": ("v1", "succeeded_invalid", "invalid", 1),
        "1104": ("v1", "errored_retryable", "errored", 1),
        "1105": (None, "succeeded_valid", None, 2),  # the latest pilot request
        "1106": (None, "in_flight", None, 1),
    }

    # -- the summary --------------------------------------------------------------------
    summary = _summary(p)
    landed = [
        PILOT_USAGE[1101],
        PILOT_USAGE[1102],
        PILOT_USAGE[1103],
        Usage(0, 0),
        PILOT_USAGE[1105],
    ]
    usd_per_row = sum(u.batch_usd() for u in landed) / 5
    per_pilot = {
        "sampled_rows": 6,
        "landed_rows": 5,
        "valid_rows": 3,
        "validity_rate": 0.6,
        "failed_invalid": 1,
        "failed_truncated": 0,
        "failed_errored": 1,
        "failed_other": 0,
        "in_flight_rows": 1,
        "mean_input_tokens": sum(u.input_tokens for u in landed) / 5,
        "mean_output_tokens": sum(u.output_tokens for u in landed) / 5,
        "usd_per_row": usd_per_row,
        "is_switched": False,
        "is_current_declaration": True,
    }
    agreement = {"category": (2, 1, 0.5), "urgency": (2, 1, 0.5), "summary": (2, 2, 1.0)}
    backlog = p.query(
        "select rows_flagged from analytics.enrich_backlog where enrichment = 'ticket_triage'"
    )[0][0]
    # every ticket but the pilot's valid (1101, 1102, 1105), invalid (no repair on
    # invalid: 1103) and in-flight (1106) ones; 1104 is retried
    assert backlog == 295
    for field in FIELDS:
        row = summary[field]
        for column, expected in per_pilot.items():
            assert row[column] == pytest.approx(expected), (field, column)
        counts = (row["compared_rows"], row["matching_rows"], row["agreement_rate"])
        assert counts == pytest.approx(agreement[field]), field
        assert row["rows_to_switch"] == backlog
        assert row["projected_switch_usd"] == pytest.approx(usd_per_row * backlog)

    # -- the switch: a sync sends v2 ------------------------------------------------------
    switch_line = succeeded("1107", triage("other", 1, "Hello."), Usage(400, 30))
    switch_batch = ledger.add(
        "landed",
        [Request(1107, current[1107], switch_line, "new")],
        T0 + dt.timedelta(days=3),
    )
    rebuild(p, "--select", "int_enrich__results_parsed+", "int_enrich__live_versions+")
    enriched = _rows(
        p,
        "select ticket_id, category, urgency, summary, prompt_version, request_hash, "
        "is_output_current from analytics.ticket_triage__enriched "
        "where ticket_id between 1101 and 1107",
    )
    # the pilot's valid outputs answer the current request: they are the values now
    assert enriched[1101] == (
        "billing",
        3,
        "  charged TWICE\n for  march. ",
        "v2",
        current[1101],
        True,
    )
    assert enriched[1102] == ("feature_request", 2, "Export fails.", "v2", current[1102], True)
    assert enriched[1105] == ("bug", 5, "Crash on start.", "v2", current[1105], True)
    assert enriched[1107] == ("other", 1, "Hello.", "v2", current[1107], True)
    assert enriched[1103] == (*LIVE[1103], "v1", v1_hash(1103), False)  # the pilot was invalid
    current_history = _rows(
        p,
        "select custom_id, batch_id from analytics.enrich_history where is_current",
    )
    assert current_history == {
        "1101": (pilot_batch,),
        "1102": (pilot_batch,),
        "1103": (live_batch,),
        "1104": (live_batch,),
        "1105": (retry_batch,),
        "1107": (switch_batch,),
    }
    values_now = _rows(p, "select key_custom_id, value_batch_id from analytics.enrich_costs_by_row")
    assert values_now["1101"] == (pilot_batch,)
    assert values_now["1105"] == (retry_batch,)
    summary = _summary(p)
    backlog = p.query(
        "select rows_flagged from analytics.enrich_backlog where enrichment = 'ticket_triage'"
    )[0][0]
    assert backlog == 294  # 1107 was sent
    for field in FIELDS:
        assert summary[field]["is_switched"] is True
        assert summary[field]["sampled_rows"] == 6  # 1107 is no pilot row
        assert summary[field]["rows_to_switch"] == backlog
    # the comparison keeps the value live before the switch
    after = _rows(
        p,
        "select cast(key_custom_id as text) || '.' || field, live_value, pilot_value, is_match "
        "from analytics.enrich_pilot_comparison",
    )
    assert after == values


def _summary(p: Pipeline) -> dict[str, dict[str, Any]]:
    columns = [
        "field", "sampled_rows", "landed_rows", "valid_rows", "validity_rate",
        "compared_rows", "matching_rows", "agreement_rate", "failed_invalid",
        "failed_truncated", "failed_errored", "failed_other", "in_flight_rows",
        "mean_input_tokens", "mean_output_tokens", "usd_per_row", "is_switched",
        "is_current_declaration", "rows_to_switch", "projected_switch_usd",
    ]  # fmt: skip
    rows = p.query(
        f"select {', '.join(columns)} from analytics.enrich_pilot_summary "  # noqa: S608
        "where enrichment = %s and pilot_model = %s and pilot_prompt_version = %s",
        PILOT,
    )
    assert len(rows) == len(FIELDS)
    return {
        r[0]: {
            c: float(v) if hasattr(v, "as_tuple") else v for c, v in zip(columns, r, strict=True)
        }
        for r in rows
    }
