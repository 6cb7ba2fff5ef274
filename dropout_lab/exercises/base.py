"""What an exercise is, what its analysis returns, and how its report.md is written.

An exercise is a named sweep (configs/experiment/exercise_N.yaml) plus an analysis: a function
from the sweep's run records (report.load_runs) and any measurements made on the trained
models to tables, plots and a conclusion computed from those numbers. No torch import here.
"""

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Hashable, List, Optional, Sequence, Tuple

from dropout_lab.exercises.stats import SIGNIFICANCE_RULE, Estimate, estimate
from dropout_lab.disk import atomic_write, read_json, write_json
from dropout_lab.report import markdown_table

REPORT, RESULTS, MEASUREMENTS, RUNS = "report.md", "results.json", "measurements.json", "runs"


@dataclass(frozen=True)
class Table:
    title: str
    header: Sequence[str]
    rows: List[Sequence]
    note: str = ""


@dataclass
class Findings:
    """An analysis' result: tables, plots (caption, file name in the exercise folder), the
    conclusion (one bullet per line), extra setup lines, and key numbers for results.json."""

    tables: List[Table]
    plots: List[Tuple[str, str]]
    conclusion: List[str]
    setup: List[str] = field(default_factory=list)
    numbers: Dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Exercise:
    number: int
    title: str
    question: str  # the textbook's exercise, in our words
    design: str  # what the sweep runs, one paragraph
    analyze: Callable[[List[dict], dict, Path], Findings]  # (runs, measurements, out_dir)
    quick: Tuple[str, ...] = ()  # overrides that shrink the sweep for --quick
    # (completed runs, out_dir, quick) -> JSON-able measurements on the trained models
    measure: Optional[Callable[[List[dict], Path, bool], dict]] = None

    @property
    def experiment(self) -> str:
        return f"exercise_{self.number}"


# --- reading the runs -----------------------------------------------------------------------

def completed(runs: Sequence[dict]) -> List[dict]:
    return [run for run in runs if run["status"] == "completed"]


def group_by(runs: Sequence[dict], key: Callable[[dict], Hashable]) -> Dict[Hashable, List[dict]]:
    """Completed runs grouped by ``key(run)`` (a setting: runs in one group differ in the seed)."""
    groups: Dict[Hashable, List[dict]] = {}
    for run in completed(runs):
        groups.setdefault(key(run), []).append(run)
    return groups


def final(runs: Sequence[dict], metric: str = "test_accuracy") -> Estimate:
    """A final metric of each run (report.METRICS keys or any key of the last epoch)."""
    return estimate(run[metric] if metric in run else (run["history"] or [{}])[-1].get(metric)
                    for run in runs)


def at_epoch(runs: Sequence[dict], epoch: int, metric: str) -> Estimate:
    return estimate(row.get(metric) for run in runs for row in run["history"] if row["epoch"] == epoch)


def dropout_of(run: dict) -> dict:
    """The run's model.dropout config: kind, p (a number or one per layer), three_valued."""
    return run["config"]["model"]["dropout"]


def per_layer(value, n_layers: int) -> Tuple[float, ...]:
    """A p given as one number or a list, as one float per hidden layer."""
    values = list(value) if isinstance(value, (list, tuple)) else [value] * n_layers
    return tuple(float(v) for v in values)


def probabilities(run: dict) -> Tuple[float, ...]:
    """(p1, p2, ...) of the run's hidden layers; zeros for kind none."""
    dropout, n_layers = dropout_of(run), len(run["config"]["model"]["hidden"])
    if dropout["kind"] == "none":
        return (0.0,) * n_layers
    return per_layer(dropout["p"], n_layers)


def seeds(runs: Sequence[dict]) -> List[int]:
    return sorted({run["config"]["seed"] for run in completed(runs)})


def fmt_p(values: Sequence[float]) -> str:
    return "(" + ", ".join(f"{v:g}" for v in values) + ")"


# --- plots ----------------------------------------------------------------------------------

