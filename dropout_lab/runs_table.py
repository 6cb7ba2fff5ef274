"""``dropout-lab runs [DIR]``: a table of the runs under DIR (a run, a sweep, an exercise folder,
outputs/); ``dropout-lab diff RUN_A RUN_B``: two runs' differing config keys and their metrics
side by side.

Both read only the runs' summary.json files (run_folder.py): no torch, no TensorBoard, so a
table of hundreds of runs takes a moment. The settings a table shows are those that differ
between its runs (a sweep's swept keys), under the short names of job folders (job_names.py:
``p``, ``wd``, ...); the settings every run shares but that differ from the defaults are
listed once above it. Settings that cannot change the results (paths, the progress bar, logging
switches) or only their last digits (threads) are not shown (hparams.LEFT_OUT). A run without a
config (a job that failed on its config) is described by its overrides and error below the
table. ``--by-setting`` folds the runs that differ only by seed into one line: mean ± std over
the completed seeds.
"""

import csv
import dataclasses
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from dropout_lab.errors import ConfigError
from dropout_lab.config import flatten_config
from dropout_lab.hparams import LAST_DIGITS, LEFT_OUT, by_setting, compact
from dropout_lab.job_names import name_order, short_key, short_value
from dropout_lab.keys import DIFF_ORDER, RUNS_ORDER, metrics
from dropout_lab.run_folder import (SUMMARY, UNKNOWN, UNREADABLE, RunRecord, Status, has_summary,
                                    read_run, run_folders)

# column -> header; metrics sort highest first, the other columns in ascending order
METRIC_COLUMNS = {  # the registry's: steady (test; val with data.validation), final, best, gap
    **{m.column.replace(" ", "_"): m.column for m in metrics(RUNS_ORDER)},
    "epochs_done": "epochs done",  # not the setting trainer.epochs (a column "epochs" when swept)
    "time": "time",
}
DESCENDING = {"steady", "val", "test_acc", "best", "gap", "epochs_done", "time"}
SETTING_METRICS = ["steady", "val", "test_acc", "best", "gap"]  # --by-setting: mean ± std each


@dataclass
class RunRow:
    run: str  # the folder, relative to the listed directory
    status: str
    settings: Dict[str, str]  # config key -> value as text, results-relevant keys only
    metrics: Dict[str, Optional[float]] = field(default_factory=dict)  # METRIC_COLUMNS keys
    error: Optional[str] = None  # a failed run's one-line reason
    overrides: List[str] = field(default_factory=list)  # what a run without a config was given
    ran_on: str = ""  # the device actually used, its GPU and software (ran_on_text)


@dataclass
class SettingRow(RunRow):
    """--by-setting: the runs of one setting; ``metrics`` their means over the completed runs."""
    stds: Dict[str, Optional[float]] = field(default_factory=dict)
    seeds: str = ""  # completed/total


# --- reading --------------------------------------------------------------------------------

def settings_of(config: Dict[str, Any]) -> Dict[str, str]:
    """A run's config as {key: value text}, without the keys that cannot change results."""
    return {key: "null" if value is None else str(compact(value))
            for key, value in flatten_config(config).items() if key not in LEFT_OUT}


def ran_on_text(run: RunRecord) -> str:
    """Where a run computed, as its summary records it (device.describe_device): 'cpu, torch
    2.5.1' or 'cuda:0 NVIDIA H100 80GB HBM3, torch 2.5.1, CUDA 12.4'; '-' for older runs."""
    device = run.device
    if not device:
        return "-"
    where = f"{device['name']} {device['gpu']}" if device.get("gpu") else device["name"]
    cuda = f", CUDA {device['cuda']}" if device.get("gpu") else ""
    return f"{where}, torch {device['torch']}{cuda}"


def read_row(run_dir: Path, root: Path) -> RunRow:
    name = str(run_dir.relative_to(root)) if run_dir != root else run_dir.name
    run = read_run(run_dir)
    if run.status == UNREADABLE:
        return RunRow(name, UNREADABLE, {}, error=run.error)
    settings = settings_of(run.config)
    if run.device:  # where trainer.device (auto) actually put the run
        settings["trainer.device"] = run.device["name"]
    return RunRow(name, run.status, settings, {
        "steady": run.steady.get("test_accuracy"),
        "val": run.steady_val_accuracy,
        "test_acc": run.test_accuracy,
        "best": run.best_test_accuracy,
        "gap": run.gap,
        "epochs_done": run.epochs_done,
        "time": run.seconds,
    }, ran_on=ran_on_text(run), error=run.error, overrides=list(run.overrides))


