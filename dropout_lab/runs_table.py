"""``dropout-lab runs [DIR]``: a table of the runs under DIR (a run, a sweep, an exercise folder,
outputs/); ``dropout-lab diff RUN_A RUN_B``: two runs' differing config keys and their metrics
side by side.

Both read only the runs' summary.json files (run_folder.py): no torch, no TensorBoard, so a
table of hundreds of runs takes a moment. The settings a table shows are those that differ
between its runs (a sweep's swept keys), under the short names of job folders (job_names.py:
``p``, ``wd``, ...); the settings every run shares but that differ from the defaults are
listed once above it. Settings that cannot change the results (paths, threads, the progress
bar, logging switches: hparams.LEFT_OUT) are not shown.
"""

import csv
import dataclasses
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from dropout_lab.errors import ConfigError, RunError
from dropout_lab.config import flatten_config
from dropout_lab.hparams import LEFT_OUT, compact
from dropout_lab.job_names import name_order, short_key, short_value
from dropout_lab.run_folder import SUMMARY, Status, has_summary, read_summary, run_folders

UNREADABLE = "unreadable"
# column -> header; metrics sort highest first, the other columns in ascending order
METRIC_COLUMNS = {
    "steady": "steady",  # the mean test accuracy of the last trainer.steady_epochs epochs
    "val": "val",  # the same of the validation accuracy (data.validation); shown when a run has it
    "test_acc": "test acc",  # after the last epoch
    "best": "best",
    "gap": "gap",  # train acc (eval mode) - test acc, last epoch
    "epochs": "epochs",
    "time": "time",
}
DESCENDING = {"steady", "val", "test_acc", "best", "gap", "epochs", "time"}


@dataclass
class RunRow:
    run: str  # the folder, relative to the listed directory
    status: str
    settings: Dict[str, str]  # config key -> value as text, results-relevant keys only
    metrics: Dict[str, Optional[float]] = field(default_factory=dict)  # METRIC_COLUMNS keys
    ran_on: str = ""  # the device actually used, its GPU and software (ran_on_text)


# --- reading --------------------------------------------------------------------------------

def settings_of(config: Dict[str, Any]) -> Dict[str, str]:
    """A run's config as {key: value text}, without the keys that cannot change results."""
    return {key: "null" if value is None else str(compact(value))
            for key, value in flatten_config(config).items() if key not in LEFT_OUT}


def ran_on_text(summary: dict) -> str:
    """Where a run computed, as its summary records it (device.describe_device): 'cpu, torch
    2.5.1' or 'cuda:0 NVIDIA H100 80GB HBM3, torch 2.5.1, CUDA 12.4'; '-' for older runs."""
    device = summary.get("device")
    if not device:
        return "-"
    where = f"{device['name']} {device['gpu']}" if device.get("gpu") else device["name"]
    cuda = f", CUDA {device['cuda']}" if device.get("gpu") else ""
    return f"{where}, torch {device['torch']}{cuda}"


def read_row(run_dir: Path, root: Path) -> RunRow:
    name = str(run_dir.relative_to(root)) if run_dir != root else run_dir.name
    try:
        summary = read_summary(run_dir)
    except RunError:
        return RunRow(name, UNREADABLE, {})
    final, steady, best = (summary.get(part) or {} for part in ("final", "steady", "best"))
    settings = settings_of(summary.get("config") or {})
    if summary.get("device"):  # where trainer.device (auto) actually put the run
        settings["trainer.device"] = summary["device"]["name"]
    return RunRow(name, summary.get("status", "unknown"), settings, {
        "steady": steady.get("test_accuracy"),
        "val": steady.get("val_accuracy"),
        "test_acc": final.get("test_accuracy"),
        "best": best.get("test_accuracy"),
        "gap": final.get("gap"),
        "epochs": summary.get("epochs_done"),
        "time": (summary.get("timings") or {}).get("wall_seconds"),
    }, ran_on_text(summary))


