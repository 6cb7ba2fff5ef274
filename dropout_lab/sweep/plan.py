"""Planning a sweep before anything runs: the jobs Hydra's sweeper will make, their folders
and configs, and whether an existing sweep folder can be resumed with them.

Planning costs milliseconds per job (``JobConfigs``): the sweep is composed once per choice of
config groups, and each job's config is that composition with the job's values set in it, each
distinct ``key=value`` checked through the schema once. A job this cannot reproduce exactly
(``+``/``~`` overrides, two overrides on one node, interpolations) is composed by Hydra itself.
"""

import copy
import hashlib
import dataclasses
import json
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from dropout_lab.config import (Config, config_dir, flatten_config, register_schema,
                                with_schema_defaults)
from dropout_lab.disk import check_writable_dir
from dropout_lab.errors import ConfigError
from dropout_lab.hydra_resolvers import register_resolvers
from dropout_lab.hydra_runner import PROG, config_error, hydra_quoted, typed_config
from dropout_lab.job_names import (FOLDER_MAP, NUM_WIDTH, job_folder, number_width, override_items,
                                   override_key, plan_folders, settings_identity)
from dropout_lab.keys import CANNOT_CHANGE_RESULTS, resumable_names, resume_changes
from dropout_lab.run_folder import (OVERRIDES, has_summary, read_overrides, read_summary,
                                    run_folders)

SWEEP_ROOT = Path("outputs/sweeps")
RESUMABLE = {*CANNOT_CHANGE_RESULTS, *resumable_names()}  # keys a job folder's run may resume with
MAX_DIRNAME_BYTES = 255  # a file name's limit on Linux, macOS and Windows filesystems
EXCLUDE_KEYS = "hydra.job.config.override_dirname.exclude_keys"  # keys left out of folder names
# configs/config.yaml's hydra.sweep.subdir: job_names.job_folder, as a resolver
JOB_FOLDER_SUBDIR = ("${dropout_lab.job_folder:${hydra.job.num},${hydra.overrides.task},"
                     "${hydra.job.config.override_dirname.exclude_keys},${hydra.sweep.dir}}")


@dataclass
class SweepPlan:
    sweeper: str
    jobs: List[List[str]]  # empty for a search: the sweeper proposes the jobs as it goes
    subdirs: List[str]
    problems: Dict[int, str]
    configs: Dict[int, dict] = field(default_factory=dict)  # job -> its config, as summaries hold it
    # What Hydra needs to name the folders as planned (the constant keys left out of the names).
    hydra_overrides: List[str] = field(default_factory=list)
    folder_map: Dict[str, str] = field(default_factory=dict)  # job_names.FOLDER_MAP's content


# --- planning: the jobs, before anything runs -----------------------------------------------

def plan_sweep(overrides: List[str]) -> SweepPlan:
    """The jobs Hydra's sweeper will make from ``overrides``, their folders, and their configs.

    The jobs are split as Hydra's BasicSweeper splits them, and every job's config is checked:
    a composition error (unknown key, bad syntax or type, missing config) would make Hydra
    refuse the whole sweep, so it raises ConfigError; a range error is a problem of that job
    alone: a dry run names it, a real sweep runs the other jobs and records it as failed.
    """
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    from hydra.types import RunMode
    from omegaconf.errors import OmegaConfBaseException

    register_schema()
    register_resolvers()
    try:
        with initialize_config_dir(str(config_dir()), version_base="1.3", job_name=PROG):
            loader = GlobalHydra.instance().hydra.config_loader
            sweep_cfg = GlobalHydra.instance().hydra.compose_config(
                "config", list(overrides), run_mode=RunMode.MULTIRUN, with_log_configuration=False)
            check_time_limit(sweep_cfg.hydra.launcher)
            parser = OverridesParser.create(config_loader=loader)
            # What BasicSweeper.sweep does: its params first, then the command line.
            params = [f"{k}={v}" for k, v in (sweep_cfg.hydra.sweeper.params or {}).items()]
            arguments = parser.parse_overrides([*params, *sweep_cfg.hydra.overrides.task])
            sweeper = sweep_cfg.hydra.sweeper._target_
            if not sweeper.endswith(".BasicSweeper"):  # a search: its constants are the fixed
                fixed = [a.key_or_group for a in arguments if not a.is_sweep_override()]
                return SweepPlan("optuna" if "optuna" in sweeper else sweeper, [], [], {},
                                 hydra_overrides=[naming_override(sweep_cfg, fixed)])
            return plan_grid(JobConfigs(loader, sweep_cfg, parser), arguments)
    except (HydraException, OmegaConfBaseException) as error:
        raise config_error(error, overrides) from None  # the key as the user wrote it


