"""Shared pieces of the benchmark scripts: a private Postgres, the ledger DDL, result
lines shaped like the API's, and a static results server (so landing is measured, not
the emulator's generation)."""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from harness.postgres import PgDatabase, fresh_database, running_cluster  # noqa: E402

__all__ = ["ROOT", "PgDatabase", "fresh_database", "postgres", "results_file", "serve_results"]

WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "the",
    "lazy",
    "dog",
    "while",
    "analysts",
    "enrich",
    "rows",
]


def result_line(i: int) -> bytes:
    """A succeeded result line of about 760 bytes, as the API writes it."""
    text = " ".join(WORDS[(i + k) % len(WORDS)] for k in range(48))
    return orjson.dumps(
        {
            "custom_id": str(i),
            "result": {
                "type": "succeeded",
                "message": {
                    "id": f"msg_{i:024d}",
                    "type": "message",
                    "role": "assistant",
                    "model": "claude-haiku-4-5",
                    "content": [{"type": "text", "text": text, "citations": None}],
                    "stop_reason": "end_turn",
                    "stop_sequence": None,
                    "usage": {
                        "input_tokens": 120 + i % 50,
                        "output_tokens": 80 + i % 30,
                        "cache_creation_input_tokens": 0,
                        "cache_read_input_tokens": 0,
                        "cache_creation": {
                            "ephemeral_5m_input_tokens": 0,
                            "ephemeral_1h_input_tokens": 0,
                        },
                        "service_tier": "batch",
                        "server_tool_use": None,
                    },
                    "container": None,
                },
            },
        }
    )


def results_file(path: Path, n: int) -> Path:
    with path.open("wb") as f:
        for i in range(n):
            f.write(result_line(i) + b"\n")
    return path


def _handler(files: dict[str, Path]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            parts = self.path.split("?")[0].strip("/").split("/")
            batch_id = parts[3] if len(parts) >= 4 else ""
            if batch_id not in files:
                self.send_response(404)
                self.send_header("content-length", "0")
                self.end_headers()
                return
            if parts[-1] == "results":
                size = files[batch_id].stat().st_size
                self.send_response(200)
                self.send_header("content-type", "application/binary")
                self.send_header("content-length", str(size))
                self.end_headers()
                with files[batch_id].open("rb") as f:
                    while chunk := f.read(1 << 20):
                        self.wfile.write(chunk)
                return
            host, port = self.server.server_address[:2]
            body = orjson.dumps(
                {
                    "id": batch_id,
                    "type": "message_batch",
                    "processing_status": "ended",
                    "request_counts": {
                        "processing": 0,
                        "succeeded": 1,
                        "errored": 0,
                        "canceled": 0,
                        "expired": 0,
                    },
                    "created_at": "2026-11-26T00:00:00Z",
                    "expires_at": "2026-11-27T00:00:00Z",
                    "ended_at": "2026-11-26T00:10:00Z",
                    "archived_at": None,
                    "cancel_initiated_at": None,
                    "results_url": f"http://{host}:{port}/v1/messages/batches/{batch_id}/results",
                }
            )
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("request-id", "req_bench")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


def _serve(files: dict[str, Path], port: multiprocessing.Queue[int]) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(files))
    port.put(server.server_address[1])
    server.serve_forever()


@contextmanager
def serve_results(files: dict[str, Path]) -> Iterator[str]:
    """Serve retrieve + results for ended batches whose lines are in files, from another
    process (as a remote API would be: no share of this process's CPU); yields the URL."""
    ctx = multiprocessing.get_context("spawn")
    port: multiprocessing.Queue[int] = ctx.Queue()
    proc = ctx.Process(target=_serve, args=(files, port), daemon=True)
    proc.start()
    try:
        yield f"http://127.0.0.1:{port.get(timeout=30)}"
    finally:
        proc.terminate()
        proc.join()


@contextmanager
def postgres() -> Iterator[PgDatabase]:
    with running_cluster() as cluster, fresh_database(cluster, prefix="bench") as db:
        os.environ.update(db.env)
        yield db


def ensure_ledger(schema: str = "enrich") -> None:
    """Create the ledger through its one definition (the dbt macro), like the connector."""
    from dbt.cli.main import dbtRunner

    os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    os.environ["BATCH_ENRICH_TARGET"] = "postgres"
    res = dbtRunner().invoke(
        [
            "--quiet",
            "run-operation",
            "batch_enrich.ensure_ledger",
            "--project-dir",
            str(ROOT),
            "--profiles-dir",
            str(ROOT),
            "--vars",
            f"{{batch_enrich_ledger_schema: {schema}}}",
        ]
    )
    if not res.success:
        raise SystemExit(f"ensure_ledger failed: {res.exception}")
