"""The run folder, owned here: what a run writes into its folder, the statuses a run goes
through, and the one reader of its summary.json. No torch import: sweeps, reports and
``dropout-lab runs`` read hundreds of folders with it in a blink.

    run_dir/
      summary.json            status, config, per-epoch history, final/steady/best metrics, timings
      checkpoint.pt           model, optimiser, RNG states, epoch, history (for --resume)
      events.out.tfevents.*   TensorBoard: scalars per epoch, hparams, custom-scalars layout
      .hydra/                 Hydra's composed and resolved config, overrides.yaml
      train.log               Hydra's job log, only when a job logged something (a sweep's
                              skipped or failed job)

Every writer of summary.json goes through ``write_summary`` (atomic: a reader sees the old file
or the new one), every reader through ``read_summary``.
"""

import statistics
from enum import Enum
from pathlib import Path
from typing import Iterator, List, Optional

from dropout_lab.disk import read_json, write_json
from dropout_lab.errors import RunError, one_line

SUMMARY = "summary.json"
CHECKPOINT = "checkpoint.pt"
EVENTS_GLOB = "events.out.tfevents.*"
HYDRA_DIR = ".hydra"
OVERRIDES = f"{HYDRA_DIR}/overrides.yaml"
RESUMABLE = "resumable"  # older sweeps' mark of a failed run that was stopped (read, not written)


class Status(str, Enum):
    """A run's status in its summary.json (a str: ``status == "completed"`` holds)."""

    RUNNING = "running"  # training, or its process died without closing the run
    COMPLETED = "completed"
    DIVERGED = "diverged"  # the loss became NaN, infinite or too large: a result, not an error
    FAILED = "failed"  # an error stopped it (in a sweep: its config's or code's): a rerun starts anew
    INTERRUPTED = "interrupted"  # Ctrl-C / SIGTERM: resumable from its checkpoint
    # A sweep job stopped from outside (time limit, scancel, killed, out of memory or disk):
    # resumable from its checkpoint (sweep/stopped.py).
    STOPPED = "stopped"

    def __str__(self) -> str:
        return self.value

    @property
    def final(self) -> bool:
        """Ended for good: resuming changes nothing."""
        return self in (Status.COMPLETED, Status.DIVERGED)

    @property
    def ended(self) -> bool:
        """Will not go on by itself (a sweep counts it as done)."""
        return self in (Status.COMPLETED, Status.DIVERGED, Status.FAILED, Status.STOPPED)

    @property
    def resumable(self) -> bool:
        """Continues from its checkpoint when run again (running: its process was killed)."""
        return self in (Status.RUNNING, Status.INTERRUPTED, Status.STOPPED)


def has_summary(run_dir: Path) -> bool:
    return (Path(run_dir) / SUMMARY).is_file()


def read_summary(run_dir: Path) -> dict:
    """The run's summary.json; RunError (one line) when there is none or it is not JSON."""
    path = Path(run_dir) / SUMMARY
    try:
        return read_json(path)
    except FileNotFoundError:
        raise RunError(f"{run_dir} is not a dropout-lab run (no {SUMMARY})") from None
    except (OSError, ValueError) as error:
        raise RunError(f"{path} cannot be read ({one_line(error)})") from None


def read_status(run_dir: Path) -> Optional[Status]:
    """The run's status, or None when it has no summary yet."""
    if not has_summary(run_dir):
        return None
    return Status(read_summary(run_dir).get("status", Status.RUNNING))


def write_summary(run_dir: Path, summary: dict) -> None:
    write_json(Path(run_dir) / SUMMARY, summary)


def record_failure(run_dir: Path, reason: str, overrides: Optional[List[str]] = None) -> None:
    """Mark the run failed (its config or code raised an error) with a one-line ``reason``,
    keeping what its summary already holds (a run that recorded its own failure keeps its
    reason). A rerun starts it anew."""
    _record_end(run_dir, Status.FAILED, reason, overrides, keep_reason=True)


def record_stop(run_dir: Path, reason: str, overrides: Optional[List[str]] = None) -> None:
    """Mark the run stopped from outside before it finished, with why (``reason``, one line):
    its last checkpoint is whole, so running it again continues from there."""
    _record_end(run_dir, Status.STOPPED, reason, overrides, keep_reason=False)


def _record_end(run_dir: Path, status: Status, reason: str, overrides: Optional[List[str]],
                keep_reason: bool) -> None:
    try:
        summary = read_summary(run_dir)
    except RunError:
        summary = {"run_dir": str(run_dir)}
    if not (keep_reason and summary.get("status") == status):
        summary.update(status=status.value, error=reason)
    if overrides is not None:
        summary["overrides"] = list(overrides)
    summary.pop(RESUMABLE, None)
    write_summary(run_dir, summary)


def rerun_resumes(run_dir: Path) -> bool:
    """Whether a run started again in ``run_dir`` continues from its checkpoint rather than
    anew: it did not finish and no error of its own ended it (running: its process was killed;
    interrupted; stopped), and it has a checkpoint or had not finished an epoch."""
    if not has_summary(run_dir):
        return False
    summary = read_summary(run_dir)
    status = Status(summary.get("status", Status.RUNNING))
    if not (status.resumable or (status == Status.FAILED and summary.get(RESUMABLE))):
        return False
    return (Path(run_dir) / CHECKPOINT).is_file() or not summary.get("epochs_done")


def run_folders(root: Path) -> Iterator[Path]:
    """Every run folder at or below ``root`` (a folder with a summary.json), in path order."""
    root = Path(root)
    if has_summary(root):
        yield root
        return
    for path in sorted(root.rglob(SUMMARY)):
        if not any(part.startswith(".") for part in path.relative_to(root).parts[:-1]):
            yield path.parent


# --- metrics of a run's history -------------------------------------------------------------

def steady(history: List[dict], key: str, epochs: int) -> Optional[float]:
    """The mean of ``key`` over the last ``epochs`` epochs (fewer when the run has fewer).

    At a large learning rate the test accuracy jumps between epochs by more than most effects
    under study; averaging the last few epochs takes that noise out of the endpoint."""
    values = [row[key] for row in history[-epochs:] if row.get(key) is not None]
    return statistics.fmean(values) if values else None


def best(history: List[dict], key: str = "test_accuracy") -> dict:
    """The epoch with the highest ``key``: {key, epoch}, or {} for no epochs."""
    rows = [row for row in history if row.get(key) is not None]
    if not rows:
        return {}
    top = max(rows, key=lambda row: row[key])
    return {key: top[key], "epoch": top["epoch"]}


def tuned_metric(steady_metrics: Optional[dict]) -> Optional[float]:
    """What a sweep tunes (sweep/job.py's objective), from a run's steady metrics (summary.json's
    ``steady``): the steady validation accuracy when the run holds out a validation split
    (data.validation > 0): tune on validation, report on test; without one, the steady test
    accuracy."""
    steady_metrics = steady_metrics or {}
    return steady_metrics.get("val_accuracy", steady_metrics.get("test_accuracy"))
