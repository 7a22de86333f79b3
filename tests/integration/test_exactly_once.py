"""Never pay twice, under real operations (issue 13): overlapping syncs, a create that
waits minutes on retry-after, a dev and a prod ledger on one API account, equal-size
batches of one ledger, results archived while a batch waits to land.

Each test drives `enrich sync` in subprocesses against the emulator over real HTTP,
on Postgres and DuckDB, and checks what the emulator received and what landed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from harness.enrich_project import (
    dbt_prepare,
    default_declaration,
    write_project,
)
from harness.received import row_requests
from harness.sync_process import (
    HANG_GUARD_SECONDS,
    items_source,
    landed_ids,
    output,
    run_sync_in_process,
    start_sync,
    wait_for,
)
from harness.warehouses import DuckDBWarehouse, Warehouse, parse_env

# ------------------------------------------------------------ two syncs at once
ROWS_CONCURRENT = 20_000


def test_two_concurrent_syncs_send_each_request_once(
    enrich_env: Warehouse, enrich_project: Path, emulator: Any
) -> None:
    """Cron overlap: two syncs started together on 20,000 flagged rows. One holds the
    ledger's sync guard (Postgres) or its file (DuckDB); the other exits 5 having done
    nothing, or, if it starts after the first is done, finds nothing left to send."""
    items_source(enrich_env, enrich_project, ROWS_CONCURRENT)
    first = start_sync(enrich_project, "--wait")
    second = start_sync(enrich_project, "--wait")
    outs = [p.communicate(timeout=HANG_GUARD_SECONDS) for p in (first, second)]
    codes = sorted(p.returncode for p in (first, second))
    assert codes in ([0, 0], [0, 5]), f"{codes}\n{outs[0][1][-2000:]}\n{outs[1][1][-2000:]}"
    if codes == [0, 5]:
        loser = "".join(outs[[first.returncode, second.returncode].index(5)])
        assert "another" in loser or "locked" in loser, loser[-2000:]

    received = row_requests(emulator.stats())
    assert len(received) == ROWS_CONCURRENT
    assert max(received.values()) == 1, received.most_common(3)
    landed = landed_ids(enrich_env)
    assert len(landed) == len(set(landed)) == ROWS_CONCURRENT


# ----------------------------------------------- a create waiting on retry-after
# Postgres only: on DuckDB the second sync cannot open the file while the first holds it
# (exit 5, tests/integration/test_duckdb_lock.py), so nothing overlaps there.
@pytest.mark.parametrize("warehouse_kind", ["postgres"], indirect=True)
def test_long_retry_after_during_create_never_leads_to_a_second_batch(
    enrich_env: Warehouse, enrich_project: Path, emulator: Any
) -> None:
    """The first sync's create answers 429 with a long retry-after; it sleeps holding
    the guard. A second sync (grace 0) must neither abandon that intent nor resend its
    rows while the first may still create."""
    items_source(enrich_env, enrich_project, 300)
    emulator.set_faults("http_429@create=1,retry_after=15,seed=1")
    first = start_sync(enrich_project, "--wait", "--reconcile-grace", "0")
    wait_for(
        lambda: (
            emulator.stats()["faults_fired"].get("http_429", 0) >= 1 or first.poll() is not None
        ),
        "the first create answered 429",
    )
    assert first.poll() is None, first.communicate()
    emulator.set_faults("")  # the first sync's retry will go through
    second = run_sync_in_process(enrich_project, "--reconcile-grace", "0")
    out, err = first.communicate(timeout=HANG_GUARD_SECONDS)
    assert first.returncode == 0, out[-2000:] + err[-2000:]
    # the second either found the guard held (5) or came after the first was done (0)
    assert second.returncode in (0, 5), output(second)

    stats = emulator.stats()
    assert stats["batches_created"] == 1
    received = row_requests(stats)
    assert len(received) == 300 and max(received.values()) == 1
    statuses = [s for (s,) in enrich_env.fetch("select status from enrich.batches")]
    assert statuses == ["landed"], statuses


# ------------------------------------------------ dev and prod on one API account
@pytest.fixture
def prod_project(
    tmp_path_factory: pytest.TempPathFactory, warehouse_kind: str, request: pytest.FixtureRequest
) -> Path:
    """A second copy of the project (another ledger schema, another system prompt)."""
    root = tmp_path_factory.mktemp(f"prod-{warehouse_kind}")
    decl = default_declaration() | {"system": "You label items, for production."}
    project = write_project(root, {"items": decl}, ledger_schema="enrich_prod")
    dbt_prepare(project, parse_env(warehouse_kind, root, request))
    return project


def _prod_warehouse(dev: Warehouse, tmp_path: Path) -> tuple[Warehouse, dict[str, str]]:
    """Prod's warehouse: the same Postgres database (its own ledger schema), or its own
    DuckDB file."""
    if isinstance(dev, DuckDBWarehouse):
        prod = DuckDBWarehouse(tmp_path / "prod.duckdb")
        return prod, prod.env
    return dev, dev.env


def test_dev_and_prod_on_one_api_account_never_land_each_others_batches(
    enrich_env: Warehouse,
    enrich_project: Path,
    prod_project: Path,
    emulator: Any,
    tmp_path: Path,
) -> None:
    """Both copies send 300 rows with the same custom_ids. Prod's create answer is lost
    while dev's batch of the same size is in progress: prod must adopt its own batch
    (its marker), not dev's, and dev's must land in dev's ledger only."""
    prod, prod_env = _prod_warehouse(enrich_env, tmp_path)
    items_source(enrich_env, enrich_project, 300)
    if prod is not enrich_env:
        items_source(prod, prod_project, 300)

    dev_first = run_sync_in_process(enrich_project)
    assert dev_first.returncode == 0, output(dev_first)
    (dev_batch,) = [b for (b,) in enrich_env.fetch("select batch_id from enrich.batches")]

    emulator.set_faults("create_no_answer=1,seed=2")
    lost = run_sync_in_process(prod_project, env=prod_env)
    assert lost.returncode in (0, 1), output(lost)
    emulator.set_faults("")
    assert emulator.stats()["faults_fired"].get("create_no_answer") == 1
    prod_batches = set(emulator.stats()["batches"]) - {dev_batch}
    assert len(prod_batches) == 1
    (prod_batch,) = prod_batches

    settled = run_sync_in_process(prod_project, "--wait", "--reconcile-grace", "0", env=prod_env)
    assert settled.returncode == 0, output(settled)
    dev_done = run_sync_in_process(enrich_project, "--wait")
    assert dev_done.returncode == 0, output(dev_done)

    prod_lines = prod.fetch("select batch_id, count(*) from enrich_prod.results_raw group by 1")
    assert prod_lines == [(prod_batch, 300)], prod_lines
    dev_lines = enrich_env.fetch("select batch_id, count(*) from enrich.results_raw group by 1")
    assert dev_lines == [(dev_batch, 300)], dev_lines
    notes = prod.fetch("select note from enrich_prod.batches where batch_id = %s", [prod_batch])
    assert "marker" in notes[0][0]
    # each copy paid once per row
    stats = emulator.stats()
    assert stats["batches_created"] == 2
    assert set(row_requests(stats).values()) == {2}


