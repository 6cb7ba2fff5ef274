"""Exercise 5: a more complex model (wider hidden layers) with and without dropout."""

from pathlib import Path
from typing import Dict, List

from dropout_lab.exercises.figures import errorbar, log_x_ticks, save_panels
from dropout_lab.exercises.runs import (group_by, instability, probabilities, seconds_per_epoch,
                                        steady_metric, steady_value)
from dropout_lab.exercises.stats import contrast, difference
from dropout_lab.exercises.types import Exercise, Findings, Table
from dropout_lab.exercises.writing import endpoints_table
from dropout_lab.inference.decide import Question
from dropout_lab.plots import new_figure
from dropout_lab.run_folder import RunRecord

# exercise_5.yaml sets trainer.steady_epochs = 10: with 1,000 training images test accuracy
# swings ±0.02 from epoch to epoch, so the steady metrics average the last 10 epochs.
TAIL = 10


def final(runs, metric: str = "test_accuracy"):
    """The exercise's metric: each run's steady value (mean over its last steady_epochs)."""
    return steady_metric(runs, metric)


def setting(run: RunRecord):
    """(hidden sizes, dropout probabilities)."""
    return tuple(run.config["model"]["hidden"]), probabilities(run)


def analyze(runs: List[RunRecord], measurements: dict, out_dir: Path) -> Findings:
    groups = group_by(runs, setting)
    widths = sorted({hidden for hidden, _ in groups}, key=lambda h: sum(h))
    noisy = sorted({probs for _, probs in groups if any(probs)})
    if not widths or not noisy or not any(not any(p) for _, p in groups):
        return Findings.nothing("The sweep needs runs with and without dropout: nothing to compare.")
    drop, none = noisy[0], tuple(0.0 for _ in noisy[0])
    cells = {(h, d): groups.get((h, d), []) for h in widths for d in (none, drop)}
    effects = {(h, metric): difference(final(cells[(h, drop)], metric),
                                       final(cells[(h, none)], metric))
               for h in widths for metric in ("test_accuracy", "gap")}
    growth = {metric: effect_growth(cells, widths[0], widths[-1], none, drop, metric)
              for metric in ("test_accuracy", "gap")}
    tables = [width_table(cells, widths, none, drop, effects), growth_table(growth, widths),
              endpoints_table({key: group for key, group in cells.items() if group},
                              {(h, d): f"{list(h)}, {'dropout' if any(d) else 'none'}"
                               for h, d in cells})]
    plots = [(f"Test accuracy and gap (last {TAIL} epochs) against width (mean ± std over seeds)",
              plot_widths(cells, widths, none, drop, out_dir / "width.png"))]
    lines = [f"Dropout's effect (dropout − none) on {words}, change from width "
             f"{list(widths[0])} to {list(widths[-1])}: {growth[metric].text()}."
             for metric, words in (("test_accuracy", "test accuracy"), ("gap", "the gap"))]
    lines += instability({f"{list(h)} {'dropout' if any(d) else 'none'}": final(group)
                          for (h, d), group in cells.items() if group})
    return Findings(tables, plots, lines,
                    numbers={"growth": {m: [g.delta, g.se] for m, g in growth.items()}})


GROWTH, LARGEST = "dropout's effect grows with width", "dropout at the largest width"
# Declared before the runs; one family, Holm. The widths are the grid's (configs/experiment/
# exercise_5.yaml): the smallest and the largest.
QUESTIONS = (
    Question(GROWTH, "dropout − none at the largest width", "dropout − none at the smallest width"),
    Question(LARGEST, "dropout (0.2, 0.5)", "no dropout"),
)


