"""Exercise 6: dropout against weight decay, and both together."""

from pathlib import Path
from typing import Dict, List

from dropout_lab.exercises.figures import errorbar, save_panels
from dropout_lab.exercises.runs import group_by, instability, probabilities, steady_metric
from dropout_lab.exercises.stats import Comparison, Estimate, Family, contrast, difference
from dropout_lab.exercises.types import Exercise, Findings, Table
from dropout_lab.exercises.writing import endpoints_table, ties_with_best
from dropout_lab.plots import new_figure

METRIC_NAMES = {"test_accuracy": "test accuracy", "gap": "gap"}


def setting(run: dict):
    """(weight decay, dropout probabilities)."""
    return float(run["config"]["optim"]["weight_decay"]), probabilities(run)


def classify(alone_d: Comparison, alone_w: Comparison, both: Comparison,
             interaction: Comparison) -> str:
    """How two test-accuracy effects combine, from the measured contrasts (vs neither).

    additive: the interaction (both − dropout alone − decay alone + neither) is not
    significant (Holm-adjusted p ≥ 0.05); more than additive: significantly positive; otherwise, with a significantly negative
    interaction, diminishing when together is still above the better one alone, cancelling when
    it is not.
    """
    if not interaction.known:
        return f"no verdict ({interaction.method})"
    if not interaction.significant:
        return (f"additive as far as the data can tell (the interaction is not significant; "
                f"one of {interaction.detectable:.4f} would have been detected with 80% power)")
    if interaction.delta > 0:
        return "more than additive (a significant positive interaction)"
    if both.delta > max(alone_d.delta, alone_w.delta):
        return "diminishing (together better than either alone, but less than the sum)"
    return "cancelling (together no better than the better of the two alone)"


def analyze(runs: List[dict], measurements: dict, out_dir: Path) -> Findings:
    groups = group_by(runs, setting)
    decays = sorted({wd for wd, _ in groups})
    noisy = sorted({probs for _, probs in groups if any(probs)})
    if 0.0 not in decays or len(decays) < 2 or not noisy:
        return Findings.nothing("The sweep needs weight decay 0 and above, with and without "
                                "dropout: nothing to compare.")
    drop, none = noisy[0], tuple(0.0 for _ in noisy[0])
    est = {(wd, d, m): steady_metric(groups.get((wd, d), []), m)
           for wd in decays for d in (none, drop) for m in METRIC_NAMES}
    comparisons = family(est, decays, none, drop)
    tables = final_tables(est, decays, none, drop)
    table, verdicts, numbers = effects_table(est, decays, none, drop, comparisons)
    names = {(wd, d): f"weight decay {wd:g}, dropout {'off' if d == none else d}"
             for wd in decays for d in (none, drop) if (wd, d) in groups}
    plots = [("Test accuracy and gap against weight decay, with and without dropout",
              plot_decay(est, decays, none, drop, out_dir / "weight_decay.png"))]
    return Findings([*tables, table, endpoints_table({key: groups[key] for key in names}, names)],
                    plots, conclusion(verdicts, est, decays, none, drop, comparisons),
                    numbers=numbers, comparisons=comparisons)


TERMS = ("dropout alone", "decay alone", "both", "interaction")


def term_name(wd: float, metric: str, term: str) -> str:
    return f"{METRIC_NAMES[metric]}, wd {wd:g}: {term}" + (
        " (both − dropout − decay + neither)" if term == "interaction" else " − neither")


def family(est: Dict, decays, none, drop) -> dict:
    """Per weight decay: dropout alone, decay alone and both against neither, and their
    interaction, a family per metric (test accuracy: the question's; gap: the table's); then
    the best setting against every other (a family of its own, since the best is chosen after
    seeing the data). Holm-adjusted per family."""
    adjusted = {}
    for metric in METRIC_NAMES:
        effects = Family()
        for wd in decays[1:]:
            for term, comparison in zip(TERMS, interaction_terms(est, wd, none, drop, metric)):
                effects.add(term_name(wd, metric, term), comparison)
        adjusted.update(effects.adjust())
    settings = [(wd, d) for wd in decays for d in (none, drop)]
    best = max(settings, key=lambda key: est[(*key, "test_accuracy")].mean or 0.0)
    ties = Family()
    for key in settings:
        if key != best:
            ties.add(tie_name(best, key, none), difference(est[(*best, "test_accuracy")],
                                                           est[(*key, "test_accuracy")]))
    return {**adjusted, **ties.adjust()}


