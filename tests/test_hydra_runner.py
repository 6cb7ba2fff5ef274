"""Hydra's and OmegaConf's errors become one ConfigError line, mapped by exception type and
fields (hydra_runner.config_error), never by the wording of a message: one test per class,
each through a real composition."""

import pytest
from hydra.errors import (ConfigCompositionException, MissingConfigException,
                          OverrideParseException)
from omegaconf.errors import ConfigAttributeError, ValidationError

from dropout_lab.errors import ConfigError
from dropout_lab.hydra_runner import compose, config_error


def raised_by(overrides, monkeypatch):
    """The ConfigError ``compose`` raises, and the Hydra/OmegaConf error it was made from."""
    from dropout_lab import hydra_runner

    seen = []

    def recording(error, *args):
        seen.append(error)
        return config_error(error, *args)

    monkeypatch.setattr(hydra_runner, "config_error", recording)
    with pytest.raises(ConfigError) as mapped:
        compose(overrides)
    return str(mapped.value), (seen[0] if seen else None)


def chain(error) -> list:
    """The error and the ones it was raised from, outermost first."""
    errors = []
    while error is not None:
        errors.append(error)
        error = error.__cause__ or error.__context__
    return errors


def test_override_parse_error_names_the_override(monkeypatch):
    message, raw = raised_by(["model.dropout.p=[0.1,"], monkeypatch)
    assert isinstance(raw, OverrideParseException)
    assert message.startswith("bad config: cannot parse override 'model.dropout.p=[0.1,': ")
    assert message.count("no viable alternative") == 1  # the chained causes are not repeated


def test_missing_config_lists_the_options(monkeypatch):
    message, raw = raised_by(["optim=rmsprop"], monkeypatch)
    assert isinstance(raw, MissingConfigException)
    assert message == "bad config: no config 'optim/rmsprop'; available: adam, adamw, sgd"


def test_unknown_key_names_the_full_key(monkeypatch):
    message, raw = raised_by(["model.hiden=[64]"], monkeypatch)
    assert any(isinstance(e, ConfigAttributeError) for e in chain(raw))
    assert message == "bad config: unknown config key model.hiden; did you mean model.hidden?"


def test_unknown_key_is_the_one_the_user_wrote(monkeypatch):
    """OmegaConf names the first unknown part (model.dropot); the line names the override's
    key, and the nearest schema key by every part of it."""
    message, raw = raised_by(["model.dropot.p=0.3"], monkeypatch)
    assert any(e.full_key == "model.dropot" for e in chain(raw) if hasattr(e, "full_key"))
    assert message == ("bad config: unknown config key model.dropot.p; "
                       "did you mean model.dropout.p?")


@pytest.mark.parametrize("key, nearest", [
    ("epochs", ["trainer.epochs"]), ("trainr.epochs", ["trainer.epochs"]),
    ("dropout.p", ["model.dropout.p"]), ("optim.weightdecay", ["optim.weight_decay"]),
    ("model.dropot", ["model.dropout"]),  # a group
    ("model.dropout.foo", []), ("nosuchkey", []),  # nothing near: no guess
])
def test_nearest_keys(key, nearest):
    from dropout_lab.config import nearest_keys

    assert nearest_keys(key) == nearest


def test_a_list_written_without_brackets(monkeypatch):
    message, raw = raised_by(["model.hidden=256"], monkeypatch)
    assert any(isinstance(e, ValidationError) for e in chain(raw))
    assert message == "bad config: model.hidden is a list: write model.hidden=[256]"


def test_wrong_type_names_the_key_and_value(monkeypatch):
    message, raw = raised_by(["trainer.epochs=abc"], monkeypatch)
    assert any(isinstance(e, ValidationError) for e in chain(raw))
    assert message == ("bad config: trainer.epochs: Value 'abc' of type 'str' could not be "
                       "converted to Integer")


def test_composition_wrapper_is_described_by_what_it_wraps(tmp_path, monkeypatch):
    """A typo inside a YAML file: Hydra wraps OmegaConf's error in a ConfigCompositionException
    (without ``from``); the line names the key, not the wrapper's text."""
    import shutil

    from dropout_lab import config, hydra_runner

    configs = tmp_path / "configs"
    shutil.copytree(config.config_dir(), configs)
    trainer = configs / "trainer" / "default.yaml"
    trainer.write_text(trainer.read_text().replace("epochs: 10", "epoch: 10"))
    monkeypatch.setattr(hydra_runner, "config_dir", lambda: configs)
    monkeypatch.setattr(config, "config_dir", lambda: configs)
    message, raw = raised_by([], monkeypatch)
    assert isinstance(raw, ConfigCompositionException)
    assert "raised while composing" not in message and "epoch" in message


def test_our_range_error_comes_back_as_it_is(monkeypatch):
    message, raw = raised_by(["model.dropout.p=1.5"], monkeypatch)
    assert raw is None or isinstance(chain(raw)[-1], ConfigError)
    assert message == ("model.dropout.p (the probability of hidden layer 1) has to be between "
                       "0 and 1, but got 1.5")


def test_mapping_does_not_depend_on_message_text():
    """A reworded Hydra message changes nothing: only the fields are read."""
    error = OverrideParseException(override="a=[", message="SOME NEW WORDING\nsecond line")
    assert str(config_error(error)) == "bad config: cannot parse override 'a=[': SOME NEW WORDING"
    missing = MissingConfigException("reworded", missing_cfg_file="optim/x", options=["sgd"])
    assert str(config_error(missing)) == "bad config: no config 'optim/x'; available: sgd"
