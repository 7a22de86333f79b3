"""A budget over many flagged rows keeps them column by column (`PendingRows`,
`CustomIds`): it must choose exactly what the plain list of rows chooses.

(Pure: no warehouse. Here rather than in tests/unit because that folder is another
engineer's this week.)"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from connector.budgets import oldest_first, select_within
from connector.estimate import OutputModel, PendingRow, PendingRows
from connector.ledger.base import CustomIds, Deferrals
from connector.pricing import Price

HAIKU = Price("claude-haiku-4-5", 1.0, 5.0, 1.25, 2.0, 0.1, 0.5)


def _rows(n: int, seed: int) -> list[PendingRow]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        key = rng.choice([None, None, b"k%d" % rng.randrange(n // 4 + 1)])
        joins = key is not None and rng.random() < 0.1
        tokens = None if rng.random() < 0.1 else float(rng.randrange(50, 5000))
        custom_id = f"row-{i}_{rng.randrange(10**6)}"
        size, max_tokens = rng.randrange(100, 9000), rng.choice([50, 100, 400])
        rows.append(PendingRow(custom_id, size, max_tokens, key, tokens, rides=joins, joins=joins))
    return rows


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_compact_rows_choose_what_the_list_of_rows_chooses(seed: int) -> None:
    rows = [r for r in _rows(3000, seed) if r.tokens is not None or r.joins]
    rng = random.Random(seed)
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    deferred = {
        r.custom_id: t0 + timedelta(minutes=rng.randrange(30))
        for r in rng.sample(rows, len(rows) // 5)
    }
    output = OutputModel("half", None)
    compact = PendingRows(rows)
    assert list(compact) == rows and compact[7] == rows[7] and compact[-1] == rows[-1]
    assert list(oldest_first(compact, deferred)) == oldest_first(rows, deferred)

    for limit in (0.0, 0.5, 3.0, 1e9):
        want = select_within(oldest_first(rows, deferred), HAIKU, output, limit)
        got = select_within(oldest_first(compact, deferred), HAIKU, output, limit)
        assert list(got.costs.items()) == list(want.costs.items())
        assert got.held_back == list(want.held_back) and len(got.held_back) == len(want.held_back)
        assert got.total_usd == pytest.approx(want.total_usd)
        for row in rows[:300]:
            assert got.sender_cost(row.custom_id) == want.sender_cost(row.custom_id)
            assert (row.custom_id in got.costs) == (row.custom_id in want.costs)
        assert "not-a-row" not in got.costs and got.sender_cost("not-a-row") is None


def test_tokens_set_on_compact_rows_read_back() -> None:
    rows = PendingRows([PendingRow("a", 10, 100, None), PendingRow("b", 20, 100, b"k")])
    rows.set_tokens(0, 12.5)
    assert rows[0].tokens == 12.5 and rows[1].tokens is None and rows[1].dedupe_key == b"k"


def test_custom_ids_find_every_id_and_only_those() -> None:
    ids = [f"id-{i}" for i in range(5000)] + ["id-7"]  # a repeat answers its first place
    compact = CustomIds(ids)
    assert len(compact) == 5001 and compact[-1] == "id-7" and compact[2:4] == ["id-2", "id-3"]
    assert all(compact.position(cid) == i for i, cid in enumerate(ids[:5000]))
    assert compact.position("id-5000") == -1 and "id-5000" not in compact and "id-4999" in compact
    assert compact == ids and compact != ids[:-1]
    compact.append("late")  # the lookup is rebuilt after an append
    assert compact.position("late") == 5001


def test_deferrals_keep_when_each_row_was_first_held_back() -> None:
    t0 = datetime(2026, 11, 1, 12, 30, 15, 123456, tzinfo=UTC)
    found = Deferrals()
    for i in range(1000):
        found.add(f"c{i}", t0 + timedelta(seconds=i))
    assert len(found) == 1000 and found["c0"] == t0 and found["c999"] == t0 + timedelta(seconds=999)
    assert "c1000" not in found and found.get("c1000") is None and list(found)[:2] == ["c0", "c1"]
