"""Validate payloads against a named schema of the official Anthropic OpenAPI spec.

OpenAPI 3.1 schemas are JSON Schema 2020-12; ``$ref``s are resolved against the whole
spec document. The spec is looked up in ``$BATCH_ENRICH_OPENAPI``, then in the repo,
then in the team's shared reference folder.
"""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC_ENV = "BATCH_ENRICH_OPENAPI"
SPEC_URI = "urn:batch-enrich:anthropic-openapi"
_REPO = Path(__file__).resolve().parents[2]
CANDIDATES = (
    _REPO / "reference" / "anthropic-openapi.json",
    _REPO / "connector" / "emulator" / "anthropic-openapi.json",
    _REPO.parent / "shared" / "reference" / "anthropic-openapi.json",
    Path("/work/shared/reference/anthropic-openapi.json"),
)


def spec_path() -> Path:
    override = os.environ.get(SPEC_ENV)
    candidates = (Path(override), *CANDIDATES) if override else CANDIDATES
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(
        "the Anthropic OpenAPI spec was not found; set $"
        + SPEC_ENV
        + " or put it at one of: "
        + ", ".join(str(p) for p in CANDIDATES)
    )


@cache
def _registry() -> Registry[Any]:
    spec = json.loads(spec_path().read_text())
    resource: Resource[Any] = DRAFT202012.create_resource(spec)
    registry: Registry[Any] = Registry().with_resource(SPEC_URI, resource)
    return registry


def validator_for(schema_name: str) -> Draft202012Validator:
    """A validator for ``#/components/schemas/<schema_name>`` of the spec."""
    ref = {"$ref": f"{SPEC_URI}#/components/schemas/{schema_name}"}
    return Draft202012Validator(ref, registry=_registry())


def errors(schema_name: str, instance: object) -> list[str]:
    """Every validation error of ``instance``, as ``path: message`` lines."""
    found = validator_for(schema_name).iter_errors(instance)
    return [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in found]
