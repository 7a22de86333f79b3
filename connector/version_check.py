"""Does the installed dbt package match the `enrich` CLI?

The two halves of batch-enrich are installed apart: the dbt package through the
project's packages.yml (`dbt deps` puts it under dbt_packages/), the CLI with pip. They
share contracts (the ledger's tables, the declaration's keys, the flagged view's
columns), so they must come from the same release. Policy, on `version` of the
package's dbt_project.yml against the CLI's own version:

- same major.minor, another patch: a warning (compatible; install the same release);
- another major or minor: ConfigError (exit 2), naming both versions and the fix;
- the package not installed (no `dbt deps` yet) or this repository itself: no check.

Cheap on purpose (two or three small YAML files, no dbt import): it runs before every
warehouse command.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from connector import __version__
from connector.errors import ConfigError

PACKAGE_NAME = "batch_enrich"
_VERSION = re.compile(r"^\s*v?(\d+)\.(\d+)(?:\.(\d+))?")
INSTALL_HINT = (
    "install the same release of both: packages.yml `revision: vX.Y.Z` (then `dbt deps`) "
    "and `pip install 'git+<repository URL>@vX.Y.Z'`"
)


@dataclass(frozen=True)
class InstalledPackage:
    version: str
    path: Path  # the package's dbt_project.yml


def _load(path: Path) -> dict[str, Any] | None:
    try:
        text = path.read_text()
    except OSError:
        return None
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        data = yaml.load(text, Loader=loader)  # noqa: S506  (a safe loader)
    except yaml.YAMLError:
        return None
    return data if isinstance(data, dict) else None


def find_package(project_dir: Path) -> InstalledPackage | None:
    """The batch_enrich dbt package the project at project_dir builds with: itself when
    it is this repository, else the one `dbt deps` installed (packages-install-path, or
    $DBT_PACKAGES_INSTALL_PATH, default dbt_packages). None when there is none."""
    root_file = project_dir / "dbt_project.yml"
    root = _load(root_file)
    if root is None:
        return None
    if root.get("name") == PACKAGE_NAME:
        return InstalledPackage(str(root.get("version", "")), root_file)
    install = os.environ.get("DBT_PACKAGES_INSTALL_PATH") or str(
        root.get("packages-install-path") or "dbt_packages"
    )
    base = Path(install) if Path(install).is_absolute() else project_dir / install
    if not base.is_dir():
        return None
    # dbt names the folder after the package's project name; look there first
    candidates = [base / PACKAGE_NAME, *sorted(p for p in base.iterdir() if p.is_dir())]
    for folder in candidates:
        conf = _load(folder / "dbt_project.yml")
        if conf is not None and conf.get("name") == PACKAGE_NAME:
            return InstalledPackage(str(conf.get("version", "")), folder / "dbt_project.yml")
    return None


def _parse(version: str) -> tuple[int, int, int] | None:
    match = _VERSION.match(version)
    if match is None:
        return None
    return int(match[1]), int(match[2]), int(match[3] or 0)


def check(project_dir: Path, cli_version: str = __version__) -> str | None:
    """A warning to print, or None when the versions agree (or there is no package).
    Raises ConfigError when they are incompatible (another major or minor version)."""
    package = find_package(project_dir)
    if package is None:
        return None
    where = str(package.path)
    pkg, cli = _parse(package.version), _parse(cli_version)
    if pkg is None or cli is None:
        return (
            f"cannot compare the dbt package batch_enrich version {package.version!r} "
            f"({where}) with the enrich CLI {cli_version}; {INSTALL_HINT}"
        )
    if pkg[:2] != cli[:2]:
        raise ConfigError(
            f"the dbt package batch_enrich is {package.version} ({where}) but the enrich "
            f"CLI is {cli_version}: they are incompatible (major.minor differ); "
            f"{INSTALL_HINT}"
        )
    if pkg != cli:
        return (
            f"the dbt package batch_enrich is {package.version} ({where}) and the enrich "
            f"CLI is {cli_version}: compatible, but {INSTALL_HINT}"
        )
    return None
