"""Keys, bad rows and bad declarations through `enrich sync` (real Postgres, SDK, emulator)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.enrich_project import KEY_TYPES, with_
from harness.warehouses import Warehouse

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
    assert emulator.stats()["requests_received"] == 21
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
