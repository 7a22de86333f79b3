"""JSON values drawn from a JSON Schema with a seeded RNG.

Supported: `type` (single or list), `const`, `enum`, object `properties` / `required` /
`additionalProperties` / `min|maxProperties`, array `items` / `prefixItems` /
`min|maxItems` / `uniqueItems`, string `min|maxLength` and common `format`s, integer and
number bounds (inclusive and exclusive) and `multipleOf`, `boolean`, `null`, local
`$ref` (`#/$defs/...`), `allOf` (merged), `anyOf`, `oneOf`. Not honoured when
generating: `pattern`, `not`, `if`/`then`/`else`, `contains`, `dependent*`.
"""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from connector.emulator.schema_check import (
    Schema,
    conforms,
    is_number,
    merge_all_of,
    pointer,
    resolve,
    schema_types,
    within,
)

MAX_DEPTH = 8

WORDS: tuple[str, ...] = (
    "amber", "brisk", "cedar", "delta", "ember", "fjord", "gleam", "harbor", "ivory",
    "juniper", "kelp", "lumen", "maple", "nectar", "onyx", "pebble", "quartz", "river",
    "sable", "tundra", "umber", "velvet", "willow", "xenon", "yarrow", "zephyr", "orbit",
    "prism", "meadow", "signal", "canyon", "beacon",
)  # fmt: skip

Draw = Callable[[random.Random, int], Any]


def _below(rng: random.Random, n: int) -> int:
    """A uniform index in range(n); `rng.random()` is much cheaper than `randrange`."""
    return int(rng.random() * n)


def _between(rng: random.Random, low: int, high: int) -> int:
    return low + int(rng.random() * (high - low + 1))


def _word(rng: random.Random) -> str:
    return WORDS[int(rng.random() * len(WORDS))]


def _words(rng: random.Random, _depth: int = 0) -> str:
    return " ".join(_word(rng) for _ in range(_between(rng, 1, 4)))


class SchemaCompiler:
    """Compiles a JSON Schema once into a draw function `(rng, depth) -> value`.

    Local `$ref`s compile lazily, so recursive schemas work; past `MAX_DEPTH` objects
    keep only required keys and arrays their minimum length.
    """

    def __init__(self, root: Schema) -> None:
        self.root = root
        self._refs: dict[str, Draw] = {}

    def draw(self) -> Draw:
        return self.compile(self.root)

    def compile(self, schema: Any, nesting: int = 0) -> Draw:
        if nesting > 64:
            return _words
        if isinstance(schema, Mapping) and isinstance(schema.get("$ref"), str):
            if len(schema) == 1:
                return self._lazy_ref(schema["$ref"])
            return self.compile(resolve(schema, self.root), nesting + 1)
        if not isinstance(schema, Mapping):
            return _words
        if "const" in schema:
            constant = schema["const"]
            return lambda _rng, _depth: constant
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            options = tuple(schema["enum"])
            return lambda rng, _depth: options[_below(rng, len(options))]
        if "allOf" in schema:
            return self.compile(merge_all_of(schema, self.root), nesting + 1)
        rest = {k: v for k, v in schema.items() if k not in ("anyOf", "oneOf")}
        for keyword in ("anyOf", "oneOf"):
            branches = schema.get(keyword)
            if isinstance(branches, list) and branches:
                merged = [{**rest, **resolve(b, self.root)} for b in branches]
                draws = [self.compile(m, nesting + 1) for m in merged]
                if keyword == "anyOf":
                    return lambda rng, depth: draws[_below(rng, len(draws))](rng, depth)
                return self._one_of(draws, branches)
        types = schema_types(schema) or ["string"]
        by_type = [self._by_type(kind, schema, nesting) for kind in types]
        if len(by_type) == 1:
            return by_type[0]
        return lambda rng, depth: by_type[_below(rng, len(by_type))](rng, depth)

    def _lazy_ref(self, ref: str) -> Draw:
        def draw(rng: random.Random, depth: int) -> Any:
            target = self._refs.get(ref)
            if target is None:
                target = self._refs[ref] = self.compile(pointer(self.root, ref))
            return target(rng, depth)

        return draw

    def _one_of(self, draws: list[Draw], branches: list[Any]) -> Draw:
        root = self.root

        def draw(rng: random.Random, depth: int) -> Any:
            order = list(range(len(draws)))
            rng.shuffle(order)
            candidate: Any = None
            for index in order:
                candidate = draws[index](rng, depth)
                others = (b for i, b in enumerate(branches) if i != index)
                if not any(conforms(candidate, other, root) for other in others):
                    return candidate
            return candidate

        return draw

    def _by_type(self, kind: str, schema: Schema, nesting: int) -> Draw:
        if kind == "object":
            return self._object(schema, nesting)
        if kind == "array":
            return self._array(schema, nesting)
        if kind == "integer":
            return _integer(schema)
        if kind == "number":
            return _number(schema)
        if kind == "boolean":
            return lambda rng, _depth: rng.random() < 0.5
        if kind == "null":
            return lambda _rng, _depth: None
        return _string(schema)

    def _object(self, schema: Schema, nesting: int) -> Draw:
        properties: Mapping[str, Any] = schema.get("properties") or {}
        required = [k for k in schema.get("required", []) if isinstance(k, str)]
        extra = schema.get("additionalProperties", True)
        extra_draw = self.compile(extra if isinstance(extra, Mapping) else {}, nesting + 1)
        fields = [(n, self.compile(s, nesting + 1), n in required) for n, s in properties.items()]
        missing = [n for n in required if n not in properties]
        minimum = int(schema.get("minProperties", 0))
        maximum = schema.get("maxProperties")

        def draw(rng: random.Random, depth: int) -> dict[str, Any]:
            result: dict[str, Any] = {}
            for name, field_draw, is_required in fields:
                if is_required or (depth < MAX_DEPTH and rng.random() < 0.6):
                    result[name] = field_draw(rng, depth + 1)
            for name in missing:
                result[name] = extra_draw(rng, depth + 1)
            for name, field_draw, _ in fields:
                if len(result) >= minimum:
                    break
                if name not in result:
                    result[name] = field_draw(rng, depth + 1)
            counter = 0
            while len(result) < minimum and extra is not False:
                counter += 1
                result.setdefault(f"extra_{counter}", extra_draw(rng, depth + 1))
            if isinstance(maximum, int):
                for name in [k for k in result if k not in required]:
                    if len(result) <= maximum:
                        break
                    del result[name]
            return result

        return draw

    def _array(self, schema: Schema, nesting: int) -> Draw:
        prefix = [self.compile(s, nesting + 1) for s in schema.get("prefixItems") or []]
        items = schema.get("items", {})
        item_draw = self.compile(items if isinstance(items, Mapping) else {}, nesting + 1)
        lower = int(schema.get("minItems", 0))
        upper = int(schema.get("maxItems", max(lower, 1) + 2))
        if items is False:
            upper = min(upper, len(prefix))
        start = min(max(lower, 1), upper)
        stop = max(start, min(upper, start + 2))
        unique = bool(schema.get("uniqueItems"))

        def draw(rng: random.Random, depth: int) -> list[Any]:
            count = lower if depth >= MAX_DEPTH else _between(rng, start, stop)
            result: list[Any] = []
            seen: set[bytes] = set()
            for position in range(count):
                element_draw = prefix[position] if position < len(prefix) else item_draw
                element = element_draw(rng, depth + 1)
                if unique:
                    key = orjson.dumps(element, option=orjson.OPT_SORT_KEYS)
                    for _attempt in range(12):
                        if key not in seen:
                            break
                        element = element_draw(rng, depth + 1)
                        key = orjson.dumps(element, option=orjson.OPT_SORT_KEYS)
                    if key in seen and len(result) >= lower:
                        break
                    seen.add(key)
                result.append(element)
            return result

        return draw


