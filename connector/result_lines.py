"""Turning a results stream into COPY rows, without parsing whole lines in Python.

A result line begins `{"custom_id":"<id>","result":{"type":"<type>"` as the API
writes it. The fast path rewrites a whole block of such lines into COPY rows with one
regular-expression substitution (C speed, no Python object per line). A block where any
line does not match (other key order, blank lines, an escape to neutralise) is framed
line by line, decoding in full where needed: changes in the API's formatting cost
speed, never correctness. The fast path does not look for repeated custom_ids; the
table's primary key does, and a landing that hits one is redone on the slow path,
which drops the repeats.

Escapes to neutralise: `\\u0000`, and a lone UTF-16 surrogate (`\\ud800` without its
low half, `\\udc00` without its high half). Postgres `json` stores them, but `jsonb`
(every parse model) and DuckDB's JSON reader refuse them, so each becomes `\\ufffd`
(U+FFFD) and the custom_id is noted (`nul_fixed`, `surrogate_fixed`) for a warning.

A warehouse that can take raw JSONL (DuckDB) frames nothing while it can: `blocks`
passes the raw lines through and frames only from the first escape to neutralise on,
or everything on a redo.
"""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import orjson

log = logging.getLogger(__name__)

_PREFIX = re.compile(
    rb'\{\s*"custom_id"\s*:\s*"([A-Za-z0-9_-]{1,64})"\s*,\s*"result"\s*:\s*\{\s*"type"\s*:\s*"([a-z_]+)"'
)
DELIMITER = b"\x02"

# A JSON \u0000 escape or surrogate escape that is not itself after an escaped
# backslash (1 = the even run of backslashes before it, 2 = the escape). A high
# surrogate followed by a low one is a valid pair, matched whole (and kept); a \u0000
# or a surrogate on its own is what Postgres jsonb (and so every parse model) and
# DuckDB's JSON reader reject, so it is replaced by U+FFFD before landing.
_BAD_ESCAPE = re.compile(
    rb"(?<!\\)((?:\\\\)*)"
    rb"(\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}"
    rb"|\\u[dD][89a-fA-F][0-9a-fA-F]{2}|\\u0000)"
)
_PAIR_LENGTH = len(rb"\ud83d\ude00")
# The start of a line in the API's own compact layout: 1 = custom_id, 2 = type. Not
# anchored (a literal-prefix search is several times faster); the caller checks that
# every match starts a line.
_FAST_PREFIX = re.compile(rb'\{"custom_id":"([A-Za-z0-9_-]{1,64})","result":\{"type":"([a-z_]+)"')
_FAST_TEMPLATE = (
    rb"\1" + DELIMITER + rb"\2" + DELIMITER + rb'{"custom_id":"\1","result":{"type":"\2"'
)


class MalformedLineError(ValueError):
    """A results line that is not a JSON object with a custom_id and result type."""


def _has_surrogate_escape(data: bytes) -> bool:
    return b"\\ud" in data or b"\\uD" in data


# `\u0000` or the start of a surrogate escape (`\ud800`-`\udfff`), escaped or not
_MAYBE_BAD_ESCAPE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")


def needs_fixing(data: bytes) -> bool:
    """Whether `data` may hold a `\\u0000` or a lone surrogate escape (`fix_escapes`
    decides). Cheap: one byte search (most blocks hold no backslash at all), then one
    regular-expression search (faster than a substring search per escape: it runs on
    every byte of a landing), and a full scan only where surrogates appear."""
    if b"\\" not in data or _MAYBE_BAD_ESCAPE.search(data) is None:
        return False
    if b"\\u0000" in data:
        return True
    return any(len(m.group(2)) != _PAIR_LENGTH for m in _BAD_ESCAPE.finditer(data))


def fix_escapes(line: bytes) -> tuple[bytes, bool, bool]:
    """`line` with every `\\u0000` and lone surrogate escape replaced by `\\ufffd`,
    and whether it had a NUL, and a lone surrogate, to replace. Valid surrogate pairs
    and escaped backslashes followed by `u...` text are kept."""
    found = {"nul": False, "surrogate": False}

    def replace(match: re.Match[bytes]) -> bytes:
        escape = match.group(2)
        if len(escape) == _PAIR_LENGTH:
            return match.group(0)
        found["nul" if escape == b"\\u0000" else "surrogate"] = True
        return match.group(1) + b"\\ufffd"

    if b"\\u0000" not in line and not _has_surrogate_escape(line):
        return line, False, False
    fixed = _BAD_ESCAPE.sub(replace, line)
    return fixed, found["nul"], found["surrogate"]


