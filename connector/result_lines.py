"""Turning a results stream into COPY rows, without parsing whole lines in Python.

A result line begins `{"custom_id":"<id>","result":{"type":"<type>"` as the API
writes it. The fast path rewrites a whole block of such lines into COPY rows with one
regular-expression substitution (C speed, no Python object per line). A block where any
line does not match (other key order, blank lines, a `\u0000` escape to neutralise) is
framed line by line, decoding in full where needed: changes in the API's formatting
cost speed, never correctness. The fast path does not look for repeated custom_ids;
the table's primary key does, and a landing that hits one is redone on the slow path,
which drops the repeats.

A warehouse that can take raw JSONL (DuckDB) frames nothing while it can: `blocks`
passes the raw lines through and frames only from the first `\u0000` escape on, or
everything on a redo.
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

# A JSON \u0000 escape that is not itself an escaped backslash: Postgres jsonb (and so
# every parse model) rejects it, so it is replaced by U+FFFD before landing.
_NUL_ESCAPE = re.compile(rb"(?<!\\)((?:\\\\)*)\\u0000")
# The start of a line in the API's own compact layout: 1 = custom_id, 2 = type. Not
# anchored (a literal-prefix search is several times faster); the caller checks that
# every match starts a line.
_FAST_PREFIX = re.compile(rb'\{"custom_id":"([A-Za-z0-9_-]{1,64})","result":\{"type":"([a-z_]+)"')
_FAST_TEMPLATE = (
    rb"\1" + DELIMITER + rb"\2" + DELIMITER + rb'{"custom_id":"\1","result":{"type":"\2"'
)


class MalformedLineError(ValueError):
    """A results line that is not a JSON object with a custom_id and result type."""


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
    duplicates: list[str] = field(default_factory=list)
    _seen: set[str] = field(default_factory=set)

    def rows(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        head = self.batch_id.encode() + DELIMITER
        tail = DELIMITER + self.landed_at.encode()
        template = head.replace(b"\\", b"\\\\") + _FAST_TEMPLATE
        for block in whole_line_blocks(chunks):
            if self.fast and block.endswith(b"\n") and b"\\u0000" not in block:
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
        escape; from there on, and always with `fast=False`, framed rows as `rows`
        makes them (framed True)."""
        blocks = whole_line_blocks(chunks)
        if self.fast:
            for block in blocks:
                if b"\\u0000" in block:
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
            if b"\\u0000" in line:
                fixed = _NUL_ESCAPE.sub(rb"\1\\ufffd", line)
                if fixed != line:
                    self.nul_fixed.append(custom_id)
                    line = fixed
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
