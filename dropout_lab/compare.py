"""``dropout-lab compare A B``: is setting A better than setting B, equivalent, or undecided?

Two sets of overrides (the arms) run the same seeds, in rounds, through the sweep machinery
(any launcher). After each round the paired seeds are looked at with the group-sequential
design of inference/sequential.py, and the comparison stops at its first decision or at
``max_seeds``. Everything is fixed before the first run (arms, common overrides, metric, margin,
looks) and written to ``decision.json``; a rerun with the same ``--out`` resumes (completed
runs are never trained again) and refuses a changed design, which would make the error rates
void.

    OUT/
      report.md         the answer, the design, each look, the error guarantees
      decision.json     the same as data; "answer": A better | B better | equivalent | undecided
      runs/A_seeds_0-4/ ... one sweep per arm and round (normal run folders)
"""

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from dropout_lab.disk import read_json, write_json, write_text
from dropout_lab.errors import ConfigError
from dropout_lab.inference.decide import MARGIN, Answer, Question, answer_questions
from dropout_lab.inference.sequential import ALPHA, Design, look_schedule, round_seeds
from dropout_lab.run_folder import RunRecord, Status

DECISION, REPORT, RUNS = "decision.json", "report.md", "runs"
METRIC = "steady test accuracy"
OUT_ROOT = Path("outputs/compare")


@dataclass(frozen=True)
class ComparePlan:
    """Everything fixed before the first run."""

    a: Tuple[str, ...]
    b: Tuple[str, ...]
    common: Tuple[str, ...]
    margin: float
    max_seeds: int
    looks: Tuple[int, ...]
    alpha: float = ALPHA
    metric: str = METRIC

    def as_json(self) -> dict:
        return {key: list(value) if isinstance(value, tuple) else value
                for key, value in asdict(self).items()}


@dataclass
class CompareResult:
    out_dir: Path
    answer: Answer
    plan: ComparePlan
    lost: Dict[str, List[int]] = field(default_factory=dict)  # arm -> seeds without a value
    failed: List[str] = field(default_factory=list)  # run folders that failed (not diverged)


def run_compare(a: List[str], b: List[str], common: Optional[List[str]] = None, *,
                margin: float = MARGIN, max_seeds: int = 30, jobs: int = 1,
                launcher: Optional[str] = None, out: Optional[Path] = None) -> CompareResult:
    """Run the arms round by round until the question is decided or ``max_seeds`` ran
    (``out`` default: a new folder under outputs/compare)."""
    from dropout_lab.sweep.plan import new_sweep_dir

    plan = ComparePlan(tuple(a), tuple(b), tuple(common or ()), margin, max_seeds,
                       _looks(max_seeds))
    check_plan(plan)
    out = Path(out) if out else new_sweep_dir(OUT_ROOT)
    check_same_plan(out, plan)
    question = Question("A − B", "A", "B", METRIC, margin)
    design = Design(plan.looks, plan.alpha)
    values: Dict[str, Dict[int, float]] = {"A": {}, "B": {}}
    first, failed = 0, []
    for n in plan.looks:
        for arm, overrides in (("A", plan.a), ("B", plan.b)):
            runs = run_round(arm, overrides, plan.common, first, n, out, jobs, launcher)
            values[arm].update(seed_values(runs))
            failed += [str(run.run_dir) for run in runs
                       if run.status not in (Status.COMPLETED, Status.DIVERGED)]
        first = n
        answer = answer_questions([question], {question.name: (values["A"], values["B"])},
                                  design)[0]
        lost = {arm: sorted(s for s, v in vals.items() if v != v) for arm, vals in values.items()}
        result = CompareResult(out, answer, plan, lost, failed)
        write_decision(result, design)
        if answer.decided:
            break
    return result


def _looks(max_seeds: int) -> Tuple[int, ...]:
    try:
        return look_schedule(max_seeds)
    except ValueError as error:
        raise ConfigError(f"--max-seeds: {error}") from None


