"""`enrich pilot`: try the declaration as it now stands on a sample of rows first
(docs/pilots.md).

A pilot sends a deterministic sample of an enrichment's input rows with the declaration
as it stands in the project, under a prompt_version no sync has sent yet. Its requests
are ordinary ledger rows (flag_reason `pilot`), so they are reconciled, landed, costed
and retried like any other; the dbt models keep them out of the enriched table until a
sync sends that prompt_version (the switch), and then serve them, so a piloted row is
not paid for twice.

The sample: every input row ranked by a hash of (enrichment, custom_id), the lowest
ranks taken. With `pilot_stratify_by`, each value of that column gets its share of the
sample (largest remainders), the lowest ranks within it. The same rows are chosen
again as long as the input has them, so running a pilot again only tops it up (rows
whose pilot request is in flight or landed are not flagged any more).
"""

from __future__ import annotations

import hashlib
import heapq
import logging
from collections import Counter
from collections.abc import Callable, Hashable, Iterator, Mapping
from dataclasses import dataclass, field

from connector.api import BatchApi
from connector.custom_id import custom_id_for
from connector.errors import ConfigError
from connector.estimate import load_prices
from connector.ledger import Ledger
from connector.project import Enrichment, Relation, load_project
from connector.settings import Settings
from connector.submit import PILOT_FLAG, SubmitReport, submit_enrichment
from connector.sync import SyncReport, guarded_passes, request_cost

log = logging.getLogger(__name__)

MAX_STRATA = 10_000  # distinct values of pilot_stratify_by a sample is spread over


@dataclass
class PilotReport:
    enrichment: str
    model: str
    prompt_version: str
    sample_size: int  # asked for
    input_rows: int = 0  # rows of the input model
    sampled: int = 0  # rows in the sample (fewer when the input has fewer)
    stratify_by: str | None = None
    strata: dict[str, int] = field(default_factory=dict)  # value (as text) -> rows sampled
    unkeyed: int = 0  # input rows whose key has a null (never sampled; rejected by sync)
    submit: SubmitReport | None = None
    # sample rows the flagged view does not select now: piloted already (in flight or
    # landed), or out of attempts
    not_flagged: int = 0
    sync: SyncReport = field(default_factory=SyncReport)


def quotas(counts: Mapping[Hashable, int], n: int) -> dict[Hashable, int]:
    """`n` rows spread over strata in proportion to their sizes (largest remainders;
    ties to the larger stratum, then by the value's text). Never more than a stratum has."""
    total = sum(counts.values())
    n = min(n, total)
    if n <= 0:
        return {k: 0 for k in counts}
    exact = {k: n * c / total for k, c in counts.items()}
    chosen = {k: int(v) for k, v in exact.items()}
    rest = n - sum(chosen.values())
    order = sorted(counts, key=lambda k: (chosen[k] - exact[k], -counts[k], str(k)))
    for k in order[:rest]:
        chosen[k] += 1
    return chosen


