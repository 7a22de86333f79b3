"""The installed dbt package and the `enrich` CLI must be one release: a patch apart is
a warning, a major or minor apart stops every warehouse command with exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from connector import __version__
from connector.cli import main
from connector.errors import ConfigError
from connector.version_check import check, find_package

REPO_ROOT = Path(__file__).resolve().parents[2]


def _project(root: Path, package_version: str | None, install_path: str = "dbt_packages") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "dbt_project.yml").write_text(
        f"name: shop\nconfig-version: 2\nprofile: shop\npackages-install-path: {install_path}\n"
    )
    if package_version is not None:
        # dbt deps names the folder after the package; another package beside it
        (root / install_path / "dbt_utils").mkdir(parents=True)
        (root / install_path / "dbt_utils" / "dbt_project.yml").write_text(
            "name: dbt_utils\nversion: '9.9.9'\n"
        )
        (root / install_path / "batch_enrich").mkdir()
        (root / install_path / "batch_enrich" / "dbt_project.yml").write_text(
            f"name: batch_enrich\nversion: '{package_version}'\n"
        )
    return root


def test_this_repository_is_its_own_package_and_agrees_with_the_cli() -> None:
    found = find_package(REPO_ROOT)
    assert found is not None and found.version == __version__
    assert check(REPO_ROOT) is None


def test_same_release_is_silent_and_no_package_is_no_check(tmp_path: Path) -> None:
    assert check(_project(tmp_path / "a", "0.1.0"), "0.1.0") is None
    assert check(_project(tmp_path / "b", None), "0.1.0") is None
    assert check(tmp_path / "nothing-here", "0.1.0") is None


def test_a_patch_apart_is_a_warning_naming_both(tmp_path: Path) -> None:
    warning = check(_project(tmp_path, "0.1.3", install_path="vendor"), "0.1.0")
    assert warning is not None
    assert "0.1.3" in warning and "0.1.0" in warning and "compatible" in warning
    assert str(tmp_path / "vendor" / "batch_enrich" / "dbt_project.yml") in warning


@pytest.mark.parametrize("package", ["0.2.0", "1.1.0"])
def test_a_minor_or_major_apart_is_a_configuration_error(tmp_path: Path, package: str) -> None:
    with pytest.raises(ConfigError, match=f"batch_enrich is {package}.*incompatible"):
        check(_project(tmp_path, package), "0.1.0")


@pytest.mark.parametrize("command", ["status", "sync", "estimate", "run"])
def test_every_warehouse_command_stops_with_exit_2_before_touching_anything(
    tmp_path: Path, command: str
) -> None:
    # no profile exists: the version check answers before the project is loaded
    project = _project(tmp_path, "9.0.0")
    out = CliRunner().invoke(main, [command, "--project-dir", str(project)])
    assert out.exit_code == 2, out.output
    assert "incompatible" in out.output and "9.0.0" in out.output


def test_init_is_checked_too_and_a_patch_warning_lets_it_go_on(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    minor = _project(tmp_path / "minor", "0.9.0")
    (minor / "models").mkdir()
    out = CliRunner().invoke(
        main, ["init", "t", "--from", "m", "--key", "id", "--project-dir", str(minor)]
    )
    assert out.exit_code == 2 and "incompatible" in out.output
    assert not (minor / "models" / "enrichments").exists()
    patch = _project(tmp_path, __version__.rsplit(".", 1)[0] + ".99")
    out = CliRunner().invoke(
        main, ["init", "t", "--from", "m", "--key", "id", "--project-dir", str(patch)]
    )
    assert out.exit_code == 0, out.output
    assert "warning:" in out.output and "compatible" in out.output