def question_values(question: Question, runs: List[RunRecord], measurements: dict):
    """Per seed: the dropout − none effect at the largest and at the smallest width (GROWTH:
    their difference is the interaction), or dropout and none at the largest width."""
    groups = group_by(runs, setting)
    widths = sorted({hidden for hidden, _ in groups}, key=sum)
    noisy = sorted({probs for _, probs in groups if any(probs)})
    if not widths or not noisy:
        return {}, {}
    drop, none = noisy[0], tuple(0.0 for _ in noisy[0])

    def at(h, probs) -> dict:
        return {run.config["seed"]: steady_value(run) for run in groups.get((h, probs), [])}

    def effect(h) -> dict:
        with_, without = at(h, drop), at(h, none)
        return {seed: with_[seed] - without[seed] for seed in set(with_) & set(without)
                if with_[seed] is not None and without[seed] is not None}

    if question.name == GROWTH:
        return effect(widths[-1]), effect(widths[0])
    return at(widths[-1], drop), at(widths[-1], none)


def width_table(cells: Dict, widths, none, drop, effects) -> Table:
    rows = []
    for h in widths:
        without, with_ = cells[(h, none)], cells[(h, drop)]
        rows.append([
            str(list(h)), final(without).text(), final(with_).text(),
            effects[(h, "test_accuracy")].text(),
            final(without, "gap").text(), final(with_, "gap").text(),
            effects[(h, "gap")].text(),
            seconds_per_epoch(without + with_).text(2)])
    return Table(
        f"Test accuracy and gap (means over the last {TAIL} epochs) by width, without dropout "
        f"and with dropout {drop}",
        ["hidden", "test acc, none", "test acc, dropout", "Δ test (dropout − none)",
         "gap, none", "gap, dropout", "Δ gap (dropout − none)", "s/epoch"], rows)


def growth_table(growth: Dict, widths) -> Table:
    return Table(
        f"Does dropout's effect grow with width? (effect at {list(widths[-1])} − effect at "
        f"{list(widths[0])})", ["metric", "change of the dropout effect"],
        [[metric, value.text()] for metric, value in growth.items()],
        "The effect is the dropout − none difference at one width; its change is a difference "
        "of differences (an interaction), per seed where the four settings share seeds.")


def effect_growth(cells, small, large, none, drop, metric: str):
    return contrast([(1.0, final(cells[(large, drop)], metric)), (-1.0, final(cells[(large, none)], metric)),
                     (-1.0, final(cells[(small, drop)], metric)), (1.0, final(cells[(small, none)], metric))])


def plot_widths(cells, widths, none, drop, path: Path) -> str:
    figure, axes = new_figure(2, width=5.0)
    xs = [h[0] for h in widths]
    for ax, metric, title in ((axes[0], "test_accuracy", "test accuracy"),
                              (axes[1], "gap", "gap (train in eval mode − test)")):
        for probs, label in ((none, "no dropout"), (drop, f"dropout {drop}")):
            errorbar(ax, xs, [final(cells[(h, probs)], metric) for h in widths], label)
        ax.set(xlabel="hidden units per layer", title=title)
        log_x_ticks(ax, xs)
    return save_panels(figure, axes, path)


EXERCISE = Exercise(
    number=5,
    title="A more complex model: wider hidden layers, with and without dropout",
    question=("If the model is made more complex (more hidden units), is the effect of using "
              "dropout against overfitting more pronounced?"),
    design=("Two hidden layers of 256, 1024 and 2048 units, without dropout and with the "
            "textbook dropout (0.2, 0.5), 3 seeds each (18 runs). Overfitting has to show within "
            "a CPU budget, so the runs train on the first 1,000 training images for 100 epochs "
            "(SGD, batch 64, lr 0.1: at lr 0.5, runs on small subsets collapse now and then) and "
            "are tested on the first 2,000 test images. Test accuracy still swings by about "
            f"±0.02 from epoch to epoch, so each run's steady numbers are its means over the last "
            f"{TAIL} epochs (trainer.steady_epochs={TAIL}). The effect of dropout is the dropout − none difference at a width; whether "
            "it grows is the change of that difference from 256 to 2048 units."),
    analyze=analyze,
    quick=("model.hidden=[32,32],[128,128]",),
    questions=QUESTIONS,
    values=question_values,
)
