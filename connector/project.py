"""Discovery: the dbt project, its manifest, its enrichments and the profile target.

Nothing is configured twice: enrichments come from `target/manifest.json` (parsed
in-process when missing or stale), credentials from the `profiles.yml` target dbt uses.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from connector.dbt_invoke import project_lock, run_dbt, target_dir
from connector.declaration import Declaration, DeclarationError, parse_declaration
from connector.errors import ConfigError
from connector.profile_render import render_profile

log = logging.getLogger(__name__)

LEDGER_SOURCE = "enrich_ledger"
LEDGER_SCHEMA_VAR = "batch_enrich_ledger_schema"
DEFAULT_LEDGER_SCHEMA = "enrich"


@dataclass(frozen=True)
class Relation:
    """A table or view: schema and name (database kept for warehouses that use it)."""

    database: str | None
    schema: str
    name: str

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}"


@dataclass(frozen=True)
class Enrichment:
    declaration: Declaration
    flagged: Relation
    source: Relation | None = None  # the input model the declaration is on (pilot samples)

    @property
    def name(self) -> str:
        return self.declaration.enrichment


@dataclass(frozen=True)
class Target:
    """The profiles.yml target, rendered as dbt renders it. Holds secrets: never log it."""

    name: str
    type: str
    params: Mapping[str, Any] = field(repr=False)


@dataclass(frozen=True)
class Project:
    project_dir: Path
    profiles_dir: Path
    target: Target
    ledger_schema: str
    enrichments: tuple[Enrichment, ...]
    invalid: tuple[tuple[str, str], ...]  # (model, message) of declarations that failed
    prices: Relation | None = None  # the price seed's table, as `ref` resolves it
    backlog: Relation | None = None  # the package's enrich_backlog model (enrich status)
    pilot_summary: Relation | None = None  # the package's enrich_pilot_summary model

    def select(self, names: tuple[str, ...]) -> tuple[Enrichment, ...]:
        if not names:
            return self.enrichments
        known = {e.name for e in self.enrichments} | {m for m, _ in self.invalid}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ConfigError(
                f"--select names no enrichment: {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known)) or '(none)'}"
            )
        return tuple(e for e in self.enrichments if e.name in names)


PRICE_SEED = "batch_enrich_model_prices"
PACKAGE = "batch_enrich"
BACKLOG_MODEL = "enrich_backlog"
PILOT_SUMMARY_MODEL = "enrich_pilot_summary"


def find_profiles_dir(project_dir: Path, profiles_dir: Path | None) -> Path:
    """dbt's order: --profiles-dir, DBT_PROFILES_DIR, the project dir, ~/.dbt."""
    if profiles_dir is not None:
        return profiles_dir
    env = os.environ.get("DBT_PROFILES_DIR")
    if env:
        return Path(env)
    if (project_dir / "profiles.yml").exists():
        return project_dir
    return Path.home() / ".dbt"


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"{path} not found") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must be a YAML mapping")
    return data


def render_target(profiles_dir: Path, profile_name: str, target: str | None) -> Target:
    """Render the profile target as dbt does (env_var(), as_number, ...): in
    connector.profile_render when it can, by dbt's own renderer otherwise."""
    raw = _read_yaml(profiles_dir / "profiles.yml")
    if profile_name not in raw:
        raise ConfigError(f"profile '{profile_name}' not found in {profiles_dir / 'profiles.yml'}")
    try:
        name, data = render_profile(raw[profile_name], profile_name, target)
    except Exception as exc:  # dbt raises its own error types; keep only the message
        raise ConfigError(f"profile '{profile_name}': {exc}") from None
    kind = data.get("type")
    if not isinstance(kind, str):
        raise ConfigError(f"profile '{profile_name}' target '{name}' has no 'type'")
    return Target(name=name, type=kind, params=data)


def _project_files(project_dir: Path, conf: Mapping[str, Any]) -> Iterator[Path]:
    yield project_dir / "dbt_project.yml"
    for key, default in (("model-paths", ["models"]), ("macro-paths", ["macros"])):
        for folder in conf.get(key, default):
            base = project_dir / folder
            if base.is_dir():
                yield from (p for p in base.rglob("*") if p.suffix in {".sql", ".yml", ".yaml"})


def _manifest_is_stale(manifest: Path, project_dir: Path, conf: Mapping[str, Any]) -> bool:
    if not manifest.exists():
        return True
    built = manifest.stat().st_mtime
    return any(p.stat().st_mtime > built for p in _project_files(project_dir, conf))