def read_rows(root: Path, status: Optional[str] = None) -> List[RunRow]:
    """The rows of the runs at or below ``root``, in path order (job order in a sweep);
    ``status``: only the runs with that status. ConfigError for a path that holds no runs."""
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"{root} is not a directory; give a run, sweep, exercise or outputs folder")
    if status is not None and status not in {s.value for s in Status}:
        raise ConfigError(f"--status has to be one of {', '.join(s.value for s in Status)}, "
                          f"not {status!r}")
    folders = list(run_folders(root))
    if not folders:
        raise ConfigError(f"{root} holds no dropout-lab runs (no {SUMMARY} at or below it)")
    rows = [read_row(folder, root) for folder in folders]
    return [row for row in rows if status is None or row.status == status]


def default_settings() -> Dict[str, str]:
    """The schema's defaults, as settings_of gives a run's config."""
    from dropout_lab.config import Config

    return settings_of(dataclasses.asdict(Config()))


def varying_keys(rows: Sequence[RunRow]) -> List[str]:
    """The settings whose values differ between the rows (a sweep's swept keys), in the order
    job folder names list them."""
    keys = sorted({key for row in rows for key in row.settings}, key=name_order)
    return [key for key in keys if len({row.settings.get(key) for row in rows}) > 1]


def shared_non_defaults(rows: Sequence[RunRow], varying: Sequence[str]) -> Dict[str, str]:
    """The settings every row has with the same value, where that value is not the default."""
    defaults = default_settings()
    readable = [row for row in rows if row.settings]
    if not readable:
        return {}
    first = readable[0].settings
    return {key: first[key] for key in sorted(first, key=name_order)
            if key not in varying and first[key] != defaults.get(key)
            and all(row.settings.get(key) == first[key] for row in readable)}


def sort_rows(rows: List[RunRow], key: Optional[str], settings: Sequence[str]) -> List[RunRow]:
    """Rows sorted by a column: a metric (highest first), run, status or a shown setting;
    rows without a value last."""
    if key is None:
        return rows
    names = {short_key(setting): setting for setting in settings}
    choices = ["run", "status", *METRIC_COLUMNS, *names]
    if key not in choices:
        raise ConfigError(f"--sort has to be one of {', '.join(choices)}, not {key!r}")

    def value(row: RunRow):
        if key in METRIC_COLUMNS:
            return row.metrics.get(key)
        if key in ("run", "status"):
            return getattr(row, key)
        return sortable(row.settings.get(names[key]))

    present = [row for row in rows if value(row) is not None]
    missing = [row for row in rows if value(row) is None]
    return sorted(present, key=value, reverse=key in DESCENDING) + missing


def sortable(text: Optional[str]):
    """A setting's text as a sort key: numbers by value, before any text."""
    if text is None:
        return None
    try:
        return (0, float(text), "")
    except ValueError:
        return (1, 0.0, text)


# --- wording --------------------------------------------------------------------------------

def runs_text(root: Path, sort: Optional[str] = None, status: Optional[str] = None,
              as_csv: bool = False) -> str:
    """What ``dropout-lab runs`` prints: the table (or CSV) of the runs under ``root``."""
    rows = read_rows(root, status)
    varying = varying_keys(rows)
    rows = sort_rows(rows, sort, varying)
    if as_csv:
        return csv_text(rows, varying)
    counts = {}
    for row in rows:
        counts[row.status] = counts.get(row.status, 0) + 1
    lines = [f"{len(rows)} run{'' if len(rows) == 1 else 's'} under {root}"
             + (f" ({', '.join(f'{n} {s}' for s, n in counts.items())})" if rows else "")]
    shared = shared_non_defaults(rows, varying)
    if shared:
        lines.append("same in all: " + " ".join(f"{short_key(k)}={short_value(v)}"
                                                for k, v in shared.items()))
    if rows:
        columns = [name for name in METRIC_COLUMNS if name != "val"
                   or any(row.metrics.get("val") is not None for row in rows)]
        header = ["run", "status", *(short_key(key) for key in varying),
                  *(METRIC_COLUMNS[name] for name in columns)]
        body = [[row.run, row.status, *(short_value(row.settings.get(key, "-")) for key in varying),
                 *(format_metric(name, row.metrics.get(name)) for name in columns)]
                for row in rows]
        lines += aligned([header, *body], right_from=2 + len(varying))
    return "\n".join(lines) + "\n"


def csv_text(rows: Sequence[RunRow], varying: Sequence[str]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["run", "status", *varying, *METRIC_COLUMNS, "ran_on"])
    for row in rows:
        writer.writerow([row.run, row.status, *(row.settings.get(key, "") for key in varying),
                         *("" if row.metrics.get(name) is None else row.metrics[name]
                           for name in METRIC_COLUMNS), row.ran_on])
    return out.getvalue()


