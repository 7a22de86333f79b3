"""Budgets: which flagged rows one `sync` may send, and why the rest wait.

A budget is the smallest of: the declaration's `budget_usd` (per run), what is left of
its `budget_usd_per_day` (the estimates of today's submissions, UTC, subtracted), and
what is left of `--max-usd` (for the whole run). `--approve-usd X` replaces all of them
for one run with X. Rows go out oldest first: rows a budget held back before, by when
it first did, then the rest in the flagged view's order; the first row that does not
fit stops the selection, so no younger row overtakes an older one.
"""

from __future__ import annotations

import itertools
import math
from array import array
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from connector.declaration import Declaration
from connector.estimate import OutputModel, PendingRow, PendingRows
from connector.ledger.base import CustomIds, Ledger
from connector.pricing import Price
from connector.settings import Settings


def usd(value: float) -> str:
    """Dollars as people read them: cents above $1, four decimals below."""
    return f"${value:,.2f}" if value >= 1 else f"${value:.4f}"


@dataclass(frozen=True)
class Limit:
    usd: float
    source: str  # which budget, for the message


@dataclass(frozen=True)
class BudgetStop:
    """A budget held rows back (or refused to guess without a price)."""

    enrichment: str
    estimate_usd: float | None  # everything pending, expected; None without a price
    limit: Limit
    requests: int  # requests pending
    submitted: int
    submitted_usd: float
    held_back: int

    message: str = field(default="", compare=False)  # filled in: names all of the above

    def __post_init__(self) -> None:
        object.__setattr__(self, "message", self._message())

    def _message(self) -> str:
        if self.estimate_usd is None:
            return (
                f"{self.enrichment}: {self.limit.source} applies but the model has no price "
                "in the seed batch_enrich_model_prices, so nothing was submitted; add its "
                "price and run `dbt seed`"
            )
        approve = math.ceil(self.estimate_usd * 100) / 100
        return (
            f"{self.enrichment}: estimate {usd(self.estimate_usd)} for {self.requests} "
            f"requests is over the budget of {usd(self.limit.usd)} ({self.limit.source}); "
            f"submitted {self.submitted} requests ({usd(self.submitted_usd)}), held back "
            f"{self.held_back} rows for a later run (oldest first). To send them now: "
            f"enrich sync --select {self.enrichment} --approve-usd {approve:.2f}"
        )


class RunBudget:
    """What is left of `--max-usd` / `--approve-usd` across the enrichments of one run."""

    def __init__(self, settings: Settings) -> None:
        self.approved = settings.approve_usd is not None
        self.left: float | None = (
            settings.approve_usd if settings.approve_usd is not None else settings.max_usd
        )
        self.flag = "--approve-usd" if self.approved else "--max-usd"

    def spend(self, amount: float) -> None:
        if self.left is not None:
            self.left = max(0.0, self.left - amount)

    def limit(self, decl: Declaration, ledger: Ledger, day_start: datetime) -> Limit | None:
        """The budget that applies to one enrichment now, or None: no budget."""
        if self.approved:
            assert self.left is not None
            return Limit(self.left, "--approve-usd for this run")
        limits: list[Limit] = []
        if decl.budget_usd is not None:
            limits.append(Limit(decl.budget_usd, "budget_usd, per run"))
        if decl.budget_usd_per_day is not None:
            spent = ledger.estimated_since(decl.enrichment, day_start)
            limits.append(
                Limit(
                    max(0.0, decl.budget_usd_per_day - spent),
                    f"budget_usd_per_day {usd(decl.budget_usd_per_day)}, "
                    f"{usd(spent)} committed today (UTC)",
                )
            )
        if self.left is not None:
            limits.append(Limit(self.left, f"{self.flag}, what is left of it this run"))
        return min(limits, key=lambda lim: lim.usd) if limits else None


def oldest_first(
    rows: Sequence[PendingRow], deferred: Mapping[str, datetime]
) -> Sequence[PendingRow]:
    """Rows held back before (by when they first were), then the rest in view order.

    Of PendingRows, an ordered view that holds positions only (8 bytes a row held back
    before, 1 a row), not the rows."""
    if isinstance(rows, PendingRows):
        return _Reordered(rows, deferred)
    before = sorted(
        (r for r in rows if r.custom_id in deferred), key=lambda r: deferred[r.custom_id]
    )
    return before + [r for r in rows if r.custom_id not in deferred]


