"""Planning a sweep before anything runs: the jobs Hydra's sweeper will make, their folders
and configs, and whether an existing sweep folder can be resumed with them."""

import copy
import json
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from dropout_lab.disk import check_writable_dir
from dropout_lab.errors import ConfigError
from dropout_lab.hydra_runner import PROG, config_error, typed_config
from dropout_lab.config import config_dir, register_schema
from dropout_lab.hydra_resolvers import register_resolvers
from dropout_lab.run_folder import has_summary, read_summary, run_folders

SWEEP_ROOT = Path("outputs/sweeps")
MAX_DIRNAME_BYTES = 255  # a file name's limit on Linux, macOS and Windows filesystems


@dataclass
class SweepPlan:
    sweeper: str
    jobs: List[List[str]]  # empty for a search: the sweeper proposes the jobs as it goes
    subdirs: List[str]
    problems: Dict[int, str]
    configs: Dict[int, dict] = field(default_factory=dict)  # job -> its config, as summaries hold it


# --- planning: the jobs, before anything runs -----------------------------------------------

def plan_sweep(overrides: List[str], validate: Optional[int] = None) -> SweepPlan:
    """The jobs Hydra's sweeper will make from ``overrides``, their folders, and their configs.

    The jobs are split as Hydra's BasicSweeper splits them. The first ``validate`` jobs (all
    when None) are composed as Hydra composes them: a composition error (unknown key, bad
    syntax, missing config) would make Hydra refuse the whole sweep, so it raises ConfigError;
    a range error is a problem of that job alone: a dry run names it, a real sweep runs the
    other jobs and records it as failed. Composing costs time for every job,
    hence ``validate``.
    """
    from hydra import initialize_config_dir
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    from hydra.types import RunMode
    from omegaconf import open_dict
    from omegaconf.errors import OmegaConfBaseException

    register_schema()
    register_resolvers()
    try:
        with initialize_config_dir(str(config_dir()), version_base="1.3", job_name=PROG):
            hydra = GlobalHydra.instance().hydra
            sweep_cfg = hydra.compose_config("config", list(overrides), run_mode=RunMode.MULTIRUN,
                                             with_log_configuration=False)
            if not sweep_cfg.hydra.sweeper._target_.endswith(".BasicSweeper"):
                return SweepPlan("optuna" if "optuna" in sweep_cfg.hydra.sweeper._target_
                                 else sweep_cfg.hydra.sweeper._target_, [], [], {})
            plan = SweepPlan("basic", [], [], {})
            # What BasicSweeper.sweep does: its params first, then the command line.
            params = [f"{k}={v}" for k, v in (sweep_cfg.hydra.sweeper.params or {}).items()]
            parser = OverridesParser.create(config_loader=hydra.config_loader)
            arguments = parser.parse_overrides([*params, *sweep_cfg.hydra.overrides.task])
            (plan.jobs,) = BasicSweeper.split_arguments(arguments, None)
            for num, job in enumerate(plan.jobs):
                with open_dict(sweep_cfg.hydra):  # what Hydra sets for the job's folder name
                    sweep_cfg.hydra.job.num = num
                    sweep_cfg.hydra.overrides.task = list(job)
                # hydra.sweep.subdir: the job_names resolver, as Hydra resolves it for the job
                plan.subdirs.append(checked_dirname(str(sweep_cfg.hydra.sweep.subdir)))
                if validate is None or num < validate:
                    try:
                        plan.configs[num] = config_record(
                            hydra.config_loader.load_sweep_config(sweep_cfg, job))
                    except ConfigError as error:
                        plan.problems[num] = str(error)
    except (HydraException, OmegaConfBaseException) as error:
        raise config_error(error, overrides) from None  # the key as the user wrote it
    return plan


def config_record(job_cfg) -> dict:
    """A composed job's config, range-checked (raises ConfigError) and as summary.json holds it."""
    from omegaconf import OmegaConf, open_dict

    task_cfg = copy.deepcopy(job_cfg)
    with open_dict(task_cfg):
        del task_cfg["hydra"]
    config = OmegaConf.to_container(OmegaConf.structured(typed_config(task_cfg)), resolve=True)
    return json.loads(json.dumps(config, default=str))


def results_config(config: dict) -> dict:
    """A config without the keys that do not change the numbers (threads, progress bar)."""
    trainer = {k: v for k, v in config.get("trainer", {}).items()
               if k not in ("num_threads", "progress")}
    return {**config, "trainer": trainer}


def check_resumable(sweep_dir: Path, plan: SweepPlan) -> None:
    """Refuse to resume into ``sweep_dir`` when it holds other runs under the jobs' names.

    A completed job is skipped on resume, so its folder must hold the same config; and a
    search cannot resume (Optuna's study lives in memory), so it needs a new directory.
    """
    existing = list(run_folders(sweep_dir))
    if existing and plan.sweeper != "basic":
        raise ConfigError(f"{sweep_dir} already holds runs; a search cannot resume, "
                          f"start it in a new --sweep-dir")
    for num, subdir in enumerate(plan.subdirs):
        run_dir = Path(sweep_dir) / subdir
        if num not in plan.configs or not has_summary(run_dir):
            continue
        saved = read_summary(run_dir)
        if saved.get("config") and results_config(saved["config"]) != results_config(plan.configs[num]):
            raise ConfigError(
                f"{run_dir} holds a run of another config than job #{num} "
                f"({' '.join(plan.jobs[num])}); resume with the same overrides or use a new --sweep-dir")


def checked_dirname(name: str) -> str:
    """A job folder name, refused when the filesystem cannot hold it as one folder."""
    if "/" in name or "\0" in name or len(name.encode()) > MAX_DIRNAME_BYTES:
        raise ConfigError(
            f"job folder name {name[:80]!r}... has a '/' or is longer than {MAX_DIRNAME_BYTES} "
            f"bytes; leave the key out of folder names with "
            f"hydra.job.config.override_dirname.exclude_keys=[...] or shorten the values")
    return name



def new_sweep_dir(root: Path = SWEEP_ROOT) -> Path:
    """outputs/sweeps/DATE/TIME_RANDOM, created here: two sweeps never share one."""
    day = root / time.strftime("%Y-%m-%d")
    check_writable_dir(day)  # one clear line for a read-only or full filesystem
    while True:
        path = day / f"{time.strftime('%H-%M-%S')}_{secrets.token_hex(3)}"
        try:
            path.mkdir()  # atomic: of two sweeps drawing the same name, one gets it
            return path
        except FileExistsError:
            continue
