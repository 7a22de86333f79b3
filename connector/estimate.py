"""What submitting now would cost: `enrich estimate`, `sync --dry-run` and budgets.

Input tokens come from the count_tokens endpoint: every request with `--exact`, else a
deterministic sample, fitted against request bytes (tokens ≈ a + b·bytes) and summed
over every request. Without the endpoint (no key, or it fails) they come from a ratio
calibrated on landed usage of the same prompt_version (tokens per params byte), else
from 4 bytes per token. Output tokens: the landed mean of the prompt_version (capped at
max_tokens), else half of max_tokens; the worst case is max_tokens. Dollars: the price
seed at batch prices, every input token at the uncached price.
"""

from __future__ import annotations

import logging
import math
import random
from array import array
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import overload

from connector.api import BatchApi
from connector.errors import ConfigError, TransientApiError
from connector.ledger.base import Calibration, CustomIds, Ledger, RequestRecord, sequence_position
from connector.pricing import PRICE_COLUMNS, Price, price_table
from connector.project import Enrichment, Project
from connector.settings import Settings
from connector.submit import Pending, SubmitReport, pending_requests

log = logging.getLogger(__name__)

BYTES_PER_TOKEN = 4.0  # the last resort: no count_tokens, no landed usage
COUNT_WORKERS = 4


@dataclass(frozen=True)
class TokenModel:
    """Input tokens of a request from its params bytes."""

    method: str
    per_byte: float
    intercept: float = 0.0

    def tokens(self, params_bytes: int) -> float:
        return max(1.0, self.intercept + self.per_byte * params_bytes)


@dataclass(frozen=True)
class OutputModel:
    method: str
    mean: float | None  # None: half of max_tokens
    own: bool = False  # calibrated on landed results of the prompt_version being estimated

    def expected(self, max_tokens: int) -> float:
        return max_tokens / 2 if self.mean is None else min(self.mean, float(max_tokens))


@dataclass
class PendingRow:
    """What a budget needs of one sendable row."""

    custom_id: str
    params_bytes: int
    max_tokens: int
    dedupe_key: bytes | None
    tokens: float | None = None  # counted (exact), else from the token model
    rides: bool = False  # dedupe: an earlier row's identical request would serve it
    # dedupe across runs: an identical request in flight or succeeded serves it (free)
    joins: bool = False


class PendingRows(Sequence[PendingRow]):
    """The sendable rows of an estimate, column by column: about 40 bytes a row, where
    PendingRow objects take about 250, so that a budget over a million flagged rows
    stays in bounded memory. Indexing builds a PendingRow (a copy: change its tokens
    with `set_tokens`)."""

    def __init__(self, rows: Iterable[PendingRow] = ()) -> None:
        self.custom_ids = CustomIds()
        self._params_bytes = array("q")
        self._max_tokens = array("q")
        self._tokens = array("d")  # nan: not known yet
        self._flags = bytearray()  # 1: rides, 2: joins
        self._keys: dict[int, bytes] = {}  # dedupe keys, by position
        for row in rows:
            self.append(row)

    def append(self, row: PendingRow) -> None:
        if row.dedupe_key is not None:
            self._keys[len(self._flags)] = row.dedupe_key
        self.custom_ids.append(row.custom_id)
        self._params_bytes.append(row.params_bytes)
        self._max_tokens.append(row.max_tokens)
        self._tokens.append(math.nan if row.tokens is None else row.tokens)
        self._flags.append(row.rides | row.joins << 1)

    def __len__(self) -> int:
        return len(self._flags)

    @overload
    def __getitem__(self, i: int) -> PendingRow: ...
    @overload
    def __getitem__(self, i: slice) -> list[PendingRow]: ...
    def __getitem__(self, i: int | slice) -> PendingRow | list[PendingRow]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return self._row(sequence_position(i, len(self)), self.custom_ids[i])

    def __iter__(self) -> Iterator[PendingRow]:
        for i, custom_id in enumerate(self.custom_ids):
            yield self._row(i, custom_id)

    def _row(self, i: int, custom_id: str) -> PendingRow:
        tokens, flags = self._tokens[i], self._flags[i]
        return PendingRow(
            custom_id,
            self._params_bytes[i],
            self._max_tokens[i],
            self._keys.get(i) if self._keys else None,
            None if math.isnan(tokens) else tokens,
            rides=bool(flags & 1),
            joins=bool(flags & 2),
        )

    def set_tokens(self, i: int, tokens: float | None) -> None:
        self._tokens[i] = math.nan if tokens is None else tokens


@dataclass
class Estimate:
    enrichment: str
    model: str
    requests: int = 0  # requests that would be sent (dedupe members not counted)
    # rows that would ride on an identical request (dedupe): one this run sends, or one
    # already in flight or succeeded
    shared: int = 0
    flagged: int = 0
    rejected: int = 0
    skipped: int = 0
    input_tokens: float = 0.0
    output_tokens_expected: float = 0.0
    output_tokens_worst: float = 0.0
    usd_expected: float | None = None  # None: no price for the model
    usd_worst: float | None = None
    input_method: str = ""
    output_method: str = ""
    counted: int = 0  # requests whose tokens count_tokens counted
    # every sendable row, for budgets; not part of the report
    rows: PendingRows = field(default_factory=PendingRows, repr=False, metadata={"internal": True})
    output: OutputModel = OutputModel("half of max_tokens", None)
    # what would make the estimate better (no landed output of this prompt_version)
    advice: str | None = None