def read_rows(root: Path, status: Optional[str] = None) -> List[RunRow]:
    """The rows of the runs at or below ``root``, in path order (job order in a sweep);
    ``status``: only the runs with that status. ConfigError for a path that holds no runs."""
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"{root} is not a directory; give a run, sweep, exercise or outputs folder")
    statuses = [*(s.value for s in Status), UNREADABLE, UNKNOWN]  # every status a row can show
    if status is not None and status not in statuses:
        raise ConfigError(f"--status has to be one of {', '.join(statuses)}, not {status!r}")
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
    """The settings whose values differ between the rows that have a config (a sweep's swept
    keys), in the order job folder names list them."""
    rows = [row for row in rows if row.settings]
    keys = sorted({key for row in rows for key in row.settings}, key=name_order)
    return [key for key in keys if len({row.settings.get(key) for row in rows}) > 1]


def setting_rows(rows: Sequence[RunRow], varying: Sequence[str]) -> List[SettingRow]:
    """One row per setting (the runs with a config that differ only by seed), in order of
    appearance; mean and std of each SETTING_METRICS over its completed runs."""
    from dropout_lab.inference.describe import mean_std

    folded = []
    for group in by_setting([row for row in rows if row.settings], lambda row: row.settings).values():
        completed = [row for row in group if row.status == Status.COMPLETED]
        stats = {name: mean_std([row.metrics.get(name) for row in completed])
                 for name in SETTING_METRICS}
        folded.append(SettingRow(
            "", "", {key: group[0].settings[key] for key in varying if key in group[0].settings},
            {name: mean for name, (mean, _) in stats.items()},
            stds={name: std for name, (_, std) in stats.items()},
            seeds=f"{len(completed)}/{len(group)}"))
    return folded


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


def sort_rows(rows: List[RunRow], key: Optional[str], settings: Sequence[str],
              folded: bool = False) -> List[RunRow]:
    """Rows sorted by a column: a metric (highest first), run, status or a shown setting;
    rows without a value last. ``folded``: setting_rows (no run or status to sort by)."""
    if key is None:
        return rows
    names = {short_key(setting): setting for setting in settings}
    choices = [*SETTING_METRICS, *names] if folded else ["run", "status", *METRIC_COLUMNS, *names]
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
              as_csv: bool = False, folded: bool = False) -> str:
    """What ``dropout-lab runs`` prints: the table (or CSV) of the runs under ``root``;
    ``folded`` (--by-setting): of its settings, the runs that differ only by seed together."""
    rows = read_rows(root, status)
    varying = varying_keys(rows)
    shown = [key for key in varying if key != "seed"] if folded else varying
    table_rows = sort_rows(setting_rows(rows, shown) if folded else rows, sort, shown, folded)
    if as_csv:
        return csv_text(table_rows, shown, folded)
    counts: Dict[str, int] = {}
    for row in rows:
        counts[row.status] = counts.get(row.status, 0) + 1
    lines = [f"{len(rows)} run{'' if len(rows) == 1 else 's'} under {root}"
             + (f" ({', '.join(f'{n} {s}' for s, n in counts.items())})" if rows else "")
             + (f", {len(table_rows)} setting{'' if len(table_rows) == 1 else 's'}" if folded else "")]
    shared = shared_non_defaults(rows, varying)
    if shared:
        lines.append("same in all: " + " ".join(f"{short_key(k)}={short_value(v)}"
                                                for k, v in shared.items()))
    if table_rows:
        lines += (setting_table if folded else run_table)(table_rows, shown)
    lines += error_lines(rows)
    return "\n".join(lines) + "\n"


def run_table(rows: Sequence[RunRow], varying: Sequence[str]) -> List[str]:
    """One line per run; a run without a config shows "-" for every setting."""
    columns = [name for name in METRIC_COLUMNS if name != "val"
               or any(row.metrics.get("val") is not None for row in rows)]
    header = ["run", "status", *(short_key(key) for key in varying),
              *(METRIC_COLUMNS[name] for name in columns)]
    body = [[row.run, row.status, *(short_value(row.settings.get(key, "-")) for key in varying),
             *(format_metric(name, row.metrics.get(name)) for name in columns)]
            for row in rows]
    return aligned([header, *body], right_from=2 + len(varying))