def new_figure(ncols: int = 1, width: float = 6.0, height: float = 4.2):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, ncols, figsize=(width * ncols, height), layout="constrained",
                                squeeze=False)
    return figure, list(axes[0])


def save_figure(figure, path: Path) -> str:
    """Write the PNG atomically, close the figure, return the file name."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    atomic_write(Path(path), lambda out: out.write(buffer.getvalue()))
    return Path(path).name


def errorbar(axes, xs, estimates: Sequence[Estimate], label: str, **style) -> None:
    """Means with ± std bars; missing settings are left out."""
    points = [(x, est.mean, est.std or 0.0) for x, est in zip(xs, estimates) if est.mean is not None]
    if points:
        axes.errorbar([p[0] for p in points], [p[1] for p in points], yerr=[p[2] for p in points],
                      marker="o", capsize=3, label=label, **style)


# --- the report -----------------------------------------------------------------------------

def common_settings(runs: Sequence[dict]) -> str:
    """The budget the runs share: epochs, data, optimiser, seeds."""
    done = completed(runs)
    if not done:
        return "No run completed."
    config = done[0]["config"]
    data, optim, trainer = config["data"], config["optim"], config["trainer"]
    epochs = sorted({run["config"]["trainer"]["epochs"] for run in done})
    train_images = data["subset"] or 60000
    test_images = data["test_subset"] or 10000
    return (f"{len(done)} completed runs, seeds {seeds(runs)}; {'/'.join(map(str, epochs))} epochs "
            f"on {train_images} training images (test on {test_images}); {optim['name']} "
            f"lr {optim['lr']}, batch {trainer['batch_size']}; hidden layers "
            f"{sorted({str(r['config']['model']['hidden']) for r in done})} unless the table says.")


def run_seconds(runs: Sequence[dict]) -> float:
    """The runs' wall times added up (with parallel jobs, more than the sweep took)."""
    return sum(run.get("seconds") or 0.0 for run in runs)


def report_markdown(exercise: Exercise, findings: Findings, context: dict) -> str:
    runs = context["runs"]
    failed = [run for run in runs if run["status"] != "completed"]
    overrides = " ".join(context["overrides"])
    rerun = f"dropout-lab exercise {exercise.number}" + (" --quick" if context["quick"] else "")
    parts = [
        f"# Exercise {exercise.number}: {exercise.title}", "",
        "## Question", "", exercise.question, "",
        "## Setup", "", exercise.design, "",
        f"- Runs: {common_settings(runs)}",
        f"- Every run is a normal run in [`{RUNS}/`]({RUNS}/report.md) (the sweep's own report); "
        f"view them with `dropout-lab tensorboard {context['sweep_dir']}`.",
        f"- Rerun: `{rerun}{' ' + ' '.join(context['user_overrides']) if context['user_overrides'] else ''}`, "
        f"or the sweep alone: `dropout-lab sweep experiment={exercise.experiment}"
        f"{' ' + overrides if overrides else ''}` (configs/experiment/{exercise.experiment}.yaml).",
        f"- Significance: {SIGNIFICANCE_RULE}",
        f"- Time: {context['seconds']:.0f} s for this invocation (sweep, measurements and report; "
        f"a resumed sweep skips completed runs); the runs' own wall times add up to "
        f"{run_seconds(runs):.0f} s.",
    ]
    parts += [f"- {line}" for line in findings.setup]
    if failed:
        parts.append(f"- {len(failed)} of {len(runs)} jobs did not complete and are left out: "
                     + ", ".join(f"`{run['job']}` ({run['status']})" for run in failed))
    parts += ["", "## Results", ""]
    for table in findings.tables:
        parts += [f"### {table.title}", "", markdown_table(table.header, table.rows), ""]
        if table.note:
            parts += [table.note, ""]
    for caption, name in findings.plots:
        parts += [f"![{caption}]({name})", "", f"*{caption}*", ""]
    parts += ["## Conclusion", ""]
    parts += [f"- {line}" for line in findings.conclusion]
    return "\n".join(parts) + "\n"