# ------------------------------------- equal batches of one ledger, answers lost
def test_equal_size_batches_are_matched_to_their_own_intents(
    enrich_env: Warehouse, tmp_path: Path, emulator: Any, request: pytest.FixtureRequest
) -> None:
    """300 rows in batches of 150: the first create fails with a 5xx (nothing created),
    the second is created with its answer lost. The one batch on the API is the second
    intent's (its marker): adopting it for the first, as a size match does, would send
    150 rows twice and never land 150 billed results."""
    root = tmp_path / "split"
    project = write_project(
        root, {"items": default_declaration() | {"max_requests_per_batch": 150}}
    )
    dbt_prepare(project, parse_env(enrich_env.kind, root, request))
    items_source(enrich_env, project, 300)

    emulator.set_faults("http_500@create=1,seed=3")
    first = run_sync_in_process(project, "--reconcile-grace", "3600")
    assert first.returncode == 1, output(first)
    emulator.set_faults("create_no_answer=1,seed=3")
    second = run_sync_in_process(project, "--reconcile-grace", "3600")
    assert second.returncode == 1, output(second)
    emulator.set_faults("")
    assert emulator.stats()["batches_created"] == 1
    (lost_batch,) = emulator.stats()["batches"]

    settled = run_sync_in_process(project, "--wait", "--reconcile-grace", "0")
    assert settled.returncode == 0, output(settled)

    received = row_requests(emulator.stats())
    assert len(received) == 300 and max(received.values()) == 1, received.most_common(3)
    landed = landed_ids(enrich_env)
    assert sorted(int(c) for c in landed) == list(range(300))
    # the lost batch landed under the intent whose requests it carries
    owner = enrich_env.fetch(
        "select count(*) from enrich.results_raw as x join enrich.batches as b"
        " on b.batch_id = x.batch_id join enrich.requests as r"
        " on r.submission_id = b.submission_id and r.custom_id = x.custom_id"
        " where x.batch_id = %s",
        [lost_batch],
    )
    assert owner == [(150,)]
    statuses = sorted(s for (s,) in enrich_env.fetch("select status from enrich.batches"))
    assert statuses == ["abandoned", "landed", "landed"], statuses


