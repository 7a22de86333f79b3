"""The ledger's SQL, each query written once, in the Postgres dialect.

In a query text, `{name}` marks an identifier (a ledger table, the flagged view, a
column list) that each implementation composes with its driver's quoting, and
`%(name)s` marks a value, always passed as a parameter. Postgres runs the texts as
they are (`psycopg.sql.SQL(...).format(...)`); DuckDB runs them transpiled by sqlglot
(`duckdb_text`, once per text), where `%(name)s` becomes `$name`.

Only what cannot be shared stays in an implementation: Postgres's `COPY` and DuckDB's
bulk load from a file.
"""

from __future__ import annotations

import functools
import re
import string
from typing import Final

import sqlglot
from sqlglot import exp

# the ledger's tables: a `{name}` field with one of these names is `<ledger schema>.<name>`
LEDGER_TABLES: Final = (
    "ledger_version",
    "batches",
    "requests",
    "results_raw",
    "rejections",
    "shared_keys",
    "deferrals",
    "orphan_batches",
    "batch_tallies",
)

VERSION_TABLE_EXISTS: Final = """
select 1 from information_schema.tables
where table_catalog = current_database() and table_schema = %(schema)s
    and table_name = 'ledger_version'
"""

VERSION: Final = "select max(version) from {ledger_version}"

RELATION_COLUMNS: Final = """
select column_name from information_schema.columns
where table_catalog = current_database() and table_schema = %(schema)s
    and table_name = %(name)s
order by ordinal_position
"""

# groups with a null in the key are dropped by the caller (a null key is its own rejection)
REPEATED_KEYS: Final = "select {columns} from {relation} group by {columns} having count(*) > 1"

SELECT_COLUMNS: Final = "select {columns} from {relation}"

# Driven by the chunk's custom_ids (about 2,000): each branch looks its rows up by key
# (Postgres: requests_key_lookup, shared_keys_member_lookup), so a chunk costs the same
# whatever the ledger holds. (It used to filter every request of the enrichment and join
# the chunk to that: a scan per chunk, quadratic over a million-row submit.)
HISTORY: Final = """
with wanted as (
    select unnest(%(ids)s::text[]) as custom_id, unnest(%(hashes)s::text[]) as request_hash
),
served as (
    select q.submission_id, q.custom_id, w.custom_id as member_custom_id, q.request_hash
    from wanted as w
    join {requests} as q on q.enrichment = %(enrichment)s and q.custom_id = w.custom_id
    union all
    select s.submission_id, s.custom_id, s.member_custom_id, q.request_hash
    from wanted as w
    join {shared_keys} as s on s.member_custom_id = w.custom_id
    join {requests} as q on q.submission_id = s.submission_id and q.custom_id = s.custom_id
    where q.enrichment = %(enrichment)s
)
select w.custom_id,
       count(*) filter (
           where r.request_hash = w.request_hash and b.status = any(%(attempted)s)
       ) as attempts,
       coalesce(bool_or(b.status = any(%(in_flight)s)), false) as in_flight,
       coalesce(bool_or(
           r.request_hash = w.request_hash and x.result_type = 'succeeded'
       ), false) as succeeded,
       coalesce(bool_or(
           r.request_hash = w.request_hash and x.result_type = 'errored'
           and (x.line -> 'result' -> 'error' -> 'error' ->> 'type') = any(%(terminal)s)
       ), false) as terminal
from wanted as w
join served as r on r.member_custom_id = w.custom_id
join {batches} as b on b.submission_id = r.submission_id
left join {results_raw} as x on x.batch_id = b.batch_id and x.custom_id = r.custom_id
group by w.custom_id
"""

INSERT_INTENT: Final = """
insert into {batches} (submission_id, enrichment, status, request_count, body_bytes, intent_at,
    marker_custom_id)
values (%(sid)s, %(enrichment)s, %(status)s, %(request_count)s, %(body_bytes)s, now(),
    %(marker)s)
"""