def load_manifest(
    project_dir: Path, profiles_dir: Path, target: str | None, conf: Mapping[str, Any]
) -> dict[str, Any]:
    manifest = target_dir(project_dir, conf) / "manifest.json"
    # One process at a time parses and reads (connector.dbt_invoke): dbt writes
    # manifest.json in place, so two syncs started together on a stale manifest would
    # both parse, and one would read the other's half-written file (and a parse killed
    # mid-write leaves one cut short).
    with project_lock(manifest.parent):
        if _manifest_is_stale(manifest, project_dir, conf):
            run_dbt(["parse"], project_dir, profiles_dir, target)
        try:
            data: dict[str, Any] = json.loads(manifest.read_bytes())
        except ValueError:
            log.warning("%s is not whole JSON (a dbt run cut short?); parsing again", manifest)
            run_dbt(["parse"], project_dir, profiles_dir, target)
            data = json.loads(manifest.read_bytes())
    return data


def _ledger_schema(manifest: Mapping[str, Any]) -> str:
    for source in manifest.get("sources", {}).values():
        if source.get("source_name") == LEDGER_SOURCE:
            return str(source["schema"])
    project_vars = manifest.get("metadata", {}).get("vars") or {}
    return str(project_vars.get(LEDGER_SCHEMA_VAR, DEFAULT_LEDGER_SCHEMA))


def discover_enrichments(
    manifest: Mapping[str, Any],
) -> tuple[tuple[Enrichment, ...], tuple[tuple[str, str], ...]]:
    """Every enabled model with `config.meta.enrich`, validated; bad ones are returned apart."""
    models = {
        n["name"]: n
        for n in manifest.get("nodes", {}).values()
        if n.get("resource_type") == "model"
    }
    found: list[Enrichment] = []
    invalid: list[tuple[str, str]] = []
    for name, node in sorted(models.items()):
        meta = (node.get("config") or {}).get("meta") or {}
        raw = meta.get("enrich")
        if raw is None:
            continue
        if not isinstance(raw, Mapping):
            invalid.append((name, f"enrichment '{name}': meta.enrich must be a mapping"))
            continue
        try:
            decl = parse_declaration(name, raw)
        except DeclarationError as exc:
            invalid.append((name, str(exc)))
            continue
        flagged = models.get(decl.flagged_model)
        if flagged is None:
            invalid.append(
                (
                    name,
                    f"enrichment '{name}': flagged model '{decl.flagged_model}' not found; "
                    f"add models/{decl.flagged_model}.sql containing "
                    f"{{{{ batch_enrich.flagged('{name}') }}}}",
                )
            )
            continue
        relation = _node_relation(flagged)
        found.append(Enrichment(declaration=decl, flagged=relation, source=_node_relation(node)))
    return tuple(found), tuple(invalid)


def _node_relation(node: Mapping[str, Any]) -> Relation:
    return Relation(
        database=node.get("database"),
        schema=str(node["schema"]),
        name=str(node.get("alias") or node["name"]),
    )


def price_relation(manifest: Mapping[str, Any]) -> Relation | None:
    """The table of the seed `batch_enrich_model_prices`: the root project's own seed of
    that name if it has one (an override), else the package's."""
    root = manifest.get("metadata", {}).get("project_name")
    seeds = [
        n
        for n in manifest.get("nodes", {}).values()
        if n.get("resource_type") == "seed" and n.get("name") == PRICE_SEED
    ]
    if not seeds:
        return None
    seeds.sort(key=lambda n: n.get("package_name") != root)
    return _node_relation(seeds[0])


def package_model_relation(manifest: Mapping[str, Any], name: str) -> Relation | None:
    """The relation of the package's model `name` (None: not in the manifest)."""
    for node in manifest.get("nodes", {}).values():
        if (
            node.get("resource_type") == "model"
            and node.get("package_name") == PACKAGE
            and node.get("name") == name
        ):
            return _node_relation(node)
    return None


def load_project(project_dir: Path, profiles_dir: Path | None, target: str | None) -> Project:
    project_dir = project_dir.resolve()
    conf = _read_yaml(project_dir / "dbt_project.yml")
    profile_name = conf.get("profile")
    if not isinstance(profile_name, str):
        raise ConfigError(f"{project_dir / 'dbt_project.yml'} has no 'profile'")
    pdir = find_profiles_dir(project_dir, profiles_dir)
    rendered = render_target(pdir, profile_name, target)
    manifest = load_manifest(project_dir, pdir, target, conf)
    enrichments, invalid = discover_enrichments(manifest)
    return Project(
        project_dir=project_dir,
        profiles_dir=pdir,
        target=rendered,
        ledger_schema=_ledger_schema(manifest),
        enrichments=enrichments,
        invalid=invalid,
        prices=price_relation(manifest),
        backlog=package_model_relation(manifest, BACKLOG_MODEL),
        pilot_summary=package_model_relation(manifest, PILOT_SUMMARY_MODEL),
    )
