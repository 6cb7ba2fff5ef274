"""Exercise 6: dropout against weight decay, and both together."""

from pathlib import Path
from typing import Dict, List

from dropout_lab.exercises.figures import errorbar, save_panels
from dropout_lab.exercises.questions import arm_runs, arm_values, by_seed
from dropout_lab.exercises.runs import (group_by, instability, probabilities, steady_metric,
                                        steady_value)
from dropout_lab.exercises.stats import contrast, difference
from dropout_lab.exercises.types import Exercise, Findings, Table
from dropout_lab.exercises.writing import endpoints_table
from dropout_lab.inference.decide import Question
from dropout_lab.plots import new_figure
from dropout_lab.run_folder import RunRecord

METRIC_NAMES = {"test_accuracy": "test accuracy", "gap": "gap"}


def setting(run: RunRecord):
    """(weight decay, dropout probabilities)."""
    return float(run.config["optim"]["weight_decay"]), probabilities(run)


DECAY = 1e-4  # the declared questions' weight decay (the grid's middle value)
DROPOUT, NONE = "model.dropout.kind=custom", "model.dropout.kind=none"
ADDITIVE = f"the interaction at weight decay {DECAY:g}"
# Declared before the runs; one family, Holm.
QUESTIONS = (
    Question("dropout alone against neither", "dropout (0.2, 0.5)", "neither",
             a_overrides=(DROPOUT, "optim.weight_decay=0"),
             b_overrides=(NONE, "optim.weight_decay=0")),
    Question(f"weight decay {DECAY:g} alone against neither", f"weight decay {DECAY:g}", "neither",
             a_overrides=(NONE, f"optim.weight_decay={DECAY:g}"),
             b_overrides=(NONE, "optim.weight_decay=0")),
    Question(ADDITIVE, "both − dropout alone", f"weight decay {DECAY:g} alone − neither"),
)


def question_values(question: Question, runs: List[RunRecord], measurements: dict):
    """The arms' values; for the interaction, per seed (both − dropout alone) and (decay alone
    − neither): A − B is the interaction, 0 when the effects add up ("equivalent": additive
    within the margin, "A better": more than additive, "B better": less)."""
    if question.name != ADDITIVE:
        return arm_values(question, runs)
    cell = {}
    for decay in (0.0, DECAY):
        for kind in (DROPOUT, NONE):
            cell[(decay, kind)] = by_seed(arm_runs(runs, (kind, f"optim.weight_decay={decay:g}")),
                                          steady_value)
    both, drop, decay, neither = (cell[(DECAY, DROPOUT)], cell[(0.0, DROPOUT)],
                                  cell[(DECAY, NONE)], cell[(0.0, NONE)])
    return ({s: both[s] - drop[s] for s in set(both) & set(drop)},
            {s: decay[s] - neither[s] for s in set(decay) & set(neither)})


def analyze(runs: List[RunRecord], measurements: dict, out_dir: Path) -> Findings:
    groups = group_by(runs, setting)
    decays = sorted({wd for wd, _ in groups})
    noisy = sorted({probs for _, probs in groups if any(probs)})
    if 0.0 not in decays or len(decays) < 2 or not noisy:
        return Findings.nothing("The sweep needs weight decay 0 and above, with and without "
                                "dropout: nothing to compare.")
    drop, none = noisy[0], tuple(0.0 for _ in noisy[0])
    est = {(wd, d, m): steady_metric(groups.get((wd, d), []), m)
           for wd in decays for d in (none, drop) for m in METRIC_NAMES}
    tables = final_tables(est, decays, none, drop)
    table, effects, numbers = effects_table(est, decays, none, drop)
    names = {(wd, d): f"weight decay {wd:g}, dropout {'off' if d == none else d}"
             for wd in decays for d in (none, drop) if (wd, d) in groups}
    plots = [("Test accuracy and gap against weight decay, with and without dropout",
              plot_decay(est, decays, none, drop, out_dir / "weight_decay.png"))]
    return Findings([*tables, table, endpoints_table({key: groups[key] for key in names}, names)],
                    plots, observations(effects, est, decays, none, drop), numbers=numbers)




