"""The submit's per-chunk ledger check (queries.HISTORY) looks rows up by key: its cost
must not grow with the ledger (it read every request of the enrichment per chunk, which
made a million-row submit on Postgres quadratic: 262 s of server CPU, bench_e2e.py).
At 300,000 requests one chunk's check took 431 ms before, 16 ms by key (EXPLAIN
ANALYZE, this machine)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest
from harness.warehouses import PostgresWarehouse, Warehouse

from connector.ledger import queries as q
from connector.ledger.params import history_params
from connector.settings import Settings
from connector.sync import opened, sync

LEDGER_ROWS = 200_000  # the planner picks the key lookup from about here on
CHUNK = 2_000

FILL = """
insert into enrich.batches (submission_id, batch_id, enrichment, status, request_count,
    body_bytes, intent_at, landed_at)
select 'sub_fill' || b, 'msgbatch_fill' || b, 'items', 'landed', 10000, 1, now(), now()
from generate_series(0, %s / 10000) as b;
insert into enrich.requests (submission_id, custom_id, enrichment, primary_key, request_hash,
    attempt, flag_reason, model, prompt_version, max_tokens, params_bytes)
select 'sub_fill' || (g / 10000), 'fill' || g, 'items', jsonb_build_object('item_id', g),
    md5(g::text), 1, 'new', 'claude-haiku-4-5', 'v1', 50, 100
from generate_series(0, %s - 1) as g;
analyze enrich.requests;
analyze enrich.shared_keys;
"""


def _scans(plan: Any) -> list[tuple[str, str]]:
    """(node type, relation) of every scan in an EXPLAIN (format json) plan."""
    found = []
    if "Relation Name" in plan:
        found.append((plan["Node Type"], plan["Relation Name"]))
    for child in plan.get("Plans", []):
        found.extend(_scans(child))
    return found


@pytest.mark.parametrize("warehouse_kind", ["postgres"], indirect=True)
def test_the_chunk_check_reads_requests_by_key_not_the_whole_enrichment(
    enrich_env: Warehouse, enrich_project: Path, settings: Settings, emulator: Any
) -> None:
    enrich_env.create_source("items", [(i, f"item {i}") for i in range(20)])
    enrich_env.create_flagged_views(enrich_project, ["items"])
    assert sum(s.submitted for s in sync(settings).submitted) == 20
    assert isinstance(enrich_env, PostgresWarehouse)
    with psycopg.connect(enrich_env.db.conninfo, autocommit=True) as conn:
        conn.execute((FILL % (LEDGER_ROWS, LEDGER_ROWS)).encode())

    pairs = [(f"fill{i}", "another hash") for i in range(0, LEDGER_ROWS, LEDGER_ROWS // CHUNK)]
    pairs += [(str(i), "x") for i in range(20)]
    with opened(settings) as (_, ledger):
        params = history_params("items", pairs)
        (plan,) = ledger._read("explain (format json) " + q.HISTORY, params)[0]
        seen = ledger.history("items", pairs)
    scans = _scans(json.loads(plan)[0]["Plan"] if isinstance(plan, str) else plan[0]["Plan"])
    on_requests = [node for node, relation in scans if relation == "requests"]
    assert on_requests and all(node.startswith("Index") for node in on_requests), scans
    # and the answer is the ledger's: every filler row attempted once under another hash
    assert all(seen[cid].attempts == 0 and not seen[cid].in_flight for cid, _ in pairs[:-20])
    assert all(seen[str(i)].succeeded is False for i in range(20))  # "x" is not their hash
