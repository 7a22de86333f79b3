"""The emulator's routes: one function per endpoint, translating HTTP to the engine.

`/_emulator/*` is the test surface: no auth, no faults.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from connector.emulator.errors import ApiError
from connector.emulator.gc_pause import gc_paused
from connector.emulator.state import rfc3339

if TYPE_CHECKING:
    from connector.emulator.server import Handler

_BATCH = r"/v1/messages/batches/(?P<batch_id>[^/]+)"
_LARGE_BODY_BYTES = 1 << 20


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    endpoint: str
    action: Callable[[Handler, Call], None]
    public: bool = False  # the test surface: no auth, no faults


@dataclass(frozen=True)
class Call:
    request_id: str
    params: dict[str, str]
    query: dict[str, list[str]]
    body: bytes

    @property
    def beta(self) -> bool:
        return self.query.get("beta", [""])[0] == "true"

    def json(self) -> Any:
        try:
            return orjson.loads(self.body or b"null")
        except orjson.JSONDecodeError as error:
            raise ApiError(400, f"The request body is not valid JSON: {error}") from None


def _create(handler: Handler, call: Call) -> None:
    engine = handler.engine
    version = handler.headers.get("anthropic-version")
    with engine.processor.giving_way(), gc_paused(len(call.body) >= _LARGE_BODY_BYTES):
        batch = engine.create(call.json(), anthropic_version=version, beta=call.beta)
    if engine.faults.call_fault("create_no_answer"):
        handler.abort()
        return
    handler.reply(call, engine.render(batch, handler.base_url))


def _retrieve(handler: Handler, call: Call) -> None:
    batch = handler.engine.retrieve(call.params["batch_id"])
    handler.reply(call, handler.engine.render(batch, handler.base_url))


def _list(handler: Handler, call: Call) -> None:
    limit_text = call.query.get("limit", ["20"])[0]
    if not limit_text.isdigit() or not 1 <= int(limit_text) <= 1000:
        raise ApiError(400, "limit: Input should be an integer from 1 to 1000")
    before_id = call.query.get("before_id", [None])[0]
    after_id = call.query.get("after_id", [None])[0]
    page, has_more = handler.engine.list(int(limit_text), before_id, after_id)
    data = [handler.engine.render(batch, handler.base_url) for batch in page]
    handler.reply(
        call,
        {
            "data": data,
            "has_more": has_more,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
        },
    )


def _cancel(handler: Handler, call: Call) -> None:
    batch = handler.engine.cancel(call.params["batch_id"])
    handler.reply(call, handler.engine.render(batch, handler.base_url))


def _delete(handler: Handler, call: Call) -> None:
    handler.engine.delete(call.params["batch_id"])
    handler.reply(call, {"id": call.params["batch_id"], "type": "message_batch_deleted"})


def _results(handler: Handler, call: Call) -> None:
    count, lines = handler.engine.results(call.params["batch_id"])
    cut = handler.engine.faults.call_fault("results_cut")
    handler.stream_lines(call, count, lines, cut)


def _count_tokens(handler: Handler, call: Call) -> None:
    tokens = handler.engine.count_tokens(call.json(), beta=call.beta)
    handler.reply(call, {"input_tokens": tokens})


def _stats(handler: Handler, call: Call) -> None:
    handler.reply(call, handler.engine.stats())


def _set_faults(handler: Handler, call: Call) -> None:
    try:
        value: Any = orjson.loads(call.body)
    except orjson.JSONDecodeError:
        value = call.body.decode("utf-8", "replace")
    try:
        spec = handler.engine.set_faults(value)
    except ValueError as error:
        raise ApiError(400, str(error)) from None
    handler.reply(call, {"faults": str(spec)})


def _advance_clock(handler: Handler, call: Call) -> None:
    body = call.json()
    seconds = body.get("advance_seconds") if isinstance(body, dict) else None
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or seconds < 0:
        raise ApiError(400, "advance_seconds: a number of seconds >= 0 is required")
    offset = handler.engine.advance_clock(float(seconds))
    now = rfc3339(handler.engine.clock.now())
    handler.reply(call, {"clock_offset_seconds": offset, "now": now})


ROUTES: tuple[Route, ...] = (
    Route("POST", re.compile(r"/v1/messages/batches"), "create", _create),
    Route("GET", re.compile(r"/v1/messages/batches"), "list", _list),
    Route("GET", re.compile(_BATCH), "retrieve", _retrieve),
    Route("DELETE", re.compile(_BATCH), "delete", _delete),
    Route("POST", re.compile(_BATCH + "/cancel"), "cancel", _cancel),
    Route("GET", re.compile(_BATCH + "/results"), "results", _results),
    Route("POST", re.compile(r"/v1/messages/count_tokens"), "count_tokens", _count_tokens),
    Route("GET", re.compile(r"/_emulator/stats"), "stats", _stats, public=True),
    Route("POST", re.compile(r"/_emulator/faults"), "faults", _set_faults, public=True),
    Route("POST", re.compile(r"/_emulator/clock"), "clock", _advance_clock, public=True),
)


def match(method: str, path: str) -> tuple[Route, dict[str, str]]:
    path_known = False
    for route in ROUTES:
        found = route.pattern.fullmatch(path)
        if found is None:
            continue
        if route.method == method:
            return route, found.groupdict()
        path_known = True
    if path_known:
        raise ApiError(405, f"Method {method} is not allowed on {path}")
    raise ApiError(404, f"Not found: {method} {path}")
