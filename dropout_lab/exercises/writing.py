"""Writing an exercise's answer: report.md and results.json in its folder, measurements.json,
and index.md over all exercise folders of an invocation. No torch import."""

from pathlib import Path
from typing import Dict, List, Sequence

from dropout_lab.disk import read_json, write_json, write_text
from dropout_lab.exercises.runs import completed, seeds
from dropout_lab.exercises.stats import ALPHA, POWER, Comparison, format_p, seeds_to_detect
from dropout_lab.exercises.types import Exercise, Findings, Table
from dropout_lab.run_folder import Status
from dropout_lab.tables import markdown_table

REPORT, RESULTS, MEASUREMENTS, RUNS, INDEX = (
    "report.md", "results.json", "measurements.json", "runs", "index.md")


# --- the shared paragraphs: the metric and how to read a verdict ------------------------------

METRIC = (
    "The metric is the steady test accuracy, each run's mean over its last "
    "trainer.steady_epochs epochs (3 unless the setup says otherwise), because at lr 0.5 the "
    "test accuracy jumps between epochs by more than most effects under study; the final and "
    "best epochs are shown beside it. The gap is the clean gap: train accuracy in eval mode "
    "(dropout off, on a fixed 10,000-image training subset) minus test accuracy; the "
    "textbook's train accuracy, measured during the epoch with dropout on, is labelled as such "
    "where shown.")

SIGNIFICANCE = (
    "How to read a verdict. Another seed (another initialisation and batch order) gives a "
    "slightly different accuracy, so a difference between two settings could be luck. Each "
    "comparison states Δ with its 95% confidence interval (the true differences that fit the "
    "runs) and a p-value: how often luck alone would give a difference at least this large if "
    "the settings were equal. Runs with the same seed share their batch order (and their "
    "initial weights where the layer sizes match), so where every setting involved ran the "
    "same seeds they are compared seed by seed (a paired t-test), which cancels that shared "
    "luck; otherwise Welch's t-test compares the averages. An exercise makes several "
    "comparisons, each with its own chance of a fluke, so their p-values are adjusted together "
    "(Holm's method), and a comparison is called significant when its adjusted p < 0.05. "
    "Not significant does not mean equal: the table gives the smallest difference each "
    "comparison would have detected with 80% power, and how many seeds it would take to detect "
    "one as large as the difference observed.")


def significance_lines(comparisons: Dict[str, Comparison]) -> List[str]:
    """The report's paragraph on significance and its table of the family's tests."""
    if not comparisons:
        return []
    tested = sum(c.known for c in comparisons.values())
    lines = ["### Statistical tests", "", SIGNIFICANCE, "",
             markdown_table(["comparison", "Δ", "95% CI of Δ", "test", "p", "adjusted p (Holm)",
                             "Holm over", "significant", f"detectable |Δ| ({POWER:.0%} power)",
                             "seeds to detect the observed Δ"],
                            [comparison_row(name, c) for name, c in comparisons.items()]), "",
             f"{tested} tested comparisons; \"Holm over\" is the size m of the family each "
             f"was adjusted in. Significant: adjusted p < {ALPHA}. The detectable |Δ| is at "
             f"level {ALPHA}/m (Holm's first step), from the observed spread over seeds, itself "
             f"uncertain with few seeds. Δ is in the metric's own units (accuracy: 0.01 = 1 "
             f"point).",
             ""]
    return lines


def comparison_row(name: str, comparison: Comparison) -> list:
    c = comparison
    if not c.known:
        return [name, "n/a" if c.delta is None else f"{c.delta:+.4f}", "", c.method, "", "", "",
                "no verdict", "", ""]
    needed = "" if c.significant else seeds_needed_text(c)
    return [name, f"{c.delta:+.4f}", f"{c.ci[0]:+.4f} to {c.ci[1]:+.4f}", c.method,
            format_p(c.p_value), format_p(c.adjusted_p), c.family_size,
            "yes" if c.significant else "no",
            f"{c.detectable:.4f}", needed]


def seeds_needed_text(comparison: Comparison) -> str:
    """How many seeds it would take to detect a true Δ as large as the observed one."""
    needed = seeds_to_detect(comparison)
    per = "paired seeds" if comparison.design.paired else "seeds per setting"
    if needed is None:
        return "none would: the observed Δ is 0"
    if needed > 1000:
        return f"over 1,000 {per}: too small to matter at this budget"
    return f"{needed} {per}"


def comparisons_json(comparisons: Dict[str, Comparison]) -> Dict[str, dict]:
    """The family's comparisons for results.json."""
    return {name: {"delta": c.delta, "ci": list(c.ci) if c.ci else None, "p": c.p_value,
                   "adjusted_p": c.adjusted_p, "significant": c.significant, "method": c.method,
                   "family_size": c.family_size,
                   "detectable": c.detectable if c.known else None,
                   "seeds_to_detect_observed": seeds_to_detect(c) if c.known else None}
            for name, c in comparisons.items()}


def ties_with_best(tied: Sequence[str], others: int) -> str:
    """'3 of the other 15 settings are not significantly below it (Holm over those 15
    comparisons): a, b, c.' for the settings whose difference from the best is not significant."""
    verb = "is" if len(tied) == 1 else "are"
    return (f"{len(tied)} of the other {others} settings {verb} not significantly below it "
            f"(Holm over those {others} comparisons)"
            + (f": {', '.join(tied)}." if tied else "."))