# sbatch --signal: "the signal may be sent up to 60 seconds earlier than specified"
SLURM_SIGNAL_EARLY_S = 60
SIGNAL_AFTER_START_S = 30  # the least time a job gets before it: to start and install its handler


def check_time_limit(launcher) -> None:
    """Refuse a Slurm time limit so short that the signal before it (``signal_delay_s``) could
    come as the job starts: Slurm sends it up to a minute early, a job killed by it before
    submitit handles it ends FAILED with nothing checkpointed, and each rerun would again."""
    if "signal_delay_s" not in launcher:  # not a Slurm launcher
        return
    timeout_s, delay_s = launcher.timeout_min * 60, launcher.signal_delay_s
    if timeout_s - delay_s - SLURM_SIGNAL_EARLY_S < SIGNAL_AFTER_START_S:
        least = SIGNAL_AFTER_START_S + SLURM_SIGNAL_EARLY_S
        raise ConfigError(
            f"hydra.launcher.timeout_min={launcher.timeout_min} with hydra.launcher.signal_delay_s="
            f"{delay_s} signals the job to checkpoint {timeout_s - delay_s} s after it starts, and "
            f"Slurm may send that signal up to {SLURM_SIGNAL_EARLY_S} s earlier, before the job can "
            f"checkpoint; leave at least {least} s between them: raise timeout_min or lower "
            f"signal_delay_s")


