"""What happens to a sweep job that stopped before it finished: the one rule, for every launcher.

A job that did not finish resumes from its last checkpoint on the next run of the same command,
whatever stopped it: its Slurm time limit after the last requeue, ``scancel``, a lost node, a
killed worker process, memory or disk running out, Ctrl-C. Only a job whose config or code
raised an error is recorded ``failed`` and starts anew. The checkpoint is whole in every case
(written atomically after each epoch), and a resume still refuses a config that changed what an
epoch computes (checkpoint.verify_checkpoint).

Every launcher's way to a stopped job comes here: the job's own process (``stop_cause`` of an
exception, sweep/job.py), a local process that died (local.py), a Slurm job that ended without a
result (slurm.py), and a job still "running" when the sweep ends (run.py).
"""

import errno
import logging
from pathlib import Path
from typing import Iterator, List, Optional

from dropout_lab.errors import one_line
from dropout_lab.run_folder import read_run, read_status, record_stop

log = logging.getLogger(__name__)

OUT_OF_ROOM = (errno.ENOSPC, errno.EDQUOT)  # disk full, quota exceeded
TIME_LIMIT = "reached its Slurm time limit after its last requeue (hydra.launcher.max_num_timeout)"


def stop_cause(error: BaseException) -> Optional[str]:
    """Why the machine, not the job's config or code, stopped a job that raised ``error``: out
    of memory, out of disk space, or Slurm's time limit with no requeue left (submitit raises
    its UncompletedJobError in the job then); None for an error of the job's own."""
    if out_of_memory(error):
        return f"ran out of memory ({one_line(error)})"
    if any(isinstance(cause, OSError) and cause.errno in OUT_OF_ROOM for cause in chain(error)):
        return f"ran out of disk space ({one_line(error)})"
    if type(error).__name__ == "UncompletedJobError":  # submitit's; not imported off Slurm
        return TIME_LIMIT
    return None


def chain(error: Optional[BaseException]) -> Iterator[BaseException]:
    """``error`` and the errors it was raised from or while handling (disk.py words an OSError
    as a RunError naming the file; the OSError underneath says what ran out)."""
    while error is not None:
        yield error
        error = error.__cause__ or error.__context__


def out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is an allocation failure: Python's MemoryError, CUDA's
    OutOfMemoryError, or torch's CPU allocator failing, which raises a plain RuntimeError (its
    message is all that tells it apart; torch has no type for it)."""
    if isinstance(error, MemoryError):
        return True
    import torch

    return isinstance(error, torch.cuda.OutOfMemoryError) or (
        isinstance(error, RuntimeError) and "can't allocate memory" in str(error))


def stopped(run_dir: Path, cause: str, overrides: List[str], sweep_dir: Path) -> None:
    """Record that the job in ``run_dir`` stopped because of ``cause`` (a phrase: "its Slurm job
    12_1 ended CANCELLED"), with how far it got and how to resume it; a job that completed or
    diverged just before it was lost keeps its result."""
    status = read_status(run_dir)
    if status is not None and status.final:
        return
    hint = " (and a longer hydra.launcher.timeout_min)" if cause == TIME_LIMIT else ""
    reason = (f"{cause} {where_it_was(run_dir)}; run the same sweep with --sweep-dir "
              f"{sweep_dir}{hint} to resume it from its last checkpoint")
    log.error(f"{run_dir.name}: {reason}")
    record_stop(run_dir, reason, overrides)


def where_it_was(run_dir: Path) -> str:
    """How far a job had got, from its summary: ``in epoch 3 of 4`` or ``before its first epoch``."""
    run = read_run(run_dir)
    if run.epochs_done is None:  # no summary, unreadable, or one recorded before training began
        return "before its first epoch"
    done, total = run.epochs_done, (run.config.get("trainer") or {}).get("epochs")
    if total and done >= total:
        return "after its last epoch"
    return f"in epoch {done + 1}" + (f" of {total}" if total else "")
