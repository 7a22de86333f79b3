"""Postgres after every build: the tables the flagged views read have statistics when
`dbt build` ends (macros/analyze.sql), so the connector's read of a flagged view right
after the build is planned on real row counts, not on a guess of a few rows.

Checked on the plan and on the statistics, never on a timing (bench/bench_flagged_read.py
prints the time). Cost: one project of 60,000 input rows and 50,000 landed requests,
filled by bulk SQL, and one `dbt build` without tests; Postgres only (DuckDB keeps its
statistics as it writes).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from harness.enrich_project import (
    KEY_TYPES,
    create_source,
    default_declaration,
    write_project,
)
from harness.warehouses import PostgresWarehouse, Warehouse

from connector.dbt_invoke import run_dbt

REQUESTED = 50_000  # keys with a landed, valid result: not flagged
NEW = 10_000  # keys never requested: flagged `new`
# the tables behind the flagged view (macros/flagged.sql) that grow with the ledger
BIG = {"int_enrich__request_outcomes", "requests", "shared_keys", "results_raw", "items_src"}
# stats reach pg_stat_user_tables when the writing session reports them (within about a
# second); a hang guard, generous so that a busy machine never trips it
STATS_GUARD_SECONDS = 900

LEDGER = [
    """
    insert into enrich.batches (submission_id, batch_id, enrichment, status, request_count,
        body_bytes, processing_status, succeeded_count, errored_count, canceled_count,
        expired_count, intent_at, submitted_at, ended_at, landed_at, landed_lines)
    values ('sub_analyze', 'msgbatch_analyze', 'items', 'landed', %(n)s, 1000, 'ended',
        %(n)s, 0, 0, 0, now(), now(), now(), now(), %(n)s)
    """,
    """
    insert into enrich.requests (submission_id, custom_id, enrichment, primary_key,
        request_hash, input_hash, attempt, flag_reason, model, prompt_version, max_tokens,
        params_bytes)
    select 'sub_analyze', cast(item_id as text), 'items', jsonb_build_object('item_id', item_id),
        request_hash, input_hash, 1, 'new', 'claude-haiku-4-5', 'v1', 200, 400
    from analytics.items__flagged
    where item_id < %(n)s
    """,
    """
    insert into enrich.results_raw (batch_id, custom_id, result_type, line, landed_at)
    select 'msgbatch_analyze', cast(i as text), 'succeeded', cast(json_build_object(
        'custom_id', cast(i as text),
        'result', json_build_object('type', 'succeeded', 'message', json_build_object(
            'id', 'msg_analyze', 'type', 'message', 'role', 'assistant',
            'model', 'claude-haiku-4-5', 'stop_reason', 'end_turn',
            'content', json_build_array(json_build_object(
                'type', 'text', 'text', '{"label": "good", "score": 4}')),
            'usage', json_build_object('input_tokens', 100, 'output_tokens', 10))))
        as json), now()
    from generate_series(0, %(n)s - 1) as t(i)
    """,
]


def _nested_loops_over_big_scans(plan: dict[str, Any]) -> list[str]:
    """Every nested loop whose inner side scans a big table in full."""
    found: list[str] = []
    children = plan.get("Plans", [])
    if plan["Node Type"] == "Nested Loop" and len(children) == 2:
        found += [f"nested loop over a seq scan of {name}" for name in _seq_scans(children[1])]
    for child in children:
        found += _nested_loops_over_big_scans(child)
    return found


def _seq_scans(plan: dict[str, Any]) -> list[str]:
    own = [plan["Relation Name"]] if plan["Node Type"] == "Seq Scan" else []
    return [n for n in own if n in BIG] + [n for c in plan.get("Plans", []) for n in _seq_scans(c)]


def _analyzed_since(conninfo: str, since: object) -> set[str]:
    """Tables analyzed by hand (not by autovacuum, counted apart) since `since`."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        rows = conn.execute(
            "select relname from pg_stat_user_tables "
            "where schemaname in ('analytics', 'enrich') and last_analyze > %s",
            (since,),
        ).fetchall()
    return {str(name) for (name,) in rows}


@pytest.mark.parametrize("warehouse_kind", ["postgres"], indirect=True)
def test_flagged_view_is_planned_on_statistics_right_after_dbt_build(
    warehouse: Warehouse, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert isinstance(warehouse, PostgresWarehouse)
    conninfo = warehouse.db.conninfo
    for key, value in warehouse.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    project = write_project(tmp_path, {"items": default_declaration()})
    # the package's own flagging, as a user's project has it
    (project / "models" / "items__flagged.sql").write_text(
        "{{ config(materialized='view') }}\n{{ batch_enrich.flagged('items') }}\n"
    )
    rows = [(i, f"Item {i}: a widget") for i in range(REQUESTED + NEW)]
    create_source(conninfo, "items", rows, KEY_TYPES["items"])
    run_dbt(["deps"], project, project, None)
    # the loop: a first build (the ledger is empty: every row is new) ...
    run_dbt(["run", "--select", "+items__flagged"], project, project, None)
    # ... a sync that landed 50,000 valid results, for the hashes the view computed:
    # written a moment ago, not analyzed since
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for text in LEDGER:
            conn.execute(text, {"n": REQUESTED})  # type: ignore[arg-type]

    with psycopg.connect(conninfo, autocommit=True) as conn:
        (before_build,) = conn.execute("select clock_timestamp()").fetchone() or (None,)
    run_dbt(
        ["build", "--exclude-resource-type", "unit_test", "--exclude-resource-type", "test"],
        project,
        project,
        None,
    )

    # the analyze ran, in the build (a manual analyze: autovacuum counts apart)
    wanted = {"int_enrich__request_outcomes", "requests", "batches", "results_raw"}
    deadline = time.monotonic() + STATS_GUARD_SECONDS
    analyzed = _analyzed_since(conninfo, before_build)
    while not wanted <= analyzed and time.monotonic() < deadline:
        time.sleep(0.2)
        analyzed = _analyzed_since(conninfo, before_build)
    assert wanted - analyzed == set()

    with psycopg.connect(conninfo, autocommit=True) as conn:
        (estimate,) = conn.execute(
            "select reltuples from pg_class where oid = 'analytics.int_enrich__request_outcomes'"
            "::regclass"
        ).fetchone() or (None,)
        (plan,) = conn.execute(
            "explain (format json) select * from analytics.items__flagged"
        ).fetchone() or (None,)
        flagged = conn.execute(
            "select flag_reason, count(*) from analytics.items__flagged group by flag_reason"
        ).fetchall()
    assert estimate == pytest.approx(REQUESTED, rel=0.1)
    tree = plan if isinstance(plan, list) else json.loads(plan)
    assert _nested_loops_over_big_scans(tree[0]["Plan"]) == []
    # the keys with a request are not flagged (their result is valid); the others are new
    assert dict(flagged) == {"new": NEW}