# committed right before each create call: a reconcile knows a batch may exist from here
MARK_CREATE_STARTED: Final = """
update {batches} set create_started_at = now()
where submission_id = %(sid)s and status = %(submitting)s
"""

# the first time a sync holding the sync guard found the intent unresolved (set once)
MARK_RECONCILE_SEEN: Final = """
update {batches} set reconcile_seen_at = coalesce(reconcile_seen_at, now()),
    note = case when %(note)s::text is null or note = %(note)s::text then note
                else %(note)s::text end
where submission_id = %(sid)s and status = %(submitting)s
"""

# a batch this ledger created that no batch row holds (the first finding is kept)
INSERT_ORPHAN: Final = """
insert into {orphan_batches} (batch_id, submission_id, enrichment, request_count, found_at, note)
select %(batch_id)s, %(sid)s, %(enrichment)s, %(request_count)s, now(), %(note)s
where not exists (select 1 from {orphan_batches} where batch_id = %(batch_id)s)
"""

ORPHANS: Final = """
select batch_id, submission_id, enrichment, request_count, found_at, note
from {orphan_batches} order by found_at, batch_id
"""

# the marker's result line proves whose batch it is; it is not a row's result
DELETE_MARKER_LINE: Final = """
delete from {results_raw} where batch_id = %(batch_id)s and custom_id = %(marker)s
returning result_type
"""

# the API's counts of a batch include its marker request: once its line is found, the
# batch counts only its rows' results (what enrich_reconciliation compares lines with)
UNCOUNT_MARKER: Final = """
update {batches} set
    succeeded_count = succeeded_count - case when %(type)s = 'succeeded' then 1 else 0 end,
    errored_count = errored_count - case when %(type)s = 'errored' then 1 else 0 end,
    canceled_count = canceled_count - case when %(type)s = 'canceled' then 1 else 0 end,
    expired_count = expired_count - case when %(type)s = 'expired' then 1 else 0 end
where submission_id = %(sid)s
"""

# the requests of an intent as columns (one array per column); Postgres uses COPY instead
INSERT_REQUESTS: Final = """
insert into {requests} (submission_id, custom_id, enrichment, primary_key, request_hash,
    input_hash, attempt, flag_reason, model, prompt_version, max_tokens, params_bytes,
    estimated_usd)
select %(sid)s, unnest(%(custom_id)s::text[]), %(enrichment)s,
    unnest(%(primary_key)s::text[])::jsonb, unnest(%(request_hash)s::text[]),
    unnest(%(input_hash)s::text[]), unnest(%(attempt)s::integer[]),
    unnest(%(flag_reason)s::text[]), unnest(%(model)s::text[]),
    unnest(%(prompt_version)s::text[]), unnest(%(max_tokens)s::integer[]),
    unnest(%(params_bytes)s::integer[]), unnest(%(estimated_usd)s::double precision[])
"""

# dedupe: the keys that share a request of this intent (written with the intent)
INSERT_SHARED_KEYS: Final = """
insert into {shared_keys} (submission_id, custom_id, member_custom_id, primary_key)
select %(sid)s, unnest(%(custom_id)s::text[]), unnest(%(member)s::text[]),
    unnest(%(primary_key)s::text[])::jsonb
"""

# whether a budget holds anything back for an enrichment (the delete below sends every
# custom_id of the intent: skipped when there is nothing to delete)
ANY_DEFERRALS: Final = "select 1 from {deferrals} where enrichment = %(enrichment)s limit 1"

# rows of an intent are no longer held back by a budget
DELETE_DEFERRALS: Final = """
delete from {deferrals} where enrichment = %(enrichment)s and custom_id = any(%(ids)s::text[])
"""

# a page of an enrichment's deferrals, after a custom_id (keyset paging: a budget may
# have held back a million rows, never read in one result)
DEFERRALS: Final = """
select custom_id, first_deferred_at from {deferrals}
where enrichment = %(enrichment)s and custom_id > %(after)s
order by custom_id
limit %(page)s
"""

