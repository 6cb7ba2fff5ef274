"""One sweep job, as every launcher runs it: train into the job's folder, or skip, resume or
rerun it after an earlier attempt; never let an exception reach Hydra (its launchers stop at the
first failed job and lose the others' results): a failure is recorded in the job's summary.json
and the sweep goes on."""

import logging
import math
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, List, Optional

from dropout_lab.errors import DropoutLabError, RunError, one_line
from dropout_lab.hydra_runner import typed_config
from dropout_lab.run_folder import (CHECKPOINT, EVENTS_GLOB, Status, has_summary, read_status,
                                    read_summary, record_failure, rerun_resumes, tuned_metric)

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


def sweep_task(cfg) -> float:
    """Hydra's task for one job: train into the job's folder; return the objective.

    Runs in whatever process the launcher chose. It never raises (except to stop the sweep on
    Ctrl-C): a failure is written into the job's summary.json and the sweep goes on.
    """
    from hydra.core.hydra_config import HydraConfig

    hydra_cfg = HydraConfig.get()
    return train_job(cfg, Path(hydra_cfg.runtime.output_dir), list(hydra_cfg.overrides.task))


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


def train_job(cfg, run_dir: Path, overrides: List[str]) -> float:
    """Train one job, or skip/resume/rerun it after an earlier attempt into the same folder.

    completed or diverged: skipped (the same config and seed diverge again: it is a result),
    unless it completed fewer epochs than ``cfg`` asks: resumed to train longer;
    interrupted, running (its process killed) or failed from outside (its worker lost, out of
    memory): resumed from its checkpoint; failed: started anew.
    """
    try:
        status = read_status(run_dir)
        if job_ended(run_dir, cfg.trainer.epochs):
            log.info("%s: %s before, skipped", run_dir.name, status)
            return run_objective(run_dir, completed=status == Status.COMPLETED)
        resume = status == Status.COMPLETED or rerun_resumes(run_dir)  # completed: train longer
        if status == Status.FAILED and not resume:
            clear_attempt(run_dir)
        from dropout_lab.train import train

        config = typed_config(cfg)
        data = shared_data(config)
        with memory_limit_for_tests():
            result = train(config, run_dir, resume=resume, data=data)
    except Exception as error:  # recorded, not swallowed: the summary and the job's log say it
        memory = out_of_memory(error)
        if isinstance(error, DropoutLabError) or memory:  # not a bug: one line, as the CLI does
            what = f"ran out of memory {where_it_was(run_dir)}" if memory else "failed"
            log.error("%s %s: %s", run_dir.name, what, one_line(error))
        else:  # a bug: the traceback, in the job's train.log too
            log.exception("%s failed", run_dir.name)
        # Out of memory is the machine's limit, not the config's fault: a rerun (with more
        # memory, or fewer jobs at once) continues from the last checkpoint.
        record_failure(run_dir, one_line(error), overrides, resumable=memory)
        return objective(None)
    if result.status == Status.INTERRUPTED:
        if os.environ.get("SUBMITIT_EXECUTOR") == "slurm":  # Slurm requeues or cancels the job:
            raise SystemExit(128 + result.signal)  # end it without a result (see slurm.py)
        raise KeyboardInterrupt  # the user stopped the sweep, not just this job
    return run_objective(run_dir, completed=result.status == Status.COMPLETED)


def out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is an allocation failure: Python's MemoryError, CUDA's
    OutOfMemoryError, or torch's CPU allocator failing, which raises a plain RuntimeError (its
    message is all that tells it apart; torch has no type for it)."""
    if isinstance(error, MemoryError):
        return True
    import torch

    return isinstance(error, torch.cuda.OutOfMemoryError) or (
        isinstance(error, RuntimeError) and "can't allocate memory" in str(error))


def where_it_was(run_dir: Path) -> str:
    """How far a job had got, from its summary: ``in epoch 3 of 4`` or ``before its first epoch``."""
    try:
        summary = read_summary(run_dir) if has_summary(run_dir) else {}
    except RunError:
        summary = {}
    if "epochs_done" not in summary:  # none, or one record_failure made: training never began
        return "before its first epoch"
    done, total = summary["epochs_done"], summary.get("config", {}).get("trainer", {}).get("epochs")
    if total and done >= total:
        return "after its last epoch"
    return f"in epoch {done + 1}" + (f" of {total}" if total else "")


def job_run_dir(hydra_context, config, overrides: List[str], index: int) -> Path:
    """Job ``index``'s run folder, composed in the sweep's process as the job composes it."""
    from omegaconf import open_dict

    sweep_config = hydra_context.config_loader.load_sweep_config(config, list(overrides))
    with open_dict(sweep_config.hydra.job):
        sweep_config.hydra.job.num = index
    return Path(str(sweep_config.hydra.sweep.dir)) / str(sweep_config.hydra.sweep.subdir)


# Test-only (tests/test_worker_loss.py), not a user setting: DROPOUT_LAB_TEST_MEMORY_LIMIT_MB=N
# lets a job's process grow its address space by at most N MiB while it trains (RLIMIT_AS), so
# that a job that needs more really runs out of memory.
TEST_MEMORY_LIMIT_ENV = "DROPOUT_LAB_TEST_MEMORY_LIMIT_MB"


@contextmanager
def memory_limit_for_tests() -> Iterator[None]:
    extra_mb = os.environ.get(TEST_MEMORY_LIMIT_ENV)
    if not extra_mb:
        yield
        return
    import resource

    with open("/proc/self/statm") as statm:  # its first field: the address space, in pages
        address_space = int(statm.read().split()[0]) * resource.getpagesize()
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (address_space + (int(extra_mb) << 20), hard))
    try:
        yield
    finally:  # a worker runs other jobs after this one
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def clear_attempt(run_dir: Path) -> None:
    """Before a failed job starts anew: drop its old events and checkpoint (not its config)."""
    for path in [*run_dir.glob(EVENTS_GLOB), run_dir / CHECKPOINT]:
        path.unlink(missing_ok=True)


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

