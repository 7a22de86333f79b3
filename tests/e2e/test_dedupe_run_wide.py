"""Dedupe spans the run, the ledger and budgets (issue 13, items 4 and 5), on Postgres
and DuckDB, through the emulator and dbt: each distinct request is sent once, whatever
the batch size, the budget or what earlier runs already sent, and every row that shares
a request gets its value from dbt.

Requests of rows are counted from the emulator, leaving out any custom_id starting
`be-sub-` (a per-batch marker request some builds add to each body)."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from typing import Any

import pytest
from harness.pipeline import Pipeline

from connector.commands import estimate
from connector.emulator import EmulatorConfig, run_emulator
from connector.estimate import Estimate
from connector.settings import Settings

TICKETS = "ticket_triage"
MARKER_PREFIX = "be-sub-"


@pytest.fixture
def emulator() -> Iterator[Any]:
    # a batch shows `in_progress` on its first retrieve: a sync without --wait leaves
    # what it submitted in flight (the in-flight case below relies on it)
    with run_emulator(EmulatorConfig(seed=21, ended_after_polls=1)) as emu:
        yield emu


def _settings(p: Pipeline, **changes: Any) -> Settings:
    return Settings(
        project_dir=p.project, profiles_dir=p.project, target=p.target, select=(TICKETS,),
        **changes,
    )  # fmt: skip


def _estimate(p: Pipeline) -> Estimate:
    (est,) = estimate(_settings(p))
    return est


def _sync(p: Pipeline, *, wait: bool = True) -> None:
    if wait:
        p.sync(TICKETS)
        return
    from connector.sync import sync  # the same entry point, without --wait

    report = sync(_settings(p, reconcile_grace_seconds=0.0))
    assert not report.errors, report.errors


def _row_requests(emulator: Any) -> dict[str, int]:
    """custom_id -> how many requests the emulator received for it (rows only)."""
    by_id: dict[str, int] = emulator.stats()["requests_by_custom_id"]
    return {k: v for k, v in by_id.items() if not k.startswith(MARKER_PREFIX)}


def _seed_path(p: Pipeline) -> Any:
    return p.project / "seeds" / "examples" / "example_support_tickets.csv"


def _write_tickets(p: Pipeline, rows: list[dict[str, str]]) -> None:
    with _seed_path(p).open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _distinct_tickets(p: Pipeline, n: int) -> list[dict[str, str]]:
    """The first n demo tickets, each text made unique."""
    with _seed_path(p).open(newline="") as f:
        rows = list(csv.DictReader(f))[:n]
    for row in rows:
        row["body"] += f" (ref {row['ticket_id']})"
    return rows


def _copy(row: dict[str, str], ticket_id: int) -> dict[str, str]:
    return {**row, "ticket_id": str(ticket_id)}


def _pairs(p: Pipeline, distinct: int) -> dict[str, str]:
    """`distinct` tickets and a copy of each (same subject and body, another id), the
    copies after all the originals; returns ticket_id -> text."""
    rows = _distinct_tickets(p, distinct)
    rows += [_copy(r, 5000 + i) for i, r in enumerate(rows)]
    _write_tickets(p, rows)
    return {r["ticket_id"]: r["subject"] + "\n" + r["body"] for r in rows}


def _enriched(p: Pipeline) -> dict[str, tuple[Any, ...]]:
    """ticket_id -> (category, summary, is_shared_result) from the enriched model."""
    rows = p.query(
        "select cast(ticket_id as text), category, summary, is_shared_result "
        "from analytics.ticket_triage__enriched"
    )
    return {r[0]: tuple(r[1:]) for r in rows}


def _recorded(p: Pipeline) -> list[tuple[str, float | None]]:
    rows = p.query(
        "select custom_id, estimated_usd from enrich.requests where enrichment = %s", (TICKETS,)
    )
    return [(r[0], None if r[1] is None else float(r[1])) for r in rows]


def _models(p: Pipeline) -> None:
    p.dbt("seed")
    p.dbt("run")


def _assert_every_row_has_the_value_of_its_text(
    p: Pipeline, texts: dict[str, str], sent: dict[str, int]
) -> None:
    enriched = _enriched(p)
    assert set(enriched) == set(texts)
    assert all(v[0] is not None and v[1] is not None for v in enriched.values()), enriched
    by_text: dict[str, set[tuple[Any, ...]]] = {}
    for ticket, (category, summary, _) in enriched.items():
        by_text.setdefault(texts[ticket], set()).add((category, summary))
    # identical texts share one request, hence one value
    assert all(len(values) == 1 for values in by_text.values()), by_text
    shared = sum(1 for v in enriched.values() if v[2])
    assert shared == len(texts) - len(sent)
    assert p.flagged(TICKETS) == {}


# one warehouse (suite time): the budget's choice is made in Python, over the ledger
# queries that the other cases here run on both
@pytest.mark.parametrize("pipeline", ["postgres"], indirect=True)
def test_a_budget_never_holds_back_a_rider_of_a_request_it_sends(
    pipeline: Pipeline, emulator: Any
) -> None:
    """Item 4: 40 rows, 20 distinct texts, dedupe and a budget that holds rows back:
    over the runs it takes, each distinct text is sent exactly once."""
    p = pipeline
    texts = _pairs(p, 20)
    p.edit_declaration(TICKETS, dedupe=True)
    _models(p)
    est = _estimate(p)
    assert (est.requests, est.shared) == (20, 20)
    assert est.usd_expected is not None
    p.edit_declaration(TICKETS, budget_usd=round(est.usd_expected * 0.4, 8))

    runs = 0
    while p.flagged(TICKETS):
        assert runs < 8, f"still flagged after {runs} runs: {p.flagged(TICKETS)}"
        _sync(p)
        p.dbt("run")
        runs += 1
    assert runs >= 2  # the budget did hold rows back

    sent = _row_requests(emulator)
    assert sum(sent.values()) == 20, sent
    assert len({texts[cid] for cid in sent}) == 20
    _assert_every_row_has_the_value_of_its_text(p, texts, sent)


@pytest.mark.parametrize("budgeted", [False, True], ids=["covering-budget", "tight-budget"])
def test_dedupe_spans_batches_and_the_estimate_is_what_sync_sends(
    pipeline: Pipeline, emulator: Any, budgeted: bool
) -> None:
    """Item 5: with 5 requests per batch, 40 rows / 20 distinct texts: the estimate
    says 20 requests and sync sends 20, each with its estimate recorded; what a budget
    lets through never costs more than the budget, by the estimate it was judged by."""
    p = pipeline
    texts = _pairs(p, 20)
    p.edit_declaration(TICKETS, dedupe=True, max_requests_per_batch=5)
    _models(p)
    est = _estimate(p)
    assert (est.requests, est.shared) == (20, 20)
    assert est.usd_expected is not None
    budget = est.usd_expected * (0.5 if budgeted else 1.000001)
    p.edit_declaration(TICKETS, budget_usd=budget)

    _sync(p)
    sent = _row_requests(emulator)
    recorded = _recorded(p)
    assert sorted(cid for cid, _ in recorded) == sorted(sent)
    assert set(sent.values()) == {1}
    assert len({texts[cid] for cid in sent}) == len(sent)  # no text twice
    assert all(usd is not None and usd > 0 for _, usd in recorded), recorded
    spent = sum(usd or 0.0 for _, usd in recorded)
    assert spent <= budget * (1 + 1e-9)
    if budgeted:
        assert 0 < len(sent) < 20
        # a held-back text's rows are all held back together: nothing is half sent
        flagged = set(p.flagged(TICKETS))
        assert {texts[t] for t in flagged}.isdisjoint({texts[cid] for cid in sent})
        assert len(flagged) == 2 * (20 - len(sent))
    else:
        assert len(sent) == est.requests == 20
        assert spent == pytest.approx(est.usd_expected, rel=1e-9)
        p.dbt("run")
        _assert_every_row_has_the_value_of_its_text(p, texts, sent)


def test_a_row_identical_to_a_landed_or_in_flight_request_shares_it(
    pipeline: Pipeline, emulator: Any
) -> None:
    """Item 5: a new row whose request already succeeded in an earlier run, or is in
    flight, rides on that request instead of being sent again; dbt gives it the value."""
    p = pipeline
    rows = _distinct_tickets(p, 12)
    landed, later = rows[:10], rows[10:]
    _write_tickets(p, landed)
    p.edit_declaration(TICKETS, dedupe=True)
    _models(p)
    _sync(p)  # the first 10 land
    p.dbt("run")
    assert len(_row_requests(emulator)) == 10

    # a copy of a landed ticket, and two new tickets sent without waiting: in flight
    _write_tickets(p, [*landed, _copy(landed[3], 6001), *later])
    p.dbt("seed", "-s", "example_support_tickets")  # the models over it are views
    _sync(p, wait=False)
    sent = _row_requests(emulator)
    assert sum(sent.values()) == 12 and "6001" not in sent, sent
    in_flight = p.query(
        "select count(*) from enrich.batches where status in ('submitted', 'submitting')"
    )[0][0]
    assert in_flight == 1

    # copies of the in-flight ones: they ride on those requests, still in flight
    _write_tickets(
        p, [*landed, _copy(landed[3], 6001), *later, _copy(later[0], 6002), _copy(later[1], 6003)]
    )
    p.dbt("seed", "-s", "example_support_tickets")
    assert set(p.flagged(TICKETS)) == {"6002", "6003"}
    assert _estimate(p).requests == 0
    _sync(p, wait=False)
    assert sum(_row_requests(emulator).values()) == 12
    assert p.flagged(TICKETS) == {}  # in flight through the requests they share

    _sync(p)  # lands the in-flight batch
    p.dbt("run")
    sent = _row_requests(emulator)
    assert sum(sent.values()) == 12
    texts = {r["ticket_id"]: r["subject"] + "\n" + r["body"] for r in [*landed, *later]}
    texts |= {"6001": texts[landed[3]["ticket_id"]]}
    texts |= {"6002": texts[later[0]["ticket_id"]], "6003": texts[later[1]["ticket_id"]]}
    _assert_every_row_has_the_value_of_its_text(p, texts, sent)
    # and nothing is flagged or sent again
    _sync(p)
    assert sum(_row_requests(emulator).values()) == 12
