"""Submitting flagged rows: build requests, skip bad rows, split into batches, and
create each batch behind a committed intent.

Order of every batch: intent (batch row `submitting` + its requests) committed →
create (no SDK retries) → batch id committed. A crash between any two steps leaves a
`submitting` row that `reconcile` resolves before anything else is sent.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Container, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import chain
from typing import IO

import orjson

from connector.api import BatchApi, RemoteBatch
from connector.crashpoints import crash_point
from connector.custom_id import canonical_value, custom_id_for
from connector.declaration import MAX_REQUESTS_PER_BATCH
from connector.errors import (
    AccountError,
    ConfigError,
    CreateOutcomeUnknownError,
    CreateRejectedError,
    EnrichError,
    LedgerError,
    RateLimitedError,
)
from connector.ledger.base import Ledger, RequestRecord
from connector.marker import marker_custom_id, marker_line
from connector.policy import BatchStatus, RowHistory, skip_reason
from connector.project import Enrichment
from connector.reconcile import reconcile_submitting
from connector.requests import Rejection, RequestEncoder, fallback_request_hash
from connector.settings import Settings

log = logging.getLogger(__name__)

OPTIONAL_COLUMNS = ("request_hash", "input_hash", "flag_reason", "max_tokens")
PILOT_FLAG = "pilot"  # requests.flag_reason of every request `enrich pilot` sends
_BODY_WRITE_BYTES = 1 << 20  # a batch body is written to its file in pieces of ~1 MB


@dataclass
class SubmitReport:
    enrichment: str
    flagged: int = 0
    submitted: int = 0
    batches: list[str] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    rejected: list[tuple[str | None, str]] = field(default_factory=list)
    stopped: str | None = None  # why submission stopped early, if it did
    shared: int = 0  # dedupe: rows served by another row's request (requests saved)
    held_back: int = 0  # rows a budget kept for a later run
    estimated_usd: float = 0.0  # the estimates of what was submitted, added up


def _safe_key_json(key: Mapping[str, object]) -> str | None:
    """The key of a rejected row as JSON, or None when it cannot be written (a null or
    NUL-bearing value is exactly why such rows are rejected)."""
    if any(v is None or (isinstance(v, str) and "\x00" in v) for v in key.values()):
        return orjson.dumps(
            {k: (None if v is None else str(v).replace("\x00", "\\0")) for k, v in key.items()}
        ).decode()
    try:
        return _key_json(list(key), list(key.values()))
    except (TypeError, ValueError):
        return orjson.dumps({k: str(v) for k, v in key.items()}).decode()


def _key_json(columns: Sequence[str], values: Sequence[object]) -> str:
    """The ledger's `primary_key`: {column: canonical value}, in key order."""
    if len(values) == 1 and type(values[0]) in (int, str):  # its own canonical value
        return orjson.dumps({columns[0]: values[0]}).decode()
    canonical = [canonical_value(v) for v in values]
    return orjson.dumps(dict(zip(columns, canonical, strict=True))).decode()


class _BatchBody:
    """One batch's JSON body, written to a temp file as rows arrive: first the marker
    request of its intent (connector/marker.py), then the rows' requests."""

    def __init__(self, model: str) -> None:
        self.submission_id = "sub_" + uuid.uuid4().hex
        self.marker = marker_custom_id(self.submission_id)
        # closed once the create call is over (_Submitter.settle)
        self.file: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115
        marker = marker_line(self.marker, model)
        self._parts: list[bytes] = [b'{"requests":[' + marker]
        self._buffered = len(self._parts[0])
        self.size = len(b'{"requests":[]}') + len(marker)
        self.records: list[RequestRecord] = []
        self.custom_ids: set[str] = set()
        # dedupe: the request of each identity in this body (later rows ride on it)
        self.senders: dict[bytes, RequestRecord] = {}

    def fits(self, line_len: int, max_requests: int, max_bytes: int) -> bool:
        # the marker is one of the API's 100,000 requests per batch
        rows = min(max_requests, MAX_REQUESTS_PER_BATCH - 1)
        return len(self.records) < rows and self.size + line_len + 1 <= max_bytes

    def add(self, record: RequestRecord, line: bytes, identity: bytes | None = None) -> None:
        if identity is not None:
            self.senders[identity] = record
        self._parts.append(line)
        self._buffered += len(line) + 1
        self.size += len(line) + 1
        self.records.append(record)
        self.custom_ids.add(record.custom_id)
        if self._buffered >= _BODY_WRITE_BYTES:
            self._write()

    def _write(self) -> None:
        """Write the lines gathered so far, comma-separated, in one call."""
        if self._parts:
            self.file.write(b",".join(self._parts))
            self._parts, self._buffered = [b""], 0

    def finish(self) -> IO[bytes]:
        self._write()
        self.file.write(b"]}")
        self.file.flush()
        self.file.seek(0)
        return self.file


