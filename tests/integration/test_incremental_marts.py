"""The incremental models give what a full refresh gives, on Postgres and DuckDB.

Two warehouses of the same kind get the same ledger, written step by step the way the
connector writes it: batches that land, one in flight, one that ended before it landed,
retries of an errored and of an expired request, a key that shares a request's result
later (dedupe across runs), an input row that changes, a changed prompt_version (every
row revalidated), a pilot and its switch. After each step warehouse A is built
incrementally, warehouse B with `--full-refresh`, and every model downstream of the
parse models (and the parse models, and the enriched tables) must hold the same rows in
both, the stamps of the incremental bookkeeping and the build times aside.

The steps are compared one at a time because a change of the live versions (the prompt
change, the pilot switch) recomputes some models in full, which would hide an earlier
incremental mistake. Models only (no tests: the other suites run them; no review_aspects
models); cost per warehouse: eight incremental and seven full builds of the copied
example project.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from harness.dbt_runner import DbtHarness
from harness.pipeline import Pipeline
from harness.postgres import PgCluster, fresh_database
from harness.warehouses import DUCKDB_FILE, DuckDBWarehouse, PostgresWarehouse, Warehouse

HAIKU = "claude-haiku-4-5"
T0 = dt.datetime(2026, 4, 1, 9, 0, tzinfo=dt.UTC)

# model -> columns left out of the comparison: the incremental bookkeeping's stamps and
# the build's own time
COMPARED = {
    "int_enrich__results_parsed": (),
    "int_enrich__results_validated": ("validated_at",),
    "int_enrich__request_outcomes": ("changed_at",),
    "int_enrich__live_versions": (),
    "int_enrich__input_keys": ("changed_at",),
    "enrich_history": (),
    "enrich_failures": (),
    "enrich_costs": (),
    "enrich_costs_by_row": (),
    "enrich_costs_daily": (),
    "enrich_reconciliation": (),
    "enrich_backlog_rows": ("first_flagged_at",),
    "enrich_backlog": (
        "computed_at", "oldest_flagged_at", "oldest_flagged_age_hours",
        "oldest_in_flight_age_hours",
    ),
    "enrich_pilot_comparison": (),
    "enrich_pilot_summary": (),
    "ticket_triage__enriched": (),
}  # fmt: skip


# -- API lines and ledger rows, as the connector writes them -------------------------


def _compact(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))


def succeeded(custom_id: str, output: dict[str, Any], stop_reason: str = "end_turn") -> str:
    message = {
        "model": f"{HAIKU}-20251001",
        "id": f"msg_01{hashlib.sha256(custom_id.encode()).hexdigest()[:22]}",
        "type": "message",
        "role": "assistant",
        "content": [{"type": "text", "text": _compact(output)}],
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {"input_tokens": 400 + len(custom_id), "output_tokens": 30,
                  "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                  "service_tier": "batch"},
    }  # fmt: skip
    return _compact({"custom_id": custom_id, "result": {"type": "succeeded", "message": message}})


def errored(custom_id: str, error_type: str = "api_error") -> str:
    error = {"type": "error", "error": {"type": error_type, "message": "Internal server error"}}
    return _compact({"custom_id": custom_id, "result": {"type": "errored", "error": error}})


def expired(custom_id: str) -> str:
    return _compact({"custom_id": custom_id, "result": {"type": "expired"}})


def triage(category: str = "bug", urgency: int = 3) -> dict[str, Any]:
    return {"category": category, "urgency": urgency, "summary": "Exports fail."}


@dataclass
class Request:
    ticket: int
    request_hash: str
    line: str | None
    attempt: int = 1
    flag_reason: str = "new"
    prompt_version: str = "v1"


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
    """Writes the same ledger rows into every warehouse it holds."""

    def __init__(self, warehouses: Sequence[Warehouse]) -> None:
        self.warehouses = warehouses
        self.count = 0

    def run(self, statement: str, params: Sequence[object]) -> None:
        for warehouse in self.warehouses:
            execute(warehouse, statement, params)

    def add(self, status: str, requests: Sequence[Request], at: dt.datetime) -> str:
        """A batch in `status` (submitted, ended or landed); returns its submission_id."""
        self.count += 1
        sid = f"sub_{self.count:032x}"
        self.run(
            "insert into enrich.batches (submission_id, batch_id, enrichment, status, "
            "request_count, body_bytes, processing_status, intent_at, submitted_at) "
            "values (%s, %s, 'ticket_triage', 'submitted', %s, 1000, 'in_progress', %s, %s)",
            [sid, f"msgbatch_01Incr{self.count:08d}", len(requests), at, at],
        )
        for r in requests:
            self.run(
                "insert into enrich.requests (submission_id, custom_id, enrichment, "
                "primary_key, request_hash, input_hash, attempt, flag_reason, model, "
                "prompt_version, max_tokens, params_bytes) values (%s, %s, 'ticket_triage', "
                "%s, %s, null, %s, %s, %s, %s, 300, 500)",
                [sid, str(r.ticket), _compact({"ticket_id": r.ticket}), r.request_hash,
                 r.attempt, r.flag_reason, HAIKU, r.prompt_version],
            )  # fmt: skip
        if status in ("ended", "landed"):
            self.end(sid, requests, at + dt.timedelta(minutes=30))
        if status == "landed":
            self.land(sid, requests, at + dt.timedelta(hours=1))
        return sid

    def end(self, sid: str, requests: Sequence[Request], at: dt.datetime) -> None:
        types = [json.loads(r.line)["result"]["type"] for r in requests if r.line]
        self.run(
            "update enrich.batches set status = 'ended', processing_status = 'ended', "
            "succeeded_count = %s, errored_count = %s, canceled_count = 0, expired_count = %s, "
            "ended_at = %s, last_polled_at = %s where submission_id = %s",
            [types.count("succeeded"), types.count("errored"), types.count("expired"), at, at,
             sid],
        )  # fmt: skip

    def land(self, sid: str, requests: Sequence[Request], at: dt.datetime) -> None:
        """The lines and the landed mark (one transaction in the connector)."""
        lines = [r for r in requests if r.line]
        for r in lines:
            assert r.line is not None
            self.run(
                "insert into enrich.results_raw (batch_id, custom_id, result_type, line, "
                "landed_at) select batch_id, %s, %s, %s, %s from enrich.batches "
                "where submission_id = %s",
                [str(r.ticket), json.loads(r.line)["result"]["type"], r.line, at, sid],
            )
        self.run(
            "update enrich.batches set status = 'landed', landed_at = %s, landed_lines = %s "
            "where submission_id = %s",
            [at, len(lines), sid],
        )

    def share(self, sid: str, ticket: int, member: int) -> None:
        """A later row shares the result of `ticket`'s request in batch `sid`."""
        self.run(
            "insert into enrich.shared_keys (submission_id, custom_id, member_custom_id, "
            "primary_key) values (%s, %s, %s, %s)",
            [sid, str(ticket), str(member), _compact({"ticket_id": member})],
        )


