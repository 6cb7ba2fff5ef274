"""``dropout-lab sweep``: a Hydra multirun of the one training core, with failure isolation,
resume, a launcher per place to run (here, N local processes, Slurm) and a report at the end.

Hydra's sweeper makes the jobs (the grid of the overrides, a named sweep's
``hydra.sweeper.params``, or Optuna's trials) and its launcher runs them, each job as
``job.sweep_task``. After the launcher returns, the sweep directory is the record: the report
and the list of failed jobs are read back from the jobs' summaries.

    SWEEP_DIR/
      multirun.yaml              Hydra's sweep config
      NUM_KEY=VALUE_.../         one run folder per job (see run_folder.py), named by job_names.py
      job_folders.json           the jobs whose folder has another name (resumed sweeps only)
      report.md, report.csv      the comparison (report.py), *.png plots
      optimization_results.yaml  Optuna's best parameters (searches only)
"""

import logging
import threading
import time
from collections import Counter
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from dropout_lab.disk import check_writable_dir
from dropout_lab.errors import RunError
from dropout_lab.hydra_runner import hydra_quoted, run_hydra
from dropout_lab.run_folder import SUMMARY, RunRecord, Status, read_status, run_folders
from dropout_lab.sweep.job import job_ended, sweep_task
from dropout_lab.sweep.launchers import LAUNCHERS, launcher_overrides, prestart_workers, stop_workers
from dropout_lab.sweep.plan import (SWEEP_ROOT, SweepPlan, check_resumable, new_sweep_dir,
                                    plan_sweep, save_folder_map)
from dropout_lab.sweep.stopped import stopped

log = logging.getLogger(__name__)


@dataclass
class SweepResult:
    sweep_dir: Path
    runs: List[RunRecord]  # report.load_runs records: summary, overrides, swept values
    failed: List[str]  # folder names of the jobs that did not complete
    jobs: List[List[str]]  # the overrides of each job, in job order
    problems: Dict[int, str] = field(default_factory=dict)  # job -> config error, found up front
    sweeper: str = "basic"  # basic (a grid) or optuna (a search)
    nothing_to_run: bool = False  # a resumed sweep whose jobs had all completed
    folders: List[str] = field(default_factory=list)  # each job's folder in the sweep dir (a grid)


class SweepInterrupted(RunError):
    """Ctrl-C or SIGTERM stopped the sweep; the same command with --sweep-dir resumes it."""

    exit_code = 130


def run_sweep(overrides: List[str], *, sweep_dir: Optional[Path] = None, jobs: int = 1,
              launcher: Optional[str] = None, dry_run: bool = False,
              retries: int = 0) -> SweepResult:
    """Run (or with ``dry_run`` only plan) a Hydra multirun of the training core.

    ``sweep_dir`` names the sweep directory: an existing one resumes that sweep (completed jobs
    are skipped; when all are, nothing starts but the report). ``retries``: how many times a
    job whose process died runs again from its checkpoint (local parallel launchers). Raises
    ConfigError before running anything when the sweep cannot start.
    """
    overrides = list(overrides)
    for given in [o for o in overrides if o.startswith("hydra.sweep.dir=")]:
        overrides.remove(given)  # the same as --sweep-dir
        sweep_dir = sweep_dir or Path(given.split("=", 1)[1].strip("'\""))
    resuming = sweep_dir is not None and Path(sweep_dir).is_dir()
    joblib_workers = jobs > 1 and launcher in (None, "joblib")
    if joblib_workers and not (dry_run or resuming):  # warm up while the sweep is planned
        prestart_workers(jobs)
    selected = [f"hydra/launcher={LAUNCHERS[launcher]}"] if launcher in LAUNCHERS else []
    # The sweep dir is part of the plan: a job whose settings have a folder there already, under
    # another name (a resumed sweep with a larger grid), is planned into that folder.
    named_dir = [f"hydra.sweep.dir={hydra_quoted(Path(sweep_dir).resolve())}"] if sweep_dir else []
    plan = plan_sweep([*overrides, *selected, *named_dir])
    extra = launcher_overrides(launcher, jobs, plan, overrides, retries)
    plan.jobs = [[*job, *(o for o in extra if not o.startswith("hydra"))] for job in plan.jobs]
    overrides += [*extra, *plan.hydra_overrides]
    if dry_run:
        return SweepResult(Path(sweep_dir) if sweep_dir else SWEEP_ROOT, [], [], plan.jobs,
                           plan.problems, plan.sweeper, folders=plan.subdirs)
    if resuming:
        check_resumable(Path(sweep_dir), plan)
        save_folder_map(Path(sweep_dir), plan.folder_map)
        if plan.subdirs and all(job_ended(Path(sweep_dir) / subdir, planned_epochs(plan, num))
                                for num, subdir in enumerate(plan.subdirs)):
            result = finish_sweep(Path(sweep_dir), plan, interrupted=False)
            result.nothing_to_run = True
            return result
        if joblib_workers:
            prestart_workers(jobs)
    if sweep_dir:
        check_writable_dir(Path(sweep_dir))
    sweep_dir = Path(sweep_dir) if sweep_dir else new_sweep_dir()
    overrides.append(f"hydra.sweep.dir={hydra_quoted(sweep_dir.resolve())}")
    # Optuna imports alembic, which logs its plugin set-up at INFO under Hydra's logging.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    interrupted = False
    try:
        # Jobs in other processes show no bar of their own: count them here instead.
        with job_progress(sweep_dir, plan, enabled=joblib_workers or launcher in ("local", "slurm")):
            run_hydra(sweep_task, ["--multirun", *overrides])
    except KeyboardInterrupt:  # the workers got the signal too: let them checkpoint and exit
        interrupted = True
    if joblib_workers and not interrupted:
        stop_workers()
    return finish_sweep(sweep_dir, plan, interrupted)