def check_plan(plan: ComparePlan) -> None:
    """ConfigError for arms that are not one setting each, or that set the seed."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    parser = OverridesParser.create()
    for label, overrides in (("A", plan.a), ("B", plan.b), ("common", plan.common)):
        try:
            parsed = parser.parse_overrides(list(overrides))
        except OverrideParseException as error:
            raise ConfigError(f"compare: cannot parse the {label} overrides: {error}") from None
        for override in parsed:
            if override.is_sweep_override():
                raise ConfigError(f"compare: {override.input_line!r} in {label} is a sweep; each "
                                  f"arm is one setting (quote lists: 'key=[a,b]')")
            if override.key_or_group == "seed":
                raise ConfigError("compare: the seeds are the design's (0, 1, ... up to "
                                  "--max-seeds); leave seed= out")
    if sorted(plan.a) == sorted(plan.b):
        raise ConfigError("compare: A and B are the same overrides; give two different settings")
    if not plan.margin > 0:
        raise ConfigError(f"--margin has to be positive, not {plan.margin}")


def check_same_plan(out: Path, plan: ComparePlan) -> None:
    """An --out with an earlier comparison resumes it only under the same design."""
    path = out / DECISION
    if not path.is_file():
        return
    earlier = read_json(path).get("plan")
    if earlier != plan.as_json():
        raise ConfigError(f"{out} holds a comparison with another design ({path}); changing "
                          f"the arms, margin or --max-seeds after a look voids its error rates: "
                          f"use a new --out")


def run_round(arm: str, overrides, common, first: int, last: int, out: Path, jobs: int,
              launcher: Optional[str]) -> List[dict]:
    """Seeds first..last-1 of one arm, as one sweep: its run records."""
    from dropout_lab.sweep.run import run_sweep

    return run_sweep([*common, *overrides, round_seeds(first, last)],
                     sweep_dir=out / RUNS / f"{arm}_seeds_{first}-{last - 1}", jobs=jobs,
                     launcher=launcher).runs


def seed_values(runs: List[RunRecord]) -> Dict[int, float]:
    """{seed: steady test accuracy}, NaN for a run without one (diverged or failed), which
    drops that seed from the pairing. A run that failed before its config was written is
    known by its seed override."""
    from dropout_lab.exercises.questions import METRICS, by_seed

    known = [run for run in runs if run.config]
    values = by_seed(known, METRICS[METRIC])
    for run in runs:
        if not run.config:
            seed = next((o.split("=", 1)[1] for o in run.overrides if o.startswith("seed=")),
                        None)
            if seed is not None:
                values[int(seed)] = float("nan")
    return {int(seed): value for seed, value in values.items()}


# --- decision.json and report.md -----------------------------------------------------------

def write_decision(result: CompareResult, design: Design) -> None:
    answer = result.answer
    write_json(result.out_dir / DECISION, {
        "answer": answer.answer, "plan": result.plan.as_json(), "design": design_json(design),
        "seeds": answer.seeds, "delta": answer.delta, "ci": list(answer.ci) if answer.ci else None,
        "seeds_needed": answer.seeds_needed, "lost_seeds": result.lost,
        "failed_runs": result.failed,
        "looks": [vars(look) for look in answer.looks], "text": answer.text()})
    write_text(result.out_dir / REPORT, report_markdown(result, design))


def design_json(design: Design) -> dict:
    return {"text": design.text(), "looks": list(design.looks), "alpha": design.alpha,
            "spending": "Lan-DeMets O'Brien-Fleming",
            "nominal_superiority": design.nominal(design.alpha, True).tolist(),
            "nominal_equivalence": design.nominal(design.alpha, False).tolist()}


GUARANTEES = (
    "Error guarantees (by design, checked by simulation in tests/inference/test_decide.py): a wrong "
    "\"better\" (a difference declared where there is none, or in the wrong direction) at most "
    "5% of the time; a wrong \"equivalent\" (declared where the true |Δ| is δ or more) at most "
    "5%. Mapping the z-scale boundaries to t quantiles is the usual small-sample "
    "approximation: measured over 40,000 simulated comparisons, the wrong-\"better\" rate is "
    "5.2%. \"Undecided\" is not an error; it says the seeds run were too few.")


def report_markdown(result: CompareResult, design: Design) -> str:
    plan, answer = result.plan, result.answer
    sup, eq = design.nominal(design.alpha, True), design.nominal(design.alpha, False)
    rows = [[look.seeds, f"{look.delta:+.4f}", f"{look.p_superiority:.3g}", f"{sup[k]:.3g}",
             f"{look.p_equivalence:.3g}", f"{eq[k]:.3g}", look.answer]
            for k, look in enumerate(answer.looks)]
    from dropout_lab.tables import markdown_table

    lost = "; ".join(f"{arm}: seeds {seeds}" for arm, seeds in result.lost.items() if seeds)
    lines = [
        "# Compare: A against B", "",
        f"**Answer: {answer.answer}.** {answer.text()}.", "",
        "## Question", "",
        f"- A: `{' '.join(plan.a)}`", f"- B: `{' '.join(plan.b)}`",
        f"- Both: `{' '.join(plan.common) or '(defaults)'}`",
        f"- Metric: {plan.metric} (each run's mean over its last trainer.steady_epochs epochs); "
        f"Δ = A − B, paired by seed (the same seed gives both arms the same batch order and, "
        f"with the same layer sizes, the same initial weights).",
        f"- Margin δ = {plan.margin:g}: a difference within ±δ is too small to matter.", "",
        "## Design (fixed before the first run)", "",
        f"{design.text().capitalize()}, up to {plan.max_seeds} seeds per arm, seeds 0, 1, ... in order. At "
        f"each look: the two-sided paired t-test of Δ = 0 (\"A better\" or \"B better\") and "
        f"TOST, two one-sided paired t-tests of |Δ| ≥ δ (\"equivalent\", taking precedence: a "
        f"difference inside the margin does not matter), each against the look's nominal level "
        f"from the alpha spending at overall level {plan.alpha} (two-sided for the difference, "
        f"each side of TOST one-sided). The comparison stops at its first decision.", "",
        GUARANTEES, "",
        "## Looks", "",
        markdown_table(["paired seeds", "Δ", "p (Δ = 0)", "nominal level", "p (TOST)",
                        "nominal level (TOST)", "answer"], rows) if rows else
        f"No look yet ({answer.why}).", "",
        f"Runs lost (diverged or failed; each drops only its own seed): {lost or 'none'}"
        + (f"; failed, retried by a rerun: {', '.join(result.failed)}." if result.failed else "."),
        "", f"Runs: `{RUNS}/` (one sweep per arm and round). Resume: rerun the same command "
        f"with `--out {result.out_dir}` (completed runs are not trained again).", ""]
    return "\n".join(lines)
