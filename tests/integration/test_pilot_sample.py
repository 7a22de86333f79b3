"""The pilot's sample drawn from a real input table on each warehouse: stratified
shares, the same rows every time, and a clear error for a column the input lacks."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from harness.enrich_project import KEY_TYPES
from harness.warehouses import Warehouse

from connector.custom_id import custom_id_for
from connector.declaration import parse_declaration
from connector.errors import ConfigError
from connector.pilot import PilotReport, draw_sample, rank
from connector.project import Enrichment, Relation
from connector.settings import Settings
from connector.sync import opened

REGIONS = {"eu": 60, "us": 30, "apac": 10}


def _enrichment(stratify: str | None) -> Enrichment:
    raw: dict[str, object] = {
        "primary_key": ["region", "seq"],
        "model": "claude-haiku-4-5",
        "max_tokens": 50,
    }
    if stratify is not None:
        raw["pilot_stratify_by"] = stratify
    return Enrichment(
        declaration=parse_declaration("pairs", raw),
        flagged=Relation(None, "app", "pairs__flagged"),
        source=Relation(None, "app", "pairs_src"),
    )


def _draw(settings: Settings, enrichment: Enrichment, n: int) -> tuple[set[str], PilotReport]:
    report = PilotReport("pairs", "claude-haiku-4-5", "v1", n)
    with opened(settings) as (_, ledger):
        sample = draw_sample(ledger, enrichment, n, settings, report)
    return sample, report


def test_a_stratified_sample_gives_each_value_its_share_of_the_lowest_ranks(
    enrich_env: Warehouse, enrich_project: Path, settings: Settings
) -> None:
    rows = [(region, i, f"{region} {i}") for region, n in REGIONS.items() for i in range(n)]
    rows.append((None, 999, "a row whose key has a null"))
    enrich_env.create_source("pairs", rows, KEY_TYPES["pairs"])
    settings = dataclasses.replace(settings, chunk_rows=7)  # many chunks

    sample, report = _draw(settings, _enrichment("region"), 10)
    assert report.strata == {"eu": 6, "us": 3, "apac": 1}
    assert report.input_rows == 101 and report.unkeyed == 1 and report.sampled == 10

    for region, share in report.strata.items():
        ids = [custom_id_for([region, i]) for i in range(REGIONS[region])]
        lowest = sorted(ids, key=lambda c: rank("pairs", c))[:share]
        assert set(lowest) <= sample
    again, _ = _draw(settings, _enrichment("region"), 10)
    assert again == sample

    plain, plain_report = _draw(settings, _enrichment(None), 10)
    every = [custom_id_for([r, i]) for r, n in REGIONS.items() for i in range(n)]
    assert plain == set(sorted(every, key=lambda c: rank("pairs", c))[:10])
    assert plain_report.strata == {}

    everything, _ = _draw(settings, _enrichment("region"), 500)
    assert everything == set(every)

    with pytest.raises(ConfigError, match=r"pilot_stratify_by names column .regoin.*region, seq"):
        _draw(settings, _enrichment("regoin"), 10)