UPSERT_DEFERRALS: Final = """
insert into {deferrals} (enrichment, custom_id, first_deferred_at, last_deferred_at)
select %(enrichment)s, unnest(%(ids)s::text[]), now(), now()
on conflict (enrichment, custom_id) do update set last_deferred_at = excluded.last_deferred_at
"""

# held back before this run and not held back by it: no longer flagged, or sent
PRUNE_DEFERRALS: Final = """
delete from {deferrals} where enrichment = %(enrichment)s and last_deferred_at < %(since)s
"""

# whether requests other than pilots have used a prompt_version (`enrich pilot` needs a
# version of its own: one that is not live yet)
LIVE_VERSION: Final = """
select count(*) from (
    select 1 from {requests}
    where enrichment = %(enrichment)s and prompt_version = %(prompt_version)s
        and flag_reason <> %(pilot)s
    limit 1
) as live
"""

# what the estimates of one enrichment's submissions since a time add up to
ESTIMATED_SINCE: Final = """
select coalesce(sum(r.estimated_usd), 0), count(*)
from {requests} as r
join {batches} as b on b.submission_id = r.submission_id
where r.enrichment = %(enrichment)s and b.intent_at >= %(since)s and b.status <> %(abandoned)s
"""

# One row per landed batch (and model): its outcomes and token usage, computed once from
# its result lines. `enrich status` sums these few rows instead of parsing every line
# (seconds at a million); TALLY_LANDED fills them, once per sync pass, for every landed
# batch without one, and `_with_tallies` adds such batches live, so a ledger upgraded from
# version 3 reads right before its first sync. The JSON of each line is read once
# (`materialized`; Postgres would otherwise inline it and parse a line once per sum).
_TALLY_COLUMNS: Final = """batch_id, enrichment, model, landed_at, requests, succeeded,
    failed_retryable, failed_terminal, missing, input_tokens, output_tokens,
    cache_write_5m_tokens, cache_write_1h_tokens, cache_read_tokens"""

_TALLY_SELECT: Final = """
select b.batch_id, r.enrichment, r.model, b.landed_at, count(*),
    count(*) filter (where x.result_type = 'succeeded'),
    count(*) filter (
        where x.result_type <> 'succeeded' and coalesce(x.error_type, '') <> all(%(terminal)s)
    ),
    count(*) filter (where x.error_type = any(%(terminal)s)),
    count(*) filter (where x.result_type is null),
    coalesce(sum((x.u ->> 'input_tokens')::bigint), 0),
    coalesce(sum((x.u ->> 'output_tokens')::bigint), 0),
    coalesce(sum(coalesce(
        (x.u -> 'cache_creation' ->> 'ephemeral_5m_input_tokens')::bigint,
        (x.u ->> 'cache_creation_input_tokens')::bigint
            - coalesce((x.u -> 'cache_creation' ->> 'ephemeral_1h_input_tokens')::bigint, 0),
        0)), 0),
    coalesce(sum((x.u -> 'cache_creation' ->> 'ephemeral_1h_input_tokens')::bigint), 0),
    coalesce(sum((x.u ->> 'cache_read_input_tokens')::bigint), 0)
from untallied as b
join {requests} as r on r.submission_id = b.submission_id
left join lines as x on x.batch_id = b.batch_id and x.custom_id = r.custom_id
group by b.batch_id, r.enrichment, r.model, b.landed_at
"""

_UNTALLIED: Final = """
with untallied as materialized (
    select b.submission_id, b.batch_id, b.landed_at from {batches} as b
    where b.status = %(landed)s
        and not exists (select 1 from {batch_tallies} as t where t.batch_id = b.batch_id)
),
lines as materialized (
    select x.batch_id, x.custom_id, x.result_type,
        case when x.result_type = 'errored'
            then x.line -> 'result' -> 'error' -> 'error' ->> 'type' end as error_type,
        case when x.result_type = 'succeeded'
            then cast(x.line -> 'result' -> 'message' -> 'usage' as jsonb) end as u
    from {results_raw} as x
    where x.batch_id in (select batch_id from untallied)
)
"""

