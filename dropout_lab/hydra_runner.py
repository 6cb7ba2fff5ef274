"""The Hydra runner: compose and validate configs (Hydra's errors as one-line ConfigErrors),
and run a task under Hydra, which makes the run (or sweep) folders, saves ``.hydra/`` and
launches the jobs. ``train_command`` is ``dropout-lab train``: one run of the training core.
What the commands print, and their exit codes, is ``messages.py``'s.
"""

import sys
from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence, Tuple

from dropout_lab.config import (Config, config_dir, did_you_mean, register_schema,
                                schema_keys, to_typed)
from dropout_lab.errors import ConfigError, DropoutLabError, one_line
from dropout_lab.run_folder import OVERRIDES, SUMMARY, has_summary, read_overrides, read_status

PROG = "dropout-lab"


def config_error(error: Exception, overrides: Sequence[str] = ()) -> ConfigError:
    """A Hydra/OmegaConf composition error as one ConfigError line, built from the exception's
    type and fields (a message's wording is not an interface). Hydra wraps the error that
    says what is wrong (an OmegaConf error naming the key, a parse error naming the override)
    in errors of its own: the innermost one is described, with the fix where one is known
    (``overrides``: the command line's, for the key and value the user wrote)."""
    from hydra.errors import HydraException, MissingConfigException, OverrideParseException

    while True:
        if isinstance(error, ConfigError):  # ours, raised inside Hydra's composition
            return error
        inner = error.__cause__ or error.__context__  # Hydra re-raises some without "from"
        specific = isinstance(error, (MissingConfigException, OverrideParseException))
        if inner is None or specific or not isinstance(error, HydraException):
            return ConfigError(f"bad config: {_describe(error, overrides)}")
        error = inner


def _describe(error: Exception, overrides: Sequence[str]) -> str:
    from hydra.errors import MissingConfigException, OverrideParseException
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException
    from omegaconf.errors import ValidationError

    if isinstance(error, OverrideParseException):
        return f"cannot parse override {error.override!r}: {one_line(error.message)}"
    if isinstance(error, MissingConfigException):
        what = error.missing_cfg_file or one_line(error)
        options = f"; available: {', '.join(error.options)}" if error.options else ""
        return f"no config {what!r}{options}"
    if isinstance(error, (ConfigAttributeError, ConfigKeyError)) and error.full_key:
        key, _ = written(error.full_key, overrides)  # model.dropot.p, not just model.dropot
        return f"unknown config key {key}{did_you_mean(key)}"
    if isinstance(error, ValidationError) and error.full_key:
        return value_fix(error.full_key, overrides) or f"{error.full_key}: {one_line(error.msg)}"
    if isinstance(error, OmegaConfBaseException) and error.msg is not None:
        key = f"{error.full_key}: " if error.full_key else ""
        return key + one_line(error.msg)
    return one_line(error)


def written(full_key: str, overrides: Sequence[str]) -> Tuple[str, Optional[str]]:
    """The key and value of the override that set ``full_key`` or a key under it, as the
    user wrote them (the last such: it is the one Hydra applied); (full_key, None) when none
    did (a key in a YAML file)."""
    for override in reversed(overrides):
        key, equals, value = override.lstrip("+~").partition("=")
        if equals and (key == full_key or key.startswith(full_key + ".")):
            return key, value
    return full_key, None


def value_fix(full_key: str, overrides: Sequence[str]) -> Optional[str]:
    """How to write a value Hydra refused, where the mistake is a known one: a list without
    brackets, nothing written as None."""
    _, value = written(full_key, overrides)
    if value is None:
        return None
    if value.lower() == "none":
        return f"{full_key}={value}: Hydra writes nothing as null: {full_key}=null"
    if isinstance(schema_keys().get(full_key), list) and not value.startswith("["):
        return f"{full_key} is a list: write {full_key}=[{value}]"
    return None


def compose(overrides: List[str]):
    """The composed DictConfig (no hydra node), validated against the schema and ranges."""
    return compose_run(overrides, with_run_dir=False)[0]


def compose_run(overrides: List[str], with_run_dir: bool = True) -> Tuple[Any, Optional[Path]]:
    """The composed, validated config and the run folder Hydra will make for it, resolved now
    (``${now:...}`` too), from one composition; ConfigError (one line) when it is bad."""
    from hydra import compose as hydra_compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from hydra.errors import HydraException
    from omegaconf import open_dict
    from omegaconf.errors import OmegaConfBaseException

    register_schema()
    run_dir = None
    try:
        with initialize_config_dir(str(config_dir()), version_base="1.3", job_name=PROG):
            cfg = hydra_compose("config", overrides=list(overrides), return_hydra_config=with_run_dir)
            if with_run_dir:
                HydraConfig.instance().set_config(cfg)  # for ${hydra:...} in the folder's name
                run_dir = Path(cfg.hydra.run.dir).resolve()
                with open_dict(cfg):
                    del cfg["hydra"]
        typed_config(cfg)
    except ConfigError:
        raise
    except (HydraException, OmegaConfBaseException, ValueError) as error:
        raise config_error(error, overrides) from None
    return cfg, run_dir


