"""A submit of several batches: each create runs while the next batch is built, yet
every create's outcome is committed before the next intent is, and a create whose
outcome is unknown stops the submit before another intent is recorded."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path
from typing import Any

from harness.enrich_project import KEY_TYPES, with_
from harness.received import row_requests
from harness.warehouses import Warehouse

from connector.settings import Settings
from connector.sync import sync

ROWS = 1_000  # three batches: the test declaration allows 400 requests, marker included


def _source(wh: Warehouse, project: Path) -> None:
    wh.create_source("items", [(i, f"item {i}") for i in range(ROWS)], KEY_TYPES["items"])
    wh.create_flagged_views(project, ["items"])


def test_each_create_is_recorded_before_the_next_intent(
    enrich_env: Warehouse, enrich_project: Path, settings: Settings, emulator: Any
) -> None:
    _source(enrich_env, enrich_project)
    report = sync(with_(settings, wait=False))

    (sub,) = report.submitted
    assert (sub.submitted, sub.stopped, len(sub.batches)) == (ROWS, None, 3), sub
    batches = enrich_env.fetch(
        "select batch_id, status, intent_at, create_started_at, submitted_at"
        " from enrich.batches order by intent_at"
    )
    assert [b[0] for b in batches] == sub.batches  # created in the order of the intents
    assert {b[1] for b in batches} == {"submitted"}
    for earlier, later in pairwise(batches):
        assert earlier[2] <= earlier[3] <= earlier[4] <= later[2], (earlier, later)
    stats = emulator.stats()
    assert sorted(stats["batches"]) == sorted(sub.batches)
    received = row_requests(stats)
    assert len(received) == ROWS and set(received.values()) == {1}


def test_an_unknown_create_outcome_stops_before_the_next_intent(
    enrich_env: Warehouse, enrich_project: Path, settings: Settings, emulator: Any
) -> None:
    """The first create is made but its answer lost: the batches built meanwhile are
    never recorded nor created; later syncs adopt the lost batch and send the rest once."""
    _source(enrich_env, enrich_project)
    emulator.set_faults("create_no_answer=1,seed=5")
    first = sync(with_(settings, wait=False, reconcile_grace_seconds=3600.0))
    emulator.set_faults("")

    (sub,) = first.submitted
    assert sub.submitted == 0 and sub.stopped is not None and "unknown" in sub.stopped
    assert enrich_env.fetch("select count(*) from enrich.batches") == [(1,)]
    assert emulator.stats()["batches_created"] == 1

    for _ in range(5):
        report = sync(settings)
        if report.in_flight == 0 and sum(s.submitted for s in report.submitted) == 0:
            break
    received = row_requests(emulator.stats())
    assert len(received) == ROWS and set(received.values()) == {1}, received.most_common(3)
    landed = enrich_env.fetch("select count(distinct custom_id) from enrich.results_raw")
    assert landed == [(ROWS,)]