TALLY_LANDED: Final = (
    "".join(
        ("insert into {batch_tallies} (", _TALLY_COLUMNS, ")", _UNTALLIED, _TALLY_SELECT),
    )
    + "on conflict do nothing\n"
)


def _with_tallies(body: str) -> str:
    """`body` reading the CTE `tallies`: every landed batch's tally, stored or computed
    now for those without one (texts of this module only, never user input)."""
    parts = (_UNTALLIED, ", tallies as (\nselect ", _TALLY_COLUMNS, " from {batch_tallies}")
    return "".join((*parts, "\nunion all", _TALLY_SELECT, ")\n", body))


# usage of landed succeeded results per enrichment and model, today (UTC) and in total
USAGE: Final = _with_tallies(
    """select enrichment, model, landed_at >= %(day_start)s as is_today, sum(succeeded),
    sum(input_tokens), sum(output_tokens), sum(cache_write_5m_tokens),
    sum(cache_write_1h_tokens), sum(cache_read_tokens)
from tallies
group by enrichment, model, landed_at >= %(day_start)s
having sum(succeeded) > 0
order by 1, 2, 3
"""
)

# estimated cost of what is in flight, per enrichment
IN_FLIGHT_ESTIMATE: Final = """
select r.enrichment, coalesce(sum(r.estimated_usd), 0), count(*),
    count(*) filter (where r.estimated_usd is null)
from {requests} as r
join {batches} as b on b.submission_id = r.submission_id
where b.status = any(%(in_flight)s)
group by r.enrichment
"""

# dedupe: requests saved (keys served by another row's request), per enrichment
SHARED_COUNTS: Final = """
select q.enrichment, count(*)
from {shared_keys} as s
join {requests} as q on q.submission_id = s.submission_id and q.custom_id = s.custom_id
group by q.enrichment
"""

# calibration: per prompt_version, landed input tokens per params byte, and output
# tokens, over the most recent succeeded results (bounded: it runs on every sync)
CALIBRATION: Final = """
with recent as (
    select r.prompt_version, r.params_bytes,
        x.line -> 'result' -> 'message' -> 'usage' as u
    from {results_raw} as x
    join {batches} as b on b.batch_id = x.batch_id
    join {requests} as r on r.submission_id = b.submission_id and r.custom_id = x.custom_id
    where x.result_type = 'succeeded' and r.enrichment = %(enrichment)s
    order by x.landed_at desc
    limit %(recent)s
)
select prompt_version, count(*), sum(params_bytes),
    sum(coalesce((u ->> 'input_tokens')::bigint, 0)
        + coalesce((u ->> 'cache_creation_input_tokens')::bigint, 0)
        + coalesce((u ->> 'cache_read_input_tokens')::bigint, 0)),
    sum(coalesce((u ->> 'output_tokens')::bigint, 0))
from recent
group by prompt_version
"""

REQUEST_COLUMNS: Final = (
    "submission_id",
    "custom_id",
    "enrichment",
    "primary_key",
    "request_hash",
    "input_hash",
    "attempt",
    "flag_reason",
    "model",
    "prompt_version",
    "max_tokens",
    "params_bytes",
    "estimated_usd",
)

# guarded: moves the batch only if it is still in status `old` (the caller checks rowcount)
TRANSITION: Final = """
update {batches} set
    status = %(new)s,
    batch_id = coalesce(%(batch_id)s::text, batch_id),
    submitted_at = case when %(submitted)s then now() else submitted_at end,
    note = case when %(note)s::text is null then note
                else concat_ws('; ', note, %(note)s::text) end
where submission_id = %(sid)s and status = %(old)s
"""

RECORD_POLL: Final = """
update {batches} set processing_status = %(ps)s, last_polled_at = now(),
    succeeded_count = %(s)s, errored_count = %(e)s, canceled_count = %(c)s,
    expired_count = %(x)s, api_created_at = coalesce(%(created)s, api_created_at),
    expires_at = coalesce(%(expires)s, expires_at), ended_at = %(ended_at)s,
    status = case when %(ended)s and status = %(submitted)s then %(ended_status)s
                  else status end
where submission_id = %(sid)s
"""

