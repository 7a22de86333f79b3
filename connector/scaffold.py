"""`enrich init`: write the files of a new enrichment into the user's dbt project.

Four files in one folder (default models/enrichments/NAME/):

- NAME.sql: the input model, one row per key from ref(MODEL), with a `prompt` column to
  edit;
- _NAME.yml: its declaration (config.meta.enrich) and the key's tests;
- NAME__flagged.sql: `{{ batch_enrich.flagged('NAME') }}`;
- NAME__enriched.sql: `{{ batch_enrich.enriched('NAME') }}`.

Nothing is overwritten: when any of the four exists (or a model of one of these names
exists anywhere in the project's model paths), nothing is written and ConfigError
(exit 2) names it. The declaration is checked by the same validator the connector
applies at sync time (connector.declaration), so what init writes, sync accepts.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from connector.declaration import DeclarationError, parse_declaration
from connector.errors import ConfigError

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
DEFAULT_MODEL = "claude-haiku-4-5"
DEFAULT_MAX_TOKENS = 1024
SYSTEM_PLACEHOLDER = (
    "TODO: tell the model what to do with each record, e.g. 'You classify support "
    "tickets. Answer in the requested JSON format.'"
)


@dataclass(frozen=True)
class InitRequest:
    name: str
    source_model: str
    keys: tuple[str, ...]
    project_dir: Path = Path()
    output_schema_file: Path | None = None
    folder: Path | None = None  # relative to project_dir; default models/enrichments/NAME
    model: str = DEFAULT_MODEL
    max_tokens: int = DEFAULT_MAX_TOKENS


@dataclass
class InitReport:
    name: str
    folder: Path
    written: list[Path] = field(default_factory=list)
    next_commands: list[str] = field(default_factory=list)


def parse_keys(text: str) -> tuple[str, ...]:
    """`a,b` -> ('a', 'b'); blanks around names are dropped."""
    return tuple(part.strip() for part in text.split(","))


def _check_identifier(what: str, value: str) -> None:
    if not IDENTIFIER.fullmatch(value):
        raise ConfigError(
            f"{what} {value!r} is not an identifier: use letters, digits and _, "
            "not starting with a digit"
        )


def _read_output_schema(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"--output-schema {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"--output-schema {path} is not valid JSON/YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"--output-schema {path} must hold a JSON Schema object (a mapping)")
    return data


def declaration(req: InitRequest, output_schema: Mapping[str, Any] | None) -> dict[str, Any]:
    """The meta.enrich block init writes, in the order the docs list the keys."""
    decl: dict[str, Any] = {
        "primary_key": req.keys[0] if len(req.keys) == 1 else list(req.keys),
        "model": req.model,
        "max_tokens": req.max_tokens,
        "system": SYSTEM_PLACEHOLDER,
        "prompt_version": "v1",
    }
    if output_schema is not None:
        decl["output_schema"] = dict(output_schema)
    return decl


def validate(req: InitRequest) -> dict[str, Any]:
    """Check names, keys and the output schema; return the declaration to write."""
    _check_identifier("enrichment name", req.name)
    if req.name.endswith(("__flagged", "__enriched")):
        raise ConfigError(
            f"enrichment name {req.name!r} must not end in __flagged or __enriched "
            "(init writes those models)"
        )
    _check_identifier("--from model", req.source_model)
    if req.source_model == req.name:
        raise ConfigError(
            f"--from {req.source_model!r} is the enrichment's own name: the input model "
            "NAME selects from another model"
        )
    if not req.keys or req.keys == ("",):
        raise ConfigError("--key needs at least one column")
    for key in req.keys:
        _check_identifier("--key column", key)
    repeated = sorted({k for k in req.keys if req.keys.count(k) > 1})
    if repeated:
        raise ConfigError(f"--key names {', '.join(repeated)} more than once")
    if "prompt" in req.keys:
        raise ConfigError("--key 'prompt' clashes with the prompt column init writes")
    schema = None if req.output_schema_file is None else _read_output_schema(req.output_schema_file)
    decl = declaration(req, schema)
    try:
        parse_declaration(req.name, decl)
    except DeclarationError as exc:
        raise ConfigError(f"--output-schema {req.output_schema_file}: {exc}") from None
    return decl


def _quoted(column: str) -> str:
    # quoted as the package quotes the declaration's key columns: names are exact
    return '"' + column + '"'


def input_model_sql(req: InitRequest) -> str:
    keys = ", ".join(req.keys)
    select = "".join(f"        {_quoted(k)},\n" for k in req.keys)
    parts = "\n        || ".join(
        f"'{', ' if i else ''}{k}: ' || cast({_quoted(k)} as text)" for i, k in enumerate(req.keys)
    )
    # every name was checked against IDENTIFIER by validate(): nothing else reaches the SQL
    return f"""{{#-
    Input model of the {req.name} enrichment (written by `enrich init`): one row per
    {keys} of {req.source_model}, with the `prompt` sent to the model for that row.

    TODO: write the prompt. Select the columns it needs from {req.source_model} and build
    the text the model should read. A row whose prompt changes is enriched again (the
    request hash covers it); raise prompt_version in _{req.name}.yml when you change
    the wording for every row.
-#}}

with

source as (

    select * from {{{{ ref('{req.source_model}') }}}}

),

final as (

    select
{select}        {parts} as prompt
    from source

)

select * from final
"""  # noqa: S608


def declaration_yaml(req: InitRequest, decl: Mapping[str, Any]) -> str:
    if len(req.keys) == 1:
        columns = [
            {
                "name": req.keys[0],
                "description": "The key: one row per value.",
                "data_tests": ["unique", "not_null"],
            }
        ]
        model_tests: list[Any] = []
    else:
        columns = [
            {"name": k, "description": "Part of the key.", "data_tests": ["not_null"]}
            for k in req.keys
        ]
        model_tests = [
            {"batch_enrich.unique_combination": {"arguments": {"columns": list(req.keys)}}}
        ]
    model: dict[str, Any] = {
        "name": req.name,
        "description": (
            f"Input of the {req.name} enrichment: one row per key of {req.source_model}, "
            "with the prompt."
        ),
        "config": {"meta": {"enrich": dict(decl)}},
    }
    if model_tests:
        model["data_tests"] = model_tests
    model["columns"] = [
        *columns,
        {"name": "prompt", "description": "The text sent to the model for this row."},
    ]
    body = yaml.dump(
        {"models": [model]}, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=88
    )
    return (
        f"# The {req.name} enrichment, written by `enrich init`. The keys of meta.enrich:\n"
        "# docs/declaring.md. TODO: write `system`; set max_tokens to what an answer needs;\n"
        "# add output_schema (structured output) or tool if the answer has a shape.\n"
        f"{body}"
    )


class _Dumper(yaml.SafeDumper):
    """Lists indented under their key, as dbt's docs write YAML."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _model_paths(project_dir: Path) -> list[Path]:
    try:
        conf = yaml.safe_load((project_dir / "dbt_project.yml").read_text())
    except FileNotFoundError:
        raise ConfigError(
            f"{project_dir / 'dbt_project.yml'} not found: --project-dir must be a dbt project"
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{project_dir / 'dbt_project.yml'} is not valid YAML: {exc}") from None
    paths = (conf or {}).get("model-paths") or ["models"]
    return [project_dir / str(p) for p in paths]


def init(req: InitRequest) -> InitReport:
    """Validate, refuse to overwrite, then write the four files."""
    decl = validate(req)
    project_dir = req.project_dir
    model_paths = _model_paths(project_dir)
    folder = project_dir / (req.folder or Path("models") / "enrichments" / req.name)
    files = {
        folder / f"{req.name}.sql": input_model_sql(req),
        folder / f"_{req.name}.yml": declaration_yaml(req, decl),
        folder / f"{req.name}__flagged.sql": (f"{{{{ batch_enrich.flagged('{req.name}') }}}}\n"),
        folder / f"{req.name}__enriched.sql": (f"{{{{ batch_enrich.enriched('{req.name}') }}}}\n"),
    }
    for path in files:
        if path.exists():
            raise ConfigError(f"{path} exists; init overwrites nothing (nothing was written)")
    models = [f"{req.name}.sql", f"{req.name}__flagged.sql", f"{req.name}__enriched.sql"]
    for base in model_paths:
        for model_file in models:
            for found in _existing(base, model_file):
                raise ConfigError(
                    f"{found} exists: the project has a model named {found.stem} already "
                    "(nothing was written)"
                )
    if not any(_inside(folder, base) for base in model_paths):
        raise ConfigError(
            f"{folder} is not under the project's model-paths "
            f"({', '.join(str(p) for p in model_paths)}): dbt would not see the models"
        )
    folder.mkdir(parents=True, exist_ok=True)
    report = InitReport(name=req.name, folder=folder)
    for path, text in files.items():
        with path.open("x") as f:  # "x": never overwrite, even racing another init
            f.write(text)
        report.written.append(path)
    report.next_commands = next_commands(req, folder)
    return report


def _existing(base: Path, file_name: str) -> Sequence[Path]:
    if not base.is_dir():
        return []
    return sorted(base.rglob(file_name))


def _inside(path: Path, base: Path) -> bool:
    try:
        path.resolve().relative_to(base.resolve())
    except ValueError:
        return False
    return True


def next_commands(req: InitRequest, folder: Path) -> list[str]:
    rel = folder.relative_to(req.project_dir) if folder.is_relative_to(req.project_dir) else folder
    return [
        f"edit {rel / (req.name + '.sql')} (the prompt) and {rel / ('_' + req.name + '.yml')} "
        "(system, max_tokens, output_schema)",
        f"dbt build --select +{req.name}__flagged   # the rows waiting to be enriched",
        f"enrich estimate --select {req.name}        # what they would cost",
        f"enrich run --select {req.name}             # build, submit, land, build until done",
    ]