@dataclass
class _Creating:
    """The create call of one recorded intent, running on the creator thread."""

    body: _BatchBody
    stream: IO[bytes]
    call: Future[RemoteBatch]
    attempt: int = 1


@dataclass
class _Submitter:
    """Batches of rows, each recorded as an intent, then created.

    A create runs on a thread of its own while the next batch is read, built and
    encoded (at most one create in flight): against the API a create is the upload of up
    to 256 MB and the API's own work, and it would otherwise add to the time of every
    batch. Every ledger write stays on the calling thread and in the same order: intent
    committed, create fenced (`mark_create_started`), create called, its outcome
    recorded before the next intent is recorded.
    """

    ledger: Ledger
    api: BatchApi | None  # None in dry runs
    enrichment: Enrichment
    settings: Settings
    report: SubmitReport
    on_progress: Callable[[str], None]

    def __post_init__(self) -> None:
        self.body = _BatchBody(self.enrichment.declaration.model)
        self._creating: _Creating | None = None
        self._creator: ThreadPoolExecutor | None = None

    def add(self, record: RequestRecord, line: bytes, identity: bytes | None = None) -> None:
        decl = self.enrichment.declaration
        if not self.body.fits(len(line), decl.max_requests_per_batch, decl.max_batch_bytes):
            self.flush()
        if record.custom_id in self.body.custom_ids:
            self.report.rejected.append(
                (record.primary_key_json, f"custom_id {record.custom_id} collides in this batch")
            )
            return
        self.body.add(record, line, identity)

    def flush(self) -> None:
        """Send the open batch (its create may still run when this returns)."""
        body, self.body = self.body, _BatchBody(self.enrichment.declaration.model)
        try:
            self.settle()  # one create at a time, and its outcome recorded first
            if not body.records or self.report.stopped:
                body.file.close()
                return
            self._start(body)
        except BaseException:
            body.file.close()
            raise

    def close(self) -> None:
        """Wait for the create in flight, if any, record its outcome, and stop the
        creator thread. Safe to call after an error: a create is never left running
        unrecorded while this sync still holds the guard."""
        try:
            self.settle()
        finally:
            if self._creator is not None:
                self._creator.shutdown(wait=True)
                self._creator = None

    def _start(self, body: _BatchBody) -> None:
        name = self.enrichment.name
        if self.api is None:  # dry run
            n = len(body.records)
            self.report.submitted += n
            self.report.shared += sum(len(r.shared or ()) for r in body.records)
            self.report.estimated_usd += sum(r.estimated_usd or 0.0 for r in body.records)
            body.file.close()
            return
        sid = body.submission_id
        self.ledger.record_intent(sid, name, body.size, body.records, marker=body.marker)
        crash_point("after_intent")
        self._launch(body, body.finish(), attempt=1)

    def _launch(self, body: _BatchBody, stream: IO[bytes], attempt: int) -> None:
        assert self.api is not None
        # the fence: only the holder of the sync guard creates, and only for an intent
        # still `submitting`; from this commit on, a batch may exist
        self.ledger.mark_create_started(body.submission_id)
        crash_point("before_create")
        if self._creator is None:
            self._creator = ThreadPoolExecutor(1, thread_name_prefix="batch-enrich-create")
        call = self._creator.submit(self.api.create, stream)
        self._creating = _Creating(body, stream, call, attempt)

    def settle(self) -> None:
        """Wait for the create in flight, if any, and record its outcome."""
        creating, self._creating = self._creating, None
        if creating is None:
            return
        try:
            self._settle(creating)
        finally:
            if self._creating is None:  # not relaunched after a rate limit
                creating.body.file.close()

    def _settle(self, creating: _Creating) -> None:
        assert self.api is not None
        name, body = self.enrichment.name, creating.body
        sid = body.submission_id
        try:
            remote = creating.call.result()
        except RateLimitedError as exc:
            if creating.attempt >= self.settings.create_attempts:
                self._abandon(sid, f"rate limited {creating.attempt} times: {exc}")
                return
            log.warning("enrichment=%s create rate limited; waiting %.1fs", name, exc.retry_after)
            time.sleep(exc.retry_after)
            creating.stream.seek(0)
            self._launch(body, creating.stream, creating.attempt + 1)
            self.settle()
            return
        except (CreateRejectedError, AccountError) as exc:
            self._abandon(sid, str(exc))
            if isinstance(exc, AccountError):
                raise
            return
        except CreateOutcomeUnknownError as exc:
            log.warning("enrichment=%s submission=%s %s", name, sid, exc)
            self.report.stopped = f"create outcome unknown ({exc})"
            reconcile_submitting(self.ledger, self.api, self.settings)
            return
        crash_point("after_create")
        self._created(body, remote.id)

    def _created(self, body: _BatchBody, batch_id: str) -> None:
        assert self.api is not None
        name, sid, n = self.enrichment.name, body.submission_id, len(body.records)
        try:
            self.ledger.transition(
                sid, BatchStatus.SUBMITTING, BatchStatus.SUBMITTED, batch_id=batch_id
            )
        except LedgerError as exc:
            self._orphaned(self.api, sid, batch_id, n, exc)
            return
        self.report.submitted += n
        self.report.shared += sum(len(r.shared or ()) for r in body.records)
        self.report.estimated_usd += sum(r.estimated_usd or 0.0 for r in body.records)
        self.report.batches.append(batch_id)
        log.info("enrichment=%s batch_id=%s submitted %d requests", name, batch_id, n)
        self.on_progress(f"{name}: submitted {batch_id} ({n} requests)")

    def _orphaned(self, api: BatchApi, sid: str, batch_id: str, n: int, exc: LedgerError) -> None:
        """The batch exists but its intent is no longer ours to complete (abandoned
        while this create ran): name it, record it, and cancel it so that what was not
        processed yet is not billed. Its rows were released; nothing of it lands."""
        name = self.enrichment.name
        why = f"batch {batch_id} was created after its intent was resolved ({exc})"
        log.error("enrichment=%s submission=%s %s; canceling it", name, sid, why)
        self.report.stopped = why
        try:
            self.ledger.record_orphan(batch_id, sid, name, n, why)
        except EnrichError as record_exc:
            log.error("enrichment=%s batch_id=%s not recorded: %s", name, batch_id, record_exc)
        try:
            api.cancel(batch_id)
        except EnrichError as cancel_exc:
            log.error("enrichment=%s batch_id=%s not canceled: %s", name, batch_id, cancel_exc)

    def _abandon(self, sid: str, why: str) -> None:
        self.ledger.transition(sid, BatchStatus.SUBMITTING, BatchStatus.ABANDONED, note=why)
        self.report.stopped = why
        log.error("enrichment=%s submission=%s not created: %s", self.enrichment.name, sid, why)