def load_prices(project: Project, ledger: Ledger) -> dict[str, Price]:
    """The price seed's table as dbt built it; empty when it does not exist yet."""
    relation = project.prices
    if relation is None or not ledger.flagged_columns(relation):
        return {}
    rows = [r for chunk in ledger.stream_flagged(relation, PRICE_COLUMNS, 1000) for r in chunk]
    return price_table(rows)


def calibrated_models(
    calibration: Sequence[Calibration], prompt_version: str
) -> tuple[TokenModel | None, OutputModel]:
    """The token and output models landed usage supports (the prompt_version's own, else
    every version's), or None / half of max_tokens without any."""
    own = [c for c in calibration if c.prompt_version == prompt_version and c.results]
    rows = own or [c for c in calibration if c.results]
    if not rows:
        return None, OutputModel("half of max_tokens (no landed results yet)", None)
    results = sum(c.results for c in rows)
    nbytes = sum(c.params_bytes for c in rows)
    which = f"prompt_version {prompt_version}" if own else "earlier prompt versions"
    tokens = (
        TokenModel(
            f"calibrated on {results} landed results ({which}): tokens per request byte",
            sum(c.input_tokens for c in rows) / nbytes,
        )
        if nbytes
        else None
    )
    output = OutputModel(
        f"mean of {results} landed results ({which})",
        sum(c.output_tokens for c in rows) / results,
        own=bool(own),
    )
    return tokens, output


def uncounted_token_model(calibrated: TokenModel | None) -> TokenModel:
    """Without count_tokens: the calibrated ratio, else the last resort."""
    return calibrated or TokenModel(
        f"{BYTES_PER_TOKEN:g} bytes per token (no landed usage)", 1 / BYTES_PER_TOKEN
    )


def fit(samples: Sequence[tuple[int, int]]) -> tuple[float, float]:
    """Least squares tokens = a + b·bytes over (bytes, tokens); a ratio if degenerate."""
    n = len(samples)
    mean_x = sum(x for x, _ in samples) / n
    mean_y = sum(y for _, y in samples) / n
    var = sum((x - mean_x) ** 2 for x, _ in samples)
    if n >= 3 and var > 0:
        slope = sum((x - mean_x) * (y - mean_y) for x, y in samples) / var
        intercept = mean_y - slope * mean_x
        if slope > 0 and intercept >= 0:
            return intercept, slope
    return 0.0, sum(y for _, y in samples) / max(1, sum(x for x, _ in samples))


class _Counter:
    """count_tokens over many params, a few calls at a time; records the first failure."""

    def __init__(self, api: BatchApi | None) -> None:
        self.api = api
        self.failure: str | None = None if api is not None else "no API key"

    def count(self, params: Sequence[dict[str, object]]) -> list[int] | None:
        if self.api is None or self.failure is not None or not params:
            return None
        api = self.api
        try:
            with ThreadPoolExecutor(COUNT_WORKERS) as pool:
                return list(pool.map(api.count_tokens, params))
        except TransientApiError as exc:
            self.failure = str(exc)
            log.warning("count_tokens failed (%s); estimating from landed usage", exc)
            return None


def estimate_enrichment(
    ledger: Ledger,
    api: BatchApi | None,
    enrichment: Enrichment,
    settings: Settings,
    prices: dict[str, Price],
) -> Estimate:
    """Scan what `sync` would send now and estimate its tokens and dollars."""
    decl = enrichment.declaration
    est = Estimate(enrichment=enrichment.name, model=decl.model)
    report = SubmitReport(enrichment=enrichment.name)
    counter = _Counter(api)
    rng = random.Random(f"batch-enrich:{enrichment.name}")
    reservoir: list[tuple[str, int, Pending]] = []
    seen_keys: set[bytes] = set()
    seen = 0
    rows = est.rows
    for ready in pending_requests(ledger, enrichment, settings, report):
        sendable: list[Pending] = []
        first = len(rows)
        for p in ready:
            if p.joins is not None:
                est.shared += 1
                rows.append(_row(p.record, p.dedupe_key, rides=True, joins=True))
                continue
            if p.dedupe_key is not None:
                if p.dedupe_key in seen_keys:
                    est.shared += 1
                    rows.append(_row(p.record, p.dedupe_key, rides=True))
                    continue
                seen_keys.add(p.dedupe_key)
            sendable.append(p)
            rows.append(_row(p.record, p.dedupe_key))
        if settings.exact:
            counts = counter.count([p.params for p in sendable])
            if counts is not None:
                by_id = {p.record.custom_id: c for p, c in zip(sendable, counts, strict=True)}
                for i in range(first, len(rows)):
                    counted = by_id.get(rows.custom_ids[i])
                    if counted is not None:
                        rows.set_tokens(i, counted)
            continue
        for p in sendable:  # reservoir sample: deterministic per enrichment
            seen += 1
            item = (p.record.custom_id, p.record.params_bytes, p)
            if len(reservoir) < settings.sample_size:
                reservoir.append(item)
            else:
                slot = rng.randrange(seen)
                if slot < settings.sample_size:
                    reservoir[slot] = item
    est.flagged = report.flagged
    est.rejected = len(report.rejected)
    est.skipped = sum(report.skipped.values())
    # the params of the sample only are decoded (from each request's line)
    sample = [(cid, size, p.params) for cid, size, p in reservoir]
    _estimate_tokens(est, ledger, enrichment, settings, counter, sample)
    _price(est, prices.get(decl.model))
    return est


