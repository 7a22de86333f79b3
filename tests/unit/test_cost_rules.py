"""The pure cost rules: prices, fitting token counts, oldest-first budget selection."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from connector.budgets import BudgetStop, Limit, oldest_first, select_within, usd
from connector.errors import ConfigError
from connector.estimate import OutputModel, PendingRow, calibrated_models, fit, utc_day_start
from connector.ledger.base import Calibration
from connector.pricing import Price, price_table

HAIKU = Price("claude-haiku-4-5", 1.0, 5.0, 1.25, 2.0, 0.1, 0.5)


def test_cost_prices_every_token_class_at_its_multiplier_and_the_batch_discount() -> None:
    got = HAIKU.cost(
        input_tokens=1_000_000,
        output_tokens=1_000_000,
        cache_write_5m_tokens=1_000_000,
        cache_write_1h_tokens=1_000_000,
        cache_read_tokens=1_000_000,
    )
    assert got == pytest.approx((1.0 + 5.0 + 1.25 + 2.0 + 0.1) * 0.5)


def test_price_table_names_the_model_of_a_bad_row() -> None:
    table = price_table([("m", "1", "2", "1.25", "2", "0.1", "0.5")])
    assert table["m"].output_usd_per_mtok == 2.0
    with pytest.raises(ConfigError, match="'broken'"):
        price_table([("broken", "one", "2", "1.25", "2", "0.1", "0.5")])


def test_fit_recovers_a_linear_token_count_and_falls_back_to_a_ratio() -> None:
    samples = [(b, 40 + b // 4) for b in (400, 800, 1200, 2000, 4000)]
    a, b = fit(samples)
    assert a == pytest.approx(40, abs=1)
    assert b == pytest.approx(0.25, abs=0.001)
    # all the same size: no slope to fit, tokens per byte instead
    assert fit([(100, 30), (100, 30)]) == (0.0, pytest.approx(0.3))


def test_calibration_prefers_the_prompt_version_and_says_where_it_came_from() -> None:
    rows = [Calibration("v1", 10, 10_000, 2_500, 500), Calibration("v2", 4, 4_000, 2_000, 80)]
    tokens, output = calibrated_models(rows, "v2")
    assert tokens is not None and tokens.per_byte == pytest.approx(0.5)
    assert output.mean == pytest.approx(20)
    assert "prompt_version v2" in output.method
    tokens, output = calibrated_models(rows, "v3")
    assert tokens is not None and tokens.per_byte == pytest.approx(4_500 / 14_000)
    assert "earlier prompt versions" in tokens.method
    assert calibrated_models([], "v1")[1].expected(300) == 150


def _row(cid: str, tokens: float, key: bytes | None = None) -> PendingRow:
    return PendingRow(cid, 100, 100, key, tokens)


def test_rows_held_back_before_go_first_by_when_they_were_first_held_back() -> None:
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    rows = [_row("a", 1), _row("b", 1), _row("c", 1), _row("d", 1)]
    ordered = oldest_first(rows, {"d": t0, "c": t0 - timedelta(hours=1)})
    assert [r.custom_id for r in ordered] == ["c", "d", "a", "b"]


def test_selection_stops_at_the_first_row_that_does_not_fit() -> None:
    output = OutputModel("fixed", 0.0)
    one_mtok = 1_000_000  # $0.50 each at haiku batch input prices
    rows = [_row("a", one_mtok), _row("b", 3 * one_mtok), _row("c", one_mtok)]
    chosen = select_within(rows, HAIKU, output, limit_usd=1.2)
    assert list(chosen.costs) == ["a"]  # c would fit, but b is older
    assert chosen.held_back == ["b", "c"]
    assert chosen.total_usd == pytest.approx(2.5)


def test_a_dedupe_key_is_paid_once_and_its_riders_are_free() -> None:
    output = OutputModel("fixed", 0.0)
    rows = [_row("a", 1_000_000, b"k"), _row("b", 1_000_000, b"k"), _row("c", 1_000_000)]
    chosen = select_within(rows, HAIKU, output, limit_usd=0.6)
    assert chosen.costs == {"a": pytest.approx(0.5), "b": 0.0}
    assert chosen.held_back == ["c"]


def test_riders_go_with_their_request_even_after_the_budget_is_spent() -> None:
    """Issue 13 item 4: a rider of a request the budget sends is never held back (it
    would be sent again by a later run), and a rider of one held back waits with it."""
    output = OutputModel("fixed", 0.0)
    mtok = 1_000_000  # $0.50 at haiku batch input prices
    rows = [
        _row("a1", mtok, b"a"),
        _row("b1", mtok, b"b"),
        _row("c1", mtok, b"c"),  # does not fit: the selection ends here
        _row("a2", mtok, b"a"),
        _row("c2", mtok, b"c"),
        _row("b2", mtok, b"b"),
        _row("d1", mtok, b"d"),
    ]
    chosen = select_within(rows, HAIKU, output, limit_usd=1.2)
    assert chosen.costs == {
        "a1": pytest.approx(0.5), "b1": pytest.approx(0.5), "a2": 0.0, "b2": 0.0
    }  # fmt: skip
    assert chosen.held_back == ["c1", "c2", "d1"]
    assert chosen.total_usd == pytest.approx(2.0)  # each distinct request once
    assert sum(chosen.key_costs.values()) == pytest.approx(1.0)


def test_the_sent_row_carries_its_keys_cost_whichever_row_was_charged() -> None:
    """Sync sends the first of a key's rows in view order, which need not be the row
    the budget charged (held-back rows go first): the cost goes with the request."""
    output = OutputModel("fixed", 0.0)
    rows = [_row("late", 1_000_000, b"k"), _row("early", 1_000_000, b"k"), _row("x", 2_000_000)]
    chosen = select_within(rows, HAIKU, output, limit_usd=5.0)
    assert chosen.costs["early"] == 0.0
    assert chosen.sender_cost("early") == chosen.sender_cost("late") == pytest.approx(0.5)
    assert chosen.sender_cost("x") == pytest.approx(1.0)
    assert chosen.sender_cost("unknown") is None


def test_rows_sharing_a_request_in_flight_or_succeeded_are_free_and_never_held() -> None:
    output = OutputModel("fixed", 0.0)
    joined = PendingRow("j", 100, 100, b"j", None, rides=True, joins=True)
    rows = [_row("a", 1_000_000), _row("b", 1_000_000), joined]
    chosen = select_within(rows, HAIKU, output, limit_usd=0.6)
    assert chosen.costs == {"a": pytest.approx(0.5), "j": 0.0}
    assert chosen.held_back == ["b"]
    assert chosen.total_usd == pytest.approx(1.0)


def test_usd_shows_cents_above_a_dollar_and_four_decimals_below() -> None:
    assert usd(12.345) == "$12.35"
    assert usd(0.01234) == "$0.0123"


def test_a_budget_stop_names_enrichment_estimate_budget_and_the_way_out() -> None:
    stop = BudgetStop("tickets", 12.3456, Limit(5.0, "budget_usd, per run"), 300, 120, 4.99, 180)
    assert stop.message == (
        "tickets: estimate $12.35 for 300 requests is over the budget of $5.00 "
        "(budget_usd, per run); submitted 120 requests ($4.99), held back 180 rows for a "
        "later run (oldest first). To send them now: "
        "enrich sync --select tickets --approve-usd 12.35"
    )
    unpriced = BudgetStop("tickets", None, Limit(5.0, "--max-usd"), 300, 0, 0.0, 0)
    assert "no price" in unpriced.message and "--max-usd" in unpriced.message


def test_the_budget_day_starts_at_midnight_utc_whatever_the_session_zone() -> None:
    tokyo = timezone(timedelta(hours=9))
    # 08:30 in Tokyo on the 27th is 23:30 UTC on the 26th
    start = utc_day_start(datetime(2026, 11, 27, 8, 30, tzinfo=tokyo))
    assert start == datetime(2026, 11, 26, tzinfo=UTC)
    assert utc_day_start(datetime(2026, 11, 26, 23, 59)) == datetime(2026, 11, 26, tzinfo=UTC)