@dataclass(slots=True)
class Pending:
    """A flagged row that passed every check and may be sent now."""

    record: RequestRecord
    line: bytes  # the request element; its params are not kept (GC pressure at 100k rows)
    dedupe_key: bytes | None  # identical requests share one (with `dedupe: true`)
    # dedupe across runs: (submission_id, custom_id) of an identical request already in
    # flight or succeeded, which this row shares instead of being sent
    joins: tuple[str, str] | None = None

    @property
    def params(self) -> dict[str, object]:
        """The Messages params, decoded again from the line (for the few that need it)."""
        params: dict[str, object] = orjson.loads(self.line)["params"]
        return params


def _flagged_columns(ledger: Ledger, enrichment: Enrichment) -> list[str]:
    decl = enrichment.declaration
    available = ledger.flagged_columns(enrichment.flagged)
    if not available:
        raise ConfigError(
            f"enrichment '{enrichment.name}': flagged view {enrichment.flagged} does not exist; "
            "run `dbt build` first"
        )
    required = [*decl.primary_key, decl.prompt_column]
    missing = [c for c in required if c not in available]
    if missing:
        raise ConfigError(
            f"enrichment '{enrichment.name}': flagged view {enrichment.flagged} lacks "
            f"column(s) {', '.join(missing)}"
        )
    return [*required, *(c for c in OPTIONAL_COLUMNS if c in available)]


