"""Compare the runs of a sweep: a table (report.md, report.csv), mean ± std over seeds per
setting, and PNG plots of test accuracy over epochs. No torch import: ``dropout-lab report``
reads only the jobs' summary.json and .hydra/overrides.yaml files.

The pieces are reusable: ``load_runs`` gives one run_folder.RunRecord per job, ``swept_keys`` the parameters
that vary, ``by_setting`` groups runs that differ only in the seed, ``aggregate_over_seeds``
gives mean ± std per setting, ``plot_curves`` draws a metric over epochs per setting.
"""

import csv
import io
import math
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from dropout_lab.disk import save_figure, write_text
from dropout_lab.errors import ConfigError
from dropout_lab.inference.describe import mean_std
from dropout_lab.keys import BY_TAG, REPORT_ORDER, metrics
from dropout_lab.run_folder import RunRecord, Status, has_summary, read_run
from dropout_lab.tables import markdown_table

# Metrics in a record, with their headers; the first leads (and sorts) every table. The steady
# test accuracy is the mean of the last trainer.steady_epochs epochs: at lr 0.5 the last epoch
# alone jumps by more than most effects under study. "gap" is the clean gap (train accuracy in
# eval mode − test); the textbook's train accuracy, measured with dropout on, stays in the record.
METRICS = {m.record: m.label for m in metrics(REPORT_ORDER)}  # the labels are the registry's
LEAD = next(iter(METRICS))  # steady_test_accuracy
# Runs holding out a validation split (data.validation) lead with its steady accuracy: what a
# sweep tunes (sweep/job.py's objective); the test accuracy stays beside it, never chosen on.
VALIDATION_LEAD = BY_TAG["steady/accuracy_val"].record  # steady_val_accuracy
VALIDATION_METRICS = {VALIDATION_LEAD: BY_TAG["steady/accuracy_val"].label, **METRICS}
SEED_KEY = "seed"


# --- reading a sweep ------------------------------------------------------------------------

def load_runs(sweep_dir: Path) -> List[RunRecord]:
    """One record per job folder of ``sweep_dir`` (a folder with a summary.json), in job order
    (run_folder.read_run: a job whose summary cannot be read is an ``unreadable`` record)."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise ConfigError(f"{sweep_dir} is not a directory; give a sweep folder")
    runs = [read_run(folder) for folder in sweep_dir.iterdir() if has_summary(folder)]
    return sorted(runs, key=lambda run: (run.num is None, run.num or 0, run.job))


def swept_keys(runs: Sequence[RunRecord]) -> List[str]:
    """The override keys whose values differ between runs (all keys if none differ)."""
    keys = list(dict.fromkeys(key for run in runs for key in run.params))
    varying = [key for key in keys if len({run.params.get(key) for run in runs}) > 1]
    return varying or keys


def fixed_overrides(runs: Sequence[RunRecord], keys: Sequence[str]) -> List[str]:
    """The overrides every run shares, outside ``keys``."""
    if not runs:
        return []
    shared = runs[0].params
    return [f"{key}={value}" for key, value in shared.items()
            if key not in keys and all(run.params.get(key) == value for run in runs)]


def report_metrics(runs: Sequence[RunRecord]) -> Dict[str, str]:
    """The metrics of a report on ``runs`` (key -> header), the leading one first: the steady
    validation accuracy when a run has one, else the steady test accuracy."""
    validation = any(getattr(run, VALIDATION_LEAD) is not None for run in runs)
    return VALIDATION_METRICS if validation else METRICS


# --- aggregating over seeds -----------------------------------------------------------------

def setting_of(run: RunRecord, keys: Sequence[str]) -> Tuple[Tuple[str, str], ...]:
    """The run's values of ``keys`` other than the seed: runs with the same setting are seeds."""
    return tuple((key, run.params.get(key, "")) for key in keys if key != SEED_KEY)


def setting_label(setting: Tuple[Tuple[str, str], ...]) -> str:
    return ", ".join(f"{key}={short(value)}" for key, value in setting) or "all runs"


def by_setting(runs: Sequence[RunRecord], keys: Optional[Sequence[str]] = None) -> Dict[tuple, List[RunRecord]]:
    """Runs grouped by setting (their swept values other than the seed), in first-seen order."""
    keys = swept_keys(runs) if keys is None else keys
    groups: Dict[tuple, List[RunRecord]] = {}
    for run in runs:
        groups.setdefault(setting_of(run, keys), []).append(run)
    return groups


def aggregate_over_seeds(runs: Sequence[RunRecord], keys: Optional[Sequence[str]] = None,
                         metrics: Optional[Sequence[str]] = None) -> List[dict]:
    """One row per setting: setting, runs, completed, and (mean, std) of each metric (by default
    ``report_metrics``') over the completed runs (failed runs have no final metrics to
    average). Best mean of the first metric first.
    """
    metrics = list(report_metrics(runs) if metrics is None else metrics)
    rows = []
    for setting, group in by_setting(runs, keys).items():
        completed = [run for run in group if run.status == Status.COMPLETED]
        row = {"setting": dict(setting), "label": setting_label(setting),
               "runs": len(group), "completed": len(completed)}
        for metric in metrics:
            row[metric] = mean_std([getattr(run, metric) for run in completed])
        rows.append(row)
    return sorted(rows, key=lambda row: -(row[metrics[0]][0] if row[metrics[0]][0] is not None
                                          else -math.inf))


