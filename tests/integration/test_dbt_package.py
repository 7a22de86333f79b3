"""The dbt package on real Postgres (and DuckDB): ledger DDL, flagging, parsing,
validation, enriched tables, failures, costs and reconciliation.

Each test builds this repository's dbt project (examples included) into a fresh database,
then writes fabricated ledger rows (batches, requests and result lines shaped exactly like
the Message Batches API's) and checks what the models make of them. Expected values are
computed here in Python, independently of the SQL under test.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from harness.dbt_runner import DbtHarness
from harness.postgres import PgDatabase

from connector.custom_id import custom_id_for

REPO = Path(__file__).resolve().parents[2]
ANALYTICS = "analytics"
HAIKU = "claude-haiku-4-5"
SONNET = "claude-sonnet-4-5"
PRICES = {HAIKU: (Decimal(1), Decimal(5)), SONNET: (Decimal(3), Decimal(15))}
T0 = dt.datetime(2026, 4, 1, 9, 0, tzinfo=dt.UTC)


# -- fabricated API lines ------------------------------------------------------------


def _compact(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class Usage:
    input_tokens: int
    output_tokens: int
    cache_5m: int = 0
    cache_1h: int = 0
    cache_read: int = 0

    def as_api(self) -> dict[str, Any]:
        return {
            "input_tokens": self.input_tokens,
            "cache_creation_input_tokens": self.cache_5m + self.cache_1h,
            "cache_read_input_tokens": self.cache_read,
            "cache_creation": {
                "ephemeral_5m_input_tokens": self.cache_5m,
                "ephemeral_1h_input_tokens": self.cache_1h,
            },
            "output_tokens": self.output_tokens,
            "server_tool_use": None,
            "service_tier": "batch",
            "inference_geo": None,
        }

    def batch_cost(self, model: str) -> Decimal:
        """USD at batch prices: half the standard price, cache at 1.25x / 2x / 0.1x input."""
        price_in, price_out = PRICES[model]
        standard = (
            self.input_tokens * price_in
            + self.cache_5m * price_in * Decimal("1.25")
            + self.cache_1h * price_in * 2
            + self.cache_read * price_in * Decimal("0.1")
            + self.output_tokens * price_out
        ) / 1_000_000
        return standard * Decimal("0.5")


def succeeded_line(
    custom_id: str,
    content: list[dict[str, Any]],
    usage: Usage,
    stop_reason: str = "end_turn",
    model: str = HAIKU,
) -> str:
    message = {
        "model": f"{model}-20251001",
        "id": f"msg_01{hashlib.sha256(custom_id.encode()).hexdigest()[:22]}",
        "type": "message",
        "role": "assistant",
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "stop_details": None,
        "usage": usage.as_api(),
        "container": None,
    }
    return _compact({"custom_id": custom_id, "result": {"type": "succeeded", "message": message}})


def text_block(text: str) -> list[dict[str, Any]]:
    return [{"type": "text", "text": text}]


def tool_blocks(name: str, tool_input: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"type": "tool_use", "id": "toolu_01Xf3kq9", "name": name, "input": tool_input}]


def errored_line(custom_id: str, error_type: str, message: str) -> str:
    error = {
        "type": "error",
        "error": {"type": error_type, "message": message},
        "request_id": "req_011C",
    }
    return _compact({"custom_id": custom_id, "result": {"type": "errored", "error": error}})


def bare_line(custom_id: str, result_type: str) -> str:
    return _compact({"custom_id": custom_id, "result": {"type": result_type}})


# -- fabricated ledger ---------------------------------------------------------------


@dataclass
class Request:
    key: dict[str, Any]
    request_hash: str
    input_hash: str | None
    line: str | None  # None: no result line
    attempt: int = 1
    model: str = HAIKU
    prompt_version: str = "v1"
    flag_reason: str = "new"
    max_tokens: int = 300
    shared_with: list[dict[str, Any]] = field(default_factory=list)  # dedupe members' keys

    @property
    def custom_id(self) -> str:
        return custom_id_for(list(self.key.values()))


@dataclass
class Batch:
    enrichment: str
    status: str
    requests: list[Request]
    landed_at: dt.datetime = T0
    submission_id: str = field(default="")
    batch_id: str = field(default="")


class Ledger:
    """Writes batches, requests and result lines the way the connector does."""

    def __init__(self, conninfo: str) -> None:
        self.conninfo = conninfo
        self.count = 0

    def add(self, batch: Batch) -> Batch:
        self.count += 1
        batch.submission_id = f"sub_{self.count:032x}"
        batch.batch_id = f"msgbatch_01TestBatch{self.count:08d}"
        lines = [r for r in batch.requests if r.line is not None]
        types = [json.loads(r.line)["result"]["type"] for r in lines if r.line]
        ended = batch.status in ("ended", "landed")
        counts = [
            types.count(t) if ended else None
            for t in ("succeeded", "errored", "canceled", "expired")
        ]
        if batch.status == "landed" and len(lines) < len(batch.requests):
            # the API counts every request; a line that never landed was still counted
            counts[0] = (counts[0] or 0) + len(batch.requests) - len(lines)
        with psycopg.connect(self.conninfo) as conn:
            conn.execute(
                """insert into enrich.batches (submission_id, batch_id, enrichment, status,
                    request_count, body_bytes, processing_status, succeeded_count, errored_count,
                    canceled_count, expired_count, intent_at, submitted_at, ended_at, landed_at,
                    landed_lines)
                    values (%s, %s, %s, %s, %s, 1000, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
                (
                    batch.submission_id,
                    batch.batch_id,
                    batch.enrichment,
                    batch.status,
                    len(batch.requests),
                    "ended" if ended else "in_progress",
                    *counts,
                    batch.landed_at - dt.timedelta(hours=2),
                    batch.landed_at - dt.timedelta(hours=2),
                    batch.landed_at if ended else None,
                    batch.landed_at if batch.status == "landed" else None,
                    len(lines) if batch.status == "landed" else None,
                ),
            )
            for r in batch.requests:
                conn.execute(
                    """insert into enrich.requests (submission_id, custom_id, enrichment,
                        primary_key, request_hash, input_hash, attempt, flag_reason, model,
                        prompt_version, max_tokens, params_bytes)
                        values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 500)""",
                    (
                        batch.submission_id,
                        r.custom_id,
                        batch.enrichment,
                        _compact(r.key),
                        r.request_hash,
                        r.input_hash,
                        r.attempt,
                        r.flag_reason,
                        r.model,
                        r.prompt_version,
                        r.max_tokens,
                    ),
                )
                for member in r.shared_with:
                    conn.execute(
                        """insert into enrich.shared_keys
                            (submission_id, custom_id, member_custom_id, primary_key)
                            values (%s, %s, %s, %s)""",
                        (
                            batch.submission_id,
                            r.custom_id,
                            custom_id_for(list(member.values())),
                            _compact(member),
                        ),
                    )
            if batch.status == "landed":
                for r in lines:
                    assert r.line is not None
                    conn.execute(
                        """insert into enrich.results_raw
                            (batch_id, custom_id, result_type, line, landed_at)
                            values (%s, %s, %s, %s, %s)""",
                        (
                            batch.batch_id,
                            r.custom_id,
                            json.loads(r.line)["result"]["type"],
                            r.line,
                            batch.landed_at,
                        ),
                    )
        return batch


