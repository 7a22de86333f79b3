"""HTTP for the emulator: stdlib ThreadingHTTPServer, HTTP/1.1 keep-alive, orjson.

Every answer carries a `request-id` header; errors have the API's JSON error body.
Order of checks per call: body size (413), route (404/405), auth (401), injected
HTTP fault, then the endpoint itself. `/_emulator/*` needs no auth and never faults.
"""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

from connector.emulator.engine import Emulator
from connector.emulator.errors import ApiError, new_request_id
from connector.emulator.routes import Call, match

RESULTS_CHUNK_BYTES = 256 * 1024
_DRAIN_BYTES = 1 << 20


class EmulatorHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], engine: Emulator) -> None:
        self.engine = engine
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, Handler)

    @property
    def base_url(self) -> str:
        host, port = str(self.server_address[0]), int(self.server_address[1])
        if host in ("0.0.0.0", "", "::"):  # noqa: S104  (a wildcard bind: answer on loopback)
            host = "127.0.0.1"
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "batch-enrich-emulator"
    disable_nagle_algorithm = True
    server: EmulatorHTTPServer

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.engine.config.log_requests:
            sys.stderr.write(f"emulator: {self.address_string()} {format % args}\n")

    # -- plumbing ----------------------------------------------------------------------

    @property
    def engine(self) -> Emulator:
        return self.server.engine

    @property
    def base_url(self) -> str:
        host = self.headers.get("host")
        return f"http://{host}" if host else self.server.base_url

    def _dispatch(self, method: str) -> None:
        request_id = new_request_id()
        url = urlsplit(self.path)
        started = time.perf_counter()
        endpoint: str | None = None
        try:
            body = self._read_body()
            route, params = match(method, url.path)
            call = Call(request_id, params, parse_qs(url.query), body)
            if not route.public:
                endpoint = route.endpoint
                self.engine.count_call(endpoint)
                self._authenticate()
                self._inject_http_fault(route.endpoint)
            route.action(self, call)
        except ApiError as error:
            self.send_json(error.status, error.body(request_id), request_id, error.headers)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as error:  # a bug: answer like the API would, and say so
            sys.stderr.write(f"emulator: internal error: {error!r}\n")
            failure = ApiError(500, f"Emulator internal error: {error!r}")
            self.send_json(500, failure.body(request_id), request_id)
        finally:
            if endpoint is not None:
                self.engine.add_call_time(endpoint, time.perf_counter() - started)

    def _read_body(self) -> bytes:
        limit = self.engine.config.max_body_bytes
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            return self._read_chunked(limit)
        try:
            length = int(self.headers.get("content-length") or 0)
        except ValueError:
            self.close_connection = True
            raise ApiError(400, "content-length is not a number") from None
        if length > limit:
            self._drain(length)
            raise ApiError(413, f"Request exceeds the maximum size of {limit} bytes")
        return self.rfile.read(length) if length else b""

    def _read_chunked(self, limit: int) -> bytes:
        parts: list[bytes] = []
        total = 0
        while True:
            try:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            except ValueError:
                self.close_connection = True
                raise ApiError(400, "malformed chunked request body") from None
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                break
            chunk = self.rfile.read(size)
            self.rfile.readline()
            total += size
            if total <= limit:
                parts.append(chunk)
        if total > limit:
            raise ApiError(413, f"Request exceeds the maximum size of {limit} bytes")
        return b"".join(parts)

    def _drain(self, length: int) -> None:
        while length > 0:
            read = len(self.rfile.read(min(length, _DRAIN_BYTES)))
            if not read:
                break
            length -= read

    def _authenticate(self) -> None:
        key = self.headers.get("x-api-key")
        authorization = self.headers.get("authorization", "")
        if not key and authorization.lower().startswith("bearer "):
            key = authorization[len("bearer ") :].strip()
        if not key:
            raise ApiError(401, "x-api-key header or Authorization: Bearer token is required")
        expected = self.engine.config.api_key
        if expected is not None and key != expected:
            raise ApiError(401, "invalid x-api-key")

    def _inject_http_fault(self, endpoint: str) -> None:
        fault = self.engine.faults.http_fault(endpoint)
        if fault is None:
            return
        headers = {}
        if fault.status == 429:
            headers["retry-after"] = f"{self.engine.faults.spec.retry_after:g}"
        raise ApiError(fault.status, f"Emulated fault: {fault.kind} on {endpoint}", headers=headers)

    def send_json(
        self,
        status: int,
        body: bytes,
        request_id: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.send_header("request-id", request_id)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def reply(self, call: Call, value: Any) -> None:
        self.send_json(200, orjson.dumps(value), call.request_id)

    def abort(self) -> None:
        """Close the connection now: whatever was not sent stays unsent."""
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def stream_lines(self, call: Call, count: int, lines: Iterator[bytes], cut: bool) -> None:
        """Send JSONL with chunked transfer encoding; with `cut`, stop after some
        complete lines and half of the next one, and drop the connection."""
        cut_after = -1
        if cut:
            draw = self.engine.faults.uniform()
            cut_after = max(1, int(draw * count)) if count > 1 else 0
        self.send_response(200)
        self.send_header("content-type", "application/x-jsonl")
        self.send_header("transfer-encoding", "chunked")
        self.send_header("request-id", call.request_id)
        self.end_headers()
        pending: list[bytes] = []
        size = 0
        for index, line in enumerate(lines):
            if index == cut_after:
                self._write_chunk(b"".join(pending) + line[: max(1, len(line) // 2)])
                self.abort()
                return
            pending.append(line)
            pending.append(b"\n")
            size += len(line) + 1
            if size >= RESULTS_CHUNK_BYTES:
                self._write_chunk(b"".join(pending))
                pending, size = [], 0
        if pending:
            self._write_chunk(b"".join(pending))
        self.wfile.write(b"0\r\n\r\n")

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%b\r\n" % (len(data), data))
