"""One sweep job, as every launcher runs it: train into the job's folder, or skip, resume or
rerun it after an earlier attempt; never let an exception reach Hydra (its launchers stop at the
first failed job and lose the others' results): a failure is recorded in the job's summary.json
and the sweep goes on."""

import logging
import math
from pathlib import Path
from typing import Dict, List, Optional

from dropout_lab.errors import DropoutLabError, one_line
from dropout_lab.hydra_runner import typed_config
from dropout_lab.run_folder import (EVENTS_GLOB, Status, read_status, read_summary, record_failure,
                                    rerun_resumes, tuned_metric)
from dropout_lab.sweep.stopped import stop_cause, stopped

log = logging.getLogger(__name__)


def objective(steady: Optional[dict]) -> float:
    """What a job returns to Hydra's sweeper (Optuna maximises it), from the run's steady
    metrics (summary.json's ``steady``): run_folder.tuned_metric, the steady validation
    accuracy (or the steady test accuracy without a validation split); -inf for a job without
    a result (failed, diverged)."""
    value = tuned_metric(steady)
    return value if value is not None and math.isfinite(value) else -math.inf


def run_objective(run_dir: Path, completed: bool = True) -> float:
    """The objective of the job in ``run_dir``: from its summary.json when it completed, else
    -inf (every launcher's way to it, a job's own result or one read back after it was lost)."""
    return objective(read_summary(run_dir).get("steady") if completed else None)


def sweep_task(cfg, on_slurm: bool = False) -> float:
    """Hydra's task for one job: train into the job's folder; return the objective.

    Runs in whatever process the launcher chose (``on_slurm``: a Slurm job, which the Slurm
    launcher says). It never raises (except to stop the sweep on Ctrl-C): how the job ended is
    written into its summary.json and the sweep goes on.
    """
    from hydra.core.hydra_config import HydraConfig

    hydra_cfg = HydraConfig.get()
    return train_job(cfg, Path(hydra_cfg.runtime.output_dir), list(hydra_cfg.overrides.task),
                     Path(str(hydra_cfg.sweep.dir)), on_slurm)


def trains_longer(run_dir: Path, epochs: int) -> bool:
    """Whether the completed job in ``run_dir`` resumes for more ``epochs``: a resume may train
    longer (keys.py), as `train --resume RUN trainer.epochs=N` does."""
    return read_summary(run_dir).get("epochs_done", 0) < epochs


def job_ended(run_dir: Path, epochs: int) -> bool:
    """Whether a resumed sweep skips the job in ``run_dir`` (torch-free, fast): it completed
    its ``epochs`` or diverged."""
    status = read_status(run_dir)
    if status is None or not status.final:
        return False
    return not (status == Status.COMPLETED and trains_longer(run_dir, epochs))


def train_job(cfg, run_dir: Path, overrides: List[str], sweep_dir: Path,
              on_slurm: bool = False) -> float:
    """Train one job, or skip/resume/rerun it after an earlier attempt into the same folder.

    completed or diverged: skipped (the same config and seed diverge again: it is a result),
    unless it completed fewer epochs than ``cfg`` asks: resumed to train longer; stopped before
    it finished (sweep/stopped.py's rule): resumed from its checkpoint; failed by an error of
    its config or code: started anew.
    """
    try:
        status = read_status(run_dir)
        if job_ended(run_dir, cfg.trainer.epochs):
            log.info("%s: %s before, skipped", run_dir.name, status)
            return run_objective(run_dir, completed=status == Status.COMPLETED)
        resume = status == Status.COMPLETED or rerun_resumes(run_dir)  # completed: train longer
        if status is not None and not resume:
            clear_attempt(run_dir)
        from dropout_lab.train import train

        config = typed_config(cfg)
        result = train(config, run_dir, resume=resume, data=shared_data(config), in_sweep=True)
    except Exception as error:  # recorded, not swallowed: the summary and the job's log say it
        cause = stop_cause(error)
        if cause is not None:  # the machine's limit, not the job's fault: a rerun resumes it
            stopped(run_dir, cause, overrides, sweep_dir)
            return objective(None)
        if isinstance(error, DropoutLabError):  # not a bug: one line, as the CLI does
            log.error("%s failed: %s", run_dir.name, one_line(error))
        else:  # a bug: the traceback, in the job's train.log too
            log.exception("%s failed", run_dir.name)
        record_failure(run_dir, one_line(error), overrides)
        return objective(None)
    if result.status == Status.INTERRUPTED:
        if on_slurm:  # Slurm requeues or cancels the job:
            raise SystemExit(128 + result.signal)  # end it without a result (see slurm.py)
        raise KeyboardInterrupt  # the user stopped the sweep, not just this job
    return run_objective(run_dir, completed=result.status == Status.COMPLETED)


def job_return(run_dir: Path, overrides: List[str]):
    """A JobReturn for a job that sent none, from its folder: Hydra's sweepers (the Optuna one
    too) read the objective from it, and a FAILED one would stop the sweep, so it is COMPLETED
    with the job's objective (-inf unless it completed)."""
    from hydra.core.utils import JobReturn, JobStatus

    result = JobReturn(overrides=overrides, working_dir=str(run_dir), status=JobStatus.COMPLETED)
    result.return_value = run_objective(run_dir, read_status(run_dir) == Status.COMPLETED)
    return result


def job_run_dir(hydra_context, config, overrides: List[str], index: int) -> Path:
    """Job ``index``'s run folder, composed in the sweep's process as the job composes it."""
    from omegaconf import open_dict

    sweep_config = hydra_context.config_loader.load_sweep_config(config, list(overrides))
    with open_dict(sweep_config.hydra.job):
        sweep_config.hydra.job.num = index
    return Path(str(sweep_config.hydra.sweep.dir)) / str(sweep_config.hydra.sweep.subdir)


def clear_attempt(run_dir: Path) -> None:
    """Before a job starts anew (it failed, or has no checkpoint to go on from): drop its old
    events and checkpoint (not its config)."""
    from dropout_lab.checkpoint import remove_checkpoint  # torch: a skipped job needs none

    for path in run_dir.glob(EVENTS_GLOB):
        path.unlink(missing_ok=True)
    remove_checkpoint(run_dir)


_DATA_CACHE: Dict[tuple, object] = {}


def shared_data(config):
    """The dataset for a job, loaded once per worker process: joblib and Optuna run several
    jobs in one process, and re-reading the cache for each would be most of a short job."""
    from dropout_lab.data import load_fashion_mnist
    from dropout_lab.device import resolve_device

    device = resolve_device(config.trainer.device)
    key = (repr(config.data), str(device))
    if key not in _DATA_CACHE:
        _DATA_CACHE.clear()  # one dataset in memory at a time
        _DATA_CACHE[key] = load_fashion_mnist(config.data, device)
    return _DATA_CACHE[key]