def _row(
    record: RequestRecord, dedupe_key: bytes | None, rides: bool = False, joins: bool = False
) -> PendingRow:
    return PendingRow(
        record.custom_id,
        record.params_bytes,
        record.max_tokens,
        dedupe_key,
        rides=rides,
        joins=joins,
    )


def _estimate_tokens(
    est: Estimate,
    ledger: Ledger,
    enrichment: Enrichment,
    settings: Settings,
    counter: _Counter,
    reservoir: list[tuple[str, int, dict[str, object]]],
) -> None:
    decl = enrichment.declaration
    calibrated, output = calibrated_models(ledger.calibration(enrichment.name), decl.prompt_version)
    est.output_method = output.method
    rows = est.rows
    senders = array("q", (i for i, row in enumerate(rows) if not row.rides))
    model: TokenModel | None = None
    if reservoir:
        counts = counter.count([params for _, _, params in reservoir])
        if counts is not None:
            if len(counts) == len(senders):  # the sample is every request: exact
                by_id = {cid: c for (cid, _, _), c in zip(reservoir, counts, strict=True)}
                for i in senders:
                    rows.set_tokens(i, by_id.get(rows.custom_ids[i]))
            else:
                a, b = fit([(size, c) for (_, size, _), c in zip(reservoir, counts, strict=True)])
                model = TokenModel(
                    f"count_tokens: {len(counts)} of {len(senders)} requests, scaled by bytes",
                    b,
                    a,
                )
    counted = sum(1 for i in senders if rows[i].tokens is not None)
    est.counted = counted if model is None else len(reservoir)
    if model is None and counted < len(senders):
        why = f"count_tokens unavailable: {counter.failure}" if counter.failure else ""
        model = uncounted_token_model(calibrated)
        method = f"{model.method}; {why}" if why else model.method
        if counted:
            method = f"count_tokens: {counted} of {len(senders)} requests; the rest: {method}"
        est.input_method = method
    elif model is not None:
        est.input_method = model.method
    else:
        est.input_method = f"count_tokens: every request ({len(senders)})"
    by_key: dict[bytes, float | None] = {}  # the tokens of each dedupe key's request
    for i in senders:
        row = rows[i]
        tokens = row.tokens
        if tokens is None:
            assert model is not None
            tokens = model.tokens(row.params_bytes)
            rows.set_tokens(i, tokens)
        if row.dedupe_key is not None:
            by_key[row.dedupe_key] = tokens
        est.requests += 1
        est.input_tokens += tokens
        est.output_tokens_expected += output.expected(row.max_tokens)
        est.output_tokens_worst += row.max_tokens
    del senders
    est.output = output
    if not output.own and est.requests:
        est.advice = (
            f"no landed output of prompt_version {decl.prompt_version} to calibrate output "
            f"tokens from (using the {output.method}); a pilot measures them: "
            f"`enrich pilot {enrichment.name} --sample 50 --wait`"
        )
    # a dedupe key's later rows carry the tokens of the request they would ride on
    if by_key:
        for i, row in enumerate(rows):
            if row.tokens is None and row.dedupe_key is not None and not row.joins:
                rows.set_tokens(i, by_key.get(row.dedupe_key))


def _price(est: Estimate, price: Price | None) -> None:
    if price is None:
        return
    est.usd_expected = price.cost(
        input_tokens=est.input_tokens, output_tokens=est.output_tokens_expected
    )
    est.usd_worst = price.cost(input_tokens=est.input_tokens, output_tokens=est.output_tokens_worst)


def utc_day_start(now: datetime) -> datetime:
    """Midnight UTC of `now`'s day (the warehouse may answer in its session's zone)."""
    utc = now.astimezone(UTC) if now.tzinfo is not None else now.replace(tzinfo=UTC)
    return utc.replace(hour=0, minute=0, second=0, microsecond=0)


def require_price(prices: dict[str, Price], enrichment: Enrichment) -> Price:
    price = prices.get(enrichment.declaration.model)
    if price is None:
        raise ConfigError(
            f"enrichment '{enrichment.name}': no price for model "
            f"'{enrichment.declaration.model}' in the seed batch_enrich_model_prices; add a "
            "row for it (and run `dbt seed`) so its cost can be estimated"
        )
    return price
