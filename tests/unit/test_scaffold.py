"""`enrich init`: the four files of an enrichment, written into a user's project, valid
for the connector's declaration validator, never overwriting anything."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from connector.cli import main
from connector.declaration import parse_declaration
from connector.errors import ConfigError
from connector.scaffold import InitRequest, init, parse_keys

SCHEMA = {"type": "object", "properties": {"label": {"type": "string"}}, "required": ["label"]}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "dbt_project.yml").write_text("name: shop\nconfig-version: 2\nprofile: shop\n")
    (tmp_path / "models").mkdir()
    return tmp_path


def _init(project: Path, *args: str) -> tuple[int, str]:
    out = CliRunner().invoke(main, ["init", *args, "--project-dir", str(project)])
    return out.exit_code, out.output


def test_init_writes_four_files_whose_declaration_the_connector_accepts(project: Path) -> None:
    (project / "schema.json").write_text(json.dumps(SCHEMA))
    code, out = _init(
        project, "pkg_labels", "--from", "packages", "--key", "name, version",
        "--output-schema", str(project / "schema.json"),
    )  # fmt: skip
    assert code == 0, out
    folder = project / "models" / "enrichments" / "pkg_labels"
    assert sorted(p.name for p in folder.iterdir()) == [
        "_pkg_labels.yml",
        "pkg_labels.sql",
        "pkg_labels__enriched.sql",
        "pkg_labels__flagged.sql",
    ]
    assert (folder / "pkg_labels__flagged.sql").read_text().strip() == (
        "{{ batch_enrich.flagged('pkg_labels') }}"
    )
    assert (folder / "pkg_labels__enriched.sql").read_text().strip() == (
        "{{ batch_enrich.enriched('pkg_labels') }}"
    )
    sql = (folder / "pkg_labels.sql").read_text()
    assert "{{ ref('packages') }}" in sql
    assert '"name",' in sql and '"version",' in sql and "as prompt" in sql
    doc = yaml.safe_load((folder / "_pkg_labels.yml").read_text())
    (model,) = doc["models"]
    assert model["name"] == "pkg_labels"
    raw = model["config"]["meta"]["enrich"]
    assert raw["primary_key"] == ["name", "version"]
    assert raw["output_schema"] == SCHEMA
    decl = parse_declaration("pkg_labels", raw)
    assert decl.primary_key == ("name", "version")
    assert decl.output_schema == SCHEMA
    assert decl.prompt_version == "v1" and decl.system
    assert model["data_tests"] == [
        {"batch_enrich.unique_combination": {"arguments": {"columns": ["name", "version"]}}}
    ]
    for path in folder.iterdir():
        assert str(path) in out
    assert "enrich run --select pkg_labels" in out


def test_a_single_key_is_a_scalar_with_unique_and_not_null(project: Path) -> None:
    report = init(InitRequest("triage", "tickets", ("ticket_id",), project_dir=project))
    doc = yaml.safe_load((report.folder / "_triage.yml").read_text())
    (model,) = doc["models"]
    assert model["config"]["meta"]["enrich"]["primary_key"] == "ticket_id"
    assert "output_schema" not in model["config"]["meta"]["enrich"]
    assert model["columns"][0] == {
        "name": "ticket_id",
        "description": "The key: one row per value.",
        "data_tests": ["unique", "not_null"],
    }


def test_init_overwrites_nothing_and_names_the_file(project: Path) -> None:
    folder = project / "models" / "enrichments" / "triage"
    folder.mkdir(parents=True)
    (folder / "triage__enriched.sql").write_text("-- mine\n")
    code, out = _init(project, "triage", "--from", "tickets", "--key", "ticket_id")
    assert code == 2
    assert str(folder / "triage__enriched.sql") in out
    assert sorted(p.name for p in folder.iterdir()) == ["triage__enriched.sql"]
    assert (folder / "triage__enriched.sql").read_text() == "-- mine\n"


def test_a_model_of_the_same_name_elsewhere_is_refused(project: Path) -> None:
    (project / "models" / "marts").mkdir()
    (project / "models" / "marts" / "triage.sql").write_text("select 1 as x\n")
    code, out = _init(project, "triage", "--from", "tickets", "--key", "ticket_id")
    assert code == 2
    assert "triage.sql" in out and "nothing was written" in out
    assert not (project / "models" / "enrichments").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["1triage", "--from", "t", "--key", "id"], "enrichment name '1triage'"),
        (["tri-age", "--from", "t", "--key", "id"], "enrichment name 'tri-age'"),
        (["triage__flagged", "--from", "t", "--key", "id"], "must not end in __flagged"),
        (["triage", "--from", "t;drop", "--key", "id"], "--from model 't;drop'"),
        (["triage", "--from", "triage", "--key", "id"], "the enrichment's own name"),
        (["triage", "--from", "t", "--key", 'id"x'], "--key column 'id\"x'"),
        (["triage", "--from", "t", "--key", "a,,b"], "--key column ''"),
        (["triage", "--from", "t", "--key", "a,b,a"], "names a more than once"),
        (["triage", "--from", "t", "--key", "prompt"], "clashes with the prompt column"),
        (["triage", "--from", "t", "--key", "id", "--folder", "elsewhere"], "model-paths"),
    ],
)
def test_names_and_keys_are_validated_before_anything_is_written(
    project: Path, args: list[str], message: str
) -> None:
    code, out = _init(project, *args)
    assert code == 2, out
    assert message in out
    assert not (project / "models" / "enrichments").exists()
    assert not (project / "elsewhere").exists()


@pytest.mark.parametrize(
    ("text", "suffix", "message"),
    [
        ('{"type": "objekt"}', ".json", "output_schema must be a valid JSON Schema"),
        ("[1, 2]", ".json", "must hold a JSON Schema object"),
        ("{not json", ".json", "not valid JSON/YAML"),
        ("type: object\nproperties: {'': {type: string}}\n", ".yml", "output_schema"),
    ],
)
def test_the_output_schema_goes_through_the_declaration_validator(
    project: Path, text: str, suffix: str, message: str
) -> None:
    path = project / f"schema{suffix}"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        init(InitRequest("triage", "t", ("id",), project_dir=project, output_schema_file=path))
    assert not (project / "models" / "enrichments").exists()


def test_a_missing_output_schema_file_or_project_is_exit_2(project: Path, tmp_path: Path) -> None:
    code, out = _init(
        project, "triage", "--from", "t", "--key", "id", "--output-schema", "nope.json"
    )
    assert code == 2 and "nope.json" in out
    empty = tmp_path / "empty"
    empty.mkdir()
    code, out = _init(empty, "triage", "--from", "t", "--key", "id")
    assert code == 2 and "dbt_project.yml" in out


def test_parse_keys_strips_blanks() -> None:
    assert parse_keys("a, b ,c") == ("a", "b", "c")
