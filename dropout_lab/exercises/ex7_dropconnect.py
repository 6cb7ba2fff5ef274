"""Exercise 7: dropout on the weights (DropConnect) instead of the activations, at matched p."""

from pathlib import Path
from typing import List

from dropout_lab.exercises.figures import save_panels
from dropout_lab.exercises.runs import (format_probabilities, group_by, instability, noise_kind,
                                        probabilities, seconds_per_epoch, steady_metric)
from dropout_lab.exercises.stats import Estimate, Family, difference, verdict
from dropout_lab.exercises.types import Exercise, Findings, Table
from dropout_lab.exercises.writing import endpoints_table

final = steady_metric  # the exercise's metric: the steady value of each run
from dropout_lab.plots import new_figure

KIND_NAMES = {"none": "no dropout", "custom": "dropout", "dropconnect": "DropConnect"}


def setting(run: dict):
    """(kind, probabilities, learning rate); kind none where no layer drops anything."""
    return noise_kind(run), probabilities(run), float(run["config"]["optim"]["lr"])


def name(key) -> str:
    kind, probs, lr = key
    return (KIND_NAMES.get(kind, kind) + ("" if kind == "none" else f" p={format_probabilities(probs)}")
            + f", lr {lr:g}")


def analyze(runs: List[dict], measurements: dict, out_dir: Path) -> Findings:
    groups = group_by(runs, setting)
    if not groups:
        return Findings.nothing()
    order = sorted(groups, key=lambda key: (-key[2], key[0] != "none", key[1], key[0]))
    comparisons = family(groups, order)
    tables = [endpoints_table({key: groups[key] for key in order}, {key: name(key) for key in order}),
              Table("Training time per epoch", ["setting", "s/epoch"],
                    [[name(key), seconds_per_epoch(groups[key]).text(2)] for key in order])]
    lines = conclusion(groups, order, comparisons)
    plots = [("Steady test accuracy and gap per setting (mean ± std over seeds)",
              plot_bars(groups, order, out_dir / "dropconnect.png"))]
    return Findings(tables, plots, lines or ["No dropout/DropConnect pair to compare."],
                    comparisons=comparisons)


def pairs(groups, order):
    """(lr, probs, dropout key, DropConnect key, no-dropout key) per learning rate and p."""
    for lr in sorted({key[2] for key in order}, reverse=True):
        none = ("none", next((k[1] for k in order if k[0] == "none"), ()), lr)
        for probs in sorted({key[1] for key in order if key[0] != "none" and key[2] == lr}):
            yield lr, probs, ("custom", probs, lr), ("dropconnect", probs, lr), none


def family(groups, order) -> dict:
    """DropConnect − dropout (test accuracy, gap) and each against none (test accuracy), at
    each learning rate and p, Holm-adjusted together."""
    comparisons = Family()
    for lr, probs, units, weights, none in pairs(groups, order):
        if units in groups and weights in groups:
            for metric in ("test_accuracy", "gap"):
                comparisons.add(f"{metric}: {name(weights)} − dropout", difference(
                    final(groups[weights], metric), final(groups[units], metric)))
        for key in (units, weights):
            if key in groups and none in groups:
                comparisons.add(f"test_accuracy: {name(key)} − no dropout",
                                difference(final(groups[key]), final(groups[none])))
    return comparisons.adjust()


def conclusion(groups, order, comparisons) -> List[str]:
    """At each learning rate and p: DropConnect against dropout, and each against none."""
    lines, summary = [], []
    for lr, probs, units, weights, none in pairs(groups, order):
        where = f"At p = {format_probabilities(probs)} and lr {lr:g}, "
        if units in groups and weights in groups:
            diff = comparisons[f"test_accuracy: {name(weights)} − dropout"]
            summary.append(f"at lr {lr:g} and p = {format_probabilities(probs)} "
                           f"{outcome(diff, final(groups[weights]))}")
            lines += [where + "steady " + verdict(
                          "DropConnect", final(groups[weights]), "dropout", final(groups[units]),
                          comparison=diff),
                      where + verdict("DropConnect", final(groups[weights], "gap"), "dropout",
                                      final(groups[units], "gap"), metric="steady gap",
                                      higher_is_better=None,
                                      comparison=comparisons[f"gap: {name(weights)} − dropout"])]
        lines += [f"{name(key)} against no dropout, steady " + verdict(
            name(key), final(groups[key]), "no dropout", final(groups[none]),
            comparison=comparisons[f"test_accuracy: {name(key)} − no dropout"])
            for key in (units, weights) if key in groups and none in groups]
    if summary:
        lines.insert(0, "DropConnect against dropout at matched p, steady test accuracy: "
                     + "; ".join(summary) + ".")
    return lines + instability({name(key): final(groups[key]) for key in order})


def outcome(diff, dropconnect: Estimate) -> str:
    if not diff.known:
        return "no verdict"
    # A collapsed seed makes the spread, not the mean, the finding: say so where it is read first.
    shaky = (f"; DropConnect unstable over seeds, lowest run {min(dropconnect.values):.3f}"
             if instability({"": dropconnect}) else "")
    if not diff.significant:
        return f"no significant difference ({diff.delta:+.4f}{shaky})"
    return f"significantly {'better' if diff.delta > 0 else 'worse'} ({diff.delta:+.4f}{shaky})"


def plot_bars(groups, order, path: Path) -> str:
    figure, axes = new_figure(2, width=7.0)
    xs = list(range(len(order)))
    colors = {"none": "tab:gray", "custom": "tab:blue", "dropconnect": "tab:orange"}
    for ax, metric, title in ((axes[0], "test_accuracy", "steady test accuracy"),
                              (axes[1], "gap", "gap (train in eval mode − test)")):
        estimates = [final(groups[key], metric) for key in order]
        ax.bar(xs, [e.mean for e in estimates], yerr=[e.std or 0.0 for e in estimates], capsize=3,
               color=[colors.get(key[0], "tab:green") for key in order])
        ax.set_xticks(xs, [name(key).replace(" p=", "\np=").replace(", lr", "\nlr") for key in order],
                      fontsize="x-small")
        low = min(e.mean - (e.std or 0.0) for e in estimates)
        if metric == "test_accuracy":
            ax.set_ylim(bottom=max(0.0, low - 0.02))
        ax.set(title=title)
    return save_panels(figure, axes, path, legend=False, grid_axis="y")


EXERCISE = Exercise(
    number=7,
    title="DropConnect: dropout on the weights instead of the activations",
    question=("What happens if we apply dropout to the individual weights of the weight matrix "
              "rather than to the activations?"),
    design=("The textbook model and budget (10 epochs): no dropout, dropout and DropConnect at "
            "matched probabilities, the textbook's (0.2, 0.5) and 0.5 in both layers, at the "
            "textbook's lr 0.5 and at lr 0.1, 5 seeds each (50 runs). Comparisons are made at "
            "the same learning rate. DropConnect on hidden layer k drops the weights of the linear layer "
            "that reads it (inverted scaling 1/(1−p), one mask per mini-batch, eval with the "
            "full weights), so the same p is applied to the same layer's signal: to its units "
            "(dropout) or to its connections (DropConnect)."),
    analyze=analyze,
    quick=("model.dropout={kind:none},{kind:custom,p:0.5},{kind:dropconnect,p:0.5}", "optim.lr=0.5"),
)
