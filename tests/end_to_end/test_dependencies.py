"""Every third-party package the code imports is declared in pyproject.toml, so a fresh
install never relies on another package's requirements to bring it in."""

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

from conftest import REPO


def imported_modules(folder: Path):
    """(module, file) for every absolute import under ``folder``, with hydra_plugins.X kept
    whole (each Hydra plugin is its own distribution in that namespace)."""
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import) else
                     [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            for name in names:
                parts = name.split(".")
                yield (".".join(parts[:2]) if parts[0] == "hydra_plugins" else parts[0]), path


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def distribution_of(module: str, installed: dict) -> str:
    if module.startswith("hydra_plugins."):
        return normalized(module.split(".")[1])  # hydra_submitit_launcher -> its package
    return normalized(installed[module][0])


def test_every_imported_package_is_declared():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = {normalized(re.split(r"[<>=!~\[; ]", spec, maxsplit=1)[0])
                for spec in project["dependencies"]}
    ours = {"dropout_lab", "hydra_plugins.dropout_lab_launcher"}
    installed = packages_distributions()  # module -> distributions; slow, so read once
    undeclared = {}
    for module, path in [*imported_modules(REPO / "dropout_lab"),
                         *imported_modules(REPO / "hydra_plugins")]:
        if module in sys.stdlib_module_names or module in ours:
            continue
        distribution = distribution_of(module, installed)
        if distribution not in declared:
            undeclared.setdefault(distribution, path.relative_to(REPO))
    assert not undeclared, f"imported but not in pyproject.toml dependencies: {undeclared}"
