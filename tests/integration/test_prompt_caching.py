"""Prompt caching end to end, on Postgres or on DuckDB (each case on one): the example project's
ticket_triage declaration, `enrich sync` through the official SDK against the emulator,
then `dbt build`. The system prompt and a declared `cached_prefix` are written to the
cache by the first request and read by the others (and by later batches while the TTL
lasts), in the 5m or 1h bucket the declaration asks for; nothing is cached without
markers or under the model's minimum cacheable length; and `enrich_costs` prices every
line as an independent computation from the raw lines and the price seed does."""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from harness.pipeline import Pipeline, pipeline_in_env
from harness.warehouses import Warehouse

from connector.emulator import EmulatorConfig, run_emulator

ENRICHMENT = "ticket_triage"
TICKETS = 300
HAIKU_MIN_CACHEABLE = 4096  # Anthropic's minimum for claude-haiku-4-5
_RULES = [
    ("the invoice shows a charge twice", "billing"),
    ("the export button does nothing", "bug"),
    ("please add a dark mode", "feature_request"),
    ("I cannot reset my password", "account"),
    ("do you have an office in Lyon", "other"),
    ("the card was declined although it is valid", "billing"),
    ("charts render as empty boxes", "bug"),
    ("we would like single sign-on with Okta", "feature_request"),
]
#: A triage guide every ticket shares: long enough for Haiku's real minimum.
GUIDE = "Triage guide: read each example, then classify the ticket that follows.\n" + "\n".join(
    f"Example {i}: a customer writes that {text}; the category is {category}, urgency {1 + i % 5}."
    for i, (text, category) in enumerate(_RULES * 24)
)


def tokens(chars: int) -> int:
    """The emulator's documented token count: characters / 4, rounded up."""
    return (chars + 3) // 4


@pytest.fixture
def emulator(request: pytest.FixtureRequest) -> Iterator[Any]:
    """The emulator; `indirect` parametrization sets min_cache_tokens (default: the
    per-model minimums of the real API)."""
    min_cache_tokens = getattr(request, "param", None)
    with run_emulator(EmulatorConfig(seed=23, min_cache_tokens=min_cache_tokens)) as emu:
        yield emu


