"""`enrich pilot NAME --report`: a pilot next to what is live, read from the dbt model
enrich_pilot_summary, with the cost of switching the whole table (docs/pilots.md).

The model holds one row per (enrichment, pilot version, output field); the per-pilot
columns repeat on each field's row. The switch's cost is given twice: the model's
projection (the pilot's mean cost per row times the rows the flagged view would send)
and `enrich estimate`'s, whose output tokens are calibrated on the pilot's landed
results.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from connector.errors import ConfigError
from connector.estimate import Estimate, estimate_enrichment, load_prices
from connector.pilot import find_enrichment
from connector.settings import Settings
from connector.sync import opened, optional_api

PILOT_COLUMNS = (
    "enrichment",
    "pilot_model",
    "pilot_prompt_version",
    "field",
    "sampled_rows",
    "landed_rows",
    "valid_rows",
    "validity_rate",
    "compared_rows",
    "matching_rows",
    "agreement_rate",
    "failed_invalid",
    "failed_truncated",
    "failed_errored",
    "failed_other",
    "in_flight_rows",
    "mean_input_tokens",
    "mean_output_tokens",
    "usd_per_row",
    "is_switched",
    "rows_to_switch",
    "projected_switch_usd",
)
FAILURE_COLUMNS = ("failed_invalid", "failed_truncated", "failed_errored", "failed_other")


@dataclass
class FieldAgreement:
    field: str
    compared_rows: int
    matching_rows: int
    agreement_rate: float | None


@dataclass
class PilotSummary:
    model: str
    prompt_version: str
    is_current: bool  # the declaration in the project has this model and prompt_version
    is_switched: bool
    sampled_rows: int
    landed_rows: int
    valid_rows: int
    validity_rate: float | None
    in_flight_rows: int
    failures: dict[str, int]
    mean_input_tokens: float | None
    mean_output_tokens: float | None
    usd_per_row: float | None
    rows_to_switch: int | None
    projected_switch_usd: float | None
    fields: list[FieldAgreement] = field(default_factory=list)


@dataclass
class PilotReportResult:
    enrichment: str
    pilots: list[PilotSummary]
    # what `enrich sync` would send now and its cost, calibrated on landed results (the
    # pilot's, when the declaration is the piloted one)
    estimate: Estimate | None = None


def _int(value: object) -> int:
    return 0 if value is None else int(str(value))


def _optional_int(value: object) -> int | None:
    return None if value is None else _int(value)


def _float(value: object) -> float | None:
    return None if value is None else float(str(value))


def summarize(
    rows: Sequence[Mapping[str, object]], model: str, prompt_version: str
) -> list[PilotSummary]:
    """The summary model's rows of one enrichment, one PilotSummary per pilot; the
    declaration's own version first."""
    pilots: dict[tuple[str, str], PilotSummary] = {}
    for row in rows:
        key = (str(row["pilot_model"]), str(row["pilot_prompt_version"]))
        summary = pilots.get(key)
        if summary is None:
            summary = pilots[key] = PilotSummary(
                model=key[0],
                prompt_version=key[1],
                is_current=key == (model, prompt_version),
                is_switched=bool(row["is_switched"]),
                sampled_rows=_int(row["sampled_rows"]),
                landed_rows=_int(row["landed_rows"]),
                valid_rows=_int(row["valid_rows"]),
                validity_rate=_float(row["validity_rate"]),
                in_flight_rows=_int(row["in_flight_rows"]),
                failures={c.removeprefix("failed_"): _int(row[c]) for c in FAILURE_COLUMNS},
                mean_input_tokens=_float(row["mean_input_tokens"]),
                mean_output_tokens=_float(row["mean_output_tokens"]),
                usd_per_row=_float(row["usd_per_row"]),
                rows_to_switch=_optional_int(row["rows_to_switch"]),
                projected_switch_usd=_float(row["projected_switch_usd"]),
            )
        summary.fields.append(
            FieldAgreement(
                field=str(row["field"]),
                compared_rows=_int(row["compared_rows"]),
                matching_rows=_int(row["matching_rows"]),
                agreement_rate=_float(row["agreement_rate"]),
            )
        )
    for summary in pilots.values():
        summary.fields.sort(key=lambda f: f.field)
    return sorted(pilots.values(), key=lambda p: (not p.is_current, p.prompt_version, p.model))


def pilot_report(settings: Settings, name: str) -> PilotReportResult:
    with opened(settings) as (project, ledger):
        enrichment = find_enrichment(project.enrichments, project.invalid, name)
        decl = enrichment.declaration
        relation = project.pilot_summary
        available = ledger.flagged_columns(relation) if relation is not None else []
        if relation is None or not available:
            raise ConfigError(
                "the model enrich_pilot_summary is not built; run `dbt build` (after the "
                "pilot's batches landed) and try again"
            )
        missing = [c for c in PILOT_COLUMNS if c not in available]
        if missing:
            raise ConfigError(
                f"{relation} lacks column(s) {', '.join(missing)}: it was built by another "
                "version of the batch_enrich package; run `dbt build` again"
            )
        rows = [
            dict(zip(PILOT_COLUMNS, r, strict=True))
            for chunk in ledger.stream_flagged(relation, PILOT_COLUMNS, settings.chunk_rows)
            for r in chunk
            if r[0] == name
        ]
        result = PilotReportResult(name, summarize(rows, decl.model, decl.prompt_version))
        if any(p.is_current for p in result.pilots):
            api = optional_api(settings)
            try:
                prices = load_prices(project, ledger)
                result.estimate = estimate_enrichment(ledger, api, enrichment, settings, prices)
            finally:
                if api is not None:
                    api.close()
        return result
