"""The wheel: the Hydra configs ship inside it and are found by a non-editable install."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import REPO

pytestmark = pytest.mark.slow  # builds a wheel with pip and runs the installed package


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from this checkout, offline (hatchling is installed with the dev tools)."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(out), str(REPO)], check=True, capture_output=True)
    (built,) = out.glob("dropout_lab-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """The wheel unpacked as site-packages would hold it (what a plain ``pip install .`` gives)."""
    site = tmp_path_factory.mktemp("site")
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    return site


def run_installed(site: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """Python with the unpacked wheel first on the path, started away from the checkout."""
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env,
                          cwd=cwd, check=True)


def test_wheel_holds_every_config_file(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    configs = [p.relative_to(REPO / "configs").as_posix()
               for p in (REPO / "configs").rglob("*.yaml")]
    assert "config.yaml" in configs and "optim/adam.yaml" in configs
    missing = [c for c in configs if f"dropout_lab/configs/{c}" not in names]
    assert missing == []
    assert "dropout_lab/cli.py" in names
    assert "hydra_plugins/dropout_lab_launcher/__init__.py" in names  # the Slurm launcher


def test_installed_package_uses_its_own_configs(installed, tmp_path):
    code = ("import dropout_lab.config as c, hydra_plugins.dropout_lab_launcher as l; "
            "print(c.__file__); print(c.config_dir()); print(l.__file__)")
    package, configs, launcher = run_installed(installed, "-c", code, cwd=tmp_path).stdout.split()
    assert Path(package).is_relative_to(installed)  # not the checkout
    assert Path(configs) == installed / "dropout_lab" / "configs"
    assert Path(launcher).is_relative_to(installed)


def test_installed_cli_composes_from_another_directory(installed, tmp_path):
    result = run_installed(installed, "-m", "dropout_lab", "train", "--print-config", "optim=adamw",
                           cwd=tmp_path)
    assert "name: adamw" in result.stdout and "hidden:" in result.stdout
    assert list(tmp_path.iterdir()) == []
