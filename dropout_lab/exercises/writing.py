"""Writing an exercise's answer: report.md and results.json in its folder, measurements.json,
and index.md over all exercise folders of an invocation. No torch import."""

from pathlib import Path
from typing import List, Sequence

from dropout_lab.disk import read_json, write_json, write_text
from dropout_lab.exercises.runs import completed, seeds
from dropout_lab.exercises.stats import SIGNIFICANCE_RULE
from dropout_lab.exercises.types import Exercise, Findings
from dropout_lab.run_folder import Status
from dropout_lab.tables import markdown_table

REPORT, RESULTS, MEASUREMENTS, RUNS, INDEX = (
    "report.md", "results.json", "measurements.json", "runs", "index.md")


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
             f"- Significance: {SIGNIFICANCE_RULE}",
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
    return lines


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
        "computed from the numbers. " + SIGNIFICANCE_RULE, "",
        markdown_table(["exercise", "question", "jobs", "not completed", "time (s)",
                        "runs' time (s)", "first finding"], rows),
        "", f"Total time: {total:.0f} s (the last invocation of each exercise; one that resumed "
            f"skipped its completed runs). Runs' time: the runs' own wall times added up.", ""])
    path = Path(out_dir) / INDEX
    write_text(path, text)
    return path
