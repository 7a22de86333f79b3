"""Pilot runs end to end, on Postgres and DuckDB: a pilot of a changed prompt on 50 rows
(killed once after its create, then resumed), the comparison with what is live, the
calibrated estimate, then the switch, which sends only the rows not piloted."""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import subprocess
import sys
from typing import Any

import pytest
from click.testing import CliRunner
from harness.pipeline import Pipeline
from harness.received import row_requests
from harness.sync_process import HANG_GUARD_SECONDS

from connector.cli import main
from connector.commands import estimate
from connector.errors import ConfigError
from connector.pilot import pilot
from connector.pilot_report import pilot_report
from connector.settings import Settings

TICKETS = 300
SAMPLE = 50
FIELDS = {"category", "urgency", "summary"}
NEW_SYSTEM = (
    "You triage support tickets for a B2B software company. Pick one category, rate the "
    "urgency from 1 to 5, and summarise the ticket in one short sentence."
)


def _settings(p: Pipeline, **changes: Any) -> Settings:
    base = Settings(
        project_dir=p.project,
        profiles_dir=p.project,
        target=p.target,
        select=("ticket_triage",),
        wait=True,
        poll_interval=0.0,
        reconcile_grace_seconds=0.0,
        max_wait_seconds=HANG_GUARD_SECONDS,
    )
    return dataclasses.replace(base, **changes)


def _enriched(p: Pipeline) -> dict[int, tuple[Any, ...]]:
    rows = p.query(
        "select ticket_id, category, urgency, summary, prompt_version, batch_id, "
        "is_output_current from analytics.ticket_triage__enriched"
    )
    return {int(r[0]): tuple(r[1:]) for r in rows}


def _enrich(
    p: Pipeline, *args: str, crash_at: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "BATCH_ENRICH_CRASH_AT"}
    if crash_at is not None:
        env["BATCH_ENRICH_CRASH_AT"] = crash_at
    return subprocess.run(
        [sys.executable, "-m", "connector", *args, "--project-dir", str(p.project), "-t", p.target],
        env=env,
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_SECONDS,  # a hang guard only
    )