# --- plots ----------------------------------------------------------------------------------

def curve(runs: Sequence[RunRecord], metric: str = "test_accuracy"):
    """(epochs, means, stds) of ``metric`` over the runs' histories, epoch by epoch."""
    by_epoch: Dict[int, List[float]] = {}
    for run in runs:
        for row in run.history:
            by_epoch.setdefault(row["epoch"], []).append(row[metric])
    epochs = sorted(by_epoch)
    stats = [mean_std(by_epoch[epoch]) for epoch in epochs]
    return epochs, [m for m, _ in stats], [s or 0.0 for _, s in stats]


def plot_curves(groups: Dict[str, Sequence[RunRecord]], path: Path, metric: str = "test_accuracy",
                title: Optional[str] = None, max_lines: int = 20) -> Path:
    """A PNG of ``metric`` over epochs, one line per group (label -> runs, best first: the
    legend keeps that order, the report's table's): the mean over the group's runs, with a
    ± std band where it has several. Keeps the first ``max_lines`` groups."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    from dropout_lab.plots import new_figure, std_band

    curves = {label: curve(runs, metric) for label, runs in groups.items()}
    curves = {label: c for label, c in curves.items() if c[0]}
    ranked = list(curves)[:max_lines]
    figure, (axes,) = new_figure(1, width=8, height=5)
    colors = plt.get_cmap("tab20" if len(ranked) > 10 else "tab10")
    for i, label in enumerate(ranked):
        epochs, means, stds = curves[label]
        color = colors(i % colors.N)
        axes.plot(epochs, means, "o-", color=color, label=label, markersize=3)
        if any(stds):
            std_band(axes, epochs, means, stds, color=color, alpha=0.15)
    shown = "" if len(ranked) == len(curves) else f" (best {len(ranked)} of {len(curves)})"
    axes.set(xlabel="epoch", ylabel=metric.replace("_", " "), title=(title or metric) + shown)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    axes.grid(alpha=0.3)
    if ranked:
        axes.legend(fontsize="small", loc="best")
    return save_figure(figure, Path(path))


# --- the report -----------------------------------------------------------------------------

def sorted_runs(runs: Sequence[RunRecord]) -> List[RunRecord]:
    """Completed runs by the leading metric (report_metrics': steady validation or test
    accuracy), best first; then the others (a diverged run's last good epoch is no result),
    then runs without any metrics; ties in job order."""
    lead = next(iter(report_metrics(runs)))
    return sorted(runs, key=lambda run: (run.status != Status.COMPLETED, getattr(run, lead) is None,
                                         -(getattr(run, lead) or 0.0), run.num or 0))


def short(value: str) -> str:
    """A long float as written by a sampler (0.31415926535) shortened for a table cell."""
    try:
        number = float(value)
    except ValueError:
        return value
    return value if len(value) <= 8 or not math.isfinite(number) else f"{number:.4g}"


def pm(stats: Tuple[Optional[float], Optional[float]]) -> str:
    mean, std = stats
    if mean is None:
        return ""
    return f"{mean:.4f} ± {std:.4f}" if std is not None else f"{mean:.4f}"


def job_rows(runs: Sequence[RunRecord], keys: Sequence[str], markdown: bool = False) -> List[list]:
    """Table rows, best first. Markdown shows the job number (the parameters are the columns)
    and shortened values; the CSV keeps the folder name and the values as written."""
    return [[f"#{run.num}" if markdown and run.num is not None else run.job,
             *((short if markdown else str)(run.params.get(key, "")) for key in keys),
             run.status, *(getattr(run, metric) for metric in report_metrics(runs)), run.epochs,
             None if run.seconds is None else f"{run.seconds:.1f}"]
            for run in sorted_runs(runs)]


def write_report(sweep_dir: Path, runs: Optional[List[RunRecord]] = None) -> Dict[str, Path]:
    """Write report.md, report.csv and test_accuracy.png into ``sweep_dir``; returns the paths."""
    sweep_dir = Path(sweep_dir)
    runs = load_runs(sweep_dir) if runs is None else runs
    if not runs:
        raise ConfigError(f"{sweep_dir} has no job folders with a summary.json to report on")
    keys = swept_keys(runs)
    header = ["job", *keys, "status", *report_metrics(runs).values(), "epochs", "time (s)"]
    paths = {"markdown": sweep_dir / "report.md", "csv": sweep_dir / "report.csv",
             "plot": sweep_dir / "test_accuracy.png"}

    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow([*header[:-1], "seconds", "error"])
    for run, row in zip(sorted_runs(runs), job_rows(runs, keys)):
        writer.writerow([*row, run.error or ""])
    write_text(paths["csv"], text.getvalue())

    seeds = SEED_KEY in keys and any(len(g) > 1 for g in by_setting(runs, keys).values())
    settings = by_setting(runs, keys)
    # In the order of the tables (the leading metric's mean, best first), not the final epoch's.
    groups = {row["label"]: settings[tuple(row["setting"].items())]
              for row in aggregate_over_seeds(runs, keys)}
    plot_curves(groups, paths["plot"], title="test accuracy per setting"
                + (" (mean ± std over seeds)" if seeds else ""))
    markdown = report_markdown(sweep_dir, runs, keys, header, seeds)
    write_text(paths["markdown"], markdown)
    return paths


def report_markdown(sweep_dir: Path, runs: List[RunRecord], keys: List[str], header: List[str],
                    seeds: bool) -> str:
    counts: Dict[str, int] = {}
    for run in runs:
        counts[run.status] = counts.get(run.status, 0) + 1
    metrics = report_metrics(runs)
    validation = VALIDATION_LEAD in metrics
    parts = [f"# Sweep report: {sweep_dir.name}", "",
             f"{len(runs)} jobs: " + ", ".join(f"{n} {status}" for status, n in counts.items())
             + (". Sorted by the steady validation accuracy (on the data.validation images "
                "held out of training: what the sweep tunes), the steady test accuracy beside "
                "it; steady: " if validation else ". Sorted by the steady test accuracy, ")
             + "the mean of the last trainer.steady_epochs epochs (3 by default; the final "
               "epoch alone jumps by more than most effects at lr 0.5); the final and best "
               "epochs beside it. Train accuracy in eval mode (dropout off) on a fixed training "
               "subset; gap = that − test accuracy, the clean measure of overfitting."]
    fixed = fixed_overrides(runs, keys)
    if fixed:
        parts.append(f"All jobs: `{' '.join(fixed)}`.")
    early = steady_from_the_start(runs)
    if early:
        parts += ["", f"Note: {len(early)} of {len(runs)} runs trained no more epochs than "
                      f"trainer.steady_epochs, so their steady accuracy is the mean of every epoch, "
                      f"epoch 1 included: it ranks them by how fast they learn as much as by where "
                      f"they end. Train more epochs than trainer.steady_epochs (or lower it) to "
                      f"rank by the end of training."]
    parts += optuna_best(sweep_dir, runs)
    parts += ["", "## Jobs", "", markdown_table(header, job_rows(runs, keys, markdown=True))]
    failures = [run for run in sorted_runs(runs) if run.status != Status.COMPLETED]
    if failures:
        parts += ["", "Not completed:", ""]
        parts += [f"- `{run.job}`: {run.status}: {run.error or 'no error recorded'}"
                  for run in failures]
    if seeds:
        rows = aggregate_over_seeds(runs, keys)
        setting_keys = [key for key in keys if key != SEED_KEY]
        parts += ["", "## Mean ± std over seeds (completed runs; sample std)", "",
                  markdown_table([*setting_keys, "runs", "completed", *metrics.values()],
                                 [[*(short(row["setting"][k]) for k in setting_keys),
                                   row["runs"], row["completed"],
                                   *(pm(row[metric]) for metric in metrics)] for row in rows])]
    parts += ["", "## Test accuracy over epochs", "", "![test accuracy](test_accuracy.png)", ""]
    return "\n".join(parts)


def steady_from_the_start(runs: Sequence[RunRecord]) -> List[RunRecord]:
    """The completed runs whose steady window reaches back to epoch 1 (trainer.epochs <=
    trainer.steady_epochs): their steady mean is no endpoint."""
    return [run for run in runs if run.status == Status.COMPLETED and run.epochs > 0
            and run.epochs <= run.steady_epochs]


def optuna_best(sweep_dir: Path, runs: Sequence[RunRecord]) -> List[str]:
    """The Optuna sweeper's best parameters and value (optimization_results.yaml), if any: the
    objective (sweep/job.py's: the steady validation accuracy, or the steady test accuracy
    without a validation split), named, with the test accuracy of the job that reached it."""
    import yaml

    path = sweep_dir / "optimization_results.yaml"
    if not path.is_file():
        return []
    results = yaml.safe_load(path.read_text()) or {}
    params = " ".join(f"{k}={v}" for k, v in (results.get("best_params") or {}).items())
    value = results.get("best_value")
    best = best_job(runs, value)
    if best is not None and best.steady_val_accuracy is not None:
        found = (f"steady val acc {value:.4f} (its steady test acc "
                 f"{best.steady_test_accuracy:.4f}, job #{best.num})")
    elif best is not None:
        found = f"steady test acc {value:.4f} (job #{best.num})"
    else:
        found = f"objective {value}"  # its job's summary is gone: unnamed
    return ["", f"Optuna's best: {found} with `{params}`."]


def best_job(runs: Sequence[RunRecord], value: Optional[float]) -> Optional[RunRecord]:
    """The first completed job whose objective (steady validation accuracy, else steady test
    accuracy) is ``value``, Optuna's best; None when none is."""
    for run in runs:
        if (run.status == Status.COMPLETED and run.objective is not None
                and value is not None and math.isclose(run.objective, value, rel_tol=1e-9)):
            return run
    return None