def _integer(schema: Schema) -> Draw:
    low, high = _bounds(schema, integer=True)
    step = schema.get("multipleOf")
    if isinstance(step, int) and not isinstance(step, bool) and step > 0:
        first, last = math.ceil(low / step), math.floor(high / step)
        if first <= last:
            return lambda rng, _depth: _between(rng, first, last) * step
    if low > high:
        return lambda _rng, _depth: int(low)
    return lambda rng, _depth: _between(rng, int(low), int(high))


def _number(schema: Schema) -> Draw:
    low, high = _bounds(schema, integer=False)
    step = schema.get("multipleOf")
    if isinstance(step, (int, float)) and not isinstance(step, bool) and step > 0:
        first, last = math.ceil(low / step), math.floor(high / step)
        if first <= last:
            return lambda rng, _depth: _between(rng, first, last) * step

    def draw(rng: random.Random, _depth: int) -> float:
        value = round(low + rng.random() * (high - low), 2)
        return value if within(value, schema) else (low + high) / 2

    return draw


def _string(schema: Schema) -> Draw:
    minimum = int(schema.get("minLength", 0))
    maximum = schema.get("maxLength")
    fmt = schema.get("format")

    def draw(rng: random.Random, _depth: int) -> str:
        text = _formatted(rng, fmt)
        if text is None or len(text) < minimum or (maximum is not None and len(text) > maximum):
            text = _words(rng)
            while len(text) < minimum:
                text += " " + _word(rng)
        return text[:maximum] if isinstance(maximum, int) else text

    return draw


def _formatted(rng: random.Random, fmt: object) -> str | None:
    if fmt is None:
        return None
    month, day = _between(rng, 1, 12), _between(rng, 1, 28)
    hour, minute = _between(rng, 0, 23), _between(rng, 0, 59)
    if fmt == "date-time":
        return f"2025-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:00Z"
    if fmt == "date":
        return f"2025-{month:02d}-{day:02d}"
    if fmt == "time":
        return f"{hour:02d}:{minute:02d}:00Z"
    if fmt == "email":
        return f"{_word(rng)}{day}@example.com"
    if fmt in ("uri", "url", "iri"):
        return f"https://example.com/{_word(rng)}"
    if fmt == "uuid":
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))
    if fmt == "hostname":
        return f"{_word(rng)}.example.com"
    if fmt == "ipv4":
        return f"10.{hour}.{minute}.{day}"
    return None


def generate(schema: Schema, rng: random.Random) -> Any:
    """One value for `schema` (compiles it; use SchemaCompiler to reuse a compilation)."""
    return SchemaCompiler(schema).draw()(rng, 0)


def _bounds(schema: Schema, *, integer: bool) -> tuple[float, float]:
    low: float | None = None
    high: float | None = None
    if is_number(schema.get("minimum")):
        low = schema["minimum"]
    if is_number(schema.get("exclusiveMinimum")):
        floor = schema["exclusiveMinimum"]
        floor = math.floor(floor) + 1 if integer else floor
        low = floor if low is None else max(low, floor)
    if is_number(schema.get("maximum")):
        high = schema["maximum"]
    if is_number(schema.get("exclusiveMaximum")):
        ceiling = schema["exclusiveMaximum"]
        ceiling = math.ceil(ceiling) - 1 if integer else ceiling
        high = ceiling if high is None else min(high, ceiling)
    if integer:
        low = None if low is None else math.ceil(low)
        high = None if high is None else math.floor(high)
    if low is None and high is None:
        return 0, 100
    if low is None:
        assert high is not None
        return high - 100, high
    if high is None:
        return low, low + 100
    return low, high
