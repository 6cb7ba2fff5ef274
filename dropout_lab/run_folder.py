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
or the new one), every reader through ``read_summary``. Reports, tables, exercises and MC
dropout read a run as a ``RunRecord`` (``read_run``, ``read_runs``): typed fields instead of
string keys. Its one error policy: a folder whose summary is missing, not JSON or not an object
gives a record with status ``unreadable`` and the reason in ``error`` (a table of many runs
shows it among the others); a command about one run that needs its contents calls
``RunRecord.readable()``, which raises that reason as a RunError.
"""

import re
import statistics
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

from dropout_lab.disk import read_json, write_json
from dropout_lab.errors import RunError, one_line

SUMMARY = "summary.json"
CHECKPOINT = "checkpoint.pt"
EVENTS_GLOB = "events.out.tfevents.*"
HYDRA_DIR = ".hydra"
OVERRIDES = f"{HYDRA_DIR}/overrides.yaml"
RESUMABLE = "resumable"  # older sweeps' mark of a failed run that was stopped (read, not written)
STEADY_EPOCHS = 3  # trainer.steady_epochs' default: the window of the steady metrics
UNREADABLE = "unreadable"  # a record's status when its summary.json cannot be read
UNKNOWN = "unknown"  # a record's status when its summary has none (an old or foreign file)


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


FINAL_STATUSES = frozenset(status.value for status in Status if status.final)


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


def read_overrides(run_dir: Path) -> List[str]:
    """The overrides a run was started with (Hydra's .hydra/overrides.yaml), [] when it has
    none; RunError (one line) when the file cannot be read."""
    import yaml

    path = Path(run_dir) / OVERRIDES
    if not path.is_file():
        return []
    try:
        saved = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, OSError, ValueError) as error:
        raise RunError(f"cannot read {path} ({type(error).__name__}); repair it (the run's "
                       f"whole config is in its summary.json)") from None
    if saved is not None and not isinstance(saved, list):
        raise RunError(f"cannot read {path} (not a list of overrides); repair it (the run's "
                       f"whole config is in its summary.json)")
    return [str(item) for item in saved or []]


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


# --- the run record -------------------------------------------------------------------------

@dataclass(frozen=True)
class RunRecord:
    """What a run folder holds, as ``read_run`` reads it. The fields mirror summary.json
    (run_log.RunLog.write_summary); an older summary's missing parts are empty, and its
    status ``unknown``. The properties name the metrics that reports and tables show."""

    run_dir: Path
    status: str  # a Status value, UNKNOWN, or UNREADABLE (``error`` says why)
    error: Optional[str] = None  # a failed run's one-line reason
    config: Dict[str, Any] = field(default_factory=dict)  # resolved; {} when it failed before
    overrides: List[str] = field(default_factory=list)  # .hydra/overrides.yaml, else summary's
    history: List[dict] = field(default_factory=list)  # one row per epoch
    final: dict = field(default_factory=dict)  # the last epoch's row
    steady: dict = field(default_factory=dict)  # mean of the last trainer.steady_epochs epochs
    best: dict = field(default_factory=dict)  # {test_accuracy, epoch} of the best epoch
    timings: dict = field(default_factory=dict)  # earlier_seconds, train_seconds, wall_seconds
    epochs_done: Optional[int] = None  # None: the run failed before its summary had epochs
    device: Optional[dict] = None  # device.describe_device's record of where it computed

    def readable(self) -> "RunRecord":
        """This record; RunError with the reason when its summary could not be read."""
        if self.status == UNREADABLE:
            raise RunError(self.error)
        return self

    @property
    def ended_for_good(self) -> bool:
        """Completed or diverged (Status.final): resuming it changes nothing."""
        return self.status in FINAL_STATUSES

    @property
    def job(self) -> str:
        """The folder's name (a sweep's job: '003_p=0.5')."""
        return self.run_dir.name

    @property
    def num(self) -> Optional[int]:
        """A sweep job's number, from its folder name; None for other folders."""
        prefix = re.match(r"(\d+)_", self.job)
        return int(prefix.group(1)) if prefix else None

    @property
    def epochs(self) -> int:
        """The epochs trained (0 for a run that failed before training)."""
        return self.epochs_done or 0

    @property
    def params(self) -> Dict[str, str]:
        """The overrides as {key: value as written} (swept values in a sweep)."""
        return override_values(self.overrides)

    @property
    def steady_epochs(self) -> int:
        """The run's trainer.steady_epochs (STEADY_EPOCHS for a run without a config)."""
        return (self.config.get("trainer") or {}).get("steady_epochs") or STEADY_EPOCHS

    @property
    def steady_test_accuracy(self) -> Optional[float]:
        """The summary's steady test accuracy; for a run written before it existed, the mean
        over its history's last trainer.steady_epochs epochs."""
        value = self.steady.get("test_accuracy")
        return value if value is not None else steady(self.history, "test_accuracy",
                                                      self.steady_epochs)

    @property
    def steady_val_accuracy(self) -> Optional[float]:
        return self.steady.get("val_accuracy")

    @property
    def objective(self) -> Optional[float]:
        """What a sweep tunes (tuned_metric)."""
        return tuned_metric(self.steady)

    @property
    def test_accuracy(self) -> Optional[float]:
        return self.final.get("test_accuracy")

    @property
    def best_test_accuracy(self) -> Optional[float]:
        return self.best.get("test_accuracy")

    @property
    def train_eval_accuracy(self) -> Optional[float]:
        return self.final.get("train_eval_accuracy")

    @property
    def train_accuracy(self) -> Optional[float]:
        return self.final.get("train_accuracy")

    @property
    def gap(self) -> Optional[float]:
        return self.final.get("gap")

    @property
    def seconds(self) -> Optional[float]:
        """Wall-clock seconds, resumed attempts included."""
        return self.timings.get("wall_seconds")

    @property
    def train_seconds(self) -> Optional[float]:
        return self.timings.get("train_seconds")


def read_run(run_dir: Path) -> RunRecord:
    """The run in ``run_dir`` as a RunRecord; never raises for a bad folder: a summary.json
    that is missing, not JSON or not an object gives status UNREADABLE and the reason."""
    run_dir = Path(run_dir)
    try:
        summary = read_summary(run_dir)
        if not isinstance(summary, dict):
            raise RunError(f"{run_dir / SUMMARY} cannot be read (not a JSON object)")
    except RunError as error:
        return RunRecord(run_dir, UNREADABLE, error=str(error))
    try:
        overrides = read_overrides(run_dir)
    except RunError:  # the summary holds them too
        overrides = []
    return RunRecord(
        run_dir, summary.get("status") or UNKNOWN, error=summary.get("error"),
        config=summary.get("config") or {},
        overrides=overrides or list(summary.get("overrides") or []),
        history=summary.get("history") or [], final=summary.get("final") or {},
        steady=summary.get("steady") or {}, best=summary.get("best") or {},
        timings=summary.get("timings") or {}, epochs_done=summary.get("epochs_done"),
        device=summary.get("device") or None)


def read_runs(root: Path) -> List[RunRecord]:
    """The records of every run folder at or below ``root`` (run_folders), in path order."""
    return [read_run(folder) for folder in run_folders(root)]


def override_values(overrides: List[str]) -> Dict[str, str]:
    """['optim.lr=0.1', '+x=1'] -> {'optim.lr': '0.1', 'x': '1'} (values as written)."""
    values = {}
    for override in overrides:
        key, _, value = override.partition("=")
        values[key.lstrip("+~")] = value
    return values