@pytest.fixture
def pipeline(
    warehouse: Warehouse, tmp_path: Path, emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> Pipeline:
    return pipeline_in_env(
        tmp_path, warehouse, emulator.base_url, "sk-ant-caching-test", monkeypatch
    )


def declaration(p: Pipeline) -> dict[str, Any]:
    doc = yaml.safe_load((p.project / "models" / "examples" / "_examples.yml").read_text())
    model = next(m for m in doc["models"] if m["name"] == ENRICHMENT)
    decl: dict[str, Any] = model["config"]["meta"]["enrich"]
    return decl


def prefix_tokens(p: Pipeline, *, with_guide: bool) -> int:
    """Tokens up to the last breakpoint, as the emulator reads the prompt: the output
    schema, the system prompt, then (with a cached_prefix) the guide."""
    decl = declaration(p)
    chars = len(orjson.dumps(decl["output_schema"])) + len(decl["system"])
    return tokens(chars + (len(GUIDE) if with_guide else 0))


def usages_by_batch(p: Pipeline) -> list[dict[str, dict[str, Any]]]:
    """For each batch of the enrichment, oldest first: custom_id -> usage of its
    succeeded lines."""
    rows = p.query(
        """
        select b.batch_id, x.custom_id, cast(x.line as text)
        from enrich.batches as b
        join enrich.results_raw as x on x.batch_id = b.batch_id
        where b.enrichment = %s
        order by b.intent_at, b.batch_id
        """,
        (ENRICHMENT,),
    )
    batches: dict[str, dict[str, dict[str, Any]]] = {}
    for batch_id, custom_id, line in rows:
        result = json.loads(line)["result"]
        assert result["type"] == "succeeded", result
        batches.setdefault(batch_id, {})[custom_id] = result["message"]["usage"]
    return list(batches.values())


def writes_and_reads(usages: dict[str, dict[str, Any]]) -> tuple[list[str], list[str]]:
    writes = [c for c, u in usages.items() if u["cache_creation_input_tokens"]]
    reads = [c for c, u in usages.items() if u["cache_read_input_tokens"]]
    return writes, reads


def seed_prices(p: Pipeline) -> dict[str, dict[str, Decimal]]:
    with (p.project / "seeds" / "batch_enrich_model_prices.csv").open(newline="") as f:
        return {
            row["model"]: {k: Decimal(v) for k, v in row.items() if k != "model"}
            for row in csv.DictReader(f)
        }


def assert_costs_priced_from_lines(p: Pipeline) -> Counter[str]:
    """Every succeeded line's row in enrich_costs equals usage x seed prices, computed
    here from the raw line; returns how many lines had tokens of each kind."""
    prices = seed_prices(p)
    haiku = prices["claude-haiku-4-5"]
    multipliers = (
        haiku["cache_write_5m_multiplier"],
        haiku["cache_write_1h_multiplier"],
        haiku["cache_read_multiplier"],
        haiku["batch_discount"],
    )
    assert multipliers == (Decimal("1.25"), Decimal("2"), Decimal("0.1"), Decimal("0.5"))
    costs = {
        (row[0], row[1]): row[2:]
        for row in p.query(
            """
            select batch_id, custom_id, input_tokens, cache_write_5m_tokens,
                cache_write_1h_tokens, cache_read_tokens, output_tokens, input_usd,
                cache_write_5m_usd, cache_write_1h_usd, cache_read_usd, output_usd, total_usd
            from analytics.enrich_costs
            where enrichment = %s
            """,
            (ENRICHMENT,),
        )
    }
    lines = p.query(
        "select x.batch_id, x.custom_id, cast(x.line as text) from enrich.results_raw as x "
        "join enrich.batches as b on b.batch_id = x.batch_id where b.enrichment = %s",
        (ENRICHMENT,),
    )
    assert lines
    kinds: Counter[str] = Counter()
    for batch_id, custom_id, line in lines:
        message = json.loads(line)["result"]["message"]
        usage, price = message["usage"], prices[message["model"]]
        split = usage["cache_creation"]
        assert (
            split["ephemeral_5m_input_tokens"] + split["ephemeral_1h_input_tokens"]
            == (usage["cache_creation_input_tokens"])
        )
        counts = {
            "input": usage["input_tokens"],
            "write_5m": split["ephemeral_5m_input_tokens"],
            "write_1h": split["ephemeral_1h_input_tokens"],
            "read": usage["cache_read_input_tokens"],
            "output": usage["output_tokens"],
        }
        per_token = {
            "input": price["input_usd_per_mtok"],
            "write_5m": price["input_usd_per_mtok"] * price["cache_write_5m_multiplier"],
            "write_1h": price["input_usd_per_mtok"] * price["cache_write_1h_multiplier"],
            "read": price["input_usd_per_mtok"] * price["cache_read_multiplier"],
            "output": price["output_usd_per_mtok"],
        }
        usd = {
            kind: counts[kind] * per_token[kind] / 1_000_000 * (1 - price["batch_discount"])
            for kind in counts
        }
        got = costs[(batch_id, custom_id)]
        assert [int(n) for n in got[:5]] == list(counts.values()), custom_id
        for kind, value in zip([*usd, "total"], got[5:], strict=True):
            expected = sum(usd.values()) if kind == "total" else usd[kind]
            assert abs(Decimal(str(value)) - expected) < Decimal("1e-12"), (custom_id, kind)
        kinds.update(kind for kind, n in counts.items() if n)
    return kinds


def change_one_ticket(p: Pipeline) -> None:
    body = "Since this morning the login page loops back to itself after I enter my code."
    p.edit_seed_row("example_support_tickets", "ticket_id", "1001", "body", body)
    p.dbt("seed", "-s", "example_support_tickets")  # the models over it are views


def models(p: Pipeline) -> None:
    """Seeds and models, without the data and unit tests (the e2e tests run those)."""
    p.dbt("seed")
    p.dbt("run")


def sync_and_parse(p: Pipeline) -> None:
    p.sync(ENRICHMENT)
    p.dbt("run")


# One warehouse per case (suite time): the cache lives in the requests and the emulator;
# the warehouse only prices the lines, and each one prices a cache bucket here.
@pytest.mark.parametrize("warehouse_kind", ["duckdb"], indirect=True)
@pytest.mark.parametrize("emulator", [0], indirect=True)
def test_system_prompt_is_written_once_then_read_for_an_hour(
    pipeline: Pipeline, emulator: Any
) -> None:
    # the example's system prompt is far under Haiku's minimum: lowered for this test
    p = pipeline
    models(p)
    sync_and_parse(p)
    (first,) = usages_by_batch(p)
    assert len(first) == TICKETS
    writes, reads = writes_and_reads(first)
    assert len(writes) == 1 and len(reads) == TICKETS - 1
    assert set(writes).isdisjoint(reads)
    prefix = prefix_tokens(p, with_guide=False)
    written = first[writes[0]]
    assert written["cache_creation"] == {
        "ephemeral_5m_input_tokens": 0,
        "ephemeral_1h_input_tokens": prefix,
    }
    assert all(first[c]["cache_read_input_tokens"] == prefix for c in reads)
    assert all(first[c]["cache_creation_input_tokens"] == 0 for c in reads)

    # ten minutes later a changed ticket still reads the one-hour entry
    emulator.advance_clock(600)
    change_one_ticket(p)
    sync_and_parse(p)
    second = usages_by_batch(p)[1]
    assert list(second) == ["1001"]
    assert second["1001"]["cache_read_input_tokens"] == prefix
    assert second["1001"]["cache_creation_input_tokens"] == 0

    kinds = assert_costs_priced_from_lines(p)
    assert kinds["write_1h"] == 1 and kinds["read"] == TICKETS
    assert kinds["write_5m"] == 0


@pytest.mark.parametrize("warehouse_kind", ["postgres"], indirect=True)
def test_cached_prefix_is_written_once_then_read_for_five_minutes(
    pipeline: Pipeline, emulator: Any
) -> None:
    # the real per-model minimum: the guide makes the prefix long enough for Haiku
    p = pipeline
    p.edit_declaration(ENRICHMENT, cached_prefix=GUIDE, cache_ttl="5m")
    prefix = prefix_tokens(p, with_guide=True)
    assert prefix >= HAIKU_MIN_CACHEABLE
    models(p)
    sync_and_parse(p)
    (first,) = usages_by_batch(p)
    writes, reads = writes_and_reads(first)
    assert len(writes) == 1 and len(reads) == TICKETS - 1
    assert first[writes[0]]["cache_creation"] == {
        "ephemeral_5m_input_tokens": prefix,
        "ephemeral_1h_input_tokens": 0,
    }
    assert all(first[c]["cache_read_input_tokens"] == prefix for c in reads)
    # only the ticket's own text follows the prefix
    assert all(u["input_tokens"] < 200 for u in first.values())

    # ten minutes later the five-minute entry is gone: the next request writes again
    emulator.advance_clock(600)
    change_one_ticket(p)
    sync_and_parse(p)
    second = usages_by_batch(p)[1]
    assert list(second) == ["1001"]
    assert second["1001"]["cache_creation"]["ephemeral_5m_input_tokens"] == prefix
    assert second["1001"]["cache_read_input_tokens"] == 0

    kinds = assert_costs_priced_from_lines(p)
    assert kinds["write_5m"] == 2 and kinds["read"] == TICKETS - 1
    assert kinds["write_1h"] == 0


# what is not cached depends on the request and the emulator, not on the warehouse
@pytest.mark.parametrize("warehouse_kind", ["duckdb"], indirect=True)
@pytest.mark.parametrize(
    "changes",
    [{"cache": False, "cached_prefix": GUIDE}, {}],
    ids=["cache_off_long_prefix", "markers_under_the_minimum"],
)
def test_nothing_is_cached_without_markers_or_under_the_minimum(
    pipeline: Pipeline, changes: dict[str, Any]
) -> None:
    p = pipeline
    if changes:
        p.edit_declaration(ENRICHMENT, **changes)
    models(p)
    sync_and_parse(p)
    (batch,) = usages_by_batch(p)
    assert len(batch) == TICKETS
    assert writes_and_reads(batch) == ([], [])
    with_guide = "cached_prefix" in changes
    # everything is plain input: the prefix is in every request's input_tokens
    assert all(u["input_tokens"] > prefix_tokens(p, with_guide=with_guide) for u in batch.values())
    kinds = assert_costs_priced_from_lines(p)
    assert kinds["input"] == TICKETS
    assert kinds["write_5m"] == kinds["write_1h"] == kinds["read"] == 0
