"""Submit benchmark: the connector's CPU time to submit a 100,000-request batch.

    .venv/bin/python bench/bench_submit.py [--rows 100000]

Reads 100,000 flagged rows from a real Postgres view, builds and encodes every request,
records the intent (batch row + 100,000 request rows by COPY), creates the batch on the
emulator (running in its own process, so its CPU is not counted) and records the id.
Prints the connector process's CPU seconds (target: under 5 s) and wall time.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, postgres
from harness.enrich_project import (
    KEY_TYPES,
    create_flagged_views,
    create_source,
    dbt_prepare,
    default_declaration,
    write_project,
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    n = args.rows
    port = _free_port()
    emulator = subprocess.Popen(
        [sys.executable, "-m", "connector", "emulator", "--port", str(port), "--quiet"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                urllib.request.urlopen(base + "/_emulator/stats", timeout=1)  # noqa: S310
                break
            except OSError:
                time.sleep(0.1)
        with tempfile.TemporaryDirectory() as tmp, postgres() as db:
            decl = default_declaration() | {"max_requests_per_batch": 100_000}
            project = write_project(Path(tmp), {"items": decl})
            dbt_prepare(project, db.env)
            prompts = [
                (i, f"Item {i}: a sturdy widget in colour {i % 7}, size {i % 13}") for i in range(n)
            ]
            create_source(db.conninfo, "items", prompts, KEY_TYPES["items"])
            create_flagged_views(db.conninfo, project, ["items"])
            os.environ.update(ANTHROPIC_BASE_URL=base, ANTHROPIC_API_KEY="bench-key")

            from connector.settings import Settings
            from connector.sync import ensure_ledger, opened, sync

            settings = Settings(project_dir=project, select=("items",), api_timeout=600)
            with opened(settings) as (proj, ledger):
                ensure_ledger(proj, ledger)  # dbt run-operation, outside the measurement
            cpu, wall = time.process_time(), time.perf_counter()
            if os.environ.get("BENCH_PROFILE"):
                import cProfile

                prof = cProfile.Profile()
                report = prof.runcall(sync, settings)
                prof.dump_stats(os.environ["BENCH_PROFILE"])
            else:
                report = sync(settings)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            sent = sum(s.submitted for s in report.submitted)
            assert sent == n, report
    finally:
        emulator.terminate()
        emulator.wait()
    print(f"submitted {sent} requests in {len(report.submitted[0].batches)} batch(es)")
    print(f"connector CPU: {cpu:.2f} s (target < 5 s); wall: {wall:.2f} s")


if __name__ == "__main__":
    main()