# -- helpers -------------------------------------------------------------------------


def query(conninfo: str, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(conninfo) as conn:
        return conn.execute(sql, params).fetchall()  # type: ignore[arg-type]


def by_key(rows: Iterable[tuple[Any, ...]]) -> dict[Any, tuple[Any, ...]]:
    return {row[0]: row[1:] for row in rows}


def build(
    dbt: DbtHarness,
    env: Mapping[str, str],
    *args: str,
    expect_fail: bool = False,
    unit_tests: bool = False,
) -> Any:
    """`dbt build` of this repository; the package's unit tests only when asked (they do
    not depend on the data: the first build on each warehouse runs them)."""
    skip = [] if unit_tests else ["--exclude-resource-type", "unit_test"]
    return dbt.invoke(["build", *args, *skip], REPO, REPO, env=env, expect_fail=expect_fail)


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()  # noqa: S324 - the contract's hash


def declaration(dbt: DbtHarness, name: str) -> dict[str, Any]:
    manifest = json.loads((dbt.target_path / "manifest.json").read_text())
    node = manifest["nodes"][f"model.batch_enrich.{name}"]
    decl: dict[str, Any] = node["config"]["meta"]["enrich"]
    return decl


def expected_request_hash(decl: Mapping[str, Any], prompt: str) -> str:
    """The recipe of docs/flagging.md, written out independently of the macro."""
    schema = decl.get("output_schema")
    tool = decl.get("tool")
    parts = [
        "batch_enrich.request.v1",
        f"model={decl['model']}",
        f"max_tokens={decl['max_tokens']}",
        f"system={decl.get('system') or ''}",
        "output_schema=" + (json.dumps(schema, sort_keys=True) if schema is not None else ""),
        "tool=" + (json.dumps(tool, sort_keys=True) if tool is not None else ""),
        f"prompt_version={decl.get('prompt_version', 'v1')}",
        "prompt=",
    ]
    return md5("\x1f".join(parts) + prompt)


def flagged_tickets(conninfo: str) -> dict[int, tuple[Any, ...]]:
    rows = query(
        conninfo,
        "select ticket_id, flag_reason, max_tokens, request_hash, input_hash, prompt "
        "from analytics.ticket_triage__flagged",
    )
    return by_key(rows)


@pytest.fixture
def env(pg_db: PgDatabase) -> dict[str, str]:
    return {**pg_db.env, "BATCH_ENRICH_TARGET": "postgres", "BATCH_ENRICH_SCHEMA": ANALYTICS}


# -- tests ---------------------------------------------------------------------------


def test_fresh_build_creates_the_ledger_and_flags_every_row_as_new(
    pg_db: PgDatabase, dbt: DbtHarness, env: dict[str, str]
) -> None:
    build(dbt, env, unit_tests=True)

    columns = query(
        pg_db.conninfo,
        "select table_name, column_name, data_type from information_schema.columns "
        "where table_schema = 'enrich'",
    )
    tables = {t for t, _, _ in columns}
    assert tables == {
        "ledger_version",
        "batches",
        "requests",
        "results_raw",
        "rejections",
        "shared_keys",
        "deferrals",
        "orphan_batches",
        "batch_tallies",
    }
    types = {(t, c): d for t, c, d in columns}
    assert types[("batches", "marker_custom_id")] == "text"
    assert types[("batches", "create_started_at")] == "timestamp with time zone"
    assert types[("requests", "primary_key")] == "jsonb"
    assert types[("requests", "input_hash")] == "text"
    assert types[("requests", "estimated_usd")] == "double precision"
    assert types[("shared_keys", "primary_key")] == "jsonb"
    assert types[("results_raw", "line")] == "json"
    assert query(pg_db.conninfo, "select version from enrich.ledger_version") == [(6,)]

    # output that is not JSON is parsed by a helper function, also inside queries that
    # Postgres would run in parallel (a parallel-safe function with an exception block
    # fails there with "cannot start subtransactions during a parallel operation")
    with psycopg.connect(pg_db.conninfo) as conn:
        for setting in (
            "force_parallel_mode = on",
            "parallel_setup_cost = 0",
            "parallel_tuple_cost = 0",
            "min_parallel_table_scan_size = 0",
        ):
            conn.execute(f"set {setting}")
        parsed = conn.execute(
            "select count(enrich.try_parse_jsonb(t)), count(*) from ("
            "select case when g % 2 = 0 then '{\"a\": ' || g || '}' else 'not json' end as t "
            "from generate_series(1, 5000) as g) as lines"
        ).fetchone()
    assert parsed == (2500, 5000)

    # the connector's path: run-operation, again and again, changes nothing
    for _ in range(2):
        dbt.invoke(["run-operation", "batch_enrich.ensure_ledger"], REPO, REPO, env=env)
    assert query(pg_db.conninfo, "select version from enrich.ledger_version") == [(6,)]

    decl = declaration(dbt, "ticket_triage")
    flagged = flagged_tickets(pg_db.conninfo)
    assert len(flagged) == 300
    for reason, max_tokens, request_hash, input_hash, prompt in flagged.values():
        assert reason == "new"
        assert max_tokens == 300
        assert input_hash == md5(prompt)
        assert request_hash == expected_request_hash(decl, prompt)

    reviews = query(
        pg_db.conninfo,
        "select product_id, review_id, flag_reason, max_tokens, request_hash, prompt "
        "from analytics.review_aspects__flagged",
    )
    review_decl = declaration(dbt, "review_aspects")
    assert len(reviews) == 150
    assert {r[2] for r in reviews} == {"new"}
    assert all(r[4] == expected_request_hash(review_decl, r[5]) for r in reviews)
    # nothing enriched yet: every input row, no outputs
    enriched = query(
        pg_db.conninfo,
        "select count(*), count(category), count(batch_id) from analytics.ticket_triage__enriched",
    )
    assert enriched == [(300, 0, 0)]


def _ticket_request(
    flagged: Mapping[int, tuple[Any, ...]], ticket: int, line: str | None, **kw: Any
) -> Request:
    _, _, request_hash, input_hash, _ = flagged[ticket]
    return Request(
        key={"ticket_id": ticket},
        request_hash=kw.pop("request_hash", request_hash),
        input_hash=input_hash,
        line=line,
        **kw,
    )


def _triage(category: str, urgency: int, summary: str | None = None) -> str:
    out: dict[str, Any] = {"category": category, "urgency": urgency}
    if summary is not None:
        out["summary"] = summary
    return _compact(out)


USAGE = {
    1001: Usage(412, 38, cache_5m=1000, cache_1h=200, cache_read=2048),
    1002: Usage(405, 30),
    1006: Usage(431, 300),
    1007: Usage(398, 12),
    1009: Usage(420, 22),
    1011: Usage(433, 35, cache_read=512),
    1012: Usage(440, 31),
}


def _first_round(ledger: Ledger, flagged: Mapping[int, tuple[Any, ...]]) -> dict[int, Request]:
    """Requests for tickets 1001-1012 with one outcome of every kind."""
    t = flagged
    cid = str
    reqs = {
        1001: _ticket_request(
            t,
            1001,
            succeeded_line(
                cid(1001),
                text_block(
                    _triage(
                        "billing", 3, "Charged twice for the Team plan in March; wants a refund."
                    )
                ),
                USAGE[1001],
            ),
        ),
        1002: _ticket_request(
            t,
            1002,
            succeeded_line(
                cid(1002), text_block(_triage("spam", 2, "Unsolicited offer.")), USAGE[1002]
            ),
        ),
        1003: _ticket_request(
            t, 1003, errored_line(cid(1003), "api_error", "Internal server error")
        ),
        1004: _ticket_request(
            t,
            1004,
            errored_line(
                cid(1004), "invalid_request_error", "system: text content blocks must be non-empty"
            ),
        ),
        1005: _ticket_request(t, 1005, bare_line(cid(1005), "expired")),
        1006: _ticket_request(
            t,
            1006,
            succeeded_line(
                cid(1006),
                text_block(
                    '{"category":"bug","urgency":5,"summary":"Exports hang at 99% for every'
                ),
                USAGE[1006],
                stop_reason="max_tokens",
            ),
        ),
        1007: _ticket_request(
            t,
            1007,
            succeeded_line(
                cid(1007), text_block("I'm sorry, I can't classify this ticket."), USAGE[1007]
            ),
        ),
        1008: _ticket_request(t, 1008, bare_line(cid(1008), "canceled")),
        1009: _ticket_request(
            t, 1009, succeeded_line(cid(1009), text_block(_triage("bug", 4)), USAGE[1009])
        ),
    }
    ledger.add(Batch("ticket_triage", "landed", list(reqs.values())))
    # 1010: submitted, not ended: in flight
    reqs[1010] = _ticket_request(t, 1010, None)
    ledger.add(Batch("ticket_triage", "submitted", [reqs[1010]]))
    # 1011 answered by another model, 1012 under an older prompt_version: both valid
    reqs[1011] = _ticket_request(
        t,
        1011,
        succeeded_line(
            cid(1011), text_block(_triage("bug", 5, "SSO login loop.")), USAGE[1011], model=SONNET
        ),
        model=SONNET,
        request_hash=md5("an older request for 1011"),
    )
    reqs[1012] = _ticket_request(
        t,
        1012,
        succeeded_line(
            cid(1012),
            text_block(_triage("account", 2, "Password reset mail missing.")),
            USAGE[1012],
        ),
        prompt_version="v0",
        request_hash=md5("an older request for 1012"),
    )
    ledger.add(
        Batch(
            "ticket_triage", "landed", [reqs[1011], reqs[1012]], landed_at=T0 + dt.timedelta(days=1)
        )
    )
    return reqs


def test_lifecycle_flags_parses_validates_enriches_and_costs(
    pg_db: PgDatabase, dbt: DbtHarness, env: dict[str, str]
) -> None:
    build(dbt, env)
    db = pg_db.conninfo
    ledger = Ledger(db)
    flagged_before = flagged_tickets(db)
    reqs = _first_round(ledger, flagged_before)

    # the flagged view reads the ledger live: the in-flight ticket and every landed ticket
    # (not classified until the next build) are held back right away
    live = flagged_tickets(db)
    assert set(range(1001, 1013)).isdisjoint(live)
    assert len(live) == 288

    review_key = {"product_id": "P-1001", "review_id": 1}
    review_flagged = by_key(
        query(
            db,
            "select product_id || '/' || review_id, request_hash, input_hash "
            "from analytics.review_aspects__flagged where product_id = 'P-1001' and review_id = 1",
        )
    )
    review_hash, review_input_hash = review_flagged["P-1001/1"]
    aspects = {
        "aspects": [
            {"aspect": "comfort", "sentiment": "positive"},
            {"aspect": "price", "sentiment": "negative"},
        ]
    }
    review = Request(
        key=review_key,
        request_hash=review_hash,
        input_hash=review_input_hash,
        max_tokens=400,
        line="",
    )
    review.line = succeeded_line(
        review.custom_id,
        [
            {"type": "text", "text": "Recording the aspects."},
            *tool_blocks("record_aspects", aspects),
        ],
        Usage(655, 61),
        stop_reason="tool_use",
    )
    ledger.add(Batch("review_aspects", "landed", [review]))

    build(dbt, env)

    flagged = flagged_tickets(db)
    assert {k: flagged[k][0] for k in range(1001, 1014) if k in flagged} == {
        1003: "retry",  # api_error
        1005: "retry",  # expired
        1006: "repair",  # max_tokens, repair.on_max_tokens
        1008: "retry",  # canceled
        1011: "model_changed",
        1012: "prompt_changed",
        1013: "new",
    }
    # not flagged: 1001 valid, 1002 invalid (no on_invalid), 1004 invalid_request_error,
    # 1007 not JSON, 1009 missing key, 1010 in flight
    assert len(flagged) == 294
    assert flagged[1006][1] == 600  # 300 x max_tokens_multiplier 2
    assert flagged[1003][1] == 300
    assert flagged[1003][2] == reqs[1003].request_hash  # a retry repeats the same request

    outcomes = by_key(
        query(
            db,
            "select (primary_key ->> 'ticket_id')::int, outcome from "
            "analytics.int_enrich__request_outcomes where enrichment = 'ticket_triage'",
        )
    )
    assert {k: v[0] for k, v in outcomes.items()} == {
        1001: "succeeded_valid",
        1002: "succeeded_invalid",
        1003: "errored_retryable",
        1004: "errored_terminal",
        1005: "expired",
        1006: "truncated",
        1007: "succeeded_invalid",
        1008: "canceled",
        1009: "succeeded_invalid",
        1010: "in_flight",
        1011: "succeeded_valid",
        1012: "succeeded_valid",
    }

    _check_enriched(db, reqs)
    _check_review_enriched(db, review, aspects)
    _check_failures(db)
    _check_costs(db, reqs, review)
    _check_reconciliation_and_history(db)

    # -- retries run out; a retry that succeeds resolves the failure ----------------
    ledger.add(
        Batch(
            "ticket_triage",
            "landed",
            [
                _ticket_request(
                    flagged_before,
                    1003,
                    errored_line("1003", "overloaded_error", "Overloaded"),
                    attempt=2,
                    flag_reason="retry",
                ),
                _ticket_request(
                    flagged_before,
                    1005,
                    succeeded_line(
                        "1005",
                        text_block(_triage("feature_request", 1, "Asks for dark mode.")),
                        Usage(300, 20),
                    ),
                    attempt=2,
                    flag_reason="retry",
                ),
            ],
            landed_at=T0 + dt.timedelta(days=2),
        )
    )
    ledger.add(
        Batch(
            "ticket_triage",
            "landed",
            [
                _ticket_request(
                    flagged_before,
                    1003,
                    errored_line("1003", "api_error", "Internal server error"),
                    attempt=3,
                    flag_reason="retry",
                ),
            ],
            landed_at=T0 + dt.timedelta(days=3),
        )
    )
    build(dbt, env)
    flagged = flagged_tickets(db)
    assert 1003 not in flagged  # three attempts for the same request hash: exhausted
    assert 1005 not in flagged
    resolved = by_key(
        query(
            db,
            "select attempt, is_resolved_later from analytics.enrich_failures "
            "where enrichment = 'ticket_triage' and primary_key ->> 'ticket_id' = '1005'",
        )
    )
    assert resolved == {1: (True,)}
    category = query(
        db,
        "select category, attempt from analytics.ticket_triage__enriched where ticket_id = 1005",
    )
    assert category == [("feature_request", 2)]

    # -- the input changes: flagged at once (the flagged view is live) ----------------
    with psycopg.connect(db) as conn:
        conn.execute(
            "update analytics.example_support_tickets "
            "set body = body || ' Update: still happening today.' where ticket_id = 1001"
        )
    flagged = flagged_tickets(db)
    assert flagged[1001][0] == "input_changed"
    assert flagged[1001][2] != reqs[1001].request_hash
    # rebuild without reloading the seeds: the enriched row keeps its output, marked stale
    build(dbt, env, "--exclude", "resource_type:seed")
    stale = query(
        db,
        "select category, request_hash, is_output_current from analytics.ticket_triage__enriched "
        "where ticket_id = 1001",
    )
    assert stale == [("billing", reqs[1001].request_hash, False)]


def _check_enriched(db: str, reqs: Mapping[int, Request]) -> None:
    rows = by_key(
        query(
            db,
            "select ticket_id, category, urgency, summary, batch_id, custom_id, model, "
            "prompt_version, request_hash, attempt, landed_at, is_output_current "
            "from analytics.ticket_triage__enriched "
            "where ticket_id between 1001 and 1013",
        )
    )
    first_batch = "msgbatch_01TestBatch00000001"
    assert rows[1001] == (
        "billing",
        3,
        "Charged twice for the Team plan in March; wants a refund.",
        first_batch,
        "1001",
        HAIKU,
        "v1",
        reqs[1001].request_hash,
        1,
        T0,
        True,
    )
    # 1011 and 1012 keep their earlier valid outputs until the new request lands
    assert rows[1011][:3] == ("bug", 5, "SSO login loop.")
    assert rows[1011][5:7] == (SONNET, "v1") and rows[1011][-1] is False
    assert rows[1012][5:7] == (HAIKU, "v0") and rows[1012][-1] is False
    for ticket in (1002, 1003, 1004, 1005, 1006, 1007, 1008, 1009, 1010, 1013):
        assert rows[ticket] == (None,) * 11, ticket
    assert query(db, "select count(*) from analytics.ticket_triage__enriched") == [(300,)]
    types = dict(
        query(
            db,
            "select column_name, data_type from information_schema.columns "
            "where table_schema = 'analytics' and table_name = 'ticket_triage__enriched'",
        )
    )
    assert types["urgency"] == "bigint"
    assert types["category"] == "text"


def _check_review_enriched(db: str, review: Request, aspects: Mapping[str, Any]) -> None:
    rows = query(
        db,
        "select aspects, custom_id, request_hash from analytics.review_aspects__enriched "
        "where product_id = 'P-1001' and review_id = 1",
    )
    assert rows == [(aspects["aspects"], review.custom_id, review.request_hash)]
    assert review.custom_id.startswith("be-")  # a composite key is encoded, then mapped back
    assert query(db, "select count(aspects) from analytics.review_aspects__enriched") == [(1,)]


def _check_failures(db: str) -> None:
    rows = by_key(
        query(
            db,
            "select (primary_key ->> 'ticket_id')::int, failure_type, failure_reason, batch_id, "
            "attempt, "
            "is_retryable from analytics.enrich_failures where enrichment = 'ticket_triage'",
        )
    )
    reasons = {k: (v[0], v[1]) for k, v in rows.items()}
    assert reasons == {
        1002: ("succeeded_invalid", "$.category: 'spam' not in enum"),
        1003: ("errored_retryable", "errored: api_error: Internal server error"),
        1004: (
            "errored_terminal",
            "errored: invalid_request_error: system: text content blocks must be non-empty",
        ),
        1005: ("expired", "expired: the batch ended before the request was processed"),
        1006: ("truncated", "truncated at max_tokens"),
        1007: ("succeeded_invalid", "output is not JSON"),
        1008: ("canceled", "canceled: the batch was canceled before the request was processed"),
        1009: ("succeeded_invalid", "$: missing required key summary"),
    }
    assert {v[2] for v in rows.values()} == {"msgbatch_01TestBatch00000001"}
    assert {v[3] for v in rows.values()} == {1}
    assert {k for k, v in rows.items() if v[4]} == {1003, 1005, 1008}


def _check_costs(db: str, reqs: Mapping[int, Request], review: Request) -> None:
    rows = by_key(
        query(
            db,
            "select custom_id, total_usd, input_tokens, output_tokens, has_price "
            "from analytics.enrich_costs",
        )
    )
    expected = {str(k): u.batch_cost(SONNET if k == 1011 else HAIKU) for k, u in USAGE.items()}
    expected[review.custom_id] = Usage(655, 61).batch_cost(HAIKU)
    for custom_id, cost in expected.items():
        assert rows[custom_id][0] == pytest.approx(cost, abs=Decimal("1e-12")), custom_id
        assert rows[custom_id][3] is True
    # errored, expired, canceled and in-flight requests cost nothing
    for ticket in (1003, 1004, 1005, 1008, 1010):
        assert rows[str(ticket)][0] == 0
    # 1001: 412 in, 1000 5m writes, 200 1h writes, 2048 reads, 38 out at haiku 1/5, halved
    assert rows["1001"][0] == pytest.approx(Decimal("0.0012284"), abs=Decimal("1e-12"))
    daily = query(
        db,
        "select cost_date, sum(total_usd) from analytics.enrich_costs_daily "
        "where enrichment = 'ticket_triage' group by cost_date order by cost_date",
    )
    day_one = sum(
        c for k, c in expected.items() if k in {str(t) for t in (1001, 1002, 1006, 1007, 1009)}
    )
    day_two = expected["1011"] + expected["1012"]
    assert [d for d, _ in daily] == [T0.date(), (T0 + dt.timedelta(days=1)).date()]
    assert daily[0][1] == pytest.approx(day_one, abs=Decimal("1e-12"))
    assert daily[1][1] == pytest.approx(day_two, abs=Decimal("1e-12"))


def _check_reconciliation_and_history(db: str) -> None:
    recon = query(
        db,
        "select batch_status, request_count, api_result_count, line_count, requests_with_outcome, "
        "is_reconciled from analytics.enrich_reconciliation order by submission_id",
    )
    assert recon == [
        ("landed", 9, 9, 9, 9, True),
        ("submitted", 1, None, 0, 0, False),
        ("landed", 2, 2, 2, 2, True),
        ("landed", 1, 1, 1, 1, True),
    ]
    history = query(
        db,
        "select custom_id, is_current from analytics.enrich_history "
        "where enrichment = 'ticket_triage' order by custom_id",
    )
    assert history == [("1001", True), ("1011", True), ("1012", True)]


def test_missing_line_fails_reconciliation_and_is_retried(
    pg_db: PgDatabase, dbt: DbtHarness, env: dict[str, str]
) -> None:
    build(dbt, env)
    flagged = flagged_tickets(pg_db.conninfo)
    ok = _ticket_request(
        flagged,
        1020,
        succeeded_line("1020", text_block(_triage("other", 1, "Thanks.")), Usage(100, 10)),
    )
    lost_line = _ticket_request(flagged, 1021, None)
    Ledger(pg_db.conninfo).add(Batch("ticket_triage", "landed", [ok, lost_line]))

    result = build(dbt, env, expect_fail=True)
    failed = [r.node.name for r in result.result.results if str(r.status) in {"fail", "error"}]
    assert failed == ["assert_landed_requests_have_one_outcome"]

    flagged = flagged_tickets(pg_db.conninfo)
    assert flagged[1021][0] == "retry"
    assert 1020 not in flagged
    reason = query(
        pg_db.conninfo,
        "select failure_type, failure_reason from analytics.enrich_failures "
        "where custom_id = '1021'",
    )
    assert reason == [("missing", "the batch landed without a result line for this custom_id")]


def test_a_changed_declaration_revalidates_earlier_results(
    pg_db: PgDatabase, dbt: DbtHarness, env: dict[str, str]
) -> None:
    build(dbt, env)
    flagged = flagged_tickets(pg_db.conninfo)
    Ledger(pg_db.conninfo).add(
        Batch(
            "ticket_triage",
            "landed",
            [
                _ticket_request(
                    flagged,
                    1030,
                    succeeded_line(
                        "1030", text_block(_triage("billing", 2, "Refund.")), Usage(90, 9)
                    ),
                ),
            ],
        )
    )
    build(dbt, env)
    valid = "select is_valid, invalid_reason from analytics.int_enrich__results_validated"
    assert query(pg_db.conninfo, valid) == [(True, None)]

    # same rows, a narrower enum: the incremental model must validate them again
    decl = declaration(dbt, "ticket_triage")
    decl["output_schema"]["properties"]["category"]["enum"] = ["bug", "other"]
    overrides = json.dumps({"batch_enrich_declarations": {"ticket_triage": decl}})
    dbt.invoke(
        ["run", "-s", "int_enrich__results_validated", "--vars", overrides], REPO, REPO, env=env
    )
    assert query(pg_db.conninfo, valid) == [(False, "$.category: 'billing' not in enum")]


def _same_ticket_text(db: str, source: int, copies: Sequence[int]) -> None:
    """Give the tickets `copies` the subject and body of `source`: identical requests."""
    with psycopg.connect(db) as conn:
        conn.execute(
            "update analytics.example_support_tickets as t "
            "set subject = s.subject, body = s.body "
            "from analytics.example_support_tickets as s "
            "where s.ticket_id = %s and t.ticket_id = any(%s)",
            (source, list(copies)),
        )


def test_dedupe_a_shared_request_serves_every_member(
    pg_db: PgDatabase, dbt: DbtHarness, env: dict[str, str]
) -> None:
    build(dbt, env)
    db = pg_db.conninfo
    _same_ticket_text(db, 1040, [1041, 1042])
    _same_ticket_text(db, 1050, [1051])
    _same_ticket_text(db, 1060, [1061])
    flagged = flagged_tickets(db)
    assert flagged[1041][2] == flagged[1042][2] == flagged[1040][2]
    ledger = Ledger(db)
    # 1041 had a request of its own first, which expired
    ledger.add(
        Batch(
            "ticket_triage",
            "landed",
            [_ticket_request(flagged, 1041, bare_line("1041", "expired"))],
            landed_at=T0 - dt.timedelta(days=1),
        )
    )
    usage = Usage(420, 33, cache_read=1024)
    sent = _ticket_request(
        flagged,
        1040,
        succeeded_line("1040", text_block(_triage("bug", 4, "Exports fail.")), usage),
        shared_with=[{"ticket_id": 1041}, {"ticket_id": 1042}],
    )
    errored = _ticket_request(
        flagged,
        1060,
        errored_line("1060", "overloaded_error", "Overloaded"),
        shared_with=[{"ticket_id": 1061}],
    )
    landed = ledger.add(Batch("ticket_triage", "landed", [sent, errored]))
    in_flight = _ticket_request(flagged, 1050, None, shared_with=[{"ticket_id": 1051}])
    ledger.add(Batch("ticket_triage", "submitted", [in_flight]))

    # the flagged view reads the ledger live: every key a request serves is held back
    served = {1040, 1041, 1042, 1050, 1051, 1060, 1061}
    assert served.isdisjoint(flagged_tickets(db))

    build(dbt, env, "--exclude", "resource_type:seed")  # keep the identical texts
    flagged = flagged_tickets(db)
    # shared success: valid; shared in flight: held back; shared failure: both retried
    assert {k: flagged[k][0] for k in served if k in flagged} == {1060: "retry", 1061: "retry"}
    assert flagged[1061][2] == errored.request_hash

    keys = query(
        db,
        "select custom_id, member_custom_id, is_shared_result "
        "from analytics.stg_enrich_ledger__request_keys order by 1, 2",
    )
    assert keys == [
        ("1040", "1040", False),
        ("1040", "1041", True),
        ("1040", "1042", True),
        ("1041", "1041", False),
        ("1050", "1050", False),
        ("1050", "1051", True),
        ("1060", "1060", False),
        ("1060", "1061", True),
    ]

    enriched = by_key(
        query(
            db,
            "select ticket_id, category, summary, batch_id, custom_id, request_hash, attempt, "
            "is_output_current, is_shared_result from analytics.ticket_triage__enriched "
            "where ticket_id between 1040 and 1062",
        )
    )
    value = ("bug", "Exports fail.", landed.batch_id, "1040", sent.request_hash, 1, True)
    assert enriched[1040] == (*value, False)
    assert enriched[1041] == (*value, True)
    assert enriched[1042] == (*value, True)
    assert {k for k, v in enriched.items() if v[0] is not None} == {1040, 1041, 1042}
    assert query(db, "select count(*) from analytics.ticket_triage__enriched") == [(300,)]

    # reconciliation and failures count API requests, not the keys they served
    recon = query(
        db,
        "select request_count, ledger_request_rows, api_result_count, line_count, "
        "requests_with_outcome, is_reconciled from analytics.enrich_reconciliation "
        "order by submission_id",
    )
    assert recon == [(1, 1, 1, 1, 1, True), (2, 2, 2, 2, 2, True), (1, 1, None, 0, 0, False)]
    failures = query(
        db,
        "select custom_id, failure_type, is_resolved_later from analytics.enrich_failures "
        "order by custom_id",
    )
    # 1041's own expired request was resolved by the result it shared later
    assert failures == [("1041", "expired", True), ("1060", "errored_retryable", False)]
    history = query(db, "select custom_id, is_current from analytics.enrich_history")
    assert history == [("1040", True)]

    # cost: a shared request is split evenly among the keys it served, sender included
    cost = usage.batch_cost(HAIKU)
    costs = by_key(query(db, "select custom_id, total_usd, shared_by from analytics.enrich_costs"))
    assert costs["1040"][0] == pytest.approx(cost, abs=Decimal("1e-12"))
    assert {k: v[1] for k, v in costs.items()} == {"1040": 3, "1041": 1, "1050": 2, "1060": 2}
    by_row = by_key(
        query(
            db,
            "select key_custom_id, request_count, shared_request_count, total_usd, value_usd, "
            "value_custom_id, is_value_shared, value_shared_by from analytics.enrich_costs_by_row",
        )
    )
    assert set(by_row) == {"1040", "1041", "1042", "1050", "1051", "1060", "1061"}
    for key, requests, shared in (("1040", 1, 0), ("1041", 2, 1), ("1042", 1, 1)):
        count, shared_count, total, value_usd, *value_request = by_row[key]
        assert (count, shared_count) == (requests, shared), key
        assert total == pytest.approx(cost / 3, abs=Decimal("1e-12")), key
        assert value_usd == pytest.approx(cost / 3, abs=Decimal("1e-12")), key
        assert value_request == ["1040", key != "1040", 3], key
    assert by_row["1061"] == (1, 1, 0, None, None, None, None)
    assert by_row["1051"][:2] == (1, 1)
    total_by_row = query(db, "select sum(total_usd) from analytics.enrich_costs_by_row")[0][0]
    total = query(db, "select sum(total_usd) from analytics.enrich_costs")[0][0]
    assert total_by_row == pytest.approx(total, abs=Decimal("1e-12"))

    # attempts: a row counts the requests that served it, whoever sent them
    _same_ticket_text(db, 1060, [1062])  # 1062 now asks the same as 1060 and 1061
    ledger.add(
        Batch(
            "ticket_triage",
            "landed",
            [
                _ticket_request(
                    flagged,
                    1060,
                    errored_line("1060", "api_error", "Internal server error"),
                    attempt=2,
                    flag_reason="retry",
                    shared_with=[{"ticket_id": 1061}],
                )
            ],
            landed_at=T0 + dt.timedelta(days=1),
        )
    )
    ledger.add(
        Batch(
            "ticket_triage",
            "landed",
            [
                _ticket_request(
                    flagged,
                    1061,
                    bare_line("1061", "expired"),
                    attempt=3,
                    flag_reason="retry",
                    shared_with=[{"ticket_id": 1060}, {"ticket_id": 1062}],
                )
            ],
            landed_at=T0 + dt.timedelta(days=2),
        )
    )
    build(dbt, env, "--exclude", "resource_type:seed")
    flagged = flagged_tickets(db)
    # 1060 and 1061: three requests each (max_attempts 3); 1062 shared one, attempt 3 of
    # its sender, and may still be retried
    assert {k: flagged[k][0] for k in (1060, 1061, 1062) if k in flagged} == {1062: "retry"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"primary_key": None}, "config.meta.enrich.primary_key is required"),
        ({"max_tokens": "lots"}, "config.meta.enrich.max_tokens must be an integer"),
        (
            {"tool": {"name": "t", "input_schema": {"type": "object"}}},
            "declares both output_schema and tool",
        ),
        (
            {"repair": {"on_truncation": True}},
            "config.meta.enrich.repair.on_truncation is not a repair key",
        ),
        ({"primry_key": "ticket_id"}, "config.meta.enrich.primry_key is not a declaration key"),
    ],
)
def test_a_bad_declaration_is_left_out_of_the_shared_model_naming_model_and_key(
    pg_db: PgDatabase, dbt: DbtHarness, env: dict[str, str], change: dict[str, Any], message: str
) -> None:
    """The shared validation model compiles without it and says why (its own models fail:
    tests/integration/test_declaration_isolation.py)."""
    decl: dict[str, Any] = {
        "primary_key": "ticket_id",
        "model": HAIKU,
        "max_tokens": 300,
        "output_schema": {"type": "object", "properties": {"a": {"type": "string"}}},
    }
    decl.update(change)
    decl = {k: v for k, v in decl.items() if v is not None}
    overrides = json.dumps({"batch_enrich_declarations": {"bad_triage": decl}})
    dbt.invoke(
        ["compile", "-s", "int_enrich__results_validated", "--vars", overrides], REPO, REPO, env=env
    )
    said = "\n".join(dbt.messages)
    assert "left out, invalid declaration: model 'bad_triage'" in said
    assert message in said
    compiled = next(dbt.target_path.rglob("int_enrich__results_validated.sql")).read_text()
    assert "bad_triage is invalid" in compiled


