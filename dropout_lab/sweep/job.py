"""One sweep job, as every launcher runs it: train into the job's folder, or skip, resume or
rerun it after an earlier attempt; never let an exception reach Hydra (its launchers stop at the
first failed job and lose the others' results): a failure is recorded in the job's summary.json
and the sweep goes on."""

import logging
import math
import os
from pathlib import Path
from typing import Dict, List, Optional

from dropout_lab.errors import DropoutLabError, one_line
from dropout_lab.hydra_runner import typed_config
from dropout_lab.run_folder import (CHECKPOINT, EVENTS_GLOB, Status, read_status, read_summary,
                                    record_failure)

log = logging.getLogger(__name__)


def objective(steady: Optional[dict]) -> float:
    """What a job returns to Hydra's sweeper (Optuna maximises it), from the run's steady
    metrics (summary.json's ``steady``): the steady validation accuracy when the run holds out
    a validation split (data.validation > 0): tune on validation, report on test; without one,
    the steady test accuracy. -inf for a job without a result (failed, diverged)."""
    steady = steady or {}
    value = steady.get("val_accuracy", steady.get("test_accuracy"))
    return value if value is not None and math.isfinite(value) else -math.inf


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
        status = read_status(run_dir)  # torch-free: a resumed sweep skips its completed jobs fast
        if status == Status.COMPLETED:
            log.info("%s: completed before, skipped", run_dir.name)
            return objective(read_summary(run_dir).get("steady"))
        if status in (Status.FAILED, Status.DIVERGED):
            clear_attempt(run_dir)
        from dropout_lab.train import train

        config = typed_config(cfg)
        result = train(config, run_dir, resume=status is not None and status.resumable,
                       data=shared_data(config))
    except Exception as error:  # recorded, not swallowed: the summary and the job's log say it
        if isinstance(error, DropoutLabError):  # the user's to fix: one line, as the CLI does
            log.error("%s failed: %s", run_dir.name, one_line(error))
        else:  # a bug: the traceback, in the job's train.log too
            log.exception("%s failed", run_dir.name)
        record_failure(run_dir, one_line(error), overrides)
        return objective(None)
    if result.status == Status.INTERRUPTED:
        if os.environ.get("SUBMITIT_EXECUTOR") == "slurm":  # Slurm requeues or cancels the job:
            raise SystemExit(128 + result.signal)  # end it without a result (see slurm.py)
        raise KeyboardInterrupt  # the user stopped the sweep, not just this job
    completed = result.status == Status.COMPLETED
    return objective(read_summary(run_dir).get("steady") if completed else None)


def clear_attempt(run_dir: Path) -> None:
    """Before a failed job starts anew: drop its old events and checkpoint (not its config)."""
    for path in [*run_dir.glob(EVENTS_GLOB), run_dir / CHECKPOINT]:
        path.unlink(missing_ok=True)


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

