"""Chaos: overlapping `enrich sync` runs, SIGKILLed at random moments and at every
crash point, against an emulator that fails creates, polls, result streams and items.

After the storm the faults stop, the emulator finishes every call it received, and
syncs run until nothing is in flight or left to send. Then, per row:

- it is enriched (one succeeded line) or it failed `max_attempts` times with a reason;
- every request the emulator received for it is one the ledger holds in a batch that
  reached the API, and none was sent after it succeeded (retries only after failures);
- every batch the emulator holds is a batch of the ledger.
"""

from __future__ import annotations

import json
import random
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from harness.enrich_project import dbt_prepare, default_declaration, write_project
from harness.received import row_requests
from harness.sync_process import (
    HANG_GUARD_SECONDS,
    items_source,
    output,
    run_sync_in_process,
    start_sync,
    wait_for,
)
from harness.warehouses import Warehouse, parse_env

from connector.crashpoints import ENV as CRASH_ENV

ROWS = 1000
BATCH_ROWS = 100  # ten batches: many creates for the faults to hit
SYNCS_PER_ROUND = 3
CRASH_POINTS = (None, None, "after_intent", "before_create", "after_create", "mid_landing")
# one spec per round, each seeded; creates first lose answers, later rounds cut streams
ROUND_FAULTS = (
    "create_no_answer=0.5,http_429@create=0.2,retry_after=1,item_api_error=0.05,item_expired=0.03",
    "http_500@create=0.3,create_no_answer=0.3,http_529@retrieve=0.2,results_cut=0.5",
    "results_cut=0.5,http_500@list=0.2,http_529@retrieve=0.2,create_no_answer=0.3",
    "results_cut=0.3,create_no_answer=0.3,http_500@create=0.2,item_api_error=0.05",
    "results_cut=0.3,create_no_answer=0.2,http_529@retrieve=0.2,item_expired=0.03",
)
MAX_ATTEMPTS = 3


def _storm(project: Path, emulator: Any, rng: random.Random) -> Counter[int]:
    codes: Counter[int] = Counter()
    for round_no, faults in enumerate(ROUND_FAULTS):
        emulator.set_faults(f"{faults},seed={round_no + 11}")
        procs = []
        for _ in range(SYNCS_PER_ROUND):
            crash = rng.choice(CRASH_POINTS)
            env = {CRASH_ENV: crash} if crash else {}
            # most wait their turn for the guard; some give up at once (exit 5)
            lock_wait = rng.choice(["0", "120", "120"])
            # grace: never abandon during the storm (a killed create may still land)
            procs.append(
                start_sync(project, "--reconcile-grace", "3600", "--lock-wait", lock_wait, env=env)
            )
            time.sleep(rng.uniform(0.0, 1.0))  # overlap, staggered at random
        for proc in procs:
            if round_no > 0 and rng.random() < 0.35:
                time.sleep(rng.uniform(0.5, 6.0))  # a random moment of its run
                proc.send_signal(signal.SIGKILL)
        for proc in procs:
            out, err = proc.communicate(timeout=HANG_GUARD_SECONDS)
            # --json: an error's message is on stdout, the log on stderr
            assert proc.returncode in (0, 1, 5, -signal.SIGKILL), (
                proc.returncode,
                out[-3000:],
                err[-3000:],
            )
            codes[proc.returncode] += 1
    return codes


def _settle(project: Path, emulator: Any) -> None:
    """Faults off; once the emulator has answered every call it received (so no killed
    create can still commit a batch), sync until nothing is in flight or left to send."""
    emulator.set_faults("")
    wait_for(lambda: emulator.stats()["calls_in_progress"] == 0, "the emulator is idle")
    for _ in range(MAX_ATTEMPTS + 3):
        done = run_sync_in_process(project, "--wait", "--reconcile-grace", "0")
        assert done.returncode == 0, output(done)
        report = json.loads(done.stdout)
        if report["in_flight"] == 0 and all(s["submitted"] == 0 for s in report["submitted"]):
            return
    raise AssertionError(f"the ledger did not settle: {output(done)}")


@pytest.fixture
def chaos_project(tmp_path: Path, warehouse_kind: str, request: pytest.FixtureRequest) -> Path:
    root = tmp_path / "chaos"
    decl = default_declaration() | {"max_requests_per_batch": BATCH_ROWS}
    project = write_project(root, {"items": decl})
    dbt_prepare(project, parse_env(warehouse_kind, root, request))
    return project


# Postgres: where overlapping syncs really run side by side (on DuckDB the file admits
# one process at a time, which tests/integration/test_exactly_once.py covers)
@pytest.mark.parametrize("warehouse_kind", ["postgres"], indirect=True)
@pytest.mark.parametrize("seed", [5])
def test_overlapping_killed_syncs_with_faults_lose_nothing_and_pay_once(
    seed: int, enrich_env: Warehouse, chaos_project: Path, emulator: Any
) -> None:
    items_source(enrich_env, chaos_project, ROWS)
    codes = _storm(chaos_project, emulator, random.Random(seed))
    fired = emulator.stats()["faults_fired"]
    # the storm had teeth: syncs were killed, creates lost their answers, streams were cut
    assert codes[-signal.SIGKILL] >= 1, codes
    assert fired.get("create_no_answer", 0) >= 1 and fired.get("results_cut", 0) >= 1, fired
    _settle(chaos_project, emulator)

    stats = emulator.stats()

    # every batch on the API is one of the ledger's, and none is left in flight
    held = {b for (b,) in enrich_env.fetch("select batch_id from enrich.batches")}
    orphans = {b for (b,) in enrich_env.fetch("select batch_id from enrich.orphan_batches")}
    assert set(stats["batches"]) <= held | orphans
    assert not orphans, "a create went through after its intent was abandoned"
    in_flight = enrich_env.fetch(
        "select count(*) from enrich.batches where status in ('submitting', 'submitted', 'ended')"
    )
    assert in_flight == [(0,)]

    # per row: requests that reached the API, in order, with their outcomes
    rows = enrich_env.fetch(
        "select r.custom_id, b.intent_at, b.submission_id, coalesce(x.result_type, 'none')"
        " from enrich.requests as r join enrich.batches as b"
        " on b.submission_id = r.submission_id"
        " left join enrich.results_raw as x"
        " on x.batch_id = b.batch_id and x.custom_id = r.custom_id"
        " where b.status <> 'abandoned'"
        " order by r.custom_id, b.intent_at, b.submission_id"
    )
    history: dict[str, list[str]] = {}
    for custom_id, _, _, outcome in rows:
        history.setdefault(custom_id, []).append(outcome)
    received = row_requests(stats)
    assert set(history) == {str(i) for i in range(ROWS)}, "a row was never sent"
    for custom_id, outcomes in history.items():
        # billed exactly as often as the ledger says it was sent
        assert received[custom_id] == len(outcomes), (custom_id, received[custom_id], outcomes)
        # retries only after failures, never after a success
        assert all(o != "succeeded" for o in outcomes[:-1]), (custom_id, outcomes)
        # enriched, or failed max_attempts times with a reason
        assert outcomes[-1] == "succeeded" or len(outcomes) >= MAX_ATTEMPTS, (custom_id, outcomes)
    landed = [c for (c,) in enrich_env.fetch("select custom_id from enrich.results_raw")]
    lines = enrich_env.fetch("select count(*), count(distinct batch_id) from enrich.results_raw")
    assert lines[0][0] == len(landed) and len(landed) >= ROWS