# ----------------------------------------- results archived while waiting to land
def test_ended_batch_whose_results_are_archived_becomes_results_lost(
    enrich_env: Warehouse, enrich_project: Path, emulator: Any
) -> None:
    items_source(enrich_env, enrich_project, 50)
    submitted = run_sync_in_process(enrich_project)
    assert submitted.returncode == 0, output(submitted)
    emulator.set_faults("results_cut=1,seed=4")
    for _ in range(3):  # the emulator ends a batch on its second retrieve
        cut = run_sync_in_process(enrich_project)  # once ended, its landing is cut mid-way
        if _statuses(enrich_env) == ["ended"]:
            break
    assert _statuses(enrich_env) == ["ended"], output(cut)
    emulator.set_faults("")
    emulator.advance_clock(30 * 24 * 3600)  # past the 29 days: results archived

    lost = run_sync_in_process(enrich_project)
    assert _statuses(enrich_env)[0] == "results_lost", output(lost)
    # its rows are retryable: the same sync sent them again, in a new batch
    assert sorted(row_requests(emulator.stats()).values()) == [2] * 50
    assert "archived" in lost.stdout + lost.stderr


def _statuses(warehouse: Warehouse) -> list[str]:
    return [s for (s,) in warehouse.fetch("select status from enrich.batches order by intent_at")]


# -------------------------------------------------- the guard and the fence
@pytest.mark.parametrize("warehouse_kind", ["postgres"], indirect=True)
def test_a_create_needs_the_sync_guard_and_stops_when_it_is_lost(
    enrich_env: Warehouse, enrich_project: Path
) -> None:
    from connector.errors import GuardLostError, LedgerError, SyncBusyError
    from connector.ledger import open_ledger
    from connector.settings import Settings
    from connector.sync import opened

    settings = Settings(project_dir=enrich_project, select=("items",))
    with opened(settings) as (project, ledger):
        ledger.record_intent("sub_" + "0" * 32, "items", 10, [], marker="be-sub-" + "0" * 32)
        with pytest.raises(LedgerError, match="sync guard"):
            ledger.mark_create_started("sub_" + "0" * 32)
        with ledger.sync_guard(0):
            other = open_ledger(project.target, project.ledger_schema)
            try:
                with (
                    pytest.raises(SyncBusyError, match="another `enrich sync`"),
                    other.sync_guard(0),
                ):
                    pass
            finally:
                other.close()
            ledger.mark_create_started("sub_" + "0" * 32)  # held: allowed
            enrich_env.fetch(
                "select pg_terminate_backend(pid) from pg_stat_activity"
                " where application_name like 'batch-enrich sync%%'"
            )
            with pytest.raises(GuardLostError):
                ledger.mark_create_started("sub_" + "0" * 32)


# ------------------------------------------------------------------ orphans
def test_a_batch_created_for_an_abandoned_intent_is_an_orphan_in_status(
    enrich_env: Warehouse, enrich_project: Path, emulator: Any
) -> None:
    """A create that went through after its intent was given up (an older connector, a
    lost guard, an operator) is found by its marker, recorded and shown by `enrich
    status`: billed, not landed, never adopted for another intent."""
    items_source(enrich_env, enrich_project, 100)
    emulator.set_faults("create_no_answer=1,seed=6")
    lost = run_sync_in_process(enrich_project, "--reconcile-grace", "3600")
    assert lost.returncode == 1, output(lost)
    emulator.set_faults("")
    (orphan,) = emulator.stats()["batches"]
    given_up = enrich_env.fetch(
        "update enrich.batches set status = 'abandoned', reconcile_seen_at = now()"
        " where status = 'submitting' returning submission_id"
    )
    assert len(given_up) == 1

    settled = run_sync_in_process(enrich_project, "--wait", "--reconcile-grace", "0")
    assert settled.returncode == 0, output(settled)
    assert enrich_env.fetch("select batch_id, submission_id from enrich.orphan_batches") == [
        (orphan, given_up[0][0])
    ]
    landed = enrich_env.fetch("select distinct batch_id from enrich.results_raw")
    assert landed and orphan not in {b for (b,) in landed}

    shown = subprocess.run(
        [
            sys.executable,
            "-m",
            "connector",
            "status",
            "--project-dir",
            str(enrich_project),
            "--json",
        ],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_SECONDS,
    )
    assert shown.returncode == 0, output(shown)
    (items,) = [r for r in json.loads(shown.stdout)["enrichments"] if r["enrichment"] == "items"]
    assert items["orphan_batches"] == 1
    assert any(orphan in text for text in items["attention"])