def write_report(exercise: Exercise, findings: Findings, out_dir: Path, context: dict) -> Path:
    path = Path(out_dir) / REPORT
    text = report_markdown(exercise, findings, context)
    atomic_write(path, lambda out: out.write(text.encode()))
    write_json(Path(out_dir) / RESULTS, {
        "exercise": exercise.number, "title": exercise.title, "seconds": context["seconds"],
        "run_seconds": run_seconds(context["runs"]),
        "jobs": len(context["runs"]),
        "completed": len(completed(context["runs"])),
        "overrides": context["overrides"],
        "tables": [{"title": t.title, "header": list(t.header), "rows": [list(map(str, r)) for r in t.rows]}
                   for t in findings.tables],
        "conclusion": findings.conclusion,
        "numbers": findings.numbers,
    })
    return path


def write_index(out_dir: Path) -> Path:
    """index.md linking every exercise report in ``out_dir`` (also those of earlier
    invocations into the same folder), with each one's first conclusion and time."""
    results = sorted((read_json(path) for path in Path(out_dir).glob(f"exercise_*/{RESULTS}")),
                     key=lambda result: result["exercise"])
    rows = [[f"[{r['exercise']}](exercise_{r['exercise']}/{REPORT})", r["title"], r["jobs"],
             r["jobs"] - r["completed"], f"{r['seconds']:.0f}", f"{r.get('run_seconds', 0):.0f}",
             (r["conclusion"] or [""])[0].replace("\n", " ")] for r in results]
    total = sum(r["seconds"] for r in results)
    text = "\n".join([
        "# Dropout exercises: answers from measured data", "",
        "Each report gives the question, the setup, the tables and plots, and a conclusion "
        "computed from the numbers. " + SIGNIFICANCE_RULE, "",
        markdown_table(["exercise", "question", "jobs", "not completed", "time (s)",
                        "runs' time (s)", "first finding"], rows),
        "", f"Total time: {total:.0f} s (the last invocation of each exercise; one that resumed "
            f"skipped its completed runs). Runs' time: the runs' own wall times added up.", ""])
    path = Path(out_dir) / "index.md"
    atomic_write(path, lambda out: out.write(text.encode()))
    return path


def save_measurements(out_dir: Path, measurements: dict) -> None:
    write_json(Path(out_dir) / MEASUREMENTS, measurements)



def dropout_name(probs: Sequence[float]) -> str:
    """'no dropout' or 'dropout (0.2, 0.5)' for a tuple of per-layer probabilities."""
    return "no dropout" if not any(probs) else f"dropout {fmt_p(probs)}"


def seconds_per_epoch(runs: Sequence[dict]) -> Estimate:
    """Training time per epoch (train pass and test evaluation) of each run, as measured."""
    return estimate(run["train_seconds"] / run["epochs"] for run in runs
                    if run.get("train_seconds") and run.get("epochs"))


def tail_mean(runs: Sequence[dict], metric: str, epochs: int) -> Estimate:
    """Each run's mean of ``metric`` over its last ``epochs`` epochs: steadier than the last
    epoch alone where test accuracy swings from epoch to epoch."""
    return estimate(sum(row[metric] for row in run["history"][-epochs:])
                    / len(run["history"][-epochs:]) for run in runs if run["history"])


def instability(estimates: Dict[str, Estimate], threshold: float = 0.05) -> List[str]:
    """A warning line for settings whose spread over seeds exceeds ``threshold`` (a run that
    collapsed or diverged in some seed): their verdicts carry little weight."""
    shaky = {name: est for name, est in estimates.items() if (est.std or 0.0) > threshold}
    if not shaky:
        return []
    worst = ", ".join(f"{name} (std {est.std:.3f}, lowest run {min(est.values):.3f})"
                      for name, est in shaky.items())
    return [f"Unstable over seeds: {worst}; at least one run there fell far below the others, "
            f"so verdicts involving these settings carry little weight."]