def extract_key(line: bytes) -> tuple[str, str]:
    """(custom_id, result type) of one result line."""
    match = _PREFIX.match(line)
    if match:
        return match.group(1).decode("ascii"), match.group(2).decode("ascii")
    try:
        obj = orjson.loads(line)
        custom_id = obj["custom_id"]
        result_type = obj["result"]["type"]
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise MalformedLineError(f"not a result line: {line[:120]!r}") from exc
    if not isinstance(custom_id, str) or not isinstance(result_type, str):
        raise MalformedLineError(f"custom_id/result.type not strings: {line[:120]!r}")
    return custom_id, result_type


def split_lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Whole lines from a byte stream, blank lines dropped. A final line without a
    newline is kept only if it is complete JSON (a cut stream raises before that)."""
    rest = b""
    for chunk in chunks:
        if not chunk:
            continue
        data = rest + chunk if rest else chunk
        parts = data.split(b"\n")
        rest = parts.pop()
        for part in parts:
            part = part.strip()
            if part:
                yield part
    rest = rest.strip()
    if rest:
        yield rest


def whole_line_blocks(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Re-cut a byte stream into blocks that end at a newline (the last may not)."""
    rest = b""
    for chunk in chunks:
        if not chunk:
            continue
        data = rest + chunk if rest else chunk
        cut = data.rfind(b"\n") + 1
        if cut:
            yield data[:cut]
        rest = data[cut:]
    if rest:
        yield rest


@dataclass
class CopyRows:
    """Iterates COPY chunks for one batch; counts lines and notes what it had to fix.

    `fast=False` frames every line in Python and drops repeated custom_ids.
    """

    batch_id: str
    landed_at: str
    fast: bool = True
    chunk_lines: int = 5000
    lines: int = 0
    nul_fixed: list[str] = field(default_factory=list)
    surrogate_fixed: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    _seen: set[str] = field(default_factory=set)

    def rows(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        head = self.batch_id.encode() + DELIMITER
        tail = DELIMITER + self.landed_at.encode()
        template = head.replace(b"\\", b"\\\\") + _FAST_TEMPLATE
        for block in whole_line_blocks(chunks):
            if self.fast and block.endswith(b"\n") and not needs_fixing(block):
                out, n = _FAST_PREFIX.subn(template, block)
                # every line matched, and every match is at a line start (head holds a
                # \x02, which JSON text cannot contain, so it marks substitutions)
                if n == block.count(b"\n") == (b"\n" + out).count(b"\n" + head):
                    self.lines += n
                    yield out.replace(b"\n", tail + b"\n")
                    continue
            yield from self._slow(block, head, tail + b"\n")

    def blocks(self, chunks: Iterable[bytes]) -> Iterator[tuple[bool, bytes]]:
        """(framed, data) pairs for a database that extracts the keys itself (DuckDB).

        Blocks of raw whole lines as received (framed False: not counted, checked or
        deduplicated here, the database does that) until a block holds a `\\u0000`
        or a lone surrogate escape; from there on, and always with `fast=False`, framed
        rows as `rows` makes them (framed True)."""
        blocks = whole_line_blocks(chunks)
        if self.fast:
            for block in blocks:
                if needs_fixing(block):
                    blocks = itertools.chain([block], blocks)
                    break
                yield False, block
        for rows in self.rows(blocks):
            yield True, rows

    def _slow(self, block: bytes, head: bytes, tail: bytes) -> Iterator[bytes]:
        buf: list[bytes] = []
        for line in split_lines([block]):
            custom_id, result_type = extract_key(line)
            if not self.fast:
                if custom_id in self._seen:
                    self.duplicates.append(custom_id)
                    continue
                self._seen.add(custom_id)
            line, had_nul, had_surrogate = fix_escapes(line)
            if had_nul:
                self.nul_fixed.append(custom_id)
            if had_surrogate:
                self.surrogate_fixed.append(custom_id)
            buf.append(
                head
                + custom_id.encode()
                + DELIMITER
                + result_type.encode()
                + DELIMITER
                + line
                + tail
            )
            self.lines += 1
            if len(buf) >= self.chunk_lines:
                yield b"".join(buf)
                buf.clear()
        if buf:
            yield b"".join(buf)