def test_build_on_duckdb(tmp_path: Path, dbt: DbtHarness) -> None:
    duckdb = pytest.importorskip("duckdb")
    # (not "enrich.duckdb": DuckDB names the catalog after the file, which then clashes
    # with the ledger schema "enrich")
    path = tmp_path / "warehouse.duckdb"
    env = {"BATCH_ENRICH_TARGET": "duckdb", "BATCH_ENRICH_DUCKDB_PATH": str(path)}
    build(dbt, env, unit_tests=True)

    decl = declaration(dbt, "ticket_triage")
    prompt = "Subject: Charged twice for March\n\nHi, I was billed twice."
    with duckdb.connect(str(path)) as conn:
        row = conn.execute(
            "select request_hash, prompt from analytics.ticket_triage__flagged "
            "where ticket_id = 1001"
        ).fetchone()
        assert row is not None
        request_hash, prompt = row
        assert request_hash == expected_request_hash(decl, prompt)
        line = succeeded_line(
            "1001", text_block(_triage("billing", 6, "Charged twice.")), Usage(400, 30)
        )
        conn.execute(
            "insert into enrich.batches (submission_id, batch_id, enrichment, status, "
            "request_count, "
            "body_bytes, succeeded_count, errored_count, canceled_count, expired_count, intent_at, "
            "landed_at, landed_lines) values ('sub_1', 'msgbatch_1', 'ticket_triage', 'landed', "
            "1, 10, "
            "1, 0, 0, 0, now(), now(), 1)"
        )
        conn.execute(
            "insert into enrich.requests (submission_id, custom_id, enrichment, primary_key, "
            "request_hash, input_hash, attempt, flag_reason, model, prompt_version, max_tokens, "
            "params_bytes) values ('sub_1', '1001', 'ticket_triage', '{\"ticket_id\":1001}', "
            "?, ?, 1, 'new', 'claude-haiku-4-5', 'v1', 300, 500)",
            [request_hash, md5(prompt)],
        )
        conn.execute(
            "insert into enrich.results_raw values ('msgbatch_1', '1001', 'succeeded', ?, now())",
            [line],
        )
        # dedupe: ticket 1002 asks exactly what 1001 asks and shares its request
        conn.execute(
            "update analytics.example_support_tickets as t set subject = s.subject, body = s.body "
            "from analytics.example_support_tickets as s "
            "where s.ticket_id = 1001 and t.ticket_id = 1002"
        )
        conn.execute(
            "insert into enrich.shared_keys values ('sub_1', '1001', '1002', ?)",
            [_compact({"ticket_id": 1002})],
        )
    build(dbt, env, "--exclude", "resource_type:seed")
    with duckdb.connect(str(path)) as conn:
        failure = conn.execute(
            "select failure_reason from analytics.enrich_failures where custom_id = '1001'"
        ).fetchall()
        assert failure == [("$.urgency: 6 is above maximum 5",)]
        count = conn.execute("select count(*) from analytics.ticket_triage__flagged").fetchone()
        assert count == (298,)
        cost = conn.execute("select total_usd, shared_by from analytics.enrich_costs").fetchone()
        assert cost is not None
        assert float(cost[0]) == pytest.approx(float(Usage(400, 30).batch_cost(HAIKU)))
        assert cost[1] == 2
        by_row = conn.execute(
            "select key_custom_id, request_count, shared_request_count, total_usd, has_value "
            "from analytics.enrich_costs_by_row order by 1"
        ).fetchall()
        assert [r[:3] + r[4:] for r in by_row] == [("1001", 1, 0, False), ("1002", 1, 1, False)]
        assert [float(r[3]) for r in by_row] == pytest.approx([float(cost[0]) / 2] * 2)
