"""Primary key → Message Batches ``custom_id`` (docs/architecture.md §3). Pure.

A single key value whose text matches ``^[a-zA-Z0-9_-]{1,64}$`` and does not start with
``be-`` is used verbatim (integers as their decimal text). Every other key (composite,
too long, other characters, non-ASCII, starting with ``be-``, empty) becomes ``be-`` +
the first 48 characters of the lowercase base32 SHA-256 of the key's canonical JSON.
Verbatim ids never start with ``be-`` and encoded ids always do, so the two kinds never
collide; encoded ids keep 240 bits of the hash.

Canonical values (the JSON written for each key value, chosen so that equal values
give equal ids whatever Python type the driver returned them as):

==========================  ====================================================
``str``                     JSON string, as is (no Unicode normalisation)
``bool``                    ``true`` / ``false``
``int``                     JSON integer
``Decimal``, ``float``      by value: integral values become JSON integers
                            (``Decimal("42.00")`` and ``42.0`` → ``42``), other
                            finite values a JSON string of their shortest exact
                            fixed-point text (``Decimal("0.50")`` and ``0.5`` →
                            ``"0.5"``); NaN and infinities are rejected
``date``                    ISO text ``"2024-05-01"``
``datetime``                ISO text; timezone-aware values are converted to UTC
                            first (``"2024-05-01T10:00:00+00:00"``), so the
                            session's TimeZone does not change the id; naive
                            values stay naive
``time``                    ISO text
``UUID``                    canonical lowercase hyphenated text
==========================  ====================================================

``None`` raises ``ValueError`` (null keys are rejected before this point); any other
type raises ``TypeError``. A single-column key's verbatim text is the text form of its
canonical value, so one column's ``1`` (int) and ``"1"`` (text) both give ``"1"``: one
column has one type, so this cannot collide within an enrichment.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import math
import re
from collections.abc import Sequence
from decimal import Decimal
from uuid import UUID

CUSTOM_ID_RE = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
ENCODED_PREFIX = "be-"
ENCODED_HASH_CHARS = 48

KeyJson = str | int | bool


def _canonical_number(value: Decimal) -> int | str:
    if not value.is_finite():
        raise ValueError(f"key value {value!r} is not a finite number")
    if value == value.to_integral_value():
        return int(value)
    return format(value.normalize(), "f")


def canonical_value(value: object) -> KeyJson:
    """The JSON value that stands for one key value (see the module table)."""
    if value is None:
        raise ValueError("a key value is null; null keys must be rejected before custom_id")
    if isinstance(value, str | bool | int):
        return value
    if isinstance(value, Decimal):
        return _canonical_number(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"key value {value!r} is not a finite number")
        return _canonical_number(Decimal(repr(value)))
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None and value.utcoffset() is not None:
            value = value.astimezone(dt.UTC)
        return value.isoformat()
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    raise TypeError(f"unsupported key value type {type(value).__name__}: {value!r}")


def _canonical_values(values: Sequence[object]) -> list[KeyJson]:
    if isinstance(values, str | bytes) or len(values) == 0:
        raise ValueError("a key is a non-empty sequence of values (one per key column)")
    return [canonical_value(v) for v in values]


def _dumps(canonical: list[KeyJson]) -> str:
    return json.dumps(canonical, ensure_ascii=True, separators=(",", ":"))


def canonical_key_json(values: Sequence[object]) -> str:
    """Compact, ASCII-only JSON list of the canonical key values, in key order."""
    return _dumps(_canonical_values(values))


def _text(value: KeyJson) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _encode(key_json: str) -> str:
    digest = hashlib.sha256(key_json.encode("ascii")).digest()
    b32 = base64.b32encode(digest).decode("ascii").lower()
    return ENCODED_PREFIX + b32[:ENCODED_HASH_CHARS]


def encoded_custom_id(values: Sequence[object]) -> str:
    """The ``be-`` form, whatever the key looks like."""
    return _encode(canonical_key_json(values))


def custom_id_for(values: Sequence[object]) -> str:
    """The custom_id of a row whose key column values are ``values`` (in key order)."""
    if len(values) == 1 and not isinstance(values, str | bytes):
        # the common keys, without the canonical list: an int's text always matches
        # (digits and '-'); a str is verbatim when it matches and has no `be-` prefix
        value = values[0]
        if type(value) is int:
            text = str(value)
            if len(text) <= 64:
                return text
        elif (
            type(value) is str
            and CUSTOM_ID_RE.fullmatch(value)
            and not value.startswith(ENCODED_PREFIX)
        ):
            return value
    canonical = _canonical_values(values)  # validates every value, whichever branch
    if len(canonical) == 1:
        text = _text(canonical[0])
        if CUSTOM_ID_RE.fullmatch(text) and not text.startswith(ENCODED_PREFIX):
            return text
    return _encode(_dumps(canonical))
