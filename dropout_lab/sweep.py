"""``dropout-lab sweep``: a Hydra multirun of the one training core, with failure isolation,
resume, a launcher per place to run (here, N local processes, Slurm) and a report at the end.

Hydra's sweeper makes the jobs (the grid of the overrides, a named sweep's
``hydra.sweeper.params``, or Optuna's trials) and its launcher runs them. Every job runs
``sweep_task``, which never lets an exception reach Hydra: Hydra's launchers stop at the first
failed job and lose the others' results, so a failure is recorded in the job's summary.json
instead and the sweep goes on. After the launcher returns, the sweep directory is the record:
the report and the list of failed jobs are read back from the jobs' summaries.

    SWEEP_DIR/
      multirun.yaml              Hydra's sweep config
      NUM_KEY=VALUE,.../         one run folder per job (see runlog.py), named from its overrides
      report.md, report.csv      the comparison (report.py), *.png plots
      optimization_results.yaml  Optuna's best parameters (searches only)
"""

import copy
import json
import logging
import os
import secrets
import threading
import time
from collections import Counter
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from dropout_lab.app import PROG, config_error, hydra_quoted, objective, run_hydra, typed_config
from dropout_lab.config import config_dir, register_schema
from dropout_lab.errors import ConfigError, DropoutLabError, RunError, one_line
from dropout_lab.disk import check_writable_dir, read_json, write_json
from dropout_lab.run_folder import read_status

log = logging.getLogger(__name__)

# --launcher NAME -> the hydra/launcher config it selects (configs/hydra/launcher/ or a plugin's)
LAUNCHERS = {"basic": "basic", "joblib": "joblib", "local": "submitit_local", "slurm": "slurm"}
SWEEP_ROOT = Path("outputs/sweeps")
MAX_DIRNAME_BYTES = 255  # a file name's limit on Linux, macOS and Windows filesystems


@dataclass
class SweepResult:
    sweep_dir: Path
    runs: List[dict]  # report.load_runs records: summary, overrides, swept values
    failed: List[str]  # folder names of the jobs that did not complete
    jobs: List[List[str]]  # the overrides of each job, in job order
    problems: Dict[int, str] = field(default_factory=dict)  # job -> config error, found up front
    sweeper: str = "basic"  # basic (a grid) or optuna (a search)


