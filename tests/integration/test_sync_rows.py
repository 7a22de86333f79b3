"""Keys, bad rows and bad declarations through `enrich sync` (real Postgres, SDK, emulator)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
from harness.enrich_project import KEY_TYPES, with_
from harness.received import rows_received
from harness.warehouses import DuckDBWarehouse, PostgresWarehouse, Warehouse

from connector.custom_id import CUSTOM_ID_RE
from connector.settings import Settings
from connector.sync import sync

ODD_KEYS = [
    "plain-key_1",
    "has.dot",
    "has+plus",
    "has/slash",
    "has space",
    "non-ascii-é-中文",
    "x" * 65,
    "be-looks-encoded",
    "",
]


def _landed_by_key(wh: Warehouse, enrichment: str) -> dict[str, tuple[str, str]]:
    rows = wh.fetch(
        """
        select r.primary_key::text, r.custom_id, x.line ->> 'custom_id'
        from enrich.requests as r
        join enrich.batches as b using (submission_id)
        join enrich.results_raw as x on x.batch_id = b.batch_id and x.custom_id = r.custom_id
        where r.enrichment = %s
        """,
        (enrichment,),
    )
    return {pk: (cid, line_cid) for pk, cid, line_cid in rows}


def test_text_keys_verbatim_or_encoded_round_trip(
    enrich_env: Warehouse, enrich_project: Path, settings: Settings
) -> None:
    enrich_env.create_source("docs", [(k, f"Doc {k!r}") for k in ODD_KEYS], KEY_TYPES["docs"])
    enrich_env.create_flagged_views(enrich_project, ["docs"])

    report = sync(with_(settings, select=("docs",)))

    assert report.errors == []
    landed = _landed_by_key(enrich_env, "docs")
    assert len(landed) == len(ODD_KEYS)
    by_key = {json.loads(pk)["doc_key"]: ids for pk, ids in landed.items()}
    assert set(by_key) == set(ODD_KEYS)
    for key, (cid, line_cid) in by_key.items():
        assert cid == line_cid
        assert CUSTOM_ID_RE.match(cid)
        assert (cid == key) == (key == "plain-key_1"), key


def test_composite_keys_round_trip(
    enrich_env: Warehouse, enrich_project: Path, settings: Settings
) -> None:
    rows = [
        (region, seq, f"{region} #{seq}")
        for region in ("eu west", "us/east", "ap")
        for seq in range(5)
    ]
    enrich_env.create_source("pairs", rows, KEY_TYPES["pairs"])
    enrich_env.create_flagged_views(enrich_project, ["pairs"])

    sync(with_(settings, select=("pairs",)))

    landed = _landed_by_key(enrich_env, "pairs")
    keys = {(json.loads(pk)["region"], json.loads(pk)["seq"]) for pk in landed}
    assert keys == {(r, s) for r, s, _ in rows}
    assert len({cid for cid, _ in landed.values()}) == len(rows)
    assert all(cid.startswith("be-") and cid == line for cid, line in landed.values())


def test_bad_rows_are_reported_with_their_key_and_the_rest_goes_on(
    enrich_env: Warehouse, enrich_project: Path, settings: Settings, emulator: Any
) -> None:
    rows: list[tuple[object, ...]] = [(f"good-{i}", f"fine text {i}") for i in range(20)]
    rows += [
        (None, "a row without a key"),
        ("dup", "first copy"),
        ("dup", "second copy"),
        ("huge", "y" * 30_000),  # docs' max_batch_bytes is 20,000
        ("empty", "   "),
        ("ctrl", "control \x01 characters are fine"),
    ]
    enrich_env.create_source("docs", rows, KEY_TYPES["docs"])
    enrich_env.create_flagged_views(enrich_project, ["docs"])

    report = sync(with_(settings, select=("docs",)))

    sub = report.submitted[0]
    reasons = {json.loads(k)["doc_key"]: why for k, why in sub.rejected}
    assert "is null" in reasons[None]
    assert reasons["dup"] == "primary key repeated in the flagged view"
    assert "over the limit" in reasons["huge"] and "bytes" in reasons["huge"]
    assert "empty" in reasons["empty"]
    assert sub.submitted == 21
    assert rows_received(emulator.stats()) == 21
    stored = enrich_env.fetch("select primary_key ->> 'doc_key', reason from enrich.rejections")
    assert sorted(k or "" for k, _ in stored) == ["", "dup", "dup", "empty", "huge"]
    landed = enrich_env.fetch("select count(*) from enrich.results_raw")[0][0]
    assert landed == 21


def test_invalid_declaration_names_model_and_key_and_others_go_on(
    enrich_env: Warehouse, enrich_project: Path, settings: Settings
) -> None:
    enrich_env.create_source("items", [(1, "one"), (2, "two")], KEY_TYPES["items"])
    enrich_env.create_flagged_views(enrich_project, ["items"])

    report = sync(with_(settings, select=()))

    broken = [e for e in report.errors if "broken" in e]
    assert broken and "max_tokens" in broken[0] and "lots" in broken[0]
    items = next(s for s in report.submitted if s.enrichment == "items")
    assert items.submitted == 2


def _execute(wh: Warehouse, statement: str) -> None:
    """Run one DDL statement on the test's warehouse (the same text on both)."""
    if isinstance(wh, PostgresWarehouse):
        with psycopg.connect(wh.db.conninfo, autocommit=True) as conn:
            conn.execute(statement)  # type: ignore[arg-type]
    else:
        assert isinstance(wh, DuckDBWarehouse)
        with wh.connect() as conn:
            conn.execute(statement)