def rank(enrichment: str, custom_id: str) -> int:
    """A row's place in the sampling order: fixed per enrichment and key."""
    digest = hashlib.blake2b(f"{enrichment}\x1f{custom_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


class _Lowest:
    """The `size` custom_ids of lowest rank seen (a bounded max-heap)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.heap: list[tuple[int, str]] = []

    def offer(self, order: int, custom_id: str) -> None:
        if self.size <= 0:
            return
        item = (-order, custom_id)
        if len(self.heap) < self.size:
            heapq.heappush(self.heap, item)
        elif item > self.heap[0]:
            heapq.heapreplace(self.heap, item)

    def ids(self) -> list[str]:
        return [cid for _, cid in self.heap]


def _stratum(value: object) -> Hashable:
    return value if isinstance(value, Hashable) else repr(value)


def _rows(
    ledger: Ledger, relation: Relation, columns: list[str], chunk_rows: int
) -> Iterator[tuple[object, ...]]:
    for chunk in ledger.stream_flagged(relation, columns, chunk_rows):
        yield from chunk


def draw_sample(
    ledger: Ledger, enrichment: Enrichment, n: int, settings: Settings, report: PilotReport
) -> set[str]:
    """The custom_ids of the pilot's sample of the input model (see the module doc)."""
    decl = enrichment.declaration
    source = enrichment.source
    if source is None:
        raise ConfigError(f"enrichment '{enrichment.name}': its input model is not in the manifest")
    available = ledger.flagged_columns(source)
    if not available:
        raise ConfigError(
            f"enrichment '{enrichment.name}': its input model {source} does not exist in the "
            "warehouse; run `dbt build` first"
        )
    stratify = decl.pilot_stratify_by
    if stratify is not None and stratify not in available:
        raise ConfigError(
            f"enrichment '{enrichment.name}': meta.enrich.pilot_stratify_by names column "
            f"'{stratify}', which model {enrichment.name} does not have (it has: "
            f"{', '.join(available)}); fix config.meta.enrich.pilot_stratify_by of model "
            f"'{enrichment.name}'"
        )
    key = list(decl.primary_key)
    nkey = len(key)
    counts: Counter[Hashable] = Counter()
    if stratify is not None:
        for row in _rows(ledger, source, [stratify], settings.chunk_rows):
            counts[_stratum(row[0])] += 1
            if len(counts) > MAX_STRATA:
                raise ConfigError(
                    f"enrichment '{enrichment.name}': pilot_stratify_by column '{stratify}' "
                    f"has more than {MAX_STRATA} distinct values; stratify on a coarser "
                    "column (a category, a region, a month)"
                )
    columns = key + ([stratify] if stratify is not None else [])
    lowest: dict[Hashable, _Lowest] = {}
    share = quotas(counts, n) if stratify is not None else {None: n}
    for row in _rows(ledger, source, columns, settings.chunk_rows):
        report.input_rows += 1
        try:
            cid = custom_id_for(row[:nkey])
        except (TypeError, ValueError):
            report.unkeyed += 1
            continue
        stratum = _stratum(row[nkey]) if stratify is not None else None
        heap = lowest.get(stratum)
        if heap is None:
            heap = lowest[stratum] = _Lowest(share.get(stratum, 0))
        heap.offer(rank(enrichment.name, cid), cid)
    chosen: set[str] = set()
    for stratum, heap in lowest.items():
        ids = heap.ids()
        chosen.update(ids)
        if stratify is not None:
            report.strata["null" if stratum is None else str(stratum)] = len(ids)
    report.sampled = len(chosen)
    return chosen


def pilot(
    settings: Settings,
    name: str,
    sample_size: int,
    on_progress: Callable[[str], None] = lambda _: None,
) -> PilotReport:
    """Send the pilot's sample (what of it is not piloted yet); with `settings.wait`,
    poll and land until nothing is in flight."""
    project = load_project(settings.project_dir, settings.profiles_dir, settings.target)
    enrichment = find_enrichment(project.enrichments, project.invalid, name)
    decl = enrichment.declaration
    report = PilotReport(
        enrichment=name,
        model=decl.model,
        prompt_version=decl.prompt_version,
        sample_size=sample_size,
        stratify_by=decl.pilot_stratify_by,
    )
    api = BatchApi(timeout=settings.api_timeout)

    def submit(ledger: Ledger) -> None:
        if ledger.version_is_live(name, decl.prompt_version, PILOT_FLAG):
            raise ConfigError(
                f"enrichment '{name}': prompt_version '{decl.prompt_version}' is live already "
                "(`enrich sync` has sent it), so a pilot of it could not be told apart from "
                "the rows it enriched; set config.meta.enrich.prompt_version of model "
                f"'{name}' to a new value together with the change to try, run `dbt build`, "
                f"then `enrich pilot {name}` again"
            )
        sample = draw_sample(ledger, enrichment, sample_size, settings, report)
        price = load_prices(project, ledger).get(decl.model)
        sub = submit_enrichment(
            ledger,
            api,
            enrichment,
            settings,
            on_progress,
            cost=request_cost(ledger, enrichment, price),
            pilot=sample,
        )
        report.submit = sub
        report.not_flagged = len(sample) - sub.flagged
        if sub.stopped:
            report.sync.errors.append(f"{name}: {sub.stopped}")

    try:
        guarded_passes(project, api, settings, report.sync, on_progress, submit)
    finally:
        api.close()
    return report


def find_enrichment(
    enrichments: tuple[Enrichment, ...], invalid: tuple[tuple[str, str], ...], name: str
) -> Enrichment:
    for enrichment in enrichments:
        if enrichment.name == name:
            return enrichment
    for model, message in invalid:
        if model == name:
            raise ConfigError(message)
    known = ", ".join(sorted(e.name for e in enrichments)) or "(none)"
    raise ConfigError(f"no enrichment named '{name}' in this project; known: {known}")