def endpoints_table(groups: Dict, names: Dict, title: str = "Test accuracy: steady, final "
                    "and best epoch; train accuracy and gap (mean ± std over seeds)") -> Table:
    """Per setting: the steady test accuracy (the metric), the final and best epoch beside it,
    the clean train accuracy and gap (steady) and the textbook's dropout-on gap (final epoch).
    ``groups``: setting -> runs; ``names``: setting -> its name in the table."""
    from dropout_lab.exercises.runs import best_epoch, final, steady_metric

    rows = [[names[key], steady_metric(group).text(), final(group).text(),
             best_epoch(group).text(), steady_metric(group, "train_eval_accuracy").text(),
             steady_metric(group, "gap").text(), final(group, "gap_dropout_on").text()]
            for key, group in groups.items()]
    return Table(title, ["setting", "steady test acc", "final epoch", "best epoch",
                         "train acc (eval mode)", "gap", "textbook's gap (dropout on, final)"],
                 rows, "Steady: mean over the last trainer.steady_epochs epochs. Gap: train "
                       "accuracy in eval mode − test accuracy. The textbook's gap is the train "
                       "accuracy measured during the epoch with dropout on, minus test accuracy: "
                       "the noise itself lowers it, below zero under heavy dropout.")


# --- report.md ------------------------------------------------------------------------------

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


def rerun_lines(exercise: Exercise, context: dict) -> List[str]:
    """Where the runs are and the commands that make them again."""
    overrides = " ".join(context["overrides"])
    user_overrides = " ".join(context["user_overrides"])
    rerun = f"dropout-lab exercise {exercise.number}" + (" --quick" if context["quick"] else "")
    return [
        f"- Every run is a normal run in [`{RUNS}/`]({RUNS}/report.md) (the sweep's own report); "
        f"view them with `dropout-lab tensorboard {context['sweep_dir']}`.",
        f"- Rerun: `{rerun}{' ' + user_overrides if user_overrides else ''}`, "
        f"or the sweep alone: `dropout-lab sweep experiment={exercise.experiment}"
        f"{' ' + overrides if overrides else ''}` (configs/experiment/{exercise.experiment}.yaml).",
    ]


def setup_section(exercise: Exercise, findings: Findings, context: dict) -> List[str]:
    runs = context["runs"]
    lines = ["## Setup", "", exercise.design, "", f"- Runs: {common_settings(runs)}",
             *rerun_lines(exercise, context),
             f"- {METRIC}",
             "- Significance: a t-test per comparison (paired by seed where the settings ran "
             "the same seeds, else Welch's), Holm-adjusted over the exercise; significant: "
             "adjusted p < 0.05 (see \"Statistical tests\" below).",
             f"- Time: {context['seconds']:.0f} s for this invocation (sweep, measurements and "
             f"report; a resumed sweep skips completed runs); the runs' own wall times add up to "
             f"{run_seconds(runs):.0f} s."]
    lines += [f"- {line}" for line in findings.setup]
    failed = [run for run in runs if run["status"] != Status.COMPLETED]
    if failed:
        lines.append(f"- {len(failed)} of {len(runs)} jobs did not complete and are left out: "
                     + ", ".join(f"`{run['job']}` ({run['status']})" for run in failed))
    return lines


def results_section(findings: Findings) -> List[str]:
    lines = ["## Results", ""]
    for table in findings.tables:
        lines += [f"### {table.title}", "", markdown_table(table.header, table.rows), ""]
        if table.note:
            lines += [table.note, ""]
    for caption, name in findings.plots:
        lines += [f"![{caption}]({name})", "", f"*{caption}*", ""]
    return lines + significance_lines(findings.comparisons)


def report_markdown(exercise: Exercise, findings: Findings, context: dict) -> str:
    """The report: question, setup, results (tables, plots), conclusion (one bullet a line).
    ``context``: runs, overrides, user_overrides, quick, sweep_dir, seconds."""
    parts = [f"# Exercise {exercise.number}: {exercise.title}", "",
             "## Question", "", exercise.question, "",
             *setup_section(exercise, findings, context), "",
             *results_section(findings),
             "## Conclusion", "", *(f"- {line}" for line in findings.conclusion)]
    return "\n".join(parts) + "\n"


# --- results.json, measurements.json, index.md ----------------------------------------------

def results_json(exercise: Exercise, findings: Findings, context: dict) -> dict:
    runs = context["runs"]
    return {
        "exercise": exercise.number, "title": exercise.title, "seconds": context["seconds"],
        "run_seconds": run_seconds(runs),
        "jobs": len(runs),
        "completed": len(completed(runs)),
        "overrides": context["overrides"],
        "tables": [{"title": t.title, "header": list(t.header), "rows": [list(map(str, r)) for r in t.rows]}
                   for t in findings.tables],
        "conclusion": findings.conclusion,
        "numbers": findings.numbers,
        "comparisons": comparisons_json(findings.comparisons),
    }


def write_report(exercise: Exercise, findings: Findings, out_dir: Path, context: dict) -> Path:
    """report.md and results.json into ``out_dir``; returns the report's path."""
    path = Path(out_dir) / REPORT
    write_text(path, report_markdown(exercise, findings, context))
    write_json(Path(out_dir) / RESULTS, results_json(exercise, findings, context))
    return path


def save_measurements(out_dir: Path, measurements: dict) -> None:
    write_json(Path(out_dir) / MEASUREMENTS, measurements)


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
        "computed from the numbers. " + METRIC, "", SIGNIFICANCE, "",
        markdown_table(["exercise", "question", "jobs", "not completed", "time (s)",
                        "runs' time (s)", "first finding"], rows),
        "", f"Total time: {total:.0f} s (the last invocation of each exercise; one that resumed "
            f"skipped its completed runs). Runs' time: the runs' own wall times added up.", ""])
    path = Path(out_dir) / INDEX
    write_text(path, text)
    return path