def format_metric(name: str, value: Optional[float]) -> str:
    if value is None:
        return "-"
    if name == "epochs":
        return str(int(value))
    if name == "time":
        return duration(value)
    if not math.isfinite(value):
        return str(value)
    return f"{value:+.4f}" if name == "gap" else f"{value:.4f}"


def duration(seconds: float) -> str:
    """12.3s, 4m05s, 1h02m."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    return f"{minutes // 60}h{minutes % 60:02d}m"


def aligned(table: List[List[str]], right_from: int) -> List[str]:
    """Rows of cells as lines, columns padded; columns from ``right_from`` right-aligned."""
    widths = [max(len(str(row[i])) for row in table) for i in range(len(table[0]))]
    return ["  ".join(str(cell).rjust(width) if i >= right_from else str(cell).ljust(width)
                      for i, (cell, width) in enumerate(zip(row, widths))).rstrip()
            for row in table]


# --- diff -----------------------------------------------------------------------------------

DIFF_METRICS = [  # (label, summary part, key)
    ("test acc (steady)", "steady", "test_accuracy"),
    ("val acc (steady)", "steady", "val_accuracy"),  # shown when either run holds one out
    ("test acc (final)", "final", "test_accuracy"),
    ("test acc (best)", "best", "test_accuracy"),
    ("train acc (eval)", "final", "train_eval_accuracy"),
    ("gap (train - test)", "final", "gap"),
    ("test loss", "final", "test_loss"),
]


def read_run(run_dir: Path) -> dict:
    """A run's summary; ConfigError (one line) for a path that is not a run."""
    if not has_summary(run_dir):
        what = "does not exist" if not Path(run_dir).exists() else f"has no {SUMMARY}"
        raise ConfigError(f"{run_dir} is not a dropout-lab run (it {what})")
    return read_summary(run_dir)


def diff_text(run_a: Path, run_b: Path) -> str:
    """What ``dropout-lab diff`` prints: the config keys that differ, then the metrics."""
    a, b = read_run(run_a), read_run(run_b)
    flat_a, flat_b = (flatten_config(s.get("config") or {}) for s in (a, b))
    keys = sorted(set(flat_a) | set(flat_b))
    differ = [key for key in keys if flat_a.get(key, "-") != flat_b.get(key, "-")]
    lines = [f"A: {run_a}", f"B: {run_b}", ""]
    results = [key for key in differ if key not in LEFT_OUT]
    if results:
        lines += aligned([["config", "A", "B"],
                          *([key, shown(flat_a, key), shown(flat_b, key)] for key in results)],
                         right_from=3)
    else:
        lines.append("config: the same settings")
    neutral = [key for key in differ if key in LEFT_OUT]
    if neutral:
        lines.append("also differ (cannot change results): " + ", ".join(
            f"{key} {shown(flat_a, key)} vs {shown(flat_b, key)}" for key in neutral))
    lines.append("")
    table = [["metric", "A", "B", "B - A"],
             ["status", a.get("status", "unknown"), b.get("status", "unknown"), ""]]
    for label, part, key in DIFF_METRICS:
        value_a, value_b = ((s.get(part) or {}).get(key) for s in (a, b))
        if key == "val_accuracy" and value_a is None and value_b is None:
            continue
        change = "" if value_a is None or value_b is None else f"{value_b - value_a:+.4f}"
        table.append([label, number(value_a), number(value_b), change])
    table.append(["epochs", str(a.get("epochs_done", "-")), str(b.get("epochs_done", "-")), ""])
    times = [(s.get("timings") or {}).get("wall_seconds") for s in (a, b)]
    table.append(["time", *(duration(t) if t is not None else "-" for t in times), ""])
    table.append(["ran on", ran_on_text(a), ran_on_text(b), ""])
    lines += aligned(table, right_from=1)
    return "\n".join(lines) + "\n"


def shown(flat: Dict[str, Any], key: str) -> str:
    """A config value in full (a diff must not round two different values alike)."""
    if key not in flat:
        return "-"
    return "null" if flat[key] is None else str(compact(flat[key]))


def number(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.4f}"