def typed_config(cfg) -> Config:
    """``to_typed`` that turns OmegaConf's wrapping of our ConfigError back into it."""
    from omegaconf.errors import OmegaConfBaseException

    try:
        return to_typed(cfg)
    except OmegaConfBaseException as error:
        raise config_error(error) from None


def run_hydra(task: Callable, argv: List[str]) -> None:
    """Run ``task`` as a Hydra app with command line ``argv`` (overrides and Hydra flags)."""
    import hydra

    register_schema()
    main = hydra.main(config_path=str(config_dir()), config_name="config", version_base="1.3")(task)
    saved = sys.argv
    sys.argv = [PROG, *argv]
    try:
        main()
    finally:
        sys.argv = saved


def saved_overrides(run_dir: Path) -> List[str]:
    """The overrides a run was started with (Hydra's .hydra/overrides.yaml)."""
    if not has_summary(run_dir) or not (Path(run_dir) / OVERRIDES).is_file():
        raise ConfigError(f"--resume {run_dir}: not a dropout-lab run folder "
                          f"(it has no {SUMMARY} and {OVERRIDES})")
    return [o for o in read_overrides(run_dir) if not o.startswith("hydra.run.dir=")]


def hydra_quoted(value) -> str:
    """A path as a quoted Hydra override value (paths may hold ',', '=', spaces)."""
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def prepare_run_dir(overrides: List[str], run_dir: Path, cfg, resume: bool) -> List[str]:
    """Check the run folder before Hydra writes into it; the overrides that pin it.

    A fresh run refuses a folder that holds a run (``--resume`` continues one); a resume is
    checked against the run's checkpoint, so a refused resume leaves the run untouched. An
    unwritable folder or a full disk fail here, as one line, not inside Hydra.
    """
    from dropout_lab.disk import check_writable_dir, exclusive_dir

    with exclusive_dir(run_dir):  # another process training there: refused before Hydra writes
        if resume:
            from dropout_lab.checkpoint import resumable_checkpoint

            resumable_checkpoint(typed_config(cfg), run_dir)
        elif has_summary(run_dir):
            status = read_status(run_dir)
            raise ConfigError(f"{run_dir} already holds a run ({status}); continue it with "
                              f"--resume {run_dir} or choose another hydra.run.dir")
    check_writable_dir(run_dir)
    pinned = [o for o in overrides if not o.startswith("hydra.run.dir=")]
    return [*pinned, f"hydra.run.dir={hydra_quoted(run_dir)}"]


def train_command(overrides: List[str], resume: Optional[Path] = None,
                  announce: Callable[[Path], None] = lambda run_dir: None):
    """``dropout-lab train``: one run; returns the RunResult (raises DropoutLabError).
    ``announce(run_dir)`` is called once the config is valid and the folder ready, before
    torch loads (seconds), when the run shows progress (trainer.progress)."""
    if resume is not None:
        overrides = [*saved_overrides(resume), *overrides,
                     f"hydra.run.dir={hydra_quoted(Path(resume).resolve())}"]
    cfg, run_dir = compose_run(overrides)  # fail fast, one clear line
    overrides = prepare_run_dir(overrides, run_dir, cfg, resume is not None)
    if cfg.trainer.progress:
        announce(run_dir)
    outcome = []

    def task(cfg) -> Optional[float]:
        from hydra.core.hydra_config import HydraConfig

        from dropout_lab.train import train

        run_dir = Path(HydraConfig.get().runtime.output_dir)
        try:
            outcome.append(train(typed_config(cfg), run_dir, resume=resume is not None))
        except DropoutLabError as error:  # Hydra would print a traceback; the CLI prints one line
            outcome.append(error)
            return None
        return outcome[-1].final.get("test_accuracy")  # Hydra ignores a run's return value

    run_hydra(task, overrides)
    if outcome and isinstance(outcome[0], DropoutLabError):
        raise outcome[0]
    return outcome[0]


def print_config(overrides: List[str]) -> str:
    from omegaconf import OmegaConf

    return OmegaConf.to_yaml(compose(overrides))
