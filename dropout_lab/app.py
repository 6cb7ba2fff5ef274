"""Hydra entry points: compose and validate configs, and run the training task under Hydra.

``train`` and ``sweep`` hand Hydra the same task function; Hydra makes the run (or sweep)
folders, saves ``.hydra/`` and launches the jobs. The task calls the one training core.
"""

import math
import sys
from pathlib import Path
from typing import Callable, List, Optional

from dropout_lab.config import Config, config_dir, register_schema, to_typed
from dropout_lab.errors import ConfigError, DropoutLabError, RunError, one_line

PROG = "dropout-lab"


def config_error(error: Exception) -> ConfigError:
    """A Hydra/OmegaConf composition error (and its cause) as one ConfigError line."""
    parts = [f"cannot parse override {error.override!r}"] if hasattr(error, "override") else []
    while error is not None:
        text = str(error).split("Config search path:")[0]
        lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
        lines = [line for line in lines if not line.startswith(
            ("full_key:", "object_type", "reference_type", "See https://hydra.cc"))]
        for i, line in enumerate(lines):
            if line.startswith("Available options"):  # the choices follow, one per line
                lines = [*lines[:i], f"{line} {', '.join(lines[i + 1:])}"]
                break
        parts.append("; ".join(line.rstrip(".:") for line in lines))
        error = error.__cause__
    message = ": ".join(part for part in parts if part)
    return ConfigError(f"bad config: {message or 'invalid override'}")


def compose(overrides: List[str]):
    """The composed DictConfig (no hydra node), validated against the schema and ranges."""
    from hydra import compose as hydra_compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    register_schema()
    try:
        with initialize_config_dir(str(config_dir()), version_base="1.3", job_name=PROG):
            cfg = hydra_compose("config", overrides=list(overrides))
        to_typed(cfg)
    except ConfigError:
        raise
    except (HydraException, OmegaConfBaseException, ValueError) as error:
        if isinstance(error.__cause__, ConfigError):
            raise error.__cause__ from None
        raise config_error(error) from None
    return cfg


def typed_config(cfg) -> Config:
    """``to_typed`` that turns OmegaConf's wrapping of our ConfigError back into it."""
    from omegaconf.errors import OmegaConfBaseException

    try:
        return to_typed(cfg)
    except OmegaConfBaseException as error:
        if isinstance(error.__cause__, ConfigError):
            raise error.__cause__ from None
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
    import yaml
    from omegaconf import OmegaConf

    path = Path(run_dir) / ".hydra" / "overrides.yaml"
    if not (Path(run_dir) / "summary.json").is_file() or not path.is_file():
        raise ConfigError(f"--resume {run_dir}: not a dropout-lab run folder "
                          f"(it has no summary.json and .hydra/overrides.yaml)")
    try:
        saved = list(OmegaConf.load(path))
    except (yaml.YAMLError, OSError, ValueError, TypeError) as error:
        raise RunError(f"cannot read {path} ({type(error).__name__}); repair it (the run's "
                       f"whole config is in its summary.json)") from None
    return [str(o) for o in saved if not str(o).startswith("hydra.run.dir=")]


def hydra_quoted(value) -> str:
    """A path as a quoted Hydra override value (paths may hold ',', '=', spaces)."""
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def planned_run_dir(overrides: List[str]) -> Path:
    """The run folder Hydra will make for ``overrides``, resolved now (``${now:...}`` too)."""
    from hydra import compose as hydra_compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    register_schema()
    try:
        with initialize_config_dir(str(config_dir()), version_base="1.3", job_name=PROG):
            cfg = hydra_compose("config", overrides=list(overrides), return_hydra_config=True)
            HydraConfig.instance().set_config(cfg)  # for ${hydra:...} in the folder's name
            return Path(cfg.hydra.run.dir).resolve()
    except (HydraException, OmegaConfBaseException) as error:
        raise config_error(error) from None


def prepare_run_dir(overrides: List[str], cfg, resume: bool) -> List[str]:
    """Check the run folder before Hydra writes into it; the overrides that pin it.

    A fresh run refuses a folder that holds a run (``--resume`` continues one); a resume is
    checked against the run's checkpoint, so a refused resume leaves the run untouched. An
    unwritable folder or a full disk fail here, as one line, not inside Hydra.
    """
    from dropout_lab.disk import check_writable_dir, exclusive_dir
    from dropout_lab.runlog import SUMMARY, read_summary

    run_dir = planned_run_dir(overrides)
    with exclusive_dir(run_dir):  # another process training there: refused before Hydra writes
        if resume:
            from dropout_lab.train import resumable_checkpoint

            resumable_checkpoint(typed_config(cfg), run_dir)
        elif (run_dir / SUMMARY).is_file():
            status = read_summary(run_dir)["status"]
            raise ConfigError(f"{run_dir} already holds a run ({status}); continue it with "
                              f"--resume {run_dir} or choose another hydra.run.dir")
    check_writable_dir(run_dir)
    pinned = [o for o in overrides if not o.startswith("hydra.run.dir=")]
    return [*pinned, f"hydra.run.dir={hydra_quoted(run_dir)}"]


def task_overrides(overrides: List[str]) -> List[str]:
    return [o for o in overrides if not o.startswith("hydra.")]


def train_command(overrides: List[str], resume: Optional[Path] = None):
    """``dropout-lab train``: one run; returns the RunResult (raises DropoutLabError)."""
    if resume is not None:
        overrides = [*saved_overrides(resume), *overrides,
                     f"hydra.run.dir={hydra_quoted(Path(resume).resolve())}"]
    cfg = compose(task_overrides(overrides))  # fail fast, one clear line
    overrides = prepare_run_dir(overrides, cfg, resume is not None)
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
        return outcome[-1].final.get("test_accuracy")

    run_hydra(task, overrides)
    if outcome and isinstance(outcome[0], DropoutLabError):
        raise outcome[0]
    return outcome[0]


def print_config(overrides: List[str]) -> str:
    from omegaconf import OmegaConf

    return OmegaConf.to_yaml(compose(overrides))


def objective(test_accuracy: Optional[float]) -> float:
    """What a sweep job returns to Hydra's sweeper: test accuracy, or -inf when it failed."""
    return test_accuracy if test_accuracy is not None and math.isfinite(test_accuracy) else -math.inf


__all__ = ["compose", "print_config", "train_command", "run_hydra", "typed_config", "one_line"]


def describe_result(result) -> str:
    """The closing line of a run: status, final metrics, where it is, how to look at it."""
    final = result.final
    metrics = (f"train loss {final['train_loss']:.4f}, train acc {final['train_accuracy']:.4f}, "
               f"test acc {final['test_accuracy']:.4f}" if final else "no epoch finished")
    epochs = len(result.history)
    line = f"{result.status}: {metrics} after {epochs} epoch{'' if epochs == 1 else 's'}"
    if result.error:
        line += f" ({result.error})"
    return f"{line}\nrun: {result.run_dir}\nview: tensorboard --logdir {result.run_dir}"


def exit_code(result) -> int:
    """0 for a completed run, 128 + signal for an interrupted one, 1 otherwise."""
    if result.status == "completed":
        return 0
    if result.status == "interrupted" and result.signal:
        return 128 + result.signal
    return 1
