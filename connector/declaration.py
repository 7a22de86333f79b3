"""An enrichment's declaration (``config.meta.enrich``, docs/architecture.md §1). Pure.

``parse_declaration(model_name, raw)`` checks every key and returns a frozen
``Declaration`` or raises ``DeclarationError`` naming the model, the key, what was
expected and what was got. Unknown keys are refused with a did-you-mean hint, because a
misspelt optional key (``max_attempt: 5``) would otherwise be silently ignored. A YAML
``null`` on an optional key means "not set" (the default applies).

Cost controls (docs/costs.md), type-checked here and acted on elsewhere:

- ``budget_usd`` (number > 0, optional): the most one ``enrich sync`` may commit to
  spending on this enrichment; the estimate stops submission above it.
- ``budget_usd_per_day`` (number > 0, optional): the most the estimates of one UTC day's
  submissions of this enrichment may add up to.
- ``dedupe`` (bool, default false): send one request per distinct request and share its
  result among the rows that have it.
- ``cache`` (bool, default true): mark the system prompt (and ``cached_prefix``) with
  ``cache_control: {type: ephemeral, ttl: <cache_ttl>}`` (see ``connector.requests``).
- ``cache_ttl`` ("5m" or "1h", default "1h": a batch may take longer than five minutes).
- ``cached_prefix`` (text, optional): a prefix shared by every row's user message, sent
  as its own cached content block before the prompt column's text.
- ``pilot_stratify_by`` (text, optional): a column of the input model; ``enrich pilot``
  gives each of its values its share of the sample (docs/pilots.md).

The dbt package validates the same declarations with the same rules
(``declaration_problem`` in macros/declaration.sql): what one accepts the other accepts,
so the flagged views that build are exactly the enrichments sync submits. Beyond the
JSON Schema meta-schema, both refuse what cannot safely reach SQL or the API: a NUL
character or lone surrogate in any string or key, a key that is not a string, a number
that is not finite, and in an object schema, at every depth (validation checks nested
objects and array items too): an empty property name, a property schema that is not a
mapping, an ``items`` that is not a mapping, a ``minLength``/``maxLength``/
``minItems``/``maxItems`` that is not an integer >= 0, and a ``required`` name that is
not in ``properties``.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from connector.errors import ConfigError

TOOL_NAME_RE = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
UNSAFE_TEXT_RE = re.compile("[\x00\ud800-\udfff]")
MAX_REQUESTS_PER_BATCH = 100_000
MAX_BATCH_BYTES = 256_000_000

KNOWN_KEYS = (
    "primary_key",
    "model",
    "max_tokens",
    "prompt_column",
    "system",
    "output_schema",
    "tool",
    "prompt_version",
    "max_attempts",
    "repair",
    "max_requests_per_batch",
    "max_batch_bytes",
    "flagged_model",
    "budget_usd",
    "budget_usd_per_day",
    "dedupe",
    "cache",
    "cache_ttl",
    "cached_prefix",
    "pilot_stratify_by",
)
CACHE_TTLS = ("5m", "1h")
REQUIRED_KEYS = ("primary_key", "model", "max_tokens")
TOOL_KEYS = ("name", "description", "input_schema")
REPAIR_KEYS = ("on_max_tokens", "on_invalid", "max_tokens_multiplier")


class DeclarationError(ConfigError):
    """A ``config.meta.enrich`` block is wrong; the message says where and how."""

    def __init__(self, enrichment: str, key: str, message: str) -> None:
        self.enrichment = enrichment
        self.key = key
        where = f"meta.enrich.{key}" if key else "meta.enrich"
        super().__init__(f"enrichment {enrichment!r}: {where} {message}")


@dataclass(frozen=True)
class ToolSpec:
    """A forced tool: the model must answer by calling it."""

    name: str
    input_schema: dict[str, Any] = field(hash=False)
    description: str | None = None


@dataclass(frozen=True)
class RepairPolicy:
    """Whether truncated (``max_tokens``) or invalid output earns a repair attempt."""

    on_max_tokens: bool = False
    on_invalid: bool = False
    max_tokens_multiplier: float = 2.0


@dataclass(frozen=True)
class Declaration:
    """One validated enrichment, named after its input model."""

    enrichment: str
    primary_key: tuple[str, ...]
    model: str
    max_tokens: int
    prompt_column: str = "prompt"
    system: str | None = None
    output_schema: dict[str, Any] | None = field(default=None, hash=False)
    tool: ToolSpec | None = None
    prompt_version: str = "v1"
    max_attempts: int = 3
    repair: RepairPolicy = RepairPolicy()
    max_requests_per_batch: int = MAX_REQUESTS_PER_BATCH
    max_batch_bytes: int = MAX_BATCH_BYTES
    flagged_model: str = ""
    budget_usd: float | None = None
    budget_usd_per_day: float | None = None
    dedupe: bool = False
    cache: bool = True
    cache_ttl: str = "1h"
    cached_prefix: str | None = None
    pilot_stratify_by: str | None = None  # `enrich pilot` samples each value's share

    def __post_init__(self) -> None:
        if not self.flagged_model:
            object.__setattr__(self, "flagged_model", f"{self.enrichment}__flagged")


def show(value: object, limit: int = 80) -> str:
    """How a got-value appears in a message: YAML spelling for null/booleans, else repr."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _Reader:
    """Reads one mapping of the declaration, raising ``DeclarationError`` on bad values."""

    def __init__(self, enrichment: str, raw: Mapping[str, object], prefix: str = "") -> None:
        self.enrichment = enrichment
        self.raw = raw
        self.prefix = prefix

    def fail(self, key: str, message: str) -> DeclarationError:
        return DeclarationError(self.enrichment, self.prefix + key, message)

    def reject_unknown(self, known: tuple[str, ...]) -> None:
        for key in self.raw:
            if not isinstance(key, str):
                raise self.fail(show(key), "is not a valid key: keys are strings")
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise self.fail(key, f"is not a known key{hint} (known: {', '.join(known)})")

    def get(self, key: str, required: bool = False) -> object:
        value = self.raw.get(key)
        if value is None and required:
            got = "null" if key in self.raw else "nothing"
            raise self.fail(key, f"is required, got {got}")
        return value

    def text(self, key: str) -> str | None:
        value = self.get(key)
        return None if value is None else self._check_text(key, value)

    def required_text(self, key: str) -> str:
        return self._check_text(key, self.get(key, required=True))

    def _check_text(self, key: str, value: object) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(key, f"must be a non-empty string, got {show(value)}")
        return value

    def integer(self, key: str, default: int | None, low: int, high: int | None = None) -> int:
        value = self.get(key, required=default is None)
        if value is None and default is not None:
            return default
        span = f">= {low}" if high is None else f"between {low} and {high}"
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or value < low
            or (high is not None and value > high)
        ):
            raise self.fail(key, f"must be an integer {span}, got {show(value)}")
        return value

    def number(self, key: str, default: float | None, low: float, inclusive: bool) -> float | None:
        value = self.get(key)
        if value is None:
            return default
        bound = f">= {low:g}" if inclusive else f"> {low:g}"
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value < low
            or (value == low and not inclusive)
        ):
            raise self.fail(key, f"must be a number {bound}, got {show(value)}")
        return float(value)

    def flag(self, key: str, default: bool) -> bool:
        value = self.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.fail(key, f"must be true or false, got {show(value)}")
        return value

    def mapping(self, key: str) -> Mapping[str, object] | None:
        value = self.get(key)
        if value is None:
            return None
        if not isinstance(value, Mapping):
            raise self.fail(key, f"must be a mapping, got {show(value)}")
        return value

    def object_schema(self, key: str) -> dict[str, Any] | None:
        value = self.get(key)
        return None if value is None else self._check_schema(key, value)

    def required_object_schema(self, key: str) -> dict[str, Any]:
        return self._check_schema(key, self.get(key, required=True))

    def _check_schema(self, key: str, value: object) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(key, f"must be a JSON Schema object (a mapping), got {show(value)}")
        try:
            Draft202012Validator.check_schema(value)
        except SchemaError as exc:
            where = "/".join(str(p) for p in exc.path) or "(root)"
            raise self.fail(
                key, f"must be a valid JSON Schema, got an invalid one at {where}: {exc.message}"
            ) from None
        if value.get("type") != "object":
            raise self.fail(
                key,
                f'must be a JSON Schema with "type": "object", got type {show(value.get("type"))}',
            )
        self._check_sql_keywords(key, value)
        return dict(value)

    def _check_sql_keywords(self, key: str, schema: Mapping[str, Any]) -> None:
        """The keywords the dbt package turns into SQL (macros/validation.sql), held to the
        rules of its ``subschema_problem`` at every depth (this schema, then each
        property's and the ``items`` schema), beyond what the meta-schema already checked
        (``type``, ``enum``, the numeric bounds, ``required`` a list of distinct names)."""
        for bound in ("minLength", "maxLength", "minItems", "maxItems"):
            limit = schema.get(bound)
            if bound in schema and (
                isinstance(limit, bool) or not isinstance(limit, int) or limit < 0
            ):
                raise self.fail(f"{key}.{bound}", f"must be an integer >= 0, got {show(limit)}")
        properties = schema.get("properties") or {}
        for name, prop in properties.items():
            if name == "":
                raise self.fail(f"{key}.properties", "has an empty property name; name it")
            if not isinstance(prop, Mapping):
                raise self.fail(
                    f"{key}.properties.{name}", f"must be a schema mapping, got {show(prop)}"
                )
            self._check_sql_keywords(f"{key}.properties.{name}", prop)
        for name in schema.get("required") or []:
            if name not in properties:
                raise self.fail(f"{key}.required", f"names {name!r}, which is not in properties")
        if "items" in schema:
            items = schema["items"]
            if not isinstance(items, Mapping):
                raise self.fail(f"{key}.items", f"must be a schema mapping, got {show(items)}")
            self._check_sql_keywords(f"{key}.items", items)


