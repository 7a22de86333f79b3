"""Benchmark the Message Batches API emulator through the official SDK.

Creates one batch of N requests (structured output, as the connector sends them),
polls it until it ends, then streams every result line with
`with_streaming_response.results()`. Prints wall times and lines/s for each step.
The emulator must never be the bottleneck: both steps should stay well under 10 s
for 100,000 requests on a 2-core machine. The emulator runs in its own process, as
users run it (`--in-process` to run it in a thread of this one instead); the emulator's
own share of each call comes from `GET /_emulator/stats` (`http_seconds`).

    .venv/bin/python bench/bench_emulator.py [--requests 100000] [--in-process]
    .venv/bin/python bench/bench_emulator.py --batches 10 [--requests 100000]

With `--batches K`, creates K batches of N requests one after the other instead (the
body encoded once, posted as bytes, so the client's encoding is not timed), each
without waiting for the previous one to be processed, as a large submit does, and
prints each create's time in the emulator and the emulator process's CPU over it:
creation should cost the same whatever the number of batches the emulator holds.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import anthropic
import orjson

from connector.emulator import EmulatorConfig, run_emulator

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "sentiment": {"type": "string", "enum": ["positive", "negative", "neutral"]},
        "urgency": {"type": "integer", "minimum": 1, "maximum": 5},
        "summary": {"type": "string", "maxLength": 120},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
    },
    "required": ["sentiment", "urgency", "summary"],
    "additionalProperties": False,
}


def build_requests(count: int) -> list[dict[str, Any]]:
    return [
        {
            "custom_id": f"ticket-{i}",
            "params": {
                "model": "claude-haiku-4-5",
                "max_tokens": 256,
                "system": "Classify the support ticket and summarise it in one sentence.",
                "messages": [
                    {
                        "role": "user",
                        "content": f"Ticket {i}: the parcel arrived damaged and the "
                        "replacement was sent to the wrong address. Please refund me.",
                    }
                ],
                "output_config": {"format": {"type": "json_schema", "schema": SCHEMA}},
            },
        }
        for i in range(count)
    ]


def process_cpu(pid: int) -> float:
    """User + system seconds of a live process (from /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def create_many(base_url: str, pid: int | None, requests: list[dict[str, Any]], k: int) -> None:
    """K creates in a row; per create the emulator's time in it and its process's CPU."""
    body = orjson.dumps({"requests": requests})
    url = urlsplit(base_url)
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=600)
    headers = {"x-api-key": "bench", "anthropic-version": "2023-06-01",
               "content-type": "application/json"}  # fmt: skip
    print(f"{k} creates of {len(requests):,} requests ({len(body) / 1e6:.0f} MB body each)")
    print("batch  wall s  emulator CPU s")
    walls, cpus = [], []
    for index in range(1, k + 1):
        cpu0 = process_cpu(pid) if pid else 0.0
        started = time.perf_counter()
        conn.request("POST", "/v1/messages/batches", body=body, headers=headers)
        response = conn.getresponse()
        answer = response.read()
        if response.status != 200:
            raise SystemExit(f"create {index}: HTTP {response.status} {answer[:300]!r}")
        walls.append(time.perf_counter() - started)
        cpus.append((process_cpu(pid) if pid else 0.0) - cpu0)
        print(f"{index:>5}  {walls[-1]:>6.2f}  {cpus[-1]:>14.2f}", flush=True)
    conn.close()
    half = max(1, k // 2)
    print(f"first create {walls[0]:.2f} s; mean of the last {half}: "
          f"{sum(walls[-half:]) / half:.2f} s (ratio {sum(walls[-half:]) / half / walls[0]:.2f}); "
          f"emulator CPU {sum(cpus):.1f} s in all")  # fmt: skip


@contextmanager
def emulator_process() -> Iterator[tuple[str, int]]:
    """`enrich emulator --port 0` in a subprocess, as users run it; yields its base URL
    and pid."""
    command = [sys.executable, "-c", "from connector.cli import main; main()", "emulator"]
    process = subprocess.Popen(
        [*command, "--port", "0", "--quiet"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        match = re.search(r"(http://\S+)", first)
        if match is None:
            raise SystemExit(f"the emulator did not start: {first!r}")
        yield match.group(1), process.pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:  # busy processing a backlog of items
            process.kill()
            process.wait()


@contextmanager
def emulator_in_process() -> Iterator[tuple[str, int | None]]:
    with run_emulator(EmulatorConfig()) as emulator:
        yield emulator.base_url, None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="run the emulator in this process (shares the GIL with the SDK)",
    )
    parser.add_argument("--batches", type=int, default=None, metavar="K",
                        help="create K batches in a row and time each create")  # fmt: skip
    args = parser.parse_args()
    requests = build_requests(args.requests)
    emulator = emulator_in_process() if args.in_process else emulator_process()
    if args.batches is not None:
        with emulator as (base_url, pid):
            create_many(base_url, pid, requests, args.batches)
        return
    with emulator as (base_url, _):
        client = anthropic.Anthropic(base_url=base_url, api_key="bench", max_retries=0, timeout=300)
        started = time.perf_counter()
        batch = client.messages.batches.create(requests=requests)  # type: ignore[arg-type]
        create_seconds = time.perf_counter() - started

        started = time.perf_counter()
        polls = 0
        while batch.processing_status != "ended":
            batch = client.messages.batches.retrieve(batch.id)
            polls += 1
        wait_seconds = time.perf_counter() - started

        started = time.perf_counter()
        lines = 0
        received = 0
        with client.messages.batches.with_streaming_response.results(batch.id) as response:
            for line in response.iter_lines():
                if line:
                    lines += 1
                    received += len(line) + 1
        results_seconds = time.perf_counter() - started
        stats = client.get("/_emulator/stats", cast_to=object)

    server = stats["http_seconds"] if isinstance(stats, dict) else {}
    body_mb = len(orjson.dumps({"requests": requests})) / 1e6
    print(f"requests                      {args.requests:>10,}  ({body_mb:.0f} MB body)")
    print(f"create, SDK call              {create_seconds:>10.2f} s")
    print(f"  of which in the emulator    {server.get('create', 0.0):>10.2f} s")
    print(f"  requests/s                  {args.requests / create_seconds:>10,.0f}")
    print(f"until ended ({polls} retrieves)     {wait_seconds:>10.2f} s  (background processing)")
    print(f"results stream, SDK           {results_seconds:>10.2f} s")
    print(f"  of which in the emulator    {server.get('results', 0.0):>10.2f} s")
    print(f"  lines                       {lines:>10,}")
    print(f"  lines/s                     {lines / results_seconds:>10,.0f}")
    print(f"  MB/s                        {received / results_seconds / 1e6:>10.1f}")
    if lines != args.requests:
        raise SystemExit(f"expected {args.requests} result lines, got {lines}")


if __name__ == "__main__":
    main()
