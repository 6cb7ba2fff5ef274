"""Writing an exercise's answer: report.md and results.json in its folder, measurements.json,
and index.md over all exercise folders of an invocation. No torch import."""

from pathlib import Path
from typing import Dict, List, Sequence

from dropout_lab.disk import read_json, write_json, write_text
from dropout_lab.exercises.runs import completed, seeds
from dropout_lab.exercises.types import Exercise, Findings, Table
from dropout_lab.run_folder import RunRecord, Status
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

HOW_DECIDED = (
    "How the answers are found. Each exercise declares its questions in code before any run: "
    "setting A against setting B (fixed, not picked from the results), on one metric, with a "
    "practical margin δ. Runs with the same seed share their batch order (and their initial "
    "weights where the layer sizes match), so each question compares A and B seed by seed "
    "(paired t-tests over the seeds both ran; a lost run drops only its own seed). A question "
    "ends as \"A better\" or \"B better\" (the paired t-test of Δ = 0 rejects), "
    "\"equivalent\" (both one-sided tests of |Δ| ≥ δ reject: TOST, the difference is within "
    "±δ) or \"undecided\" (neither, at the seeds run: the interval and the seeds a decision "
    "would likely take are given). The questions of one exercise are one family: Holm's "
    "step-down over its tests of Δ = 0 and, at the same adjusted levels, over its TOSTs, so "
    "the chance of any wrong \"better\" in the exercise is at most 5%, and of any wrong "
    "\"equivalent\" at most 5%. With --until-decided the seeds come in rounds and each look "
    "spends part of the 5% (Lan-DeMets O'Brien-Fleming alpha spending), so repeated looks keep "
    "these rates. Tables and plots describe the runs; they give no verdicts.")


def answer_lines(answers, findings: Findings) -> List[str]:
    """The report's opening: each declared question and its answer; an exercise without
    questions (3) is answered by its first measured finding."""
    if not answers:
        return [f"{(findings.conclusion or [''])[0]} (A measurement: this exercise compares no "
                f"settings.)"]
    return [f"- **{a.question.name}** ({a.question.a} vs {a.question.b}, {a.question.metric}): "
            f"{a.text()}." for a in answers]


def questions_lines(answers, design) -> List[str]:
    """The declared questions, the family's correction and the design."""
    if not answers:
        return []
    rows = [[a.question.name, a.question.a, a.question.b, a.question.metric,
             f"±{a.question.margin:g}", a.answer, a.seeds,
             "; ".join(f"{look.seeds}: {look.answer}" for look in a.looks) or a.why]
            for a in answers]
    looks = (design.text() if design is not None else
             f"a fixed design: one look at the seeds run ({max(a.seeds for a in answers)})")
    return ["## Questions (declared before the runs)", "",
            markdown_table(["question", "A", "B", "metric", "margin δ", "answer",
                            "paired seeds", "looks (seeds: answer)"], rows), "",
            f"{len(answers)} questions, one family (Holm). Design: {looks}. {HOW_DECIDED}", ""]


def answers_json(answers) -> List[dict]:
    return [a.as_json() for a in answers]


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

def common_settings(runs: Sequence[RunRecord]) -> str:
    """The budget the runs share: epochs, data, optimiser, seeds."""
    done = completed(runs)
    if not done:
        return "No run completed."
    config = done[0].config
    data, optim, trainer = config["data"], config["optim"], config["trainer"]
    epochs = sorted({run.config["trainer"]["epochs"] for run in done})
    train_images = data["subset"] or 60000
    test_images = data["test_subset"] or 10000
    return (f"{len(runs)} run{'s' if len(runs) != 1 else ''} ran, {len(done)} completed, "
            f"seeds {seeds(runs)}; "
            f"{'/'.join(map(str, epochs))} epochs "
            f"on {train_images} training images (test on {test_images}); {optim['name']} "
            f"lr {optim['lr']}, batch {trainer['batch_size']}; hidden layers "
            f"{' or '.join(sorted({str(list(r.config['model']['hidden'])) for r in done}))}.")


def run_seconds(runs: Sequence[RunRecord]) -> float:
    """The runs' wall times added up (with parallel jobs, more than the sweep took)."""
    return sum(run.seconds or 0.0 for run in runs)