def job_folders(sweep_dir: Path, plan: SweepPlan) -> List[Path]:
    """The sweep's job folders: the grid's, or a search's trials made so far."""
    return ([sweep_dir / subdir for subdir in plan.subdirs] if plan.subdirs
            else list(run_folders(sweep_dir)))


def summary_stamps(folders: List[Path]) -> Dict[Path, tuple]:
    """Which version of its summary.json each folder holds (inode and modification time: every
    write makes a new file, renamed over the old one), for the folders that have one."""
    stamps = {}
    for folder in folders:
        with suppress(OSError):
            stat = (folder / SUMMARY).stat()
            stamps[folder] = (stat.st_ino, stat.st_mtime_ns)
    return stamps


def ended_jobs(sweep_dir: Path, plan: SweepPlan, before: Dict[Path, tuple]) -> Counter:
    """How many of the sweep's jobs have ended in this run of it, by status, from their
    summary.json files; a summary as it was when the sweep started (``before``:
    summary_stamps then) is an earlier run's: a job it says ended has not run again yet."""
    folders = job_folders(sweep_dir, plan)
    now = summary_stamps(folders)
    ended = Counter()
    for folder in folders:
        if folder not in now or now[folder] == before.get(folder):
            continue
        with suppress(RunError):  # unreadable for a moment: counted at the next update
            status = read_status(folder)
            if status is not None and status.ended:
                ended[status.value] += 1
    return ended


def planned_epochs(plan: SweepPlan, num: int) -> int:
    """The epochs job ``num`` is to train (0 for a job whose config was refused)."""
    return plan.configs[num]["trainer"]["epochs"] if num in plan.configs else 0


def already_final(folders: List[Path], plan: SweepPlan) -> int:
    """How many of ``folders`` (job_folders') hold a job that ended for good before this run
    (it is skipped: job_ended)."""
    count = 0
    for num, folder in enumerate(folders):
        with suppress(RunError):
            count += job_ended(folder, planned_epochs(plan, num))
    return count


@contextmanager
def job_progress(sweep_dir: Path, plan: SweepPlan, enabled: bool):
    """The jobs that have ended, read every second from their summaries: the jobs run in other
    processes (joblib workers, Slurm nodes), where only their files say how far they are. A bar
    on a terminal, else a line when a job ends and every QUIET_SECONDS (see progress.py). It
    appears once a job has started, so after Hydra's launch lines rather than among them, and
    counts the time from the launch."""
    if not enabled:
        yield
        return
    from dropout_lab.progress import QUIET_SECONDS, Progress, describe_jobs

    started, stop, shown = time.time(), threading.Event(), []
    folders = job_folders(sweep_dir, plan)
    before = summary_stamps(folders)  # the counts are this run's: earlier runs' endings left out
    total = len(plan.jobs) - already_final(folders, plan) if plan.jobs else None

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
            shown.append(Progress(total, unit="job", desc="sweep", started=started))
        progress, ended = shown[0], ended_jobs(sweep_dir, plan, before)
        count = sum(ended.values())
        changed = count != progress.n
        progress.set_count(count)
        not_completed = {status: n for status, n in ended.items() if status != Status.COMPLETED}
        progress.tell(describe_jobs(count, total, not_completed, time.time() - started),
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
    from dropout_lab.hparams import write_sweep_experiment
    from dropout_lab.report import load_runs, write_report

    if not interrupted:  # every job has ended: one still "running" was killed
        for subdir, job in zip(plan.subdirs, plan.jobs):
            if read_status(sweep_dir / subdir) in (None, Status.RUNNING):
                stopped(sweep_dir / subdir, "its process ended without finishing its run (killed "
                        "or cancelled?)", job, sweep_dir)
    runs = load_runs(sweep_dir)
    if runs:
        write_report(sweep_dir, runs)  # over every run in the folder, earlier sweeps' too
        write_sweep_experiment(sweep_dir)  # the HParams dashboard's columns (hparams.py)
    if plan.subdirs:  # the result is about this sweep's jobs
        runs = [run for run in runs if run.job in set(plan.subdirs)]
    failed = [run.job for run in runs if run.status != Status.COMPLETED]
    if interrupted:
        raise SweepInterrupted(
            f"sweep interrupted; run the same command with --sweep-dir {sweep_dir} to resume it")
    jobs = plan.jobs or [run.overrides for run in runs]
    return SweepResult(Path(sweep_dir), runs, failed, jobs, plan.problems, plan.sweeper)