# the row lock serialises landings on Postgres; DuckDB has one writing process per file
# and refuses conflicting concurrent updates, so the lock is dropped there
LOCK_FOR_LANDING: Final = """
select status, request_count from {batches} where submission_id = %(sid)s for update
"""

MARK_LANDED: Final = """
update {batches} set status = %(status)s, landed_at = now(), landed_lines = %(lines)s
where submission_id = %(sid)s
"""

# DuckDB's results_raw has no primary key (ledger v6, docs/ledger.md): the landing
# transaction checks that the batch's lines name each custom_id once
REPEATED_LINES: Final = """
select count(*) - count(distinct custom_id) from {results_raw} where batch_id = %(batch_id)s
"""

COVERAGE: Final = """
select count(*) from {results_raw} as x
join {requests} as r on r.submission_id = %(sid)s and r.custom_id = x.custom_id
where x.batch_id = %(batch_id)s
"""

# A row already recorded with the same key and reason (by an earlier sync) is not
# recorded again, so the table does not grow by the same rows on every run; `seen_at`
# stays when it was first seen. Rows of one call are all kept (two rows of a view that
# repeat a key are two rejections). No unique index needed: one sync at a time writes a
# ledger (its sync guard).
INSERT_REJECTIONS: Final = """
insert into {rejections} (enrichment, primary_key, reason, seen_at)
select %(enrichment)s, fresh.primary_key, fresh.reason, now()
from (
    select
        cast(unnest(%(keys)s::text[]) as jsonb) as primary_key,
        unnest(%(reasons)s::text[]) as reason
) as fresh
where not exists (
    select 1 from {rejections} as seen
    where seen.enrichment = %(enrichment)s
        and seen.reason = fresh.reason
        and cast(seen.primary_key as text) is not distinct from cast(fresh.primary_key as text)
)
"""

BATCHES: Final = """
select submission_id, batch_id, enrichment, status, request_count, intent_at,
    api_created_at, last_polled_at, note, marker_custom_id, create_started_at,
    reconcile_seen_at
from {batches} where status = any(%(statuses)s)
order by intent_at, submission_id
"""

KNOWN_BATCH_IDS: Final = """
select batch_id from {batches} where batch_id = any(%(ids)s)
union all
select batch_id from {orphan_batches} where batch_id = any(%(ids)s)
"""

SUBMISSION_CUSTOM_IDS: Final = """
select custom_id from {requests} where submission_id = %(sid)s order by 1
"""

NOW: Final = "select now()"

# Batches counted from the batches table; requests in flight live (few); landed outcomes
# from the batches' tallies (see TALLY_LANDED).
STATUS: Final = _with_tallies(
    """, batch_counts as (
    select enrichment,
        count(*) filter (where status = any(%(in_flight)s)) as in_flight_batches,
        count(*) filter (where status = %(landed)s) as landed_batches
    from {batches}
    group by enrichment
),
in_flight_counts as (
    select r.enrichment, count(*) as in_flight_requests
    from {batches} as b
    join {requests} as r on r.submission_id = b.submission_id
    where b.status = any(%(in_flight)s)
    group by r.enrichment
),
landed_counts as (
    select enrichment, sum(succeeded) as succeeded, sum(failed_retryable) as failed_retryable,
        sum(failed_terminal) as failed_terminal, sum(missing) as missing
    from tallies
    group by enrichment
),
rejection_counts as (
    select enrichment, count(*) as rejected from {rejections} group by enrichment
),
names as (
    select enrichment from batch_counts union select enrichment from rejection_counts
)
select n.enrichment,
    coalesce(b.in_flight_batches, 0), coalesce(f.in_flight_requests, 0),
    coalesce(b.landed_batches, 0), coalesce(l.succeeded, 0), coalesce(l.failed_retryable, 0),
    coalesce(l.failed_terminal, 0), coalesce(l.missing, 0), coalesce(j.rejected, 0)
from names as n
left join batch_counts as b on b.enrichment = n.enrichment
left join in_flight_counts as f on f.enrichment = n.enrichment
left join landed_counts as l on l.enrichment = n.enrichment
left join rejection_counts as j on j.enrichment = n.enrichment
order by n.enrichment
"""
)