def unsafe_value_problem(value: object, path: str) -> tuple[str, str] | None:
    """The first (path, message) of a value no declaration may hold, at any depth: a NUL
    character or lone surrogate in a string or key, a key that is not a string, a number
    that is not finite. Same rule as the dbt package's ``unsafe_value_problem``."""
    if isinstance(value, str):
        if UNSAFE_TEXT_RE.search(value):
            return (
                path,
                f"contains a NUL character or a lone surrogate, got {show(value)}; remove it",
            )
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                return path, f"has a key that is not a string: {show(key)} (keys are strings)"
            if UNSAFE_TEXT_RE.search(key):
                return (
                    path,
                    f"has a key with a NUL character or a lone surrogate: {show(key)}; remove it",
                )
            found = unsafe_value_problem(item, f"{path}.{key}" if path else key)
            if found is not None:
                return found
    elif isinstance(value, bool) or value is None:
        return None
    elif isinstance(value, int | float):
        if not math.isfinite(value):
            return path, f"must be a finite number, got {show(value)}"
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found = unsafe_value_problem(item, f"{path}[{index}]")
            if found is not None:
                return found
    return None


def _primary_key(reader: _Reader) -> tuple[str, ...]:
    value = reader.get("primary_key", required=True)
    columns = [value] if isinstance(value, str) else value
    expected = "must be a column name or a non-empty list of distinct column names"
    if not isinstance(columns, list) or not columns:
        raise reader.fail("primary_key", f"{expected}, got {show(value)}")
    for column in columns:
        if not isinstance(column, str) or not column.strip():
            raise reader.fail("primary_key", f"{expected}, got {show(value)}")
    if len(set(columns)) != len(columns):
        raise reader.fail("primary_key", f"{expected}, got duplicates in {show(value)}")
    return tuple(columns)


