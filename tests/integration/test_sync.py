"""`enrich sync` on real Postgres and DuckDB, the official SDK and the emulator over HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.received import row_requests
from harness.warehouses import Warehouse

from connector.settings import Settings
from connector.sync import sync


def _prompts(start: int, stop: int) -> list[tuple[object, ...]]:
    return [
        (i, f"Item {i}: a {'sturdy' if i % 3 else 'flimsy'} widget, colour {i % 7}")
        for i in range(start, stop)
    ]


def _setup(wh: Warehouse, project: Path, rows: list[tuple[object, ...]]) -> None:
    wh.create_source("items", rows)
    wh.create_flagged_views(project, ["items"])


def test_thousand_rows_land_once_and_match_their_rows(
    enrich_env: Warehouse, enrich_project: Path, settings: Settings, emulator: Any
) -> None:
    _setup(enrich_env, enrich_project, _prompts(0, 1000))

    report = sync(settings)

    assert report.errors == []
    assert sum(s.submitted for s in report.submitted) == 1000
    assert report.in_flight == 0
    landed = enrich_env.fetch(
        """
        select (r.primary_key ->> 'item_id')::int, x.result_type, x.line ->> 'custom_id'
        from enrich.requests as r
        join enrich.batches as b using (submission_id)
        join enrich.results_raw as x on x.batch_id = b.batch_id and x.custom_id = r.custom_id
        """,
    )
    assert len(landed) == 1000
    assert sorted(k for k, _, _ in landed) == list(range(1000))
    # each line is matched by custom_id (the integer key verbatim), never by position
    assert all(str(k) == cid for k, _, cid in landed)
    assert {t for _, t, _ in landed} == {"succeeded"}
    assert enrich_env.fetch("select count(*) from enrich.results_raw")[0][0] == 1000
    # split at the declaration's max_requests_per_batch (400)
    sizes = enrich_env.fetch("select request_count from enrich.batches order by 1")
    assert [n for (n,) in sizes] == [200, 400, 400]
    stats = emulator.stats()
    assert stats["batches_created"] == 3
    assert all(n == 1 for n in row_requests(stats).values())

    again = sync(settings)
    assert sum(s.submitted for s in again.submitted) == 0
    assert again.submitted[0].skipped == {"already succeeded for this exact request": 1000}
    assert emulator.stats()["batches_created"] == 3

    enrich_env.insert_rows("items", _prompts(1000, 1025))
    third = sync(settings)
    assert sum(s.submitted for s in third.submitted) == 25
    assert enrich_env.fetch("select count(*) from enrich.results_raw")[0][0] == 1025
    assert max(row_requests(emulator.stats()).values()) == 1