# -- the two warehouses --------------------------------------------------------------


@pytest.fixture
def full_warehouse(
    warehouse_kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Warehouse]:
    """A second, empty warehouse of the same kind: the full-refresh side."""
    if warehouse_kind == "postgres":
        cluster: PgCluster = request.getfixturevalue("pg_cluster")
        with fresh_database(cluster) as db:
            yield PostgresWarehouse(db)
        return
    (tmp_path / "full").mkdir()
    yield DuckDBWarehouse(tmp_path / "full" / DUCKDB_FILE)


def _normal(value: Any) -> Any:
    """A value as compared: numbers to 12 significant digits (sums add up in any order)."""
    if isinstance(value, (float, Decimal)) and not isinstance(value, bool):
        number = float(value)
        if number == 0 or math.isinf(number) or math.isnan(number):
            return number
        return float(f"{number:.12g}")
    if isinstance(value, (dict, list)):
        return _compact(value)
    return value


def snapshot(warehouse: Warehouse, model: str, left_out: Sequence[str]) -> list[tuple[Any, ...]]:
    columns = [
        c
        for (c,) in warehouse.fetch(
            "select column_name from information_schema.columns "
            "where table_schema = 'analytics' and table_name = %s order by ordinal_position",
            (model,),
        )
        if c not in left_out
    ]
    assert columns, f"{model}: no such table"
    listed = ", ".join(f'"{c}"' for c in columns)
    rows = warehouse.fetch(f"select {listed} from analytics.{model}")  # noqa: S608
    return sorted((tuple(_normal(v) for v in row) for row in rows), key=repr)


@dataclass
class Sides:
    dbt: DbtHarness
    project: Path
    incremental: Warehouse
    full: Warehouse

    def dbt_build(self, warehouse: Warehouse, *args: str, seeds: bool = False) -> None:
        """Models only (suite time): no tests, no review_aspects models, seeds when asked.
        One thread: the models that read the input through the graph (the backlog's) do
        not race with the rebuild of the input view, which dbt's relation cache hides
        meanwhile (they would see no input; a full refresh would then hold no rows)."""
        skip = ["review_aspects+"] + ([] if seeds else ["resource_type:seed"])
        self.dbt.invoke(
            [
                "build",
                "--threads",
                "1",
                "--exclude-resource-type",
                "test",
                "unit_test",
                "--exclude",
                *skip,
                *args,
            ],
            self.project,
            self.project,
            env=warehouse.env,
        )

    def build(self) -> None:
        """Warehouse A incrementally, without comparing (a step between two checks)."""
        self.dbt_build(self.incremental)

    def seed(self) -> None:
        """Both warehouses reload the seeds (an input changes), in a run of their own: on
        Postgres a full-refresh build drops the seed tables and the input views on them
        (cascade) while the models that read the inputs through the graph may run."""
        for warehouse in (self.incremental, self.full):
            self.dbt.invoke(["seed"], self.project, self.project, env=warehouse.env)

    def check(self, step: str) -> None:
        """A incrementally, B in full; then every compared model row by row."""
        self.dbt_build(self.incremental)
        self.dbt_build(self.full, "--full-refresh")
        for model, left_out in COMPARED.items():
            ours = snapshot(self.incremental, model, left_out)
            theirs = snapshot(self.full, model, left_out)
            assert ours == theirs, f"after {step}: {model} differs from a full refresh"

    def flagged_hashes(self) -> dict[int, str]:
        rows = self.incremental.fetch(
            "select ticket_id, request_hash from analytics.ticket_triage__flagged"
        )
        return {int(t): str(h) for t, h in rows}


