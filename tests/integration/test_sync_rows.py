"""Keys, bad rows and bad declarations through `enrich sync` (real Postgres, SDK, emulator)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.enrich_project import KEY_TYPES, create_flagged_views, create_source, fetch, with_
from harness.postgres import PgDatabase

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


def _landed_by_key(conninfo: str, enrichment: str) -> dict[str, tuple[str, str]]:
    rows = fetch(
        conninfo,
        """
        select r.primary_key::text, r.custom_id, x.line::jsonb ->> 'custom_id'
        from enrich.requests as r
        join enrich.batches as b using (submission_id)
        join enrich.results_raw as x on x.batch_id = b.batch_id and x.custom_id = r.custom_id
        where r.enrichment = %s
        """,
        (enrichment,),
    )
    return {pk: (cid, line_cid) for pk, cid, line_cid in rows}


def test_text_keys_verbatim_or_encoded_round_trip(
    enrich_env: PgDatabase, enrich_project: Path, settings: Settings
) -> None:
    create_source(
        enrich_env.conninfo, "docs", [(k, f"Doc {k!r}") for k in ODD_KEYS], KEY_TYPES["docs"]
    )
    create_flagged_views(enrich_env.conninfo, enrich_project, ["docs"])

    report = sync(with_(settings, select=("docs",)))

    assert report.errors == []
    landed = _landed_by_key(enrich_env.conninfo, "docs")
    assert len(landed) == len(ODD_KEYS)
    by_key = {json.loads(pk)["doc_key"]: ids for pk, ids in landed.items()}
    assert set(by_key) == set(ODD_KEYS)
    for key, (cid, line_cid) in by_key.items():
        assert cid == line_cid
        assert CUSTOM_ID_RE.match(cid)
        assert (cid == key) == (key == "plain-key_1"), key


def test_composite_keys_round_trip(
    enrich_env: PgDatabase, enrich_project: Path, settings: Settings
) -> None:
    rows = [
        (region, seq, f"{region} #{seq}")
        for region in ("eu west", "us/east", "ap")
        for seq in range(5)
    ]
    create_source(enrich_env.conninfo, "pairs", rows, KEY_TYPES["pairs"])
    create_flagged_views(enrich_env.conninfo, enrich_project, ["pairs"])

    sync(with_(settings, select=("pairs",)))

    landed = _landed_by_key(enrich_env.conninfo, "pairs")
    keys = {(json.loads(pk)["region"], json.loads(pk)["seq"]) for pk in landed}
    assert keys == {(r, s) for r, s, _ in rows}
    assert len({cid for cid, _ in landed.values()}) == len(rows)
    assert all(cid.startswith("be-") and cid == line for cid, line in landed.values())


def test_bad_rows_are_reported_with_their_key_and_the_rest_goes_on(
    enrich_env: PgDatabase, enrich_project: Path, settings: Settings, emulator: Any
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
    create_source(enrich_env.conninfo, "docs", rows, KEY_TYPES["docs"])
    create_flagged_views(enrich_env.conninfo, enrich_project, ["docs"])

    report = sync(with_(settings, select=("docs",)))

    sub = report.submitted[0]
    reasons = {json.loads(k)["doc_key"]: why for k, why in sub.rejected}
    assert "is null" in reasons[None]
    assert reasons["dup"] == "primary key repeated in the flagged view"
    assert "over the limit" in reasons["huge"] and "bytes" in reasons["huge"]
    assert "empty" in reasons["empty"]
    assert sub.submitted == 21
    assert emulator.stats()["requests_received"] == 21
    stored = fetch(
        enrich_env.conninfo, "select primary_key ->> 'doc_key', reason from enrich.rejections"
    )
    assert sorted(k or "" for k, _ in stored) == ["", "dup", "dup", "empty", "huge"]
    landed = fetch(enrich_env.conninfo, "select count(*) from enrich.results_raw")[0][0]
    assert landed == 21


def test_invalid_declaration_names_model_and_key_and_others_go_on(
    enrich_env: PgDatabase, enrich_project: Path, settings: Settings
) -> None:
    create_source(enrich_env.conninfo, "items", [(1, "one"), (2, "two")], KEY_TYPES["items"])
    create_flagged_views(enrich_env.conninfo, enrich_project, ["items"])

    report = sync(with_(settings, select=()))

    broken = [e for e in report.errors if "broken" in e]
    assert broken and "max_tokens" in broken[0] and "lots" in broken[0]
    items = next(s for s in report.submitted if s.enrichment == "items")
    assert items.submitted == 2
