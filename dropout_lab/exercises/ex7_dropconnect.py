"""Exercise 7: dropout on the weights (DropConnect) instead of the activations, at matched p."""

from pathlib import Path
from typing import List, Tuple

from dropout_lab.exercises.figures import save_panels
from dropout_lab.exercises.runs import (format_probabilities, group_by, instability, noise_kind,
                                        probabilities, seconds_per_epoch, steady_metric)
from dropout_lab.exercises.stats import difference
from dropout_lab.exercises.types import Exercise, Findings, Table
from dropout_lab.exercises.writing import endpoints_table
from dropout_lab.inference.decide import Question

final = steady_metric  # the exercise's metric: the steady value of each run
from dropout_lab.plots import new_figure
from dropout_lab.run_folder import RunRecord

KIND_NAMES = {"none": "no dropout", "custom": "dropout", "dropconnect": "DropConnect"}


def setting(run: RunRecord):
    """(kind, probabilities, learning rate); kind none where no layer drops anything."""
    return noise_kind(run), probabilities(run), float(run.config["optim"]["lr"])


def name(key) -> str:
    kind, probs, lr = key
    return (KIND_NAMES.get(kind, kind) + ("" if kind == "none" else f" p={format_probabilities(probs)}")
            + f", lr {lr:g}")


def analyze(runs: List[RunRecord], measurements: dict, out_dir: Path) -> Findings:
    groups = group_by(runs, setting)
    if not groups:
        return Findings.nothing()
    order = sorted(groups, key=lambda key: (-key[2], key[0] != "none", key[1], key[0]))
    tables = [endpoints_table({key: groups[key] for key in order}, {key: name(key) for key in order}),
              Table("Training time per epoch", ["setting", "s/epoch"],
                    [[name(key), seconds_per_epoch(groups[key]).text(2)] for key in order])]
    lines = observations(groups, order)
    plots = [("Steady test accuracy and gap per setting (mean ± std over seeds)",
              plot_bars(groups, order, out_dir / "dropconnect.png"))]
    return Findings(tables, plots, lines or ["No dropout/DropConnect pair to compare."])


def arm(kind: str, lr: float) -> Tuple[str, ...]:
    return (f"model.dropout={{kind:{kind},p:[0.2,0.5]}}", f"optim.lr={lr:g}")


# Declared before the runs; one family, Holm: DropConnect against dropout at the textbook's
# probabilities, at each learning rate of the grid.
QUESTIONS = tuple(
    Question(f"DropConnect against dropout at lr {lr:g}", "DropConnect (0.2, 0.5)",
             "dropout (0.2, 0.5)", a_overrides=arm("dropconnect", lr),
             b_overrides=arm("custom", lr))
    for lr in (0.5, 0.1))


def pairs(groups, order):
    """(lr, probs, dropout key, DropConnect key, no-dropout key) per learning rate and p."""
    for lr in sorted({key[2] for key in order}, reverse=True):
        none = ("none", next((k[1] for k in order if k[0] == "none"), ()), lr)
        for probs in sorted({key[1] for key in order if key[0] != "none" and key[2] == lr}):
            yield lr, probs, ("custom", probs, lr), ("dropconnect", probs, lr), none


def observations(groups, order) -> List[str]:
    """At each learning rate and p: DropConnect − dropout, with its 95% CI (descriptive)."""
    lines = []
    for lr, probs, units, weights, none in pairs(groups, order):
        if units in groups and weights in groups:
            for metric, words in (("test_accuracy", "steady test accuracy"), ("gap", "steady gap")):
                lines.append(f"At p = {format_probabilities(probs)} and lr {lr:g}, {words}: "
                             f"DropConnect {final(groups[weights], metric).text()} vs dropout "
                             f"{final(groups[units], metric).text()}, Δ = " + difference(
                                 final(groups[weights], metric),
                                 final(groups[units], metric)).text() + ".")
    return lines + instability({name(key): final(groups[key]) for key in order})


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
    quick=("model.dropout={kind:none},{kind:custom,p:[0.2,0.5]},{kind:dropconnect,p:[0.2,0.5]}",
           "optim.lr=0.5"),
    questions=QUESTIONS,
)
