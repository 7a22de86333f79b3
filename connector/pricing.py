"""Prices and the cost of usage, as the dbt costs model computes them. Pure.

The price table is the seed `batch_enrich_model_prices` (one row per model: USD per
million input and output tokens, the cache write and read multipliers of the input
price, and the batch discount). `Price.cost` is the formula of `enrich_costs`:
every token class at its price, the sum times (1 - batch_discount).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from connector.errors import ConfigError

PRICE_COLUMNS = (
    "model",
    "input_usd_per_mtok",
    "output_usd_per_mtok",
    "cache_write_5m_multiplier",
    "cache_write_1h_multiplier",
    "cache_read_multiplier",
    "batch_discount",
)


@dataclass(frozen=True)
class Price:
    model: str
    input_usd_per_mtok: float
    output_usd_per_mtok: float
    cache_write_5m_multiplier: float
    cache_write_1h_multiplier: float
    cache_read_multiplier: float
    batch_discount: float

    def cost(
        self,
        *,
        input_tokens: float = 0,
        output_tokens: float = 0,
        cache_write_5m_tokens: float = 0,
        cache_write_1h_tokens: float = 0,
        cache_read_tokens: float = 0,
    ) -> float:
        """USD at batch prices (the discount applied)."""
        input_price = self.input_usd_per_mtok
        standard = (
            input_tokens * input_price
            + cache_write_5m_tokens * input_price * self.cache_write_5m_multiplier
            + cache_write_1h_tokens * input_price * self.cache_write_1h_multiplier
            + cache_read_tokens * input_price * self.cache_read_multiplier
            + output_tokens * self.output_usd_per_mtok
        ) / 1_000_000
        return standard * (1 - self.batch_discount)


def price_table(rows: Iterable[Sequence[object]]) -> dict[str, Price]:
    """Rows in the order of PRICE_COLUMNS → {model: Price}; a bad row names itself."""
    table: dict[str, Price] = {}
    for row in rows:
        model = str(row[0])
        try:
            numbers = [float(str(v)) for v in row[1:]]
        except (TypeError, ValueError):
            raise ConfigError(
                f"price seed batch_enrich_model_prices: the row of model {model!r} has a "
                f"value that is not a number: {list(row[1:])}"
            ) from None
        table[model] = Price(model, *numbers)
    return table