class SweepInterrupted(RunError):
    """Ctrl-C or SIGTERM stopped the sweep; the same command with --sweep-dir resumes it."""

    exit_code = 130


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
    other jobs and records it as failed. Composing costs about 0.1 s a job.
    """
    from hydra import initialize_config_dir
    from hydra._internal.config_loader_impl import get_overrides_dirname
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    from hydra.types import RunMode
    from omegaconf import open_dict
    from omegaconf.errors import OmegaConfBaseException

    register_schema()
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
            naming = sweep_cfg.hydra.job.config.override_dirname
            for num, job in enumerate(plan.jobs):
                with open_dict(sweep_cfg.hydra.job):  # what Hydra sets for the job's folder name
                    sweep_cfg.hydra.job.num = num
                    sweep_cfg.hydra.job.override_dirname = get_overrides_dirname(
                        parser.parse_overrides(job), list(naming.exclude_keys),
                        naming.item_sep, naming.kv_sep)
                plan.subdirs.append(checked_dirname(str(sweep_cfg.hydra.sweep.subdir)))
                if validate is None or num < validate:
                    try:
                        plan.configs[num] = config_record(
                            hydra.config_loader.load_sweep_config(sweep_cfg, job))
                    except ConfigError as error:
                        plan.problems[num] = str(error)
    except (HydraException, OmegaConfBaseException) as error:
        raise config_error(error) from None
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
    existing = [path.parent for path in Path(sweep_dir).glob("*/summary.json")]
    if existing and plan.sweeper != "basic":
        raise ConfigError(f"{sweep_dir} already holds runs; a search cannot resume, "
                          f"start it in a new --sweep-dir")
    for num, subdir in enumerate(plan.subdirs):
        summary_path = Path(sweep_dir) / subdir / "summary.json"
        if num not in plan.configs or not summary_path.is_file():
            continue
        saved = read_json(summary_path)
        if saved.get("config") and results_config(saved["config"]) != results_config(plan.configs[num]):
            raise ConfigError(
                f"{summary_path.parent} holds a run of another config than job #{num} "
                f"({' '.join(plan.jobs[num])}); resume with the same overrides or use a new --sweep-dir")


def checked_dirname(name: str) -> str:
    """A job folder name, refused when the filesystem cannot hold it as one folder."""
    if "/" in name or "\0" in name or len(name.encode()) > MAX_DIRNAME_BYTES:
        raise ConfigError(
            f"job folder name {name[:80]!r}... has a '/' or is longer than {MAX_DIRNAME_BYTES} "
            f"bytes; leave the key out of folder names with "
            f"hydra.job.config.override_dirname.exclude_keys=[...] or shorten the values")
    return name


# --- launchers --------------------------------------------------------------------------------

def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def launcher_overrides(launcher: Optional[str], jobs: int, plan: SweepPlan,
                       user_overrides: List[str]) -> List[str]:
    """Hydra overrides that select the launcher and size the jobs for it.

    Parallel jobs get ``cores // parallel`` torch threads each (at least 1), so jobs x threads
    does not exceed the cores, and no progress bars (they would interleave). Slurm jobs keep
    torch's default: it follows the CPUs Slurm binds the job to.
    """
    if jobs < 1:
        raise ConfigError(f"--jobs has to be at least 1, not {jobs}")
    if launcher is None:
        launcher = "joblib" if jobs > 1 else None
    elif launcher not in LAUNCHERS:
        raise ConfigError(f"unknown launcher {launcher!r}; choose one of {', '.join(LAUNCHERS)}")
    extra = [] if launcher is None else [f"hydra/launcher={LAUNCHERS[launcher]}"]
    if launcher == "joblib":
        extra.append(f"hydra.launcher.n_jobs={jobs}")
    if launcher == "slurm" and jobs > 1:
        extra.append(f"hydra.launcher.array_parallelism={jobs}")
    if plan.sweeper == "optuna" and jobs > 1:
        extra.append(f"hydra.sweeper.n_jobs={jobs}")  # trials asked for, and run, at once

    # submitit_local starts every job of a batch at once; joblib runs `jobs` at a time. A
    # search's batch is `jobs` trials; a grid's is all its jobs.
    batch = len(plan.jobs) or jobs
    parallel = {"joblib": min(jobs, batch), "local": batch}.get(launcher, 1)
    given = {o.split("=", 1)[0].lstrip("+~") for o in user_overrides}
    if parallel > 1 and "trainer.num_threads" not in given:
        extra.append(f"trainer.num_threads={max(1, usable_cores() // parallel)}")
    if parallel > 1 and "trainer.progress" not in given:
        extra.append("trainer.progress=false")
    return extra


def prestart_workers(jobs: int) -> threading.Thread:
    """Start joblib's ``jobs`` worker processes now, in the background, and import torch and the
    training code in them (about 3.5 s a process), while this process plans the sweep and starts
    Hydra. Hydra's joblib launcher then asks joblib for an executor with the same arguments
    (its defaults, as below) and joblib hands it these warm workers. If the arguments differ
    (``hydra.launcher.*`` overrides), joblib starts new workers: slower, not wrong."""
    from joblib import Parallel, delayed

    def warm_up() -> None:
        Parallel(n_jobs=jobs, backend="loky", prefer="processes", max_nbytes=None,
                 mmap_mode="r", temp_folder=None)(delayed(import_training)() for _ in range(jobs))

    thread = threading.Thread(target=warm_up, name="prestart-workers", daemon=True)
    thread.start()
    return thread


def stop_workers() -> None:
    """Stop joblib's idle workers now. Left to this interpreter's exit, winding them down (each
    holding torch) takes seconds; killing them takes 0.2 s, and their jobs are all done."""
    from joblib.externals.loky import get_reusable_executor

    get_reusable_executor(reuse=True).shutdown(wait=True, kill_workers=True)


def import_training() -> int:
    """Run in a worker: import what every job needs (torch, the training core, TensorBoard)."""
    import torch
    import torch.utils.tensorboard  # noqa: F401  (RunLog's SummaryWriter)

    import dropout_lab.train  # noqa: F401

    # A process's first torch optimizer imports torch._dynamo (about 1.7 s, 900 modules).
    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    return os.getpid()


# --- the job: what every launcher runs --------------------------------------------------------

def sweep_task(cfg) -> float:
    """Hydra's task for one job: train into the job's folder; return the objective.

    Runs in whatever process the launcher chose. It never raises (except to stop the sweep on
    Ctrl-C): a failure is written into the job's summary.json and the sweep goes on.
    """
    from hydra.core.hydra_config import HydraConfig

    hydra_cfg = HydraConfig.get()
    return train_job(cfg, Path(hydra_cfg.runtime.output_dir), list(hydra_cfg.overrides.task))


def train_job(cfg, run_dir: Path, overrides: List[str]) -> float:
    """Train one job, or skip/resume/rerun it after an earlier attempt into the same folder.

    completed: skipped; interrupted or running (killed): resumed from its checkpoint;
    failed or diverged: started anew.
    """
    try:
        # read without runlog (torch): a resumed sweep skips its completed jobs in a blink
        previous = read_json(run_dir / "summary.json") if (run_dir / "summary.json").is_file() else {}
        status = previous.get("status")
        if status == "completed":
            log.info("%s: completed before, skipped", run_dir.name)
            return objective(previous["final"].get("test_accuracy"))
        if status in ("failed", "diverged"):
            clear_attempt(run_dir)
        from dropout_lab.train import train

        config = typed_config(cfg)
        result = train(config, run_dir, resume=status in ("interrupted", "running"),
                       data=shared_data(config))
    except Exception as error:  # recorded, not swallowed: the summary and the job's log say it
        if isinstance(error, DropoutLabError):  # the user's to fix: one line, as the CLI does
            log.error("%s failed: %s", run_dir.name, one_line(error))
        else:  # a bug: the traceback, in the job's train.log too
            log.exception("%s failed", run_dir.name)
        record_failure(run_dir, overrides, error)
        return objective(None)
    if result.status == "interrupted":
        if os.environ.get("SUBMITIT_EXECUTOR") == "slurm":  # Slurm requeues or cancels the job:
            raise SystemExit(128 + result.signal)  # end it without a result (see slurm.py)
        raise KeyboardInterrupt  # the user stopped the sweep, not just this job
    return objective(result.final.get("test_accuracy") if result.status == "completed" else None)


def clear_attempt(run_dir: Path) -> None:
    """Before a failed job starts anew: drop its old events and checkpoint (not its config)."""
    for path in [*run_dir.glob("events.out.tfevents.*"), run_dir / "checkpoint.pt"]:
        path.unlink(missing_ok=True)


def record_failure(run_dir: Path, overrides: List[str], error: BaseException) -> None:
    """Mark the job failed in its summary.json, keeping what an earlier attempt wrote there."""
    summary_path = run_dir / "summary.json"
    try:
        summary = read_json(summary_path)
    except (OSError, ValueError):
        summary = {"run_dir": str(run_dir)}
    if summary.get("status") != "failed":  # RunLog already recorded failures after it started
        summary.update(status="failed", error=one_line(error))
    summary["overrides"] = overrides
    write_json(summary_path, summary)


_DATA_CACHE: Dict[tuple, object] = {}


def shared_data(config):
    """The dataset for a job, loaded once per worker process: joblib and Optuna run several
    jobs in one process, and re-reading the cache for each would be most of a short job."""
    from dropout_lab.data import load_fashion_mnist
    from dropout_lab.train import resolve_device

    device = resolve_device(config.trainer.device)
    key = (repr(config.data), str(device))
    if key not in _DATA_CACHE:
        _DATA_CACHE.clear()  # one dataset in memory at a time
        _DATA_CACHE[key] = load_fashion_mnist(config.data, device)
    return _DATA_CACHE[key]


# --- the sweep --------------------------------------------------------------------------------

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


def run_sweep(overrides: List[str], *, sweep_dir: Optional[Path] = None, jobs: int = 1,
              launcher: Optional[str] = None, dry_run: bool = False) -> SweepResult:
    """Run (or with ``dry_run`` only plan) a Hydra multirun of the training core.

    ``sweep_dir`` names the sweep directory: an existing one resumes that sweep (completed jobs
    are skipped). Raises ConfigError before running anything when the sweep cannot start.
    """
    overrides, workers = list(overrides), None
    for given in [o for o in overrides if o.startswith("hydra.sweep.dir=")]:
        overrides.remove(given)  # the same as --sweep-dir
        sweep_dir = sweep_dir or Path(given.split("=", 1)[1].strip("'\""))
    joblib_workers = jobs > 1 and launcher in (None, "joblib")
    if not dry_run and joblib_workers:
        workers = prestart_workers(jobs)
    selected = [f"hydra/launcher={LAUNCHERS[launcher]}"] if launcher in LAUNCHERS else []
    plan = plan_sweep([*overrides, *selected], validate=0)  # hydra.launcher.* need it
    overrides += launcher_overrides(launcher, jobs, plan, overrides)
    # A dry run checks every job; a new sweep the first (the rest fail alone, recorded);
    # a resumed one every job, to compare with the runs already there.
    resuming = sweep_dir is not None and Path(sweep_dir).is_dir()
    plan = plan_sweep(overrides, validate=None if dry_run or resuming else 1)
    if dry_run:
        return SweepResult(Path(sweep_dir) if sweep_dir else SWEEP_ROOT, [], [], plan.jobs,
                           plan.problems, plan.sweeper)
    if resuming:
        check_resumable(Path(sweep_dir), plan)
    if sweep_dir:
        check_writable_dir(Path(sweep_dir))
    sweep_dir = Path(sweep_dir) if sweep_dir else new_sweep_dir()
    overrides.append(f"hydra.sweep.dir={hydra_quoted(sweep_dir.resolve())}")
    # Optuna imports alembic, which logs its plugin set-up at INFO under Hydra's logging.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    interrupted = False
    try:
        if workers is not None:
            workers.join()  # one joblib call at a time
        # Jobs in other processes show no bar of their own: count them here instead.
        with job_progress(sweep_dir, plan, enabled=joblib_workers or launcher in ("local", "slurm")):
            run_hydra(sweep_task, ["--multirun", *overrides])
    except KeyboardInterrupt:  # the workers got the signal too: let them checkpoint and exit
        interrupted = True
    if joblib_workers and not interrupted:
        stop_workers()
    return finish_sweep(sweep_dir, plan, interrupted)


def ended_jobs(sweep_dir: Path, plan: SweepPlan) -> Counter:
    """How many of the sweep's jobs have ended, by status, from their summary.json files."""
    run_dirs = ([sweep_dir / subdir for subdir in plan.subdirs] if plan.subdirs
                else [path.parent for path in sweep_dir.glob("*/summary.json")])  # a search: so far
    ended = Counter()
    for run_dir in run_dirs:
        with suppress(RunError, ValueError):  # not there yet, or being replaced
            status = read_status(run_dir)
            if status is not None and status.ended:
                ended[status.value] += 1
    return ended