def plan_grid(configs: "JobConfigs", arguments) -> SweepPlan:
    """The plan of a grid (Hydra's BasicSweeper) from its parsed sweep ``arguments``."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from omegaconf import OmegaConf

    sweep_cfg = configs.sweep_cfg
    (jobs,) = BasicSweeper.split_arguments(arguments, None)
    plan = SweepPlan("basic", jobs, [], {},
                     hydra_overrides=[naming_override(sweep_cfg, constant_keys(jobs))])
    exclude = list(sweep_cfg.hydra.job.config.override_dirname.exclude_keys)
    sweep_dir = Path(str(sweep_cfg.hydra.sweep.dir))
    width = number_width(len(jobs))
    ours = OmegaConf.to_container(sweep_cfg.hydra.sweep)["subdir"] == JOB_FOLDER_SUBDIR
    if ours and width > NUM_WIDTH:  # 1,000 jobs or more: numbers that still sort as text
        plan.hydra_overrides.append(
            f"hydra.sweep.subdir={hydra_quoted(JOB_FOLDER_SUBDIR[:-1] + f',{width}}}')}")
    plan.folder_map = earlier_folders(
        sweep_dir, [job_folder(num, job, exclude, width=width) for num, job in enumerate(jobs)],
        jobs)
    plan_folders(str(sweep_dir), plan.folder_map)  # for the resolver in this process
    for num, job in enumerate(jobs):
        # What resolving hydra.sweep.subdir gives, without OmegaConf's parser for each job
        subdir = (job_folder(num, job, exclude, str(sweep_dir), width) if ours
                  else resolved_subdir(sweep_cfg, num, job))
        plan.subdirs.append(checked_dirname(subdir))
        try:
            plan.configs[num] = configs.record(job)
        except ConfigError as error:
            plan.problems[num] = str(error)
    return plan


def resolved_subdir(sweep_cfg, num: int, job: List[str]) -> str:
    """A hydra.sweep.subdir given on the command line, resolved as Hydra resolves it for job
    ``num``."""
    from omegaconf import open_dict

    with open_dict(sweep_cfg.hydra):
        sweep_cfg.hydra.job.num = num
        sweep_cfg.hydra.overrides.task = list(job)
    return str(sweep_cfg.hydra.sweep.subdir)


def constant_keys(jobs: Sequence[Sequence[str]]) -> List[str]:
    """The override keys with one value in every job: left out of the folder names (a sweep of
    one job keeps them all, to have a name)."""
    if len(jobs) < 2:
        return []
    values: Dict[str, set] = {}
    for job in jobs:  # every job has the same keys: the grid's
        for override in job:
            values.setdefault(override_key(override), set()).add(override.partition("=")[2])
    return [key for key, seen in values.items() if len(seen) == 1]


def naming_override(sweep_cfg, constant: Sequence[str]) -> str:
    """The exclude_keys override that leaves the ``constant`` keys out of the folder names
    too; set in ``sweep_cfg`` as well, where the planner resolves the names."""
    from omegaconf import open_dict

    naming = sweep_cfg.hydra.job.config.override_dirname
    keys = list(dict.fromkeys([*naming.exclude_keys, *constant]))
    with open_dict(sweep_cfg.hydra):
        naming.exclude_keys = keys
    return f"{EXCLUDE_KEYS}=[{','.join(hydra_quoted(key) for key in keys)}]"


class JobConfigs:
    """Job configs without a Hydra composition per job.

    A job's config is Hydra's composition of its config-group choices (``optim=adam``,
    ``experiment=...``; made once per distinct choice) with its other overrides applied in
    order. Overrides on distinct nodes do not interact, so each one's value is taken once per
    distinct ``key=value`` from applying it alone, as Hydra applies it (through the schema:
    types, unknown keys), and set into a plain copy of the composition; the ranges are then
    checked by building the typed Config. Anything else is left to Hydra (``full_record``).
    """

    def __init__(self, loader, sweep_cfg, parser):
        self.loader, self.sweep_cfg, self.parser = loader, sweep_cfg, parser
        self.parsed: Dict[str, Any] = {}  # override -> Hydra's Override
        self.groups: Dict[str, bool] = {}  # override -> whether it chooses a config group
        self.bases: Dict[tuple, Any] = {}  # group choices -> (app DictConfig, its JSON) or None
        self.values: Dict[tuple, Any] = {}  # (group choices, override) -> the value it sets
        self.scratch: Dict[tuple, Any] = {}  # (group choices, key) -> a copy to apply them to

    def record(self, job: List[str]) -> dict:
        """The job's config as summary.json holds it; ConfigError for a range error."""
        from hydra.errors import HydraException
        from omegaconf.errors import OmegaConfBaseException

        parsed = {override: self.parse(override) for override in job}
        groups = tuple(o for o in job if self.groups[o])
        values = [parsed[o] for o in job if not self.groups[o]]
        base = self.base(groups)
        if base is not None and independent(values):
            try:
                config = json.loads(base[1])  # a fresh copy
                for override in values:
                    set_path(config, override.key_or_group.split("."), self.value(groups, override))
                return checked_record(config)
            except (HydraException, OmegaConfBaseException):
                pass  # Hydra's own composition tells what is wrong, in its words
        return full_record(self.loader.load_sweep_config(self.sweep_cfg, list(job)))

    def parse(self, override: str):
        """Hydra's Override for ``override`` (parsed once per distinct string)."""
        if override not in self.parsed:
            (parsed,) = self.parser.parse_overrides([override])
            self.parsed[override] = parsed
            # As Hydra's defaults list tells a config-group choice from a config value:
            self.groups[override] = (not isinstance(parsed.value(), dict) and
                                     self.loader.repository.group_exists(parsed.key_or_group))
        return self.parsed[override]

    def base(self, groups: tuple):
        """The composition for these group choices, without its hydra node, and as JSON; None
        when it holds interpolations (a value set later could change what they resolve to)."""
        from omegaconf import OmegaConf, open_dict

        if groups not in self.bases:
            cfg = self.loader.load_sweep_config(self.sweep_cfg, list(groups))
            with open_dict(cfg):
                del cfg["hydra"]
            plain = OmegaConf.to_container(cfg, resolve=True)
            self.bases[groups] = ((cfg, json.dumps(plain)) if plain == OmegaConf.to_container(cfg)
                                  else None)
        return self.bases[groups]

    def value(self, groups: tuple, override):
        """What ``override`` sets at its key, applied alone to the composition as Hydra applies
        it (raises Hydra's error for a bad key, type or syntax). The overrides of one key are
        applied to one copy of the composition, as each replaces what the one before set; a
        dict value is merged into the node, so it gets a fresh copy."""
        from hydra._internal.config_loader_impl import ConfigLoaderImpl
        from omegaconf import OmegaConf

        key = (groups, override.input_line)
        if key not in self.values:
            fresh = isinstance(override.value(), dict)
            scratch_key = (groups, override.key_or_group)
            cfg = None if fresh else self.scratch.pop(scratch_key, None)
            if cfg is None:
                cfg = copy.deepcopy(self.bases[groups][0])
            ConfigLoaderImpl._apply_overrides_to_config([override], cfg)  # raises: cfg dropped
            node = OmegaConf.select(cfg, override.key_or_group)
            self.values[key] = (OmegaConf.to_container(node, resolve=True)
                                if OmegaConf.is_config(node) else node)
            if not fresh:
                self.scratch[scratch_key] = cfg
        return copy.deepcopy(self.values[key])


