"""Machine output: one JSON document that keeps counts and nested reports intact."""

from __future__ import annotations

import json
from collections import Counter

from connector.landing import LandReport
from connector.render import to_json
from connector.submit import SubmitReport
from connector.sync import SyncReport


def test_sync_report_json_keeps_skip_counts_and_rejections() -> None:
    sub = SubmitReport(enrichment="items", flagged=5, submitted=2, batches=["msgbatch_1"])
    sub.skipped = Counter({"already succeeded for this exact request": 3})
    sub.rejected = [('{"id": null}', "primary key column 'id' is null")]
    report = SyncReport(submitted=[sub], landing=[LandReport(landed_lines=7)], in_flight=2)

    doc = json.loads(to_json(report))

    assert doc["submitted"][0]["skipped"] == {"already succeeded for this exact request": 3}
    assert doc["submitted"][0]["rejected"] == [['{"id": null}', "primary key column 'id' is null"]]
    assert doc["landing"][0]["landed_lines"] == 7
    assert doc["in_flight"] == 2