def final_tables(est: Dict, decays, none, drop) -> List[Table]:
    """Each metric over weight decay (columns), without and with dropout (rows)."""
    return [Table(f"Steady {name} (mean ± std over seeds)",
                  ["dropout", *(f"wd {wd:g}" for wd in decays)],
                  [[label, *(est[(wd, d, metric)].text() for wd in decays)]
                   for d, label in ((none, "none"), (drop, f"{drop}"))])
            for metric, name in METRIC_NAMES.items()]


def effects_table(est: Dict, decays, none, drop):
    """(the table of effects against neither, the test-accuracy effects per weight decay,
    the effects as numbers for results.json)."""
    rows, verdicts, numbers = [], [], {}
    for wd in decays[1:]:
        for metric, name in METRIC_NAMES.items():
            effects = interaction_terms(est, wd, none, drop, metric)
            rows.append([f"{wd:g}", name, *(e.text() for e in effects)])
            numbers[f"wd={wd:g} {metric}"] = {n: [e.delta, e.se] for n, e in
                                              zip(("dropout", "decay", "both", "interaction"), effects)}
            if metric == "test_accuracy":
                verdicts.append((wd, effects))
    table = Table(
        "Effects against neither (dropout off, weight decay 0)",
        ["weight decay", "metric", "dropout alone", "decay alone", "both", "interaction"],
        rows, "interaction = both − dropout alone − decay alone (a difference of differences: "
              "a paired t-test of the per-seed contrast where the four settings share seeds).")
    return table, verdicts, numbers


def interaction_terms(est: Dict, wd: float, none, drop, metric: str):
    """(dropout alone, decay alone, both, interaction), each against neither."""
    neither, d, w, dw = (est[(0.0, none, metric)], est[(0.0, drop, metric)],
                         est[(wd, none, metric)], est[(wd, drop, metric)])
    return (difference(d, neither), difference(w, neither), difference(dw, neither),
            contrast([(1.0, dw), (-1.0, d), (-1.0, w), (1.0, neither)]))


def observations(effects, est, decays, none, drop) -> List[str]:
    lines = [f"Weight decay {wd:g} with dropout {drop}, test accuracy against neither: dropout "
             f"alone {alone_d.text()}, decay alone {alone_w.text()}, both {both.text()}; "
             f"interaction {interaction.text()}."
             for wd, (alone_d, alone_w, both, interaction) in effects]

    def label(wd, d) -> str:
        return f"weight decay {wd:g}, dropout {'off' if d == none else d}"

    return lines + instability({label(wd, d): est[(wd, d, "test_accuracy")]
                                for wd in decays for d in (none, drop)})


def plot_decay(est, decays, none, drop, path: Path) -> str:
    figure, axes = new_figure(2, width=5.0)
    xs = list(range(len(decays)))
    for ax, metric in zip(axes, METRIC_NAMES):
        for d, label in ((none, "no dropout"), (drop, f"dropout {drop}")):
            errorbar(ax, xs, [est[(wd, d, metric)] for wd in decays], label)
        ax.set_xticks(xs, [f"{wd:g}" for wd in decays])
        ax.set(xlabel="weight decay", title=f"steady {METRIC_NAMES[metric]}")
    return save_panels(figure, axes, path)


EXERCISE = Exercise(
    number=6,
    title="Dropout against weight decay, and both together",
    question=("Using the model in this section as an example, compare the effects of using "
              "dropout and weight decay. What if dropout and weight decay are used at the same "
              "time? Are the results additive, are there diminished returns, or do they cancel "
              "each other out?"),
    design=("The textbook model and budget (10 epochs) over weight decay {0, 1e-4, 1e-3} "
            "(SGD's L2 term) × dropout off / (0.2, 0.5), 10 seeds each (60 runs): the interaction "
            "is a small difference of differences, so the exercise gets more seeds. The effects "
            "are measured against neither (no dropout, no weight decay); the interaction is both "
            "− dropout alone − decay alone, tested per seed (the four settings share seeds)."),
    analyze=analyze,
    quick=("optim.weight_decay=0,1e-4", "seed=0,1"),
    questions=QUESTIONS,
    values=question_values,
)