def independent(overrides) -> bool:
    """Whether the overrides are plain ``key=value`` changes of distinct nodes, none inside
    another (``p=[..]`` with ``p.0=..``), so that their order cannot matter."""
    from hydra.core.override_parser.types import OverrideType

    paths = []
    for override in overrides:
        if override.type != OverrideType.CHANGE or override.package is not None:
            return False
        paths.append(override.key_or_group.split("."))
    return not any(a[:len(b)] == b for i, a in enumerate(paths) for j, b in enumerate(paths)
                   if i != j)


def set_path(tree, path: List[str], value) -> None:
    """``tree[path[0]][path[1]]... = value`` through dicts and lists (``p.0``: index 0)."""
    for part in path[:-1]:
        tree = tree[int(part)] if isinstance(tree, list) else tree[part]
    if isinstance(tree, list):
        tree[int(path[-1])] = value
    else:
        tree[path[-1]] = value


def typed_from_dict(cls, values: dict):
    """The dataclass ``cls`` built from a plain dict of checked values (nested dataclasses
    too), running every ``__post_init__``: the range checks, without OmegaConf."""
    kwargs = {}
    for item in dataclasses.fields(cls):
        value = values[item.name]
        kwargs[item.name] = (typed_from_dict(item.type, value) if dataclasses.is_dataclass(item.type)
                             else value)
    return cls(**kwargs)


def checked_record(config: dict) -> dict:
    """A plain composed config, range-checked (raises ConfigError), as summary.json holds it."""
    typed_from_dict(Config, config)
    return config


def full_record(job_cfg) -> dict:
    """A composed job's config, range-checked (raises ConfigError) and as summary.json holds it."""
    from omegaconf import OmegaConf, open_dict

    task_cfg = copy.deepcopy(job_cfg)
    with open_dict(task_cfg):
        del task_cfg["hydra"]
    config = OmegaConf.to_container(OmegaConf.structured(typed_config(task_cfg)), resolve=True)
    return json.loads(json.dumps(config, default=str))


# --- resuming: the folders already there --------------------------------------------------------

