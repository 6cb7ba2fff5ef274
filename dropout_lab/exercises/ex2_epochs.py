"""Exercise 2: train for many more epochs, with and without dropout."""

from pathlib import Path
from typing import Dict, List

from dropout_lab.exercises.figures import save_panels
from dropout_lab.exercises.runs import (at_epoch, dropout_name, final, group_by, peak, probabilities,
                                        value_at_epoch)
from dropout_lab.exercises.stats import change, verdict
from dropout_lab.exercises.types import Exercise, Findings, Table
from dropout_lab.plots import new_figure, std_band
from dropout_lab.report import curve
from dropout_lab.run_folder import Status

METRICS = {"train_accuracy": "train accuracy (dropout on)", "test_accuracy": "test accuracy",
           "gap": "gap (train − test)"}
TEXTBOOK_EPOCHS = 10


def analyze(runs: List[dict], measurements: dict, out_dir: Path) -> Findings:
    groups = group_by(runs, probabilities)
    if not groups:
        return Findings.nothing()
    last = min(max(row["epoch"] for row in run["history"]) for g in groups.values() for run in g)
    reference = min(TEXTBOOK_EPOCHS, max(1, last // 2))  # the textbook's budget, or halfway
    names = {key: dropout_name(key) for key in groups}
    changes = {key: {m: change(value_at_epoch(run, last, m) - value_at_epoch(run, reference, m)
                               for run in group) for m in ("test_accuracy", "gap")}
               for key, group in groups.items()}
    tables = [over_training_table(groups, names, reference, last),
              change_table(groups, names, changes, reference, last)]
    plots = [("Train accuracy, test accuracy and gap per epoch (mean ± std over seeds)",
              plot_curves(groups, names, out_dir / "curves.png"))]
    lines = conclusion(groups, names, changes, reference, last) + [stability(runs)]
    numbers = {names[k]: {m: [final(g, m).mean, final(g, m).std, final(g, m).n] for m in METRICS}
               for k, g in groups.items()}
    return Findings(tables, plots, lines, numbers=numbers)


def over_training_table(groups: Dict[tuple, List[dict]], names: Dict[tuple, str], reference: int,
                        last: int) -> Table:
    """The metrics at the reference epoch, every 10th epoch and the last."""
    checkpoints = sorted({reference, last, *range(10, last + 1, 10)} - {0})
    rows = [[epoch, names[key], *(at_epoch(group, epoch, m).text() for m in METRICS)]
            for epoch in checkpoints for key, group in groups.items()]
    return Table("Accuracy and gap over training (mean ± std over seeds)",
                 ["epoch", "setting", *METRICS.values()], rows)


def change_table(groups: Dict[tuple, List[dict]], names: Dict[tuple, str], changes: dict,
                 reference: int, last: int) -> Table:
    """Each run's change from the reference epoch to the last, and its peak."""
    peaks = {key: peak(group) for key, group in groups.items()}
    return Table(
        f"From epoch {reference} to epoch {last} (each run against itself)",
        ["setting", "Δ test acc", "Δ gap", "peak test acc", "epoch of the peak"],
        [[names[key], changes[key]["test_accuracy"].text(), changes[key]["gap"].text(),
          peaks[key][0].text(), peaks[key][1].text(1)] for key in groups],
        "The peak is each run's best epoch: an optimistic number (the maximum of a noisy curve).")


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
        bad = [run for run in mine if run["status"] != Status.COMPLETED]
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
            std_band(ax, epochs, means, stds, alpha=0.2)
        ax.set(xlabel="epoch", title=title)
    axes[0].legend()
    return save_panels(figure, axes, path, legend=False)


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