@contextmanager
def job_progress(sweep_dir: Path, plan: SweepPlan, enabled: bool):
    """The jobs that have ended, read every second from their summaries: the jobs run in other
    processes (joblib workers, Slurm nodes), where only their files say how far they are. A bar
    on a terminal, else a line when a job ends and every QUIET_SECONDS (see progress.py). It
    appears once a job has started, so after Hydra's launch lines rather than among them."""
    if not enabled:
        yield
        return
    from dropout_lab.progress import QUIET_SECONDS, Progress, describe_jobs

    started, stop, shown = time.time(), threading.Event(), []

    def launched() -> bool:
        for config in sweep_dir.glob("*/.hydra/config.yaml"):  # Hydra writes one as a job starts
            with suppress(OSError):
                if config.stat().st_mtime >= started:
                    return True
        return False

    def update(final: bool = False) -> None:
        if not shown:
            if not (final or launched()):  # final: a file server's clock may lag this one's
                return
            shown.append(Progress(len(plan.jobs) or None, unit="job", desc="sweep"))
        progress, ended = shown[0], ended_jobs(sweep_dir, plan)
        count = sum(ended.values())
        changed = count != progress.n
        progress.set_count(count)
        not_completed = {status: n for status, n in ended.items() if status != "completed"}
        progress.tell(describe_jobs(count, len(plan.jobs), not_completed, time.time() - started),
                      every=0.0 if changed else QUIET_SECONDS)

    def watch() -> None:
        while not stop.wait(1.0):
            update()

    watcher = threading.Thread(target=watch, name="sweep-progress", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        stop.set()
        watcher.join()
        update(final=True)
        shown[0].close()


def finish_sweep(sweep_dir: Path, plan: SweepPlan, interrupted: bool) -> SweepResult:
    """Record the jobs that ended without a summary, write the report, list the failures."""
    from dropout_lab.report import load_runs, write_report

    if not interrupted:  # every job has ended: one still "running" was killed
        for subdir, job in zip(plan.subdirs, plan.jobs):
            record_lost_job(sweep_dir / subdir, job)
    runs = load_runs(sweep_dir)
    if runs:
        write_report(sweep_dir, runs)  # over every run in the folder, earlier sweeps' too
    if plan.subdirs:  # the result is about this sweep's jobs
        runs = [run for run in runs if run["job"] in set(plan.subdirs)]
    failed = [run["job"] for run in runs if run["status"] != "completed"]
    if interrupted:
        raise SweepInterrupted(
            f"sweep interrupted; run the same command with --sweep-dir {sweep_dir} to resume it")
    jobs = plan.jobs or [run["overrides"] for run in runs]
    return SweepResult(Path(sweep_dir), runs, failed, jobs, plan.problems, plan.sweeper)


def record_lost_job(run_dir: Path, overrides: List[str]) -> None:
    """A job that ended without closing its run (killed, cancelled, lost) is a failed job."""
    summary_path = run_dir / "summary.json"
    status = read_json(summary_path).get("status") if summary_path.is_file() else None
    if status in (None, "running"):
        record_failure(run_dir, overrides,
                       RunError("the job ended without finishing its run (killed or cancelled?)"))


# --- what the CLI prints ----------------------------------------------------------------------

def describe_sweep(result: SweepResult, dry_run: bool = False) -> str:
    """The jobs (dry run), or the closing lines of a sweep: counts, report, TensorBoard."""
    if dry_run:
        if result.sweeper != "basic":
            return (f"{result.sweeper} search: the sweeper proposes its trials as it runs "
                    f"(hydra.sweeper.n_trials); nothing to list")
        lines = [f"{len(result.jobs)} jobs:"]
        for num, job in enumerate(result.jobs):
            lines.append(f"  #{num}: {' '.join(job)}")
            if num in result.problems:
                lines.append(f"      bad config: {result.problems[num]}")
        return "\n".join(lines)
    done = sum(run["status"] == "completed" for run in result.runs)
    return (f"sweep: {done} of {len(result.runs)} jobs completed\n"
            f"report: {result.sweep_dir / 'report.md'}\n"
            f"view: dropout-lab tensorboard {result.sweep_dir}")


def sweep_problem(result: SweepResult, dry_run: bool = False) -> Optional[str]:
    """The one line for stderr: the bad cells of a dry run, or the jobs that did not complete."""
    if dry_run and result.problems:
        return (f"{len(result.problems)} of {len(result.jobs)} jobs have a bad config: "
                + ", ".join(f"#{num}" for num in result.problems))
    if not dry_run and result.failed:
        named = [f"#{run['num']} {run['status']}" if run["num"] is not None else
                 f"{run['job']} {run['status']}" for run in result.runs if run["job"] in result.failed]
        return (f"{len(result.failed)} of {len(result.runs)} jobs did not complete "
                f"({', '.join(named)}); see {result.sweep_dir / 'report.md'}")
    if not dry_run and not result.runs:
        return "the sweep ran no jobs"
    return None


def sweep_exit_code(result: SweepResult, dry_run: bool = False) -> int:
    """0 when every job completed (or a dry run found no bad config); 2 for bad configs in a
    dry run; 1 when a job failed, diverged or was lost."""
    if dry_run:
        return 2 if result.problems else 0
    return 1 if result.failed or not result.runs else 0