# a hand-written flagged view whose max_tokens column holds what a typo or a bad
# multiplication can put there; item 7 and 8 are fine (300, and null: the declaration's)
BAD_MAX_TOKENS_VIEW = """
create or replace view analytics.items__flagged as
select item_id, prompt,
    case item_id
        when 1 then cast('NaN' as double precision)
        when 2 then cast('Infinity' as double precision)
        when 3 then cast(0 as double precision)
        when 4 then cast(-3 as double precision)
        when 5 then cast(2.5 as double precision)
        when 6 then cast(64001 as double precision)
        when 7 then cast(300 as double precision)
    end as max_tokens
from app.items_src
"""


def test_bad_max_tokens_in_a_hand_written_view_rejects_those_rows_and_the_run_goes_on(
    enrich_env: Warehouse, enrich_project: Path, settings: Settings, emulator: Any
) -> None:
    enrich_env.create_source("items", [(i, f"item {i}") for i in range(1, 9)], KEY_TYPES["items"])
    _execute(enrich_env, "create schema if not exists analytics")
    _execute(enrich_env, BAD_MAX_TOKENS_VIEW)
    enrich_env.create_source("pairs", [("eu", 1, "a pair")], KEY_TYPES["pairs"])
    enrich_env.create_flagged_views(enrich_project, ["pairs"])

    report = sync(with_(settings, select=("items", "pairs")))

    assert report.errors == []
    items = next(s for s in report.submitted if s.enrichment == "items")
    reasons = {json.loads(k)["item_id"]: why for k, why in items.rejected}
    expected = {1: "is nan", 2: "is inf", 3: "is 0.0", 4: "is -3.0", 5: "is 2.5", 6: "is 64001.0"}
    assert set(reasons) == set(expected)
    for item_id, shown in expected.items():
        assert f"flagged view column 'max_tokens' {shown} (float)" in reasons[item_id]
        assert "fix the view's max_tokens" in reasons[item_id]
    assert "over claude-haiku-4-5's output limit of 64,000 tokens" in reasons[6]
    assert items.submitted == 2
    sent = enrich_env.fetch(
        "select primary_key ->> 'item_id', max_tokens from enrich.requests "
        "where enrichment = 'items'"
    )
    assert sorted((int(k), int(t)) for k, t in sent) == [(7, 300), (8, 200)]
    stored = enrich_env.fetch(
        "select primary_key ->> 'item_id', reason from enrich.rejections where enrichment = 'items'"
    )
    assert {int(k): why for k, why in stored} == reasons
    pairs = next(s for s in report.submitted if s.enrichment == "pairs")
    assert pairs.submitted == 1  # an enrichment after the bad view still ran
    assert rows_received(emulator.stats()) == 3


def test_text_max_tokens_in_a_hand_written_view_is_a_rejection(
    enrich_env: Warehouse, settings: Settings, emulator: Any
) -> None:
    enrich_env.create_source("docs", [("a", "doc a"), ("b", "doc b")], KEY_TYPES["docs"])
    _execute(enrich_env, "create schema if not exists analytics")
    _execute(
        enrich_env,
        "create or replace view analytics.docs__flagged as select doc_key, prompt, "
        "case doc_key when 'a' then 'lots' else '512' end as max_tokens from app.docs_src",
    )

    report = sync(with_(settings, select=("docs",)))

    assert report.errors == []
    reasons = {json.loads(k)["doc_key"]: why for k, why in report.submitted[0].rejected}
    assert "flagged view column 'max_tokens' is 'lots' (str)" in reasons["a"]
    assert "flagged view column 'max_tokens' is '512' (str)" in reasons["b"]
    assert emulator.stats()["requests_received"] == 0
    assert enrich_env.count("enrich", "rejections") == 2


def test_rows_rejected_again_for_the_same_reason_are_recorded_once(
    enrich_env: Warehouse, enrich_project: Path, settings: Settings
) -> None:
    rows: list[tuple[object, ...]] = [
        ("fine", "text"),
        (None, "a row without a key"),
        ("dup", "first copy"),
        ("dup", "second copy"),
        ("empty", "   "),
    ]
    enrich_env.create_source("docs", rows, KEY_TYPES["docs"])
    enrich_env.create_flagged_views(enrich_project, ["docs"])
    query = "select primary_key::text, reason, seen_at from enrich.rejections order by 1, 2"

    first = sync(with_(settings, select=("docs",)))
    recorded = enrich_env.fetch(query)
    second = sync(with_(settings, select=("docs",)))

    assert len(first.submitted[0].rejected) == len(second.submitted[0].rejected) == 4
    assert len(recorded) == 4  # the two rows repeating "dup" are two rejections
    assert enrich_env.fetch(query) == recorded  # nothing added; seen_at is the first sighting
    # a new reason for a known key is recorded
    enrich_env.insert_rows("docs", [("fine", "a second row for fine")], ["doc_key"])
    sync(with_(settings, select=("docs",)))
    reasons = enrich_env.fetch(
        "select reason from enrich.rejections where primary_key ->> 'doc_key' = 'fine'"
    )
    assert reasons == [("primary key repeated in the flagged view",)] * 2