def setting_table(rows: Sequence[SettingRow], varying: Sequence[str]) -> List[str]:
    """One line per setting: its values, seeds completed/total, mean ± std of each metric."""
    columns = [name for name in SETTING_METRICS if name != "val"
               or any(row.metrics.get("val") is not None for row in rows)]
    header = [*(short_key(key) for key in varying), "seeds", *(METRIC_COLUMNS[n] for n in columns)]
    body = [[*(short_value(row.settings.get(key, "-")) for key in varying), row.seeds,
             *(mean_and_std(name, row.metrics.get(name), row.stds.get(name)) for name in columns)]
            for row in rows]
    return aligned([header, *body], right_from=len(varying))


def mean_and_std(name: str, mean: Optional[float], std: Optional[float]) -> str:
    """``0.8436 ± 0.0021``; the mean alone for one run."""
    if std is None or mean is None or not math.isfinite(mean):
        return format_metric(name, mean)
    return f"{format_metric(name, mean)} ± {std:.4f}"


def error_lines(rows: Sequence[RunRow]) -> List[str]:
    """The failed runs' errors, below the table; a run without a config named by its overrides."""
    failed = [row for row in rows if row.error]
    lines = ["", "errors:"] if failed else []
    for row in failed:
        given = [o for o in row.overrides if o.split("=")[0].lstrip("+~") not in LEFT_OUT]
        given = "" if row.settings or not given else f" [{' '.join(given)}]"
        lines.append(f"  {row.run}{given}: {row.error}")
    return lines


def csv_text(rows: Sequence[RunRow], varying: Sequence[str], folded: bool = False) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    if folded:
        writer.writerow([*varying, "seeds", *(f"{name}_{part}" for name in SETTING_METRICS
                                              for part in ("mean", "std"))])
        for row in rows:
            writer.writerow([*(row.settings.get(key, "") for key in varying), row.seeds,
                             *(blank(part.get(name)) for name in SETTING_METRICS
                               for part in (row.metrics, row.stds))])
        return out.getvalue()
    writer.writerow(["run", "status", *varying, *METRIC_COLUMNS, "ran_on", "error"])
    for row in rows:
        writer.writerow([row.run, row.status, *(row.settings.get(key, "") for key in varying),
                         *(blank(row.metrics.get(name)) for name in METRIC_COLUMNS),
                         row.ran_on, row.error or ""])
    return out.getvalue()


def blank(value: Optional[float]):
    return "" if value is None else value


def format_metric(name: str, value: Optional[float]) -> str:
    if value is None:
        return "-"
    if name == "epochs_done":
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

DIFF_METRICS = [(m.display, m.part, m.history) for m in metrics(DIFF_ORDER)]  # (label, part, key)


def diffed_run(run_dir: Path) -> RunRecord:
    """A run to diff; ConfigError (one line) for a path that is not a run, RunError for one
    whose summary cannot be read."""
    if not has_summary(run_dir):
        what = "does not exist" if not Path(run_dir).exists() else f"has no {SUMMARY}"
        raise ConfigError(f"{run_dir} is not a dropout-lab run (it {what})")
    return read_run(run_dir).readable()


def diff_text(run_a: Path, run_b: Path) -> str:
    """What ``dropout-lab diff`` prints: the config keys that differ, then the metrics."""
    a, b = diffed_run(run_a), diffed_run(run_b)
    flat_a, flat_b = (flatten_config(run.config) for run in (a, b))
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
    for label, keys in (("change only the last digits", LAST_DIGITS),
                        ("cannot change results", LEFT_OUT - LAST_DIGITS)):
        others = [key for key in differ if key in keys]
        if others:
            lines.append(f"also differ ({label}): " + ", ".join(
                f"{key} {shown(flat_a, key)} vs {shown(flat_b, key)}" for key in others))
    lines.append("")
    table = [["metric", "A", "B", "B - A"],
             ["status", a.status, b.status, ""]]
    for label, part, key in DIFF_METRICS:
        value_a, value_b = (getattr(run, part).get(key) for run in (a, b))
        if key == "val_accuracy" and value_a is None and value_b is None:
            continue
        change = "" if value_a is None or value_b is None else f"{value_b - value_a:+.4f}"
        table.append([label, number(value_a), number(value_b), change])
    table.append(["epochs", *("-" if run.epochs_done is None else str(run.epochs_done)
                              for run in (a, b)), ""])
    times = [run.seconds for run in (a, b)]
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