def test_pilot_compares_without_touching_enriched_and_the_switch_sends_only_the_rest(
    pipeline: Pipeline, emulator: Any
) -> None:
    p = pipeline
    p.build(column_tests=False)
    p.sync("ticket_triage")
    p.build(column_tests=False)
    live = _enriched(p)
    assert len(live) == TICKETS and all(v[3] == "v1" for v in live.values())

    # a pilot of what is live already could not be told apart from it
    with pytest.raises(ConfigError, match="prompt_version 'v1' is live already"):
        pilot(_settings(p), "ticket_triage", SAMPLE)

    # the change to try: another system prompt, under a prompt_version of its own
    p.edit_declaration("ticket_triage", prompt_version="v2", system=NEW_SYSTEM)
    p.dbt("run", "--select", "ticket_triage__flagged")  # what a pilot and estimate read
    assert len(p.flagged("ticket_triage")) == TICKETS  # all prompt_changed: nothing sent yet
    before = estimate(_settings(p))[0]
    assert before.advice is not None and "enrich pilot ticket_triage" in before.advice

    # killed right after its batch was created: the next run adopts that batch (its
    # marker), sends nothing again, and lands it
    killed = _enrich(
        p, "pilot", "ticket_triage", "--sample", str(SAMPLE), "--json", crash_at="after_create"
    )
    assert killed.returncode == -9, killed.stdout + killed.stderr
    resumed = pilot(_settings(p), "ticket_triage", SAMPLE)
    assert resumed.sampled == SAMPLE and resumed.input_rows == TICKETS
    assert resumed.submit is not None and resumed.submit.submitted == 0
    assert resumed.not_flagged == SAMPLE  # all in flight already, from the killed run
    assert resumed.sync.in_flight == 0 and not resumed.sync.errors
    pilots = p.query(
        "select r.custom_id, r.prompt_version, b.status from enrich.requests as r "
        "join enrich.batches as b using (submission_id) where r.flag_reason = 'pilot'"
    )
    assert len(pilots) == SAMPLE
    assert {(v, s) for _, v, s in pilots} == {("v2", "landed")}
    piloted = {int(cid) for cid, _, _ in pilots}
    received = row_requests(emulator.stats())
    assert all(received[str(k)] == 2 for k in piloted)  # v1 once, the pilot once

    # the same sample again: nothing is sent
    again = pilot(_settings(p), "ticket_triage", SAMPLE)
    assert again.submit is not None and again.submit.submitted == 0

    p.build(column_tests=False)
    # the enriched table still shows what is live, for every row
    assert _enriched(p) == {k: (*v[:5], False) for k, v in live.items()}

    # the comparison: both values of each piloted row, per field
    compared = p.query(
        "select key_custom_id, field, live_value, pilot_value, is_match "
        "from analytics.enrich_pilot_comparison where enrichment = 'ticket_triage'"
    )
    assert {int(r[0]) for r in compared} == piloted
    assert {r[1] for r in compared} == FIELDS
    assert all(r[2] is not None and r[3] is not None for r in compared)
    for _, field, live_value, pilot_value, is_match in compared:
        if field != "summary":
            assert is_match == (live_value == pilot_value)

    # the same, as `enrich pilot --report` prints it, for people and for machines
    # (in this process: in-process dbt keeps the DuckDB file open)
    cli = CliRunner()
    args = ["pilot", "ticket_triage", "--report", "--project-dir", str(p.project), "-t", p.target]
    shown = cli.invoke(main, args)
    assert shown.exit_code == 0, shown.output
    assert f"switching sends {TICKETS - SAMPLE} more rows" in shown.output
    assert "agreement with what is live (v2)" in shown.output
    as_json = cli.invoke(main, [*args, "--json"])
    assert as_json.exit_code == 0, as_json.output
    (shown_pilot,) = json.loads(as_json.output)["pilots"]
    assert (shown_pilot["prompt_version"], shown_pilot["sampled_rows"]) == ("v2", SAMPLE)

    report = pilot_report(_settings(p), "ticket_triage")
    (summary,) = report.pilots
    assert summary.is_current and not summary.is_switched
    assert (summary.sampled_rows, summary.landed_rows, summary.valid_rows) == (50, 50, 50)
    assert summary.rows_to_switch == TICKETS - SAMPLE
    assert {f.field for f in summary.fields} == FIELDS
    matches = {f.field: f.matching_rows for f in summary.fields}
    assert matches["category"] == sum(1 for _, f, _, _, m in compared if f == "category" and m)

    # the estimate of the switch, calibrated on the pilot's output tokens
    after = estimate(_settings(p))[0]
    assert after.advice is None and after.requests == TICKETS - SAMPLE
    assert report.estimate is not None and report.estimate.requests == TICKETS - SAMPLE
    assert after.usd_expected is not None

    # the switch: only the rows not piloted are sent
    switch = p.sync("ticket_triage")
    assert sum(s.submitted for s in switch.submitted) == TICKETS - SAMPLE
    received = row_requests(emulator.stats())
    assert all(received[str(k)] == 2 for k in live)  # every row: v1 once, v2 once

    # what the switch billed, from its landed usage: the estimate is within 10%
    p.build(column_tests=False)
    billed = p.query(
        "select c.total_usd, c.output_tokens from analytics.enrich_costs as c "
        "join enrich.requests as r using (submission_id, custom_id) "
        "where r.prompt_version = 'v2' and r.flag_reason <> 'pilot'"
    )
    assert len(billed) == TICKETS - SAMPLE
    outputs = [int(r[1]) for r in billed]
    assert statistics.pstdev(outputs) / statistics.mean(outputs) > 0.1  # varied lengths
    total = float(sum(r[0] for r in billed))
    print(  # the figure, for the record (pytest -s)
        f"[{p.target}] switch estimate after the pilot ${after.usd_expected:.6f}, "
        f"billed ${total:.6f} ({after.usd_expected / total - 1:+.2%}); before the pilot "
        f"${before.usd_expected:.6f} ({(before.usd_expected or 0) / total * 250 / 300 - 1:+.2%} "
        f"scaled to the same rows); output tokens {statistics.mean(outputs):.1f} "
        f"± {statistics.pstdev(outputs):.1f}"
    )
    assert abs(after.usd_expected / total - 1) <= 0.10, (after.usd_expected, total)

    # switched: every row shows v2; the piloted rows show their pilot's result
    switched = _enriched(p)
    assert all(v[3] == "v2" and v[5] is True for v in switched.values())
    pilot_batches = {
        int(cid): b
        for cid, b in p.query(
            "select r.custom_id, b.batch_id from enrich.requests as r "
            "join enrich.batches as b using (submission_id) where r.flag_reason = 'pilot'"
        )
    }
    assert all(switched[k][4] == pilot_batches[k] for k in piloted)
