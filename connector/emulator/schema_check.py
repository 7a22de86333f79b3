"""JSON Schema helpers for the emulator: local `$ref` resolution, a small conformance
check (the keywords the generator supports, plus `pattern` and `not`), and deliberate
violations for the `output_schema_violation` fault."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import orjson

Schema = Mapping[str, Any]

_TYPE_CHECKS: dict[str, type | tuple[type, ...]] = {
    "string": str,
    "object": dict,
    "array": list,
    "boolean": bool,
}


def resolve(schema: Any, root: Schema) -> Any:
    """Follow local `$ref`s, keeping sibling keywords (2020-12 semantics, simplified)."""
    seen = 0
    while isinstance(schema, Mapping) and isinstance(schema.get("$ref"), str) and seen < 32:
        target = pointer(root, schema["$ref"])
        siblings = {k: v for k, v in schema.items() if k != "$ref"}
        schema = {**target, **siblings} if isinstance(target, Mapping) else target
        seen += 1
    return schema


def pointer(root: Schema, ref: str) -> Any:
    if not ref.startswith("#"):
        return {}
    node: Any = root
    for part in [p for p in ref[1:].split("/") if p]:
        key = part.replace("~1", "/").replace("~0", "~")
        if isinstance(node, Mapping) and key in node:
            node = node[key]
        elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
            node = node[int(key)]
        else:
            return {}
    return node


def schema_types(schema: Schema) -> list[str]:
    declared = schema.get("type")
    if isinstance(declared, str):
        return [declared]
    if isinstance(declared, list):
        return [t for t in declared if isinstance(t, str)]
    if any(k in schema for k in ("properties", "required", "additionalProperties")):
        return ["object"]
    if any(k in schema for k in ("items", "prefixItems", "minItems", "maxItems")):
        return ["array"]
    if any(k in schema for k in ("minLength", "maxLength", "format", "pattern")):
        return ["string"]
    if any(k in schema for k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")):
        return ["number"]
    return []


def merge_all_of(schema: Schema, root: Schema) -> dict[str, Any]:
    merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
    for part in schema.get("allOf", []):
        part = resolve(part, root)
        if not isinstance(part, Mapping):
            continue
        for key, value in part.items():
            if key == "properties":
                merged["properties"] = {**merged.get("properties", {}), **value}
            elif key == "required":
                merged["required"] = list(dict.fromkeys([*merged.get("required", []), *value]))
            else:
                merged.setdefault(key, value)
    return merged


def is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def within(value: float, schema: Schema) -> bool:
    if is_number(schema.get("minimum")) and value < schema["minimum"]:
        return False
    if is_number(schema.get("maximum")) and value > schema["maximum"]:
        return False
    if is_number(schema.get("exclusiveMinimum")) and value <= schema["exclusiveMinimum"]:
        return False
    return not (is_number(schema.get("exclusiveMaximum")) and value >= schema["exclusiveMaximum"])


def _json_equal(left: Any, right: Any) -> bool:
    if isinstance(left, bool) or isinstance(right, bool):
        return isinstance(left, bool) and isinstance(right, bool) and left == right
    return bool(left == right)


def _has_type(value: Any, kind: str) -> bool:
    if kind == "null":
        return value is None
    if kind == "integer":
        return is_number(value) and float(value).is_integer()
    if kind == "number":
        return is_number(value)
    expected = _TYPE_CHECKS.get(kind)
    return expected is not None and isinstance(value, expected)


def conforms(value: Any, schema: Any, root: Schema) -> bool:
    """Whether `value` satisfies `schema` (the keywords listed in the module docstring,
    plus `pattern` and `not`)."""
    schema = resolve(schema, root)
    if schema is True or schema is False:
        return bool(schema)
    if not isinstance(schema, Mapping):
        return True
    if "const" in schema and not _json_equal(value, schema["const"]):
        return False
    if "enum" in schema and not any(_json_equal(value, e) for e in schema["enum"]):
        return False
    declared = schema.get("type")
    types = [declared] if isinstance(declared, str) else declared
    if isinstance(types, list) and not any(_has_type(value, t) for t in types):
        return False
    if isinstance(value, dict) and not _object_conforms(value, schema, root):
        return False
    if isinstance(value, list) and not _array_conforms(value, schema, root):
        return False
    if isinstance(value, str) and not _string_conforms(value, schema):
        return False
    if is_number(value) and not _number_conforms(value, schema):
        return False
    return _combinators_conform(value, schema, root)


def _object_conforms(value: dict[str, Any], schema: Schema, root: Schema) -> bool:
    properties: Mapping[str, Any] = schema.get("properties") or {}
    if any(name not in value for name in schema.get("required", [])):
        return False
    extra = schema.get("additionalProperties", True)
    for name, element in value.items():
        if name in properties:
            if not conforms(element, properties[name], root):
                return False
        elif extra is False or (isinstance(extra, Mapping) and not conforms(element, extra, root)):
            return False
    if len(value) < schema.get("minProperties", 0):
        return False
    return bool(len(value) <= schema.get("maxProperties", len(value)))


def _array_conforms(value: list[Any], schema: Schema, root: Schema) -> bool:
    if not schema.get("minItems", 0) <= len(value) <= schema.get("maxItems", len(value)):
        return False
    prefix = list(schema.get("prefixItems") or [])
    items = schema.get("items", True)
    for position, element in enumerate(value):
        sub = prefix[position] if position < len(prefix) else items
        if not conforms(element, sub, root):
            return False
    if schema.get("uniqueItems"):
        keys = [orjson.dumps(v, option=orjson.OPT_SORT_KEYS) for v in value]
        if len(set(keys)) != len(keys):
            return False
    return True


def _string_conforms(value: str, schema: Schema) -> bool:
    if not schema.get("minLength", 0) <= len(value) <= schema.get("maxLength", len(value)):
        return False
    pattern = schema.get("pattern")
    return not (isinstance(pattern, str) and re.search(pattern, value) is None)


def _number_conforms(value: float, schema: Schema) -> bool:
    if not within(value, schema):
        return False
    step = schema.get("multipleOf")
    if isinstance(step, (int, float)) and not isinstance(step, bool) and step > 0:
        quotient = value / step
        return math.isclose(quotient, round(quotient), abs_tol=1e-9)
    return True


def _combinators_conform(value: Any, schema: Schema, root: Schema) -> bool:
    if "allOf" in schema and not all(conforms(value, s, root) for s in schema["allOf"]):
        return False
    if "anyOf" in schema and not any(conforms(value, s, root) for s in schema["anyOf"]):
        return False
    if "oneOf" in schema and sum(conforms(value, s, root) for s in schema["oneOf"]) != 1:
        return False
    return not ("not" in schema and conforms(value, schema["not"], root))


def violating_variant(value: Any, schema: Schema, *, keep_object: bool) -> Any | None:
    """A variant of a conforming `value` that breaks `schema`, or None if none is found.
    With `keep_object`, the variant stays a JSON object (tool inputs must be objects)."""
    resolved = resolve(schema, schema)
    candidates: list[Any] = []
    if isinstance(value, dict) and isinstance(resolved, Mapping):
        required = [k for k in resolved.get("required", []) if k in value]
        if required:
            candidates.append({k: v for k, v in value.items() if k != required[0]})
        properties: Mapping[str, Any] = resolved.get("properties") or {}
        for name in value:
            if name in properties:
                candidates.append({**value, name: _wrong_type(properties[name], schema)})
                break
        candidates.append({**value, "unexpected_field": "schema violation"})
    if not keep_object:
        candidates.append(_wrong_type(resolved, schema))
    for candidate in candidates:
        if not conforms(candidate, schema, schema):
            return candidate
    return None


def _wrong_type(schema: Any, root: Schema) -> Any:
    resolved = resolve(schema, root)
    types = schema_types(resolved) if isinstance(resolved, Mapping) else []
    if "string" not in types:
        return "schema violation"
    if "integer" not in types and "number" not in types:
        return 12345
    return ["schema", "violation"]
