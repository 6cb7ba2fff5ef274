"""Exercise 7: dropout on the weights (DropConnect) instead of the activations, at matched p."""

from pathlib import Path
from typing import List

from dropout_lab.exercises.figures import save_panels
from dropout_lab.exercises.runs import (final, format_probabilities, group_by, instability,
                                        noise_kind, probabilities, seconds_per_epoch)
from dropout_lab.exercises.stats import difference, verdict
from dropout_lab.exercises.types import Exercise, Findings, Table
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
    tables = [Table("Final metrics per setting (mean ± std over seeds)",
                    ["setting", "test acc", "train acc (noise on)", "gap", "s/epoch"],
                    [[name(key), final(groups[key]).text(), final(groups[key], "train_accuracy").text(),
                      final(groups[key], "gap").text(), seconds_per_epoch(groups[key]).text(2)]
                     for key in order])]
    lines = conclusion(groups, order)
    plots = [("Final test accuracy and gap per setting (mean ± std over seeds)",
              plot_bars(groups, order, out_dir / "dropconnect.png"))]
    return Findings(tables, plots, lines or ["No dropout/DropConnect pair to compare."])


def conclusion(groups, order) -> List[str]:
    """At each learning rate and p: DropConnect against dropout, and each against none."""
    lines, summary = [], []
    for lr in sorted({key[2] for key in order}, reverse=True):
        none = ("none", next((k[1] for k in order if k[0] == "none"), ()), lr)
        for probs in sorted({key[1] for key in order if key[0] != "none" and key[2] == lr}):
            units, weights = ("custom", probs, lr), ("dropconnect", probs, lr)
            where = f"At p = {format_probabilities(probs)} and lr {lr:g}, "
            if units in groups and weights in groups:
                diff = difference(final(groups[weights]), final(groups[units]))
                summary.append(f"at lr {lr:g} and p = {format_probabilities(probs)} {outcome(diff)}")
                lines += [where + verdict("DropConnect", final(groups[weights]), "dropout",
                                          final(groups[units])),
                          where + verdict("DropConnect", final(groups[weights], "gap"), "dropout",
                                          final(groups[units], "gap"), metric="gap",
                                          higher_is_better=None)]
            lines += [f"{name(key)} against no dropout, " + verdict(
                name(key), final(groups[key]), "no dropout", final(groups[none]))
                for key in (units, weights) if key in groups and none in groups]
    if summary:
        lines.insert(0, "DropConnect against dropout at matched p, test accuracy: "
                     + "; ".join(summary) + ".")
    return lines + instability({name(key): final(groups[key]) for key in order})


def outcome(diff) -> str:
    if not diff.known:
        return "no verdict"
    if not diff.significant:
        return f"within the spread ({diff.delta:+.4f})"
    return f"significantly {'better' if diff.delta > 0 else 'worse'} ({diff.delta:+.4f})"


def plot_bars(groups, order, path: Path) -> str:
    figure, axes = new_figure(2, width=7.0)
    xs = list(range(len(order)))
    colors = {"none": "tab:gray", "custom": "tab:blue", "dropconnect": "tab:orange"}
    for ax, metric, title in ((axes[0], "test_accuracy", "final test accuracy"),
                              (axes[1], "gap", "gap (train − test)")):
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
            "textbook's lr 0.5 and at lr 0.1, 3 seeds each (30 runs). Comparisons are made at "
            "the same learning rate. DropConnect on hidden layer k drops the weights of the linear layer "
            "that reads it (inverted scaling 1/(1−p), one mask per mini-batch, eval with the "
            "full weights), so the same p is applied to the same layer's signal: to its units "
            "(dropout) or to its connections (DropConnect)."),
    analyze=analyze,
    quick=("model.dropout={kind:none},{kind:custom,p:0.5},{kind:dropconnect,p:0.5}", "optim.lr=0.5"),
)