def earlier_folders(sweep_dir: Path, names: List[str], jobs: List[List[str]]) -> Dict[str, str]:
    """Settings identity -> folder, for the jobs of ``sweep_dir`` whose folder is not their
    plain name: a folder already holding their settings (an older version's name, another
    number in a larger grid, other swept keys), or, when their name is taken by other settings
    (another sweep into the same folder), the name with a suffix of their own. Saved as
    FOLDER_MAP for the processes that start the jobs; a new sweep dir needs none."""

    if not sweep_dir.is_dir():
        return {}
    folders = {folder.name: read_overrides(folder)
               for folder in sorted(sweep_dir.iterdir()) if (folder / OVERRIDES).is_file()}
    held = {name: settings_identity(overrides) for name, overrides in folders.items()}
    found = {identity: name for name, identity in held.items()}
    mapping = {}
    for name, job in zip(names, jobs):
        identity = settings_identity(job)
        if found.get(identity, name) != name:
            mapping[identity] = found[identity]
        elif identity not in found and held.get(name, identity) != identity and not (
                resumes(folders[name], job)):
            mapping[identity] = f"{name}_{hashlib.sha1(identity.encode()).hexdigest()[:6]}"
    return mapping


def resumes(earlier: Sequence[str], job: Sequence[str]) -> bool:
    """Whether ``job``'s overrides continue the run of ``earlier`` ones in the folder of its
    name: they differ only in keys a resume may change (keys.py; check_resumable refuses what
    the run's own config does not allow, as `train --resume` does), and ask for no fewer
    epochs (fewer would leave a longer run standing as the job's result)."""
    return (settings_identity(earlier, RESUMABLE) == settings_identity(job, RESUMABLE)
            and override_epochs(job) >= override_epochs(earlier))


def override_epochs(overrides: Sequence[str]) -> int:
    """The trainer.epochs ``overrides`` set (the schema's default when they set none)."""
    epochs = dict(override_items(overrides)).get("trainer.epochs")
    return int(epochs) if epochs and epochs.isdigit() else Config().trainer.epochs


def earlier_sweep(overrides: Sequence[str], root: Path = SWEEP_ROOT,
                  pattern: str = "*/*/multirun.yaml") -> Optional[Path]:
    """The newest grid sweep under ``root`` (its multirun.yaml at ``pattern``: DATE/TIME_ID/)
    started with the same overrides (Hydra's multirun.yaml holds them; the threads and the
    progress bar do not count), or None: a sweep started again without --sweep-dir trains
    everything again in a new folder. (A search cannot be continued: it is not one.)"""
    import yaml

    if any(override_key(o) == "hydra.sweep.dir" for o in overrides):
        return None  # it names its folder
    wanted = settings_identity(overrides)
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's: 100 sweeps in ~0.1 s
    for path in sorted(Path(root).glob(pattern), reverse=True):  # newest first
        try:
            with open(path) as file:
                saved = yaml.load(file, Loader=loader)["hydra"]
            task, sweeper = saved["overrides"]["task"], saved.get("sweeper", {}).get("_target_")
        except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError):
            continue  # not Hydra's, or half-written: not a sweep to continue
        if settings_identity(map(str, task)) == wanted and str(sweeper).endswith("BasicSweeper"):
            return path.parent
    return None


def save_folder_map(sweep_dir: Path, mapping: Dict[str, str]) -> None:
    """Write (or clear) ``sweep_dir``'s FOLDER_MAP, atomically: jobs read it as they start."""
    path = Path(sweep_dir) / FOLDER_MAP
    if not mapping:
        path.unlink(missing_ok=True)
        return
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(mapping, indent=1, sort_keys=True))
    partial.replace(path)


def check_resumable(sweep_dir: Path, plan: SweepPlan) -> None:
    """Refuse to resume into ``sweep_dir`` when it holds other runs under the jobs' names.

    Its folders must hold runs that the jobs' configs may resume (keys.resume_changes, the
    rule of `train --resume`: a job may move to another device, or train longer); and a
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
        saved_config = saved.get("config") and with_schema_defaults(saved["config"])
        if saved_config and resume_changes(flatten_config(saved_config),
                                           flatten_config(plan.configs[num])):
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
