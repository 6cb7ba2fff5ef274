"""The config: every YAML composes and validates, overrides reach the typed config, a typo in
a YAML file is refused. Bad overrides, each one clear line and exit 2, are the table of
tests/end_to_end/test_bad_input.py."""

import shutil

import pytest

from dropout_lab import hydra_runner
from dropout_lab.hydra_runner import compose, typed_config
from dropout_lab.config import Config, config_dir, help_keys
from dropout_lab.errors import ConfigError

CONFIG_DIR = config_dir()
GROUP_FILES = sorted(p.relative_to(CONFIG_DIR) for p in CONFIG_DIR.rglob("*.yaml")
                     if p.name != "config.yaml")


def test_default_config_is_the_textbook_setup():
    cfg = typed_config(compose([]))
    assert isinstance(cfg, Config)
    assert cfg.model.hidden == [256, 256]
    assert list(cfg.model.dropout.p) == [0.2, 0.5]
    assert cfg.model.dropout.kind == "custom"
    assert (cfg.optim.name, cfg.optim.lr) == ("sgd", 0.5)
    assert (cfg.trainer.epochs, cfg.trainer.batch_size) == (10, 256)


@pytest.mark.parametrize("path", GROUP_FILES, ids=str)
def test_every_group_file_composes(path):
    """Each YAML in a group (``optim/adam.yaml`` -> ``optim=adam``) composes and validates."""
    group = path.parent.as_posix()
    cfg = compose([f"{group}={path.stem}"])
    assert isinstance(typed_config(cfg), Config)


def test_group_files_were_found():
    # Guards the parametrization above: an empty glob would silently test nothing.
    assert {p.parent.as_posix() for p in GROUP_FILES} >= {"data", "model", "optim", "trainer"}


@pytest.mark.parametrize("overrides, expected", [
    (["model.dropout.p=[0.5,0.2]", "optim.weight_decay=1e-4", "trainer.epochs=20"],
     lambda c: list(c.model.dropout.p) == [0.5, 0.2] and c.optim.weight_decay == 1e-4
     and c.trainer.epochs == 20),
    (["model.dropout.p=0.3"], lambda c: c.model.dropout.per_layer(2) == [("custom", 0.3)] * 2),
    (["model.dropout.kind=[builtin,none]"],
     lambda c: c.model.dropout.per_layer(2) == [("builtin", 0.2), ("none", 0.5)]),
    (["model.hidden=[64,32,16]", "model.dropout.p=0.1"], lambda c: c.model.hidden == [64, 32, 16]),
    (["optim=adam"], lambda c: c.optim.name == "adam" and c.optim.lr == 0.001),
    (["model.dropout.p=0", "model.dropout.kind=none"],
     lambda c: c.model.dropout.per_layer(2) == [("none", 0.0)] * 2),
    (["model.dropout.p=1"], lambda c: c.model.dropout.per_layer(2)[0] == ("custom", 1.0)),
])
def test_good_overrides(overrides, expected):
    assert expected(typed_config(compose(overrides)))


def test_typo_inside_a_yaml_file_is_refused(tmp_path, monkeypatch):
    """The schema also checks the YAML files (plain YAML would accept a typo as a new key)."""
    configs = tmp_path / "configs"
    shutil.copytree(CONFIG_DIR, configs)
    trainer = configs / "trainer" / "default.yaml"
    trainer.write_text(trainer.read_text().replace("epochs: 10", "epoch: 10"))
    monkeypatch.setattr(hydra_runner, "config_dir", lambda: configs)
    with pytest.raises(ConfigError, match="epoch"):
        compose([])


def test_help_lists_groups_and_keys():
    text = help_keys()
    groups = text.split("Config groups:")[1].split("(")[0]
    for group in ("data", "model", "optim", "trainer"):
        assert group in groups
    for key in ("model.dropout.p=[0.2,0.5]", "optim.lr=0.5", "trainer.epochs=10", "seed=0"):
        assert key in text