def fields(text: str) -> list[str]:
    """The `{name}` fields of a query text, in order of appearance."""
    return [name for _, name, _, _ in string.Formatter().parse(text) if name]


def _sentinel(name: str) -> str:
    return f"__batch_enrich_field_{name}__"


@functools.cache
def duckdb_text(text: str) -> str:
    """`text` in DuckDB's dialect, its `{name}` fields kept for composition.

    Each field is swapped for a sentinel identifier that sqlglot carries through the
    transpilation untouched; any brace sqlglot writes is escaped so that only the
    fields remain for `compose`.
    """
    names = fields(text)
    marked = string.Formatter().vformat(
        text, (), {n: exp.to_identifier(_sentinel(n), quoted=True).sql("postgres") for n in names}
    )
    tree = sqlglot.parse_one(marked, read="postgres")
    if tree.args.get("locks"):
        tree.set("locks", None)  # see LOCK_FOR_LANDING
    out = tree.sql(dialect="duckdb").replace("{", "{{").replace("}", "}}")
    for name in set(names):
        quoted = exp.to_identifier(_sentinel(name), quoted=True).sql("duckdb")
        if quoted not in out:
            raise AssertionError(f"sqlglot lost the field {{{name}}} of: {text}")
        out = out.replace(quoted, "{" + name + "}")
    if "%(" in out or re.search(r"%s\b", out):
        raise AssertionError(f"a Postgres parameter survived transpilation: {out}")
    return out


# dedupe across runs
# For each wanted (request_hash, max_tokens): one request of the enrichment that a row
# asking exactly that may share instead of being sent: in flight (its batch submitting,
# submitted or ended), or with a succeeded result line; succeeded first, then the latest.
SHARABLE_REQUESTS: Final = """
with wanted as (
    select distinct unnest(%(hashes)s::text[]) as request_hash,
        unnest(%(max_tokens)s::integer[]) as max_tokens
),
candidates as (
    select q.request_hash, q.max_tokens, q.submission_id, q.custom_id,
        row_number() over (
            partition by q.request_hash, q.max_tokens
            order by case when x.result_type = 'succeeded' then 0 else 1 end,
                b.intent_at desc, q.submission_id, q.custom_id
        ) as preference
    from {requests} as q
    join wanted as w on w.request_hash = q.request_hash and w.max_tokens = q.max_tokens
    join {batches} as b on b.submission_id = q.submission_id
    left join {results_raw} as x on x.batch_id = b.batch_id and x.custom_id = q.custom_id
    where q.enrichment = %(enrichment)s
        and (b.status = any(%(in_flight)s) or x.result_type = 'succeeded')
)
select request_hash, max_tokens, submission_id, custom_id
from candidates where preference = 1
"""

# dedupe: keys attached to a request after its intent was committed (a request of an
# earlier batch of this run, in flight from an earlier run, or already succeeded); a key
# attached to the same submission before keeps its row
ATTACH_SHARED_KEYS: Final = """
insert into {shared_keys} (submission_id, custom_id, member_custom_id, primary_key)
select unnest(%(sid)s::text[]), unnest(%(custom_id)s::text[]), unnest(%(member)s::text[]),
    unnest(%(primary_key)s::text[])::jsonb
on conflict (submission_id, member_custom_id) do nothing
"""


# the backlog in flight: per batch in flight, its requests and the keys that share them
# (dedupe), and when its intent was recorded (status sums them per enrichment)
IN_FLIGHT_BACKLOG: Final = """
select b.enrichment, b.intent_at,
    (select count(*) from {requests} as r where r.submission_id = b.submission_id),
    (select count(*) from {shared_keys} as s where s.submission_id = b.submission_id)
from {batches} as b
where b.status = any(%(in_flight)s)
"""