class _Reordered(Sequence[PendingRow]):
    def __init__(self, rows: PendingRows, deferred: Mapping[str, datetime]) -> None:
        self._rows = rows
        first = [i for i, cid in enumerate(rows.custom_ids) if cid in deferred] if deferred else []
        first.sort(key=lambda i: deferred[rows.custom_ids[i]])  # stable: view order on ties
        self._first = array("q", first)
        self._moved = bytearray(len(rows))
        for i in self._first:
            self._moved[i] = 1

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, i: int) -> PendingRow:  # type: ignore[override]
        if i < 0:
            i += len(self)
        return next(itertools.islice(iter(self), i, None))  # iteration is the hot path

    def __iter__(self) -> Iterator[PendingRow]:
        rows, moved = self._rows, self._moved
        for i in self._first:
            yield rows[i]
        if not self._first:
            yield from rows
            return
        for i, row in enumerate(rows):
            if not moved[i]:
                yield row


class ChosenCosts(Mapping[str, float]):
    """custom_id -> estimate of the rows a budget lets through (riders: 0), in the order
    they were chosen; compact (CustomIds and an array of costs) for a million rows."""

    def __init__(self) -> None:
        self._ids = CustomIds()
        self._costs = array("d")

    def add(self, custom_id: str, cost: float) -> None:
        self._ids.append(custom_id)
        self._costs.append(cost)

    def __getitem__(self, custom_id: str) -> float:
        i = self._ids.position(custom_id)
        if i < 0:
            raise KeyError(custom_id)
        return self._costs[i]

    def __contains__(self, custom_id: object) -> bool:
        return custom_id in self._ids

    def __iter__(self) -> Iterator[str]:
        return iter(self._ids)

    def __len__(self) -> int:
        return len(self._ids)


@dataclass
class Selection:
    costs: ChosenCosts  # custom_id → estimate, of the rows that fit (riders: 0)
    held_back: CustomIds
    total_usd: float  # everything pending, expected (each dedupe key once)
    # dedupe: custom_id → key of the rows that fit, and each key's cost (paid once)
    keys: dict[str, bytes] = field(default_factory=dict)
    key_costs: dict[bytes, float] = field(default_factory=dict)

    def sender_cost(self, custom_id: str) -> float | None:
        """The estimate to record with the request sent for this row: its dedupe key's
        cost, whichever of the key's rows goes out as the request (sync sends the first
        in the flagged view's order, not necessarily the row that was charged)."""
        key = self.keys.get(custom_id)
        return self.key_costs[key] if key is not None else self.costs.get(custom_id)


def select_within(
    rows: Iterable[PendingRow], price: Price, output: OutputModel, limit_usd: float
) -> Selection:
    """The longest oldest-first prefix whose estimates fit in `limit_usd`.

    A dedupe key's cost counts once, at its first row: every other row of the key rides
    on the same request for free, and goes or waits with it (a rider of a request that
    is sent is never held back, and a rider of one held back waits too). Rows that
    share a request already in flight or succeeded (`joins`) cost nothing and always go.
    """
    selection = Selection(ChosenCosts(), CustomIds(), 0.0)
    decided: dict[bytes, bool] = {}  # dedupe key -> whether its request fits
    spent = 0.0
    full = False
    for row in rows:
        key = row.dedupe_key
        if row.joins:
            selection.costs.add(row.custom_id, 0.0)
            continue
        if key is not None and key in decided:
            if decided[key]:
                selection.costs.add(row.custom_id, 0.0)
                selection.keys[row.custom_id] = key
            else:
                selection.held_back.append(row.custom_id)
            continue
        cost = _cost(row, price, output)
        selection.total_usd += cost
        fits = not full and spent + cost <= limit_usd
        if fits:
            spent += cost
            selection.costs.add(row.custom_id, cost)
        else:
            full = True
            selection.held_back.append(row.custom_id)
        if key is not None:
            decided[key] = fits
            if fits:
                selection.keys[row.custom_id] = key
                selection.key_costs[key] = cost
    return selection


def _cost(row: PendingRow, price: Price, output: OutputModel) -> float:
    assert row.tokens is not None
    return price.cost(input_tokens=row.tokens, output_tokens=output.expected(row.max_tokens))
