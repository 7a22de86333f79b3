"""Landing benchmark: our landing vs the warehouse's raw COPY vs a naive SDK loop.

    .venv/bin/python bench/bench_landing.py [--lines 200000]

One run, one machine, three measurements over the same results file:
  1. raw COPY of the file into a one-column jsonb table (the warehouse's limit);
  2. ours: the connector's landing (SDK raw stream -> prefix extraction -> COPY into
     results_raw, with the exactly-once guard: row lock, coverage checks, status
     update, one transaction);
  3. naive: SDK `results()` (typed decode) + `executemany` INSERT.
1 and 2 interleaved, best of --repeat runs each (the machine is shared); 3 with --naive.
Peak RSS is measured by bench_landing_memory.py (a whole `enrich sync --wait`).
Targets (issue 10): ours >= 0.8 x raw COPY; (issue 3) ours >= 10 x naive.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ensure_ledger, postgres, results_file, serve_results

COPY_OPTS = "(format csv, quote e'\\x01', delimiter e'\\x02')"


def raw_copy(conninfo: str, path: Path) -> float:
    with psycopg.connect(conninfo) as conn:
        conn.execute("drop table if exists raw_copy; create table raw_copy (line jsonb)")
        conn.commit()
        start = time.perf_counter()
        copy_sql = f"copy raw_copy (line) from stdin {COPY_OPTS}"
        with conn.cursor() as cur, cur.copy(copy_sql) as cp, path.open("rb") as f:
            while chunk := f.read(1 << 20):
                cp.write(chunk)
        conn.commit()
        return time.perf_counter() - start


def prepare_batch(conninfo: str, batch_id: str, n: int) -> str:
    """A batch in status `ended` with n requests, as the connector leaves it before landing."""
    sid = "sub_" + batch_id
    with psycopg.connect(conninfo) as conn:
        conn.execute(
            "insert into enrich.batches (submission_id, batch_id, enrichment, status, "
            "request_count, body_bytes, intent_at) values (%s, %s, 'bench', 'ended', %s, 0, now())",
            (sid, batch_id, n),
        )
        with (
            conn.cursor() as cur,
            cur.copy(
                "copy enrich.requests (submission_id, custom_id, enrichment, primary_key,"
                " request_hash, attempt, flag_reason, model, prompt_version, max_tokens,"
                " params_bytes) from stdin"
            ) as cp,
        ):
            for i in range(n):
                cp.write_row(
                    (
                        sid,
                        str(i),
                        "bench",
                        f'{{"id": {i}}}',
                        "h",
                        1,
                        "new",
                        "claude-haiku-4-5",
                        "v1",
                        100,
                        100,
                    )
                )
    return sid


def ours(conninfo: str, sid: str, batch_id: str) -> float:
    from connector.api import BatchApi
    from connector.ledger.postgres import PostgresLedger
    from connector.result_lines import CopyRows

    ledger = PostgresLedger(psycopg.connect(conninfo), "enrich")
    api = BatchApi()
    start = time.perf_counter()
    rows = CopyRows(batch_id=batch_id, landed_at="2026-11-26T00:00:00+00:00")
    with api.results(batch_id) as chunks:  # as connector.landing calls it
        summary = ledger.land(sid, batch_id, chunks, rows)
    took = time.perf_counter() - start
    assert summary.missing_requests == 0 and summary.foreign_lines == 0, summary
    ledger.close()
    api.close()
    return took


def naive(conninfo: str, batch_id: str) -> float:
    import anthropic

    client = anthropic.Anthropic()
    with psycopg.connect(conninfo) as conn:
        conn.execute(
            "create table naive (batch_id text, custom_id text, result_type text, line jsonb)"
        )
        conn.commit()
        start = time.perf_counter()
        buf: list[tuple[str, str, str, str]] = []
        with conn.cursor() as cur:
            for r in client.messages.batches.results(batch_id):
                buf.append((batch_id, r.custom_id, r.result.type, r.model_dump_json()))
                if len(buf) >= 1000:
                    cur.executemany("insert into naive values (%s, %s, %s, %s)", buf)
                    buf.clear()
            if buf:
                cur.executemany("insert into naive values (%s, %s, %s, %s)", buf)
        conn.commit()
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5, help="best of this many runs")
    parser.add_argument("--naive", action="store_true", help="also time the naive SDK loop")
    args = parser.parse_args()
    n = args.lines
    os.environ.setdefault("ANTHROPIC_API_KEY", "bench-key")
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp, postgres() as db:
        ensure_ledger()
        lines = results_file(Path(tmp) / "ours.jsonl", n)
        files = {f"msgbatch_ours{r}": lines for r in range(args.repeat)}
        files["msgbatch_naive"] = lines
        size_mb = lines.stat().st_size / 1e6
        print(f"{n} result lines, {size_mb:.0f} MB ({size_mb * 1e6 / n:.0f} bytes/line)")
        with serve_results(files) as url:
            os.environ["ANTHROPIC_BASE_URL"] = url
            t_copy = t_ours = float("inf")
            for r in range(args.repeat):  # interleaved, best of each (the machine is shared)
                t_copy = min(t_copy, raw_copy(db.conninfo, lines))
                sid = prepare_batch(db.conninfo, f"msgbatch_ours{r}", n)
                t_ours = min(t_ours, ours(db.conninfo, sid, f"msgbatch_ours{r}"))
            t_naive = naive(db.conninfo, "msgbatch_naive") if args.naive else None
    print(f"best of {args.repeat} interleaved runs each")
    print(f"raw COPY into jsonb : {t_copy:6.2f} s  {n / t_copy:9,.0f} lines/s")
    print(f"ours (landing)      : {t_ours:6.2f} s  {n / t_ours:9,.0f} lines/s")
    if t_naive is not None:
        print(f"naive SDK + INSERT  : {t_naive:6.2f} s  {n / t_naive:9,.0f} lines/s")
    print(f"ours / raw COPY speed = {t_copy / t_ours:.2f}  (target >= 0.8)")
    if t_naive is not None:
        print(f"ours / naive speed    = {t_naive / t_ours:.1f}x (target >= 10)")
    load_after = os.getloadavg()
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f}")


if __name__ == "__main__":
    main()