# ------------------------------------------- DuckDB: the file is free between polls
@pytest.mark.parametrize("warehouse_kind", ["duckdb"], indirect=True)
def test_sync_wait_on_duckdb_lets_the_file_go_between_polls(
    enrich_env: Warehouse, enrich_project: Path
) -> None:
    """`enrich sync --wait` polls a batch that takes long to end; between its polls,
    another process (`dbt build`, a query) can open the DuckDB file."""
    import duckdb

    from connector.emulator import EmulatorConfig, run_emulator

    assert isinstance(enrich_env, DuckDBWarehouse)
    items_source(enrich_env, enrich_project, 20)
    with run_emulator(EmulatorConfig(ended_after_polls=1000, seed=7)) as emu:
        waiting = start_sync(
            enrich_project,
            "--wait",
            "--poll-interval",
            "0.5",
            env={"ANTHROPIC_BASE_URL": emu.base_url},
        )
        try:
            # the first pass must open the file itself (else it exits 5, as it should)
            wait_for(
                lambda: (
                    emu.stats()["http_requests"].get("retrieve", 0) >= 1
                    or waiting.poll() is not None
                ),
                "the sync polled its batch once",
            )
            opened_between_polls = False
            while emu.stats()["http_requests"].get("retrieve", 0) < 12:
                assert waiting.poll() is None, waiting.communicate()
                try:
                    duckdb.connect(str(enrich_env.path)).close()
                except duckdb.IOException:
                    time.sleep(0.02)
                    continue
                opened_between_polls = True
                break
            assert opened_between_polls, "the file stayed locked through 12 polls"
        finally:
            waiting.kill()
            waiting.communicate()


# ------------------------------------------- the manifest, cut short or stale
@pytest.mark.parametrize("warehouse_kind", ["duckdb"], indirect=True)
def test_two_syncs_on_a_stale_or_cut_manifest_parse_it_once_and_run(
    enrich_env: Warehouse, enrich_project: Path, emulator: Any
) -> None:
    """dbt writes manifest.json in place: two syncs that both found it stale parsed at
    once and one read the other's half-written file (JSONDecodeError), and a parse
    killed mid-write left it cut short for every later run. Syncs now parse and read
    one at a time, and parse again when the file is not whole JSON."""
    items_source(enrich_env, enrich_project, 30)
    manifest = enrich_project / "target" / "manifest.json"
    whole = manifest.read_bytes()
    manifest.write_bytes(whole[: len(whole) // 2])  # a parse cut short
    cut = run_sync_in_process(enrich_project, "--wait")
    assert cut.returncode == 0, output(cut)
    assert json.loads(manifest.read_bytes())  # whole again

    (enrich_project / "models" / "schema.yml").touch()  # stale: every sync parses
    first = start_sync(enrich_project, "--lock-wait", "600")
    second = start_sync(enrich_project, "--lock-wait", "600")
    for proc in (first, second):
        out, err = proc.communicate(timeout=HANG_GUARD_SECONDS)
        assert proc.returncode == 0, out[-2000:] + err[-3000:]
    assert len(landed_ids(enrich_env)) == 30


# ------------------------------------------------ a new project, syncs together
@pytest.mark.parametrize("warehouse_kind", ["postgres"], indirect=True)
def test_syncs_started_together_on_a_new_project_create_the_ledger_once(
    enrich_env: Warehouse, enrich_project: Path, emulator: Any
) -> None:
    """No ledger yet: three syncs started together each found it missing and ran
    `dbt run-operation batch_enrich.ensure_ledger` at once; dbt rewrites the target
    directory's files in place, and one sync failed on another's half-written files
    (exit 2, seen in the chaos test on a busy machine). Now the ledger is created under
    the sync guard and dbt runs one invocation per project at a time."""
    items_source(enrich_env, enrich_project, 50)
    assert enrich_env.fetch(
        "select count(*) from information_schema.tables where table_schema = 'enrich'"
    ) == [(0,)]
    procs = [start_sync(enrich_project, "--wait", "--lock-wait", "600") for _ in range(3)]
    for proc in procs:
        out, err = proc.communicate(timeout=HANG_GUARD_SECONDS)
        assert proc.returncode == 0, out[-2000:] + err[-3000:]
    assert enrich_env.fetch("select count(*) from enrich.ledger_version") == [(1,)]
    received = row_requests(emulator.stats())
    assert len(received) == 50 and max(received.values()) == 1, received.most_common(3)
    assert sorted(landed_ids(enrich_env)) == sorted(set(landed_ids(enrich_env)))
    assert len(landed_ids(enrich_env)) == 50
