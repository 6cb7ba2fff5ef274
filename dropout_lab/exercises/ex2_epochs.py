"""Exercise 2: train for many more epochs, with and without dropout."""

from pathlib import Path
from typing import Dict, List

from dropout_lab.exercises.base import (Exercise, Findings, Table, at_epoch, dropout_name, final,
                                        group_by, new_figure, probabilities, save_figure)
from dropout_lab.exercises.stats import Estimate, change, verdict
from dropout_lab.report import curve

METRICS = {"train_accuracy": "train accuracy (dropout on)", "test_accuracy": "test accuracy",
           "gap": "gap (train − test)"}
TEXTBOOK_EPOCHS = 10


def epoch_value(run: dict, epoch: int, metric: str):
    rows = [row for row in run["history"] if row["epoch"] == epoch]
    return rows[0].get(metric) if rows else None


def analyze(runs: List[dict], measurements: dict, out_dir: Path) -> Findings:
    groups = group_by(runs, probabilities)
    if not groups:
        return Findings([], [], ["No run completed: nothing to conclude."])
    last = min(max(row["epoch"] for row in run["history"]) for g in groups.values() for run in g)
    reference = min(TEXTBOOK_EPOCHS, max(1, last // 2))  # the textbook's budget, or halfway
    checkpoints = sorted({reference, last, *range(10, last + 1, 10)} - {0})
    names = {key: dropout_name(key) for key in groups}

    rows = []
    for epoch in checkpoints:
        for key, group in groups.items():
            rows.append([epoch, names[key], *(at_epoch(group, epoch, m).text() for m in METRICS)])
    tables = [Table("Accuracy and gap over training (mean ± std over seeds)",
                    ["epoch", "setting", *METRICS.values()], rows)]

    changes = {key: {m: change(epoch_value(run, last, m) - epoch_value(run, reference, m)
                               for run in group) for m in ("test_accuracy", "gap")}
               for key, group in groups.items()}
    peaks = {key: peak(group) for key, group in groups.items()}
    tables.append(Table(
        f"From epoch {reference} to epoch {last} (each run against itself)",
        ["setting", "Δ test acc", "Δ gap", "peak test acc", "epoch of the peak"],
        [[names[key], changes[key]["test_accuracy"].text(), changes[key]["gap"].text(),
          peaks[key][0].text(), peaks[key][1].text(1)] for key in groups],
        "The peak is each run's best epoch: an optimistic number (the maximum of a noisy curve)."))

    plots = [(f"Train accuracy, test accuracy and gap per epoch (mean ± std over seeds)",
              plot_curves(groups, names, out_dir / "curves.png"))]
    lines = conclusion(groups, names, changes, reference, last) + [stability(runs)]
    numbers = {names[k]: {m: [final(g, m).mean, final(g, m).std, final(g, m).n] for m in METRICS}
               for k, g in groups.items()}
    return Findings(tables, plots, lines, numbers=numbers)


def peak(runs: List[dict]):
    """(best test accuracy, its epoch) of each run, as estimates over the runs."""
    bests = [max(run["history"], key=lambda row: row["test_accuracy"]) for run in runs]
    return (Estimate(tuple(row["test_accuracy"] for row in bests)),
            Estimate(tuple(float(row["epoch"]) for row in bests)))


def conclusion(groups: Dict[tuple, List[dict]], names: Dict[tuple, str], changes: dict,
               reference: int, last: int) -> List[str]:
    lines = []
    plain = [key for key in groups if not any(key)]
    noisy = [key for key in groups if any(key)]
    if plain and noisy:
        none, drop = plain[0], noisy[0]
        lines.append(f"After {last} epochs, " + verdict(names[drop], final(groups[drop], "gap"),
                                                        names[none], final(groups[none], "gap"),
                                                        metric="gap", higher_is_better=None))
        lines.append(f"After {last} epochs, " + verdict(names[drop], final(groups[drop]),
                                                        names[none], final(groups[none])))
    for key in groups:
        gap, test = changes[key]["gap"], changes[key]["test_accuracy"]
        lines.append(f"{names[key]}: from epoch {reference} to {last} the gap changes by "
                     f"{gap.text()} and test accuracy by {test.text()}"
                     + growth_words(gap, test))
    return lines


def stability(runs: List[dict]) -> str:
    """How many runs of each setting finished: long training at lr 0.5 can diverge."""
    parts = []
    for key in sorted({probabilities(run) for run in runs if run["config"]}):
        mine = [run for run in runs if run["config"] and probabilities(run) == key]
        bad = [run for run in mine if run["status"] != "completed"]
        part = f"{dropout_name(key)}: {len(mine) - len(bad)} of {len(mine)} runs completed"
        if bad:
            part += " (" + "; ".join(f"seed {run['config']['seed']} {run['status']}: {run['error']}"
                                     for run in bad) + ")"
        parts.append(part)
    return "Stability over the long run: " + "; ".join(parts) + "."


def growth_words(gap, test) -> str:
    if not gap.known:
        return "."
    if gap.significant and gap.delta > 0:
        words = "; training longer widens the gap"
        if test.known and not (test.significant and test.delta > 0):
            words += " without a significant gain in test accuracy"
        return words + "."
    if gap.significant:
        return "; the gap narrows."
    return "; the gap does not change significantly."


def plot_curves(groups, names, path: Path) -> str:
    figure, axes = new_figure(len(METRICS), width=4.6)
    for ax, (metric, title) in zip(axes, METRICS.items()):
        for key, group in groups.items():
            epochs, means, stds = curve(group, metric)
            ax.plot(epochs, means, label=names[key])
            ax.fill_between(epochs, [m - s for m, s in zip(means, stds)],
                            [m + s for m, s in zip(means, stds)], alpha=0.2)
        ax.set(xlabel="epoch", title=title)
        ax.grid(alpha=0.3)
    axes[0].legend()
    return save_figure(figure, path)


EXERCISE = Exercise(
    number=2,
    title="Train for more epochs, with and without dropout",
    question=("Increase the number of epochs and compare the results obtained when using "
              "dropout with those when not using it."),
    design=("The textbook model and optimiser trained for 50 epochs (instead of 10) without "
            "dropout and with the textbook dropout (0.2, 0.5), 3 seeds each (6 runs). Each "
            "epoch logs train accuracy (during the epoch, dropout on), test accuracy and their "
            "gap; the comparison is at the last epoch, and each run's change since epoch 10."),
    analyze=analyze,
    quick=("trainer.epochs=4", "seed=0,1"),
)
