"""Every emulator fault kind, in turn and all together: no row lost, none landed twice,
retries bounded by max_attempts, and nothing billed that the ledger does not know."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from harness.enrich_project import KEY_TYPES
from harness.received import row_requests
from harness.warehouses import Warehouse

from connector.settings import Settings
from connector.sync import sync

ROWS = 120
MAX_ATTEMPTS = 3  # the test project's declaration

FAULTS = [
    "http_500=0.5",
    "http_529=0.5",
    "http_429=0.5,retry_after=0",
    "http_500@create=0.5",
    "create_no_answer=0.6",
    "results_cut=0.6",
    "item_api_error=0.3",
    "item_overloaded=0.3",
    "item_invalid_request=0.2",
    "item_expired=0.3",
    "item_canceled=0.3",
    "output_not_json=0.3",
    "output_schema_violation=0.3",
    "batch_expire=0.5,seed=4",
    "http_500=0.1,http_529@retrieve=0.1,http_429=0.1,retry_after=0,create_no_answer=0.3,"
    "results_cut=0.3,item_api_error=0.1,item_overloaded=0.1,item_invalid_request=0.1,"
    "item_expired=0.1,item_canceled=0.1,output_not_json=0.1,output_schema_violation=0.1,"
    "batch_expire=0.2",
]


def _outcomes(wh: Warehouse) -> list[tuple[Any, ...]]:
    """Per request: custom_id, batch status, result type, error type."""
    return wh.fetch(
        """
        select r.custom_id, b.status, x.result_type,
               x.line -> 'result' -> 'error' -> 'error' ->> 'type'
        from enrich.requests as r
        join enrich.batches as b using (submission_id)
        left join enrich.results_raw as x on x.batch_id = b.batch_id and x.custom_id = r.custom_id
        """,
    )


@pytest.mark.parametrize(
    "spec", FAULTS, ids=[f.split("=")[0] if "," not in f[:-30] else f for f in FAULTS]
)
def test_faults_lose_nothing_and_land_nothing_twice(
    spec: str, enrich_env: Warehouse, enrich_project: Path, settings: Settings, emulator: Any
) -> None:
    enrich_env.create_source("items", [(i, f"item {i}") for i in range(ROWS)], KEY_TYPES["items"])
    enrich_env.create_flagged_views(enrich_project, ["items"])
    emulator.set_faults(spec if "seed=" in spec else spec + ",seed=11")

    for _ in range(15):
        report = sync(settings)
        if (
            report.in_flight == 0
            and sum(s.submitted for s in report.submitted) == 0
            and not any(s.stopped for s in report.submitted)
        ):
            break
    else:
        pytest.fail(f"sync did not settle under {spec}: {report}")

    fired = emulator.stats()["faults_fired"]
    kinds = {t.split("=")[0].split("@")[0] for t in spec.split(",")} - {"retry_after"}
    assert set(fired) & kinds, f"no fault of {kinds} fired: {fired}"

    rows = _outcomes(enrich_env)
    per_row: dict[str, list[tuple[Any, ...]]] = {}
    for r in rows:
        per_row.setdefault(r[0], []).append(r)
    assert set(per_row) == {str(i) for i in range(ROWS)}, "a row was never submitted"
    for cid, reqs in per_row.items():
        attempted = [r for r in reqs if r[1] != "abandoned"]
        assert all(r[1] in ("landed", "abandoned", "results_lost") for r in reqs), reqs
        succeeded = [r for r in attempted if r[2] == "succeeded"]
        terminal = [r for r in attempted if r[3] == "invalid_request_error"]
        # nothing landed twice, retries bounded
        assert len(succeeded) <= 1, (cid, reqs)
        assert len(attempted) <= MAX_ATTEMPTS, (cid, reqs)
        # landed, or recorded as failed with its reason
        assert succeeded or terminal or len(attempted) == MAX_ATTEMPTS, (cid, reqs)
        if not succeeded:
            assert all(r[2] is not None or r[1] == "results_lost" for r in attempted), reqs

    # every request the API received is a request the ledger knows (nothing orphaned)
    received = row_requests(emulator.stats())
    known = Counter(r[0] for r in rows if r[1] != "abandoned")
    assert received == known
