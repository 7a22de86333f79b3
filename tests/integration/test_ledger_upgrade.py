"""An old ledger is upgraded in place by the next sync: version 1 (before cost controls,
and without the indexes of version 5) and version 3 (before batch tallies), whose
landed batches status must still count."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest
from harness.warehouses import DuckDBWarehouse, PostgresWarehouse, Warehouse

from connector.commands import status
from connector.settings import Settings
from connector.sync import LEDGER_VERSION, sync

# what a version-1 ledger lacked
DOWNGRADE = (
    "alter table enrich.requests drop column estimated_usd",
    "drop table enrich.shared_keys",
    "drop table enrich.deferrals",
    "drop table enrich.batch_tallies",
    "drop index if exists enrich.requests_key_lookup",
    "delete from enrich.ledger_version",
    "insert into enrich.ledger_version (version) values (1)",
)


def _execute(wh: Warehouse, statements: tuple[str, ...]) -> None:
    if isinstance(wh, PostgresWarehouse):
        with psycopg.connect(wh.db.conninfo) as conn:
            for statement in statements:
                conn.execute(statement.encode())
    else:
        assert isinstance(wh, DuckDBWarehouse)
        with wh.connect() as conn:
            for statement in statements:
                conn.execute(statement)


def test_a_version_1_ledger_is_upgraded_in_place_and_keeps_its_rows(
    enrich_env: Warehouse, enrich_project: Path, settings: Settings, emulator: Any
) -> None:
    rows = [(i, f"Item {i}: a widget in colour {i % 7}") for i in range(60)]
    enrich_env.create_source("items", rows[:50])
    enrich_env.create_flagged_views(enrich_project, ["items"])
    assert sum(s.submitted for s in sync(settings).submitted) == 50
    _execute(enrich_env, DOWNGRADE)

    enrich_env.insert_rows("items", rows[50:])
    report = sync(settings)

    assert report.errors == []
    assert sum(s.submitted for s in report.submitted) == 10  # the 50 stay done
    assert enrich_env.fetch("select max(version) from enrich.ledger_version") == [(LEDGER_VERSION,)]
    # the column is back; this project has never seeded its price table, so the new
    # requests carry no estimate either
    assert enrich_env.fetch("select count(*), count(estimated_usd) from enrich.requests") == [
        (60, 0)
    ]
    assert enrich_env.fetch("select count(*) from enrich.shared_keys") == [(0,)]
    assert enrich_env.fetch("select count(*) from enrich.deferrals") == [(0,)]
    assert enrich_env.count("enrich", "results_raw") == 60
    # version 4: every landed batch is tallied, the earlier ones too
    assert enrich_env.fetch(
        "select sum(requests), sum(succeeded), sum(missing) from enrich.batch_tallies"
    ) == [(60, 60, 0)]
    if isinstance(enrich_env, PostgresWarehouse):  # version 5: the submit's key lookups
        assert enrich_env.fetch(
            "select indexname from pg_indexes where schemaname = 'enrich' "
            "and indexname in ('requests_key_lookup', 'shared_keys_member_lookup') "
            "order by indexname"
        ) == [("requests_key_lookup",), ("shared_keys_member_lookup",)]


def test_status_counts_landed_batches_whether_or_not_they_are_tallied(
    enrich_env: Warehouse, enrich_project: Path, settings: Settings, emulator: Any
) -> None:
    """A ledger upgraded by `dbt build` (its on-run-start) has landed batches and no
    tallies until the next sync: status computes those batches' counts from their lines,
    and the same figures come from the tallies once they exist."""
    emulator.set_faults("item_invalid_request=0.15,item_api_error=0.15,item_expired=0.1,seed=3")
    rows = [(i, f"Item {i}: a widget in colour {i % 7}") for i in range(80)]
    enrich_env.create_source("items", rows)
    enrich_env.create_flagged_views(enrich_project, ["items"])
    sync(settings)
    tallied = status(settings)
    assert enrich_env.fetch("select count(*) from enrich.batch_tallies") == enrich_env.fetch(
        "select count(*) from enrich.batches where status = 'landed'"
    )
    (row,) = tallied
    assert row.succeeded + row.failed_retryable + row.failed_terminal + row.missing == 80
    assert row.succeeded < 80 and row.failed_retryable > 0 and row.failed_terminal > 0, row

    _execute(enrich_env, ("delete from enrich.batch_tallies",))
    assert status(settings) == tallied


# a DuckDB results_raw as versions 1-5 made it: with its primary key
KEYED_RESULTS_RAW = (
    "create table enrich.results_raw_keyed (batch_id text not null, custom_id text not null, "
    "result_type text not null, line json not null, landed_at timestamptz not null, "
    "primary key (batch_id, custom_id))",
    "insert into enrich.results_raw_keyed select * from enrich.results_raw",
    "drop table enrich.results_raw",
    "alter table enrich.results_raw_keyed rename to results_raw",
    "delete from enrich.ledger_version",
    "insert into enrich.ledger_version (version) values (1)",
)
RESULTS_RAW_KEY = (
    "select count(*) from duckdb_constraints() where schema_name = 'enrich' "
    "and table_name = 'results_raw' and constraint_type = 'PRIMARY KEY'"
)


@pytest.mark.parametrize("warehouse_kind", ["duckdb"], indirect=True)
def test_a_duckdb_results_raw_with_its_primary_key_is_rebuilt_without_it(
    enrich_env: Warehouse, enrich_project: Path, settings: Settings, emulator: Any
) -> None:
    """DuckDB's results_raw has no primary key (its in-memory index was a third of a
    landing's time, and grew with the table); a ledger made with it loses it at the next
    upgrade, every line kept, and the next landing lands each line once."""
    rows = [(i, f"Item {i}: a widget in colour {i % 7}") for i in range(30)]
    enrich_env.create_source("items", rows[:20])
    enrich_env.create_flagged_views(enrich_project, ["items"])
    sync(settings)
    assert enrich_env.fetch(RESULTS_RAW_KEY) == [(0,)]
    _execute(enrich_env, KEYED_RESULTS_RAW)
    assert enrich_env.fetch(RESULTS_RAW_KEY) == [(1,)]

    enrich_env.insert_rows("items", rows[20:])
    report = sync(settings)

    assert report.errors == []
    assert enrich_env.fetch(RESULTS_RAW_KEY) == [(0,)]
    assert enrich_env.fetch("select max(version) from enrich.ledger_version") == [(LEDGER_VERSION,)]
    assert enrich_env.fetch(
        "select count(*), count(distinct custom_id) from enrich.results_raw "
        "where custom_id not like 'be-sub-%'"
    ) == [(30, 30)]