def setting_name(key, none) -> str:
    return f"wd {key[0]:g}, dropout {'off' if key[1] == none else key[1]}"


def tie_name(best, key, none) -> str:
    return f"best − other, test accuracy: {setting_name(best, none)} − {setting_name(key, none)}"


def final_tables(est: Dict, decays, none, drop) -> List[Table]:
    """Each metric over weight decay (columns), without and with dropout (rows)."""
    return [Table(f"Steady {name} (mean ± std over seeds)",
                  ["dropout", *(f"wd {wd:g}" for wd in decays)],
                  [[label, *(est[(wd, d, metric)].text() for wd in decays)]
                   for d, label in ((none, "none"), (drop, f"{drop}"))])
            for metric, name in METRIC_NAMES.items()]


def effects_table(est: Dict, decays, none, drop, comparisons: dict):
    """(the table of effects against neither, the test-accuracy verdicts per weight decay,
    the effects as numbers for results.json)."""
    rows, verdicts, numbers = [], [], {}
    for wd in decays[1:]:
        for metric, name in METRIC_NAMES.items():
            effects = tuple(comparisons[term_name(wd, metric, term)] for term in TERMS)
            kind = classify(*effects) if metric == "test_accuracy" else ""
            rows.append([f"{wd:g}", name, *(e.text() for e in effects), kind])
            numbers[f"wd={wd:g} {metric}"] = {n: [e.delta, e.se] for n, e in
                                              zip(("dropout", "decay", "both", "interaction"), effects)}
            if metric == "test_accuracy":
                verdicts.append((wd, effects, kind))
    table = Table(
        "Effects against neither (dropout off, weight decay 0)",
        ["weight decay", "metric", "dropout alone", "decay alone", "both", "interaction", "combination"],
        rows, "interaction = both − dropout alone − decay alone (a difference of differences: "
              "a paired t-test of the per-seed contrast where the four settings share seeds).")
    return table, verdicts, numbers


def interaction_terms(est: Dict, wd: float, none, drop, metric: str):
    """(dropout alone, decay alone, both, interaction), each against neither."""
    neither, d, w, dw = (est[(0.0, none, metric)], est[(0.0, drop, metric)],
                         est[(wd, none, metric)], est[(wd, drop, metric)])
    return (difference(d, neither), difference(w, neither), difference(dw, neither),
            contrast([(1.0, dw), (-1.0, d), (-1.0, w), (1.0, neither)]))


def conclusion(verdicts, est, decays, none, drop, comparisons) -> List[str]:
    lines = []
    for wd, (alone_d, alone_w, both, interaction), kind in verdicts:
        lines.append(f"Weight decay {wd:g} with dropout {drop}: {kind}. Test accuracy against "
                     f"neither: dropout alone {alone_d.text()}, decay alone {alone_w.text()}, "
                     f"both {both.text()}; interaction {interaction.text()}.")
    best = max(((wd, d) for wd in decays for d in (none, drop)),
               key=lambda key: est[(key[0], key[1], "test_accuracy")].mean or 0.0)
    best_est: Estimate = est[(*best, "test_accuracy")]
    tied = [(wd, d) for wd in decays for d in (none, drop) if (wd, d) != best
            and comparisons[tie_name(best, (wd, d), none)].known
            and not comparisons[tie_name(best, (wd, d), none)].significant]

    def label(wd, d) -> str:
        return f"weight decay {wd:g}, dropout {'off' if d == none else d}"

    lines.append(f"Best mean steady test accuracy: {label(*best)}, {best_est.text()}; "
                 + ties_with_best([f"({label(*key)})" for key in tied], 2 * len(decays) - 1))
    lines += instability({label(wd, d): est[(wd, d, "test_accuracy")]
                          for wd in decays for d in (none, drop)})
    return lines


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
    quick=("optim.weight_decay=0,1e-3", "seed=0,1"),
)