def _tool(reader: _Reader) -> ToolSpec | None:
    raw = reader.mapping("tool")
    if raw is None:
        return None
    sub = _Reader(reader.enrichment, raw, "tool.")
    sub.reject_unknown(TOOL_KEYS)
    name = sub.required_text("name")
    if not TOOL_NAME_RE.fullmatch(name):
        raise sub.fail("name", f"must match ^[a-zA-Z0-9_-]{{1,64}}$, got {show(name)}")
    schema = sub.required_object_schema("input_schema")
    return ToolSpec(name=name, input_schema=schema, description=sub.text("description"))


def _repair(reader: _Reader) -> RepairPolicy:
    raw = reader.mapping("repair")
    if raw is None:
        return RepairPolicy()
    sub = _Reader(reader.enrichment, raw, "repair.")
    sub.reject_unknown(REPAIR_KEYS)
    multiplier = sub.number("max_tokens_multiplier", None, 1.0, inclusive=True)
    return RepairPolicy(
        on_max_tokens=sub.flag("on_max_tokens", False),
        on_invalid=sub.flag("on_invalid", False),
        max_tokens_multiplier=RepairPolicy.max_tokens_multiplier
        if multiplier is None
        else multiplier,
    )


def parse_declaration(model_name: str, raw: Mapping[str, object]) -> Declaration:
    """Validate ``config.meta.enrich`` of the dbt model ``model_name``."""
    if not isinstance(raw, Mapping):
        raise DeclarationError(model_name, "", f"must be a mapping of keys, got {show(raw)}")
    reader = _Reader(model_name, raw)
    unsafe = unsafe_value_problem(raw, "")
    if unsafe is not None:
        raise reader.fail(*unsafe)
    reader.reject_unknown(KNOWN_KEYS)
    primary_key = _primary_key(reader)
    model = reader.required_text("model")
    max_tokens = reader.integer("max_tokens", None, 1)
    output_schema = reader.object_schema("output_schema")
    tool = _tool(reader)
    if output_schema is not None and tool is not None:
        raise reader.fail(
            "tool", "cannot be combined with output_schema: declare one of them, got both"
        )
    return Declaration(
        enrichment=model_name,
        primary_key=primary_key,
        model=model,
        max_tokens=max_tokens,
        prompt_column=reader.text("prompt_column") or "prompt",
        system=reader.text("system"),
        output_schema=output_schema,
        tool=tool,
        prompt_version=reader.text("prompt_version") or "v1",
        max_attempts=reader.integer("max_attempts", 3, 1),
        repair=_repair(reader),
        max_requests_per_batch=reader.integer(
            "max_requests_per_batch", MAX_REQUESTS_PER_BATCH, 1, MAX_REQUESTS_PER_BATCH
        ),
        max_batch_bytes=reader.integer("max_batch_bytes", MAX_BATCH_BYTES, 1, MAX_BATCH_BYTES),
        flagged_model=reader.text("flagged_model") or f"{model_name}__flagged",
        budget_usd=reader.number("budget_usd", None, 0.0, inclusive=False),
        budget_usd_per_day=reader.number("budget_usd_per_day", None, 0.0, inclusive=False),
        dedupe=reader.flag("dedupe", False),
        cache=reader.flag("cache", True),
        cache_ttl=_cache_ttl(reader),
        cached_prefix=reader.text("cached_prefix"),
        pilot_stratify_by=reader.text("pilot_stratify_by"),
    )


def _cache_ttl(reader: _Reader) -> str:
    value = reader.get("cache_ttl")
    if value is None:
        return "1h"
    if value not in CACHE_TTLS:
        raise reader.fail("cache_ttl", f'must be "5m" or "1h", got {show(value)}')
    return str(value)