def pending_requests(
    ledger: Ledger,
    enrichment: Enrichment,
    settings: Settings,
    report: SubmitReport,
    *,
    pilot: Container[str] | None = None,
) -> Iterator[list[Pending]]:
    """What the flagged view selects and the ledger allows to send now, chunk by chunk.

    Bad rows go to `report.rejected`, rows the ledger says must not be sent (in flight,
    succeeded, out of attempts) to `report.skipped`; `report.flagged` counts every row.
    With `pilot` (custom_ids of a pilot's sample), only those rows are read past their
    key, their requests are recorded with flag_reason `pilot`, and none is deduped.
    """
    decl = enrichment.declaration
    dedupe = decl.dedupe and pilot is None
    columns = _flagged_columns(ledger, enrichment)
    idx = {c: i for i, c in enumerate(columns)}
    nkey = len(decl.primary_key)
    hash_at, input_at, flag_at, tokens_at = (idx.get(c) for c in OPTIONAL_COLUMNS)
    encoder = RequestEncoder(decl)
    chunks = ledger.stream_flagged(enrichment.flagged, columns, settings.chunk_rows)
    first = next(chunks, None)
    if first is None:  # nothing flagged: no need to look for repeated keys
        return
    duplicates = {tuple(k) for k in ledger.duplicate_keys(enrichment.flagged, decl.primary_key)}
    for chunk in chain([first], chunks):
        prepared_rows: list[Pending] = []
        for row in chunk:
            values = row[:nkey]
            if pilot is not None and _row_custom_id(values) not in pilot:
                continue
            report.flagged += 1
            override = None if tokens_at is None else row[tokens_at]
            prepared = encoder.prepare(values, row[nkey], override)
            if isinstance(prepared, Rejection):
                report.rejected.append((_safe_key_json(prepared.key), prepared.reason))
                continue
            key_json = _key_json(decl.primary_key, values)
            if duplicates and values in duplicates:
                report.rejected.append((key_json, "primary key repeated in the flagged view"))
                continue
            request_hash = None if hash_at is None else row[hash_at]
            input_hash = None if input_at is None else row[input_at]
            flag = None if flag_at is None else row[flag_at]
            record = RequestRecord(
                custom_id=prepared.custom_id,
                primary_key_json=key_json,
                request_hash=str(request_hash or fallback_request_hash(prepared.params)),
                input_hash=None if input_hash is None else str(input_hash),
                attempt=0,
                flag_reason=str(flag or "new"),
                model=decl.model,
                prompt_version=decl.prompt_version,
                max_tokens=prepared.max_tokens,
                params_bytes=prepared.size,
            )
            dedupe_key = identity(prepared.params) if dedupe else None
            prepared_rows.append(Pending(record, prepared.line, dedupe_key))
        pairs = [(p.record.custom_id, p.record.request_hash) for p in prepared_rows]
        history = ledger.history(enrichment.name, pairs)
        ready: list[Pending] = []
        for p in prepared_rows:
            seen = history.get(p.record.custom_id, RowHistory())
            why = skip_reason(seen, p.record.flag_reason, decl.max_attempts)
            if why is not None:
                report.skipped[why] += 1
                continue
            p.record.attempt = seen.attempts + 1
            if pilot is not None:
                p.record.flag_reason = PILOT_FLAG
            ready.append(p)
        if dedupe:
            _join_sharable(ledger, enrichment.name, ready)
        yield ready


def _row_custom_id(values: Sequence[object]) -> str | None:
    """The custom_id of a flagged row's key, or None for a key that has none (a null:
    such a row is rejected when it is prepared)."""
    try:
        return custom_id_for(values)
    except (TypeError, ValueError):
        return None


def _join_sharable(ledger: Ledger, enrichment: str, ready: Sequence[Pending]) -> None:
    """Dedupe across runs: mark the rows whose exact request (request_hash, max_tokens)
    is already in flight or has succeeded, so they share it instead of being sent. Not
    repairs: their request's result is the one being repaired."""
    candidates = [p for p in ready if p.dedupe_key is not None and p.record.flag_reason != "repair"]
    wanted = {(p.record.request_hash, p.record.max_tokens) for p in candidates}
    if not wanted:
        return
    found = ledger.sharable_requests(enrichment, sorted(wanted))
    for p in candidates:
        p.joins = found.get((p.record.request_hash, p.record.max_tokens))


def identity(params: Mapping[str, object]) -> bytes:
    """What makes two requests identical: a digest of their params' canonical JSON."""
    return hashlib.blake2b(
        orjson.dumps(params, option=orjson.OPT_SORT_KEYS), digest_size=16
    ).digest()


