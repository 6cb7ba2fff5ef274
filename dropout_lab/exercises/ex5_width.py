"""Exercise 5: a more complex model (wider hidden layers) with and without dropout."""

from pathlib import Path
from typing import Dict, List

from dropout_lab.exercises.figures import errorbar, log_x_ticks, save_panels
from dropout_lab.exercises.runs import (group_by, instability, probabilities, seconds_per_epoch,
                                        steady_metric)
from dropout_lab.exercises.stats import Family, contrast, difference, verdict
from dropout_lab.exercises.types import Exercise, Findings, Table
from dropout_lab.exercises.writing import endpoints_table
from dropout_lab.plots import new_figure

# exercise_5.yaml sets trainer.steady_epochs = 10: with 1,000 training images test accuracy
# swings ±0.02 from epoch to epoch, so the steady metrics average the last 10 epochs.
TAIL = 10


def final(runs, metric: str = "test_accuracy"):
    """The exercise's metric: each run's steady value (mean over its last steady_epochs)."""
    return steady_metric(runs, metric)


def setting(run: dict):
    """(hidden sizes, dropout probabilities)."""
    return tuple(run["config"]["model"]["hidden"]), probabilities(run)


def analyze(runs: List[dict], measurements: dict, out_dir: Path) -> Findings:
    groups = group_by(runs, setting)
    widths = sorted({hidden for hidden, _ in groups}, key=lambda h: sum(h))
    noisy = sorted({probs for _, probs in groups if any(probs)})
    if not widths or not noisy or not any(not any(p) for _, p in groups):
        return Findings.nothing("The sweep needs runs with and without dropout: nothing to compare.")
    drop, none = noisy[0], tuple(0.0 for _ in noisy[0])
    cells = {(h, d): groups.get((h, d), []) for h in widths for d in (none, drop)}
    comparisons = family(cells, widths, none, drop)
    growth = {metric: comparisons[growth_name(metric)] for metric in ("test_accuracy", "gap")}
    tables = [width_table(cells, widths, none, drop, comparisons), growth_table(growth, widths),
              endpoints_table({key: group for key, group in cells.items() if group},
                              {(h, d): f"{list(h)}, {'dropout' if any(d) else 'none'}"
                               for h, d in cells})]
    plots = [(f"Test accuracy and gap (last {TAIL} epochs) against width (mean ± std over seeds)",
              plot_widths(cells, widths, none, drop, out_dir / "width.png"))]
    lines = conclusion(cells, widths, none, drop, growth, comparisons)
    lines += instability({f"{list(h)} {'dropout' if any(d) else 'none'}": final(group)
                          for (h, d), group in cells.items() if group})
    return Findings(tables, plots, lines,
                    numbers={"growth": {m: [g.delta, g.se] for m, g in growth.items()}},
                    comparisons=comparisons)


def growth_name(metric: str) -> str:
    return f"{metric}: growth of the dropout effect with width (interaction)"


def effect_name(h, metric: str) -> str:
    return f"{metric} at {list(h)}: dropout − none"


WIDENING = "test_accuracy without dropout: largest − smallest width"


def family(cells: Dict, widths, none, drop) -> dict:
    """The growth of dropout's effect (test accuracy, gap), its effect at each width, and
    widening without dropout, Holm-adjusted together (paired by seed: same batch order)."""
    comparisons = Family()
    for metric in ("test_accuracy", "gap"):
        comparisons.add(growth_name(metric),
                        effect_growth(cells, widths[0], widths[-1], none, drop, metric))
    for h in widths:
        for metric in ("test_accuracy", "gap"):
            comparisons.add(effect_name(h, metric), difference(
                final(cells[(h, drop)], metric), final(cells[(h, none)], metric)))
    comparisons.add(WIDENING, difference(final(cells[(widths[-1], none)]),
                                         final(cells[(widths[0], none)])))
    return comparisons.adjust()


def width_table(cells: Dict, widths, none, drop, comparisons) -> Table:
    rows = []
    for h in widths:
        without, with_ = cells[(h, none)], cells[(h, drop)]
        rows.append([
            str(list(h)), final(without).text(), final(with_).text(),
            comparisons[effect_name(h, "test_accuracy")].text(),
            final(without, "gap").text(), final(with_, "gap").text(),
            comparisons[effect_name(h, "gap")].text(),
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
        "of differences (an interaction), tested per seed where the four settings share seeds.")


def effect_growth(cells, small, large, none, drop, metric: str):
    return contrast([(1.0, final(cells[(large, drop)], metric)), (-1.0, final(cells[(large, none)], metric)),
                     (-1.0, final(cells[(small, drop)], metric)), (1.0, final(cells[(small, none)], metric))])


def conclusion(cells: Dict, widths, none, drop, growth, comparisons) -> List[str]:
    lines = []
    small, large = widths[0], widths[-1]
    meaning = {  # what a positive / negative change of the (dropout − none) effect means
        "test_accuracy": ("dropout adds more test accuracy at the larger width",
                          "dropout adds less test accuracy (or costs more) at the larger width"),
        "gap": ("dropout narrows the gap less at the larger width",
                "dropout narrows the gap more at the larger width"),
    }
    for metric, words in (("test_accuracy", "test accuracy"), ("gap", "the gap")):
        change = growth[metric]
        if not change.known:
            lines.append(f"Whether dropout's effect on {words} grows with width: no verdict "
                         f"({change.text()}).")
        elif change.significant:
            lines.append(f"Dropout's effect on {words} changes significantly from width "
                         f"{list(small)} to {list(large)}, by {change.text()}: "
                         f"{meaning[metric][0 if change.delta > 0 else 1]}.")
        else:
            lines.append(f"Dropout's effect on {words} does not change significantly from width "
                         f"{list(small)} to {list(large)}: {change.text()}; a change of "
                         f"{change.detectable:.4f} would have been detected with 80% power.")
    for h in widths:
        lines.append(f"Width {list(h)}, steady " + verdict(
            "dropout", final(cells[(h, drop)]), "none", final(cells[(h, none)]),
            comparison=comparisons[effect_name(h, "test_accuracy")]))
        lines.append(f"Width {list(h)}, " + verdict(
            "dropout", final(cells[(h, drop)], "gap"), "none", final(cells[(h, none)], "gap"),
            metric="steady gap", higher_is_better=None, comparison=comparisons[effect_name(h, "gap")]))
    lines.append(f"Without dropout, widening from {list(small)} to {list(large)}, steady " + verdict(
        str(list(large)), final(cells[(large, none)]), str(list(small)), final(cells[(small, none)]),
        comparison=comparisons[WIDENING]))
    return lines


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
)