def old_hash(ticket: int, version: str = "v0") -> str:
    return hashlib.md5(f"{version} request of {ticket}".encode()).hexdigest()  # noqa: S324


def test_incremental_builds_match_a_full_refresh_step_by_step(
    warehouse: Warehouse, full_warehouse: Warehouse, dbt: DbtHarness, tmp_path: Path
) -> None:
    project = Pipeline(tmp_path, warehouse)
    sides = Sides(dbt, project.project, warehouse, full_warehouse)
    sides.dbt_build(warehouse, seeds=True)
    sides.dbt_build(full_warehouse, seeds=True)
    ledger = Ledger([warehouse, full_warehouse])
    current = sides.flagged_hashes()

    # landed: one outcome of each kind; one batch in flight, one ended but not landed
    first = ledger.add(
        "landed",
        [
            Request(1001, current[1001], succeeded("1001", triage("billing", 3))),
            Request(1002, current[1002], succeeded("1002", triage("spam", 2))),
            Request(1003, current[1003], errored("1003")),
            Request(1004, current[1004], expired("1004")),
            Request(1005, current[1005], succeeded("1005", triage(), "max_tokens")),
            Request(1006, current[1006], succeeded("1006", triage("bug", 4))),
        ],
        T0,
    )
    in_flight = [
        Request(1007, current[1007], succeeded("1007", triage("account", 1))),
        Request(1008, current[1008], errored("1008", "overloaded_error")),
    ]
    flying = ledger.add("submitted", in_flight, T0)
    late = [Request(1009, current[1009], succeeded("1009", triage("other", 2)))]
    ended = ledger.add("ended", late, T0)
    sides.check("a first landing, a batch in flight and one ended")

    # the batch in flight ends and lands; the ended one lands; the errored and the
    # expired requests are retried and land
    ledger.end(flying, in_flight, T0 + dt.timedelta(hours=3))
    ledger.land(flying, in_flight, T0 + dt.timedelta(hours=4))
    ledger.land(ended, late, T0 + dt.timedelta(hours=4))
    sides.build()
    ledger.add(
        "landed",
        [
            Request(1003, current[1003], succeeded("1003", triage("bug", 5)), 2, "retry"),
            Request(1004, current[1004], succeeded("1004", triage("other", 1)), 2, "retry"),
            Request(1008, current[1008], expired("1008"), 2, "retry"),
        ],
        T0 + dt.timedelta(days=1),
    )
    sides.check("landings, and retries of an errored and an expired request")

    # ticket 1010 shares 1001's result (dedupe across runs); ticket 1006's input changes
    ledger.share(first, 1001, 1010)
    project.edit_seed_row("example_support_tickets", "ticket_id", "1006", "body", "Still broken.")
    sides.seed()
    sides.check("a key sharing an earlier result, and a changed input row")

    # the prompt changes (every row of the enrichment is validated again); two rows land
    # under the new version
    project.edit_declaration("ticket_triage", prompt_version="v2")
    sides.build()
    v2 = sides.flagged_hashes()
    ledger.add(
        "landed",
        [
            Request(1001, v2[1001], succeeded("1001", triage("billing", 2)), 1, "prompt_changed",
                    "v2"),
            Request(1011, v2[1011], succeeded("1011", triage("bug", 2)), 1, "new", "v2"),
        ],
        T0 + dt.timedelta(days=2),
    )  # fmt: skip
    sides.check("a changed prompt_version")

    # a pilot of v3 lands, then a sync sends v3: the switch makes its outputs live
    ledger.add(
        "landed",
        [
            Request(t, old_hash(t, "v3"), succeeded(str(t), triage("account", 4)), 1, "pilot",
                    "v3")
            for t in (1002, 1012)
        ],
        T0 + dt.timedelta(days=3),
    )  # fmt: skip
    sides.check("a pilot")
    ledger.add(
        "submitted", [Request(1013, old_hash(1013, "v3"), None, 1, "new", "v3")],
        T0 + dt.timedelta(days=4),
    )  # fmt: skip
    sides.check("a pilot and its switch")

    # and A was built incrementally: its outcomes kept the stamps of the steps that
    # changed them, and every incremental model logged its last build
    stamps = warehouse.fetch(
        "select count(distinct changed_at) from analytics.int_enrich__request_outcomes"
    )
    assert stamps[0][0] >= 5
    logged = warehouse.fetch("select relation_name from analytics.int_enrich__build_log")
    assert len(logged) == 10, logged