def submit_enrichment(
    ledger: Ledger,
    api: BatchApi | None,
    enrichment: Enrichment,
    settings: Settings,
    on_progress: Callable[[str], None] = lambda _: None,
    *,
    only: Container[str] | None = None,
    cost: Callable[[RequestRecord], float | None] = lambda _: None,
    pilot: Container[str] | None = None,
) -> SubmitReport:
    """Send what the flagged view selects (only the custom_ids in `only`, if given).

    `cost` is the estimate recorded with each request sent. `pilot`: the custom_ids of a
    pilot's sample, sent as pilot requests (`pending_requests`). With `dedupe: true`, each
    distinct request is sent once per run (see `_Dedupe`): a row whose request is
    identical to one already in flight or succeeded, or to one this run sends, shares it
    (a shared_keys row) instead of being sent.
    """
    report = SubmitReport(enrichment=enrichment.name)
    sub = _Submitter(ledger, api, enrichment, settings, report, on_progress)
    dedupe = _Dedupe(sub)
    try:
        for ready in pending_requests(ledger, enrichment, settings, report, pilot=pilot):
            for p in ready:
                if only is not None and p.record.custom_id not in only:
                    report.held_back += 1
                    continue
                if p.dedupe_key is not None and dedupe.rides(p):
                    continue
                p.record.estimated_usd = cost(p.record)
                sub.add(p.record, p.line, p.dedupe_key)
                dedupe.sent(p)
            if report.stopped:
                break
            dedupe.attach()
        sub.flush()
        sub.settle()
        dedupe.attach()
    finally:
        sub.close()
    if report.rejected and api is not None:
        ledger.record_rejections(enrichment.name, report.rejected)
        for rejected_key, why in report.rejected[:20]:
            log.warning("enrichment=%s rejected row key=%s: %s", enrichment.name, rejected_key, why)
    return report


class _Dedupe:
    """One request per distinct request in a run.

    A row rides on (a) a request it `joins` (in flight or succeeded, found in the ledger
    when its chunk was read), or (b) the request this run sends for the same identity.
    While that request's batch is still open, the rider goes into the intent with it
    (`record.shared`); once the batch was created, its intent is committed, so the rider
    is attached after the fact, in its own committed write (`attach`), to the request the
    ledger then holds for that (request_hash, max_tokens). A rider whose request's batch
    could not be created stays unattached and flagged: the next run sends it.
    """

    def __init__(self, sub: _Submitter) -> None:
        self.sub = sub
        self.dry = sub.api is None
        # identity -> the record sent for it while its batch is open, then its
        # (request_hash, max_tokens) once the batch was flushed
        self.senders: dict[bytes, RequestRecord | tuple[str, int]] = {}
        self.open_body = sub.body
        self.open_keys: list[bytes] = []
        self.joined: list[tuple[str, str, str, str]] = []  # (sid, custom_id, member, key)
        self.late: list[tuple[tuple[str, int], str, str]] = []  # ((hash, max_tokens), member, key)

    def _settle(self) -> None:
        """Senders of a batch flushed since the last look are no longer open."""
        if self.sub.body is self.open_body:
            return
        for key in self.open_keys:
            record = self.senders[key]
            if isinstance(record, RequestRecord):
                self.senders[key] = (record.request_hash, record.max_tokens)
        self.open_keys.clear()
        self.open_body = self.sub.body

    def rides(self, p: Pending) -> bool:
        """Whether the row shares a request instead of being sent (recorded if so)."""
        member = (p.record.custom_id, p.record.primary_key_json)
        if p.joins is not None:
            if self.dry:  # a dry run writes nothing: count it as shared now
                self.sub.report.shared += 1
            else:
                self.joined.append((*p.joins, *member))
            return True
        assert p.dedupe_key is not None
        self._settle()
        sender = self.senders.get(p.dedupe_key)
        if sender is None:
            return False
        if isinstance(sender, RequestRecord):
            if sender.shared is None:
                sender.shared = []
            sender.shared.append(member)  # written with the intent; counted by _create
        elif self.dry:
            self.sub.report.shared += 1
        else:
            self.late.append((sender, *member))
        return True

    def sent(self, p: Pending) -> None:
        """Note a row just added to the open batch as the sender of its identity."""
        self._settle()
        body = self.sub.body
        if p.dedupe_key is None or not body.records or body.records[-1] is not p.record:
            return  # no dedupe, or not added (a custom_id collision)
        self.senders[p.dedupe_key] = p.record
        self.open_keys.append(p.dedupe_key)

    def attach(self) -> None:
        """Write the riders of requests already recorded, in one committed write (once
        the create in flight, whose requests they may ride on, has its outcome)."""
        if self.joined or self.late:
            self.sub.settle()
        rows, self.joined = self.joined, []
        if self.late:
            late, self.late = self.late, []
            found = self.sub.ledger.sharable_requests(
                self.sub.enrichment.name, sorted({request for request, _, _ in late})
            )
            for request, member, key in late:
                target = found.get(request)
                if target is None:  # its batch was not created: sent by a later run
                    self.sub.report.skipped["dedupe: the identical request was not created"] += 1
                    continue
                rows.append((*target, member, key))
        if rows:
            self.sub.ledger.attach_shared_keys(self.sub.enrichment.name, rows)
            self.sub.report.shared += len(rows)