def rerun_lines(exercise: Exercise, context: dict) -> List[str]:
    """Where the runs are and the commands that make them again."""
    overrides = " ".join(context["overrides"])
    user_overrides = " ".join(context["user_overrides"])
    rerun = f"dropout-lab exercise {exercise.number}" + (" --quick" if context["quick"] else "")
    design = context.get("design")
    if design is not None:
        rerun += f" --until-decided --max-seeds {design.looks[-1]}"
    rerun += f" --out {context['out_dir']}"
    where = (f"[`{RUNS}/`]({RUNS}/report.md) (the sweep's own report)" if design is None else
             f"`{RUNS}/`, one sweep per round (seeds_FIRST-LAST, and the setting where a round "
             f"ran only the open questions' settings)")
    return [
        f"- Every run is a normal run in {where}; view them with "
        f"`dropout-lab tensorboard {context['sweep_dir']}`.",
        f"- Resume or rerun (completed runs are skipped): "
        f"`{rerun}{' ' + user_overrides if user_overrides else ''}`"
        + ("" if design is not None else
           f"; the sweep alone: `dropout-lab sweep experiment={exercise.experiment}"
           f"{' ' + overrides if overrides else ''} --sweep-dir {context['sweep_dir']}`")
        + f" (configs/experiment/{exercise.experiment}.yaml).",
    ]


def setup_section(exercise: Exercise, findings: Findings, context: dict) -> List[str]:
    runs = context["runs"]
    overridden = (context["quick"] or context.get("design") is not None
                  or any(o.startswith("seed=") for o in context["user_overrides"]))
    note = ("; this invocation changed the seeds or the budget, as the next line says"
            if overridden else "")
    lines = ["## Setup", "", f"As configured (configs/experiment/{exercise.experiment}.yaml"
             f"{note}): {exercise.design}", "", f"- This invocation: {common_settings(runs)}",
             *rerun_lines(exercise, context),
             *([f"- {METRIC}"] if exercise.questions else []),
             f"- Time: {context['seconds']:.0f} s for this invocation (sweep, measurements and "
             f"report; a resumed sweep skips completed runs); the runs' own wall times add up to "
             f"{run_seconds(runs):.0f} s."]
    lines += [f"- {line}" for line in findings.setup]
    failed = [run for run in runs if run.status != Status.COMPLETED]
    if failed:
        lines.append(f"- {len(failed)} of {len(runs)} jobs did not complete and are left out: "
                     + ", ".join(f"`{run.job}` ({run.status})" for run in failed))
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
    """The report: the answer first (question, answers to the declared questions), then how it
    was found (the questions and design, setup), results (tables, plots) and observations.
    ``context``: runs, overrides, user_overrides, quick, sweep_dir, seconds, out_dir, answers,
    design."""
    answers = context.get("answers", [])
    parts = [f"# Exercise {exercise.number}: {exercise.title}", "",
             exercise.question, "",
             "## Answer", "", *answer_lines(answers, findings), "",
             *questions_lines(answers, context.get("design")),
             *setup_section(exercise, findings, context), "",
             *results_section(findings),
             "## Observations (descriptive)", "", *(f"- {line}" for line in findings.conclusion)]
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
        "design": (context["design"].text() if context.get("design") is not None
                   else "fixed: one look at the seeds run"),
        "questions": answers_json(context.get("answers", [])),
    }


def write_report(exercise: Exercise, findings: Findings, out_dir: Path, context: dict) -> Path:
    """report.md and results.json into ``out_dir``; returns the report's path."""
    path = Path(out_dir) / REPORT
    write_text(path, report_markdown(exercise, findings, context))
    write_json(Path(out_dir) / RESULTS, results_json(exercise, findings, context))
    return path


def save_measurements(out_dir: Path, measurements: dict) -> None:
    write_json(Path(out_dir) / MEASUREMENTS, measurements)


def first_finding(result: dict) -> str:
    """The first declared question's answer, else the first observation."""
    questions = result.get("questions") or []
    if questions:
        q = questions[0]
        return f"{q['question']}: {q['answer']} ({q['seeds']} seed{'' if q['seeds'] == 1 else 's'})"
    return (result["conclusion"] or [""])[0].replace("\n", " ")


def write_index(out_dir: Path) -> Path:
    """index.md linking every exercise report in ``out_dir`` (also those of earlier
    invocations into the same folder), with each one's first conclusion and time."""
    results = sorted((read_json(path) for path in Path(out_dir).glob(f"exercise_*/{RESULTS}")),
                     key=lambda result: result["exercise"])
    rows = [[f"[{r['exercise']}](exercise_{r['exercise']}/{REPORT})", r["title"], r["jobs"],
             r["jobs"] - r["completed"], f"{r['seconds']:.0f}", f"{r.get('run_seconds', 0):.0f}",
             first_finding(r)] for r in results]
    total = sum(r["seconds"] for r in results)
    text = "\n".join([
        "# Dropout exercises: answers from measured data", "",
        "Each report gives the question, the setup, the tables and plots, and a conclusion "
        "computed from the numbers. " + METRIC, "", HOW_DECIDED, "",
        markdown_table(["exercise", "question", "jobs", "not completed", "time (s)",
                        "runs' time (s)", "first answer"], rows),
        "", f"Total time: {total:.0f} s (the last invocation of each exercise; one that resumed "
            f"skipped its completed runs). Runs' time: the runs' own wall times added up.", ""])
    path = Path(out_dir) / INDEX
    write_text(path, text)
    return path
