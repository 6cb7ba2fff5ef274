"""Exercise 1: change the two hidden layers' dropout probabilities, and swap them."""

from itertools import combinations
from pathlib import Path
from typing import Dict, List, Tuple

from dropout_lab.disk import save_figure
from dropout_lab.exercises.runs import final, format_probabilities, group_by, instability, probabilities
from dropout_lab.exercises.stats import Estimate, difference, verdict
from dropout_lab.exercises.types import NO_COMPLETED_RUN, Exercise, Findings, Table
from dropout_lab.plots import new_figure

TEXTBOOK = (0.2, 0.5)


def analyze(runs: List[dict], measurements: dict, out_dir: Path) -> Findings:
    groups = group_by(runs, probabilities)
    test = {key: final(group, "test_accuracy") for key, group in groups.items()}
    gap = {key: final(group, "gap") for key, group in groups.items()}
    p1s, p2s = sorted({k[0] for k in groups}), sorted({k[1] for k in groups})
    swaps = [((a, b), (b, a)) for a, b in combinations(sorted(set(p1s) & set(p2s)), 2)
             if (a, b) in groups and (b, a) in groups]
    tables = [*grid_tables(test, gap, p1s, p2s), swap_table(test, gap, swaps)]
    plots = [("Test accuracy and gap over the p1 × p2 grid (means over seeds)",
              plot_grids(test, gap, p1s, p2s, out_dir / "grid.png"))]
    numbers = {metric: {format_probabilities(k): [v.mean, v.std, v.n] for k, v in values.items()}
               for metric, values in (("test_accuracy", test), ("gap", gap))}
    return Findings(tables, plots, conclusion(test, gap, swaps), numbers=numbers)


def grid_tables(test: Dict[tuple, Estimate], gap: Dict[tuple, Estimate], p1s, p2s) -> List[Table]:
    """Test accuracy and gap over the p1 × p2 grid."""
    def grid(values: Dict[tuple, Estimate]) -> List[list]:
        return [[f"{p1:g}", *(values.get((p1, p2), Estimate(())).text() for p2 in p2s)]
                for p1 in p1s]

    header = ["p1 \\ p2", *(f"{p2:g}" for p2 in p2s)]
    return [Table("Final test accuracy (mean ± std over seeds)", header, grid(test),
                  "Rows: p1 (first hidden layer), columns: p2 (second hidden layer)."),
            Table("Generalisation gap: train accuracy (dropout on) − test accuracy", header,
                  grid(gap))]


def swap_table(test: Dict[tuple, Estimate], gap: Dict[tuple, Estimate],
               swaps: List[Tuple[tuple, tuple]]) -> Table:
    return Table(
        "Swapping the probabilities: (a, b) against (b, a)",
        ["(p1, p2)", "test acc", "(p1, p2) swapped", "test acc", "Δ test acc", "Δ gap"],
        [[format_probabilities(x), test[x].text(), format_probabilities(y), test[y].text(),
          difference(test[x], test[y]).text(), difference(gap[x], gap[y]).text()]
         for x, y in swaps],
        "Δ = first − swapped; the first has the smaller probability in the first layer.")


def compare(a: tuple, b: tuple, values: Dict[tuple, Estimate], **metric) -> str:
    """The verdict on setting a against setting b (``metric``: verdict's metric and direction)."""
    return verdict(format_probabilities(a), values[a], format_probabilities(b), values[b], **metric)


GAP = {"metric": "gap", "higher_is_better": None}


def conclusion(test: Dict[tuple, Estimate], gap: Dict[tuple, Estimate],
               swaps: List[Tuple[tuple, tuple]]) -> List[str]:
    if not test:
        return [NO_COMPLETED_RUN]
    best = max(test, key=lambda key: test[key].mean)
    return (swap_lines(test, gap, swaps) + [best_line(test, best)]
            + against_no_dropout(test, gap, best)
            + instability({format_probabilities(key): value for key, value in test.items()}))


def swap_lines(test, gap, swaps: List[Tuple[tuple, tuple]]) -> List[str]:
    """The textbook swap's verdicts, and how often the order matters over all swaps."""
    lines = []
    swapped = (TEXTBOOK[1], TEXTBOOK[0])
    if TEXTBOOK in test and swapped in test:
        lines.append("The textbook swap, " + compare(TEXTBOOK, swapped, test))
        lines.append("The textbook swap, " + compare(TEXTBOOK, swapped, gap, **GAP))
    ordered = [pair for pair in swaps if difference(test[pair[0]], test[pair[1]]).significant]
    lighter_first = sum(difference(test[x], test[y]).delta > 0 for x, y in ordered)
    if swaps:
        lines.append(f"Over all {len(swaps)} swaps, the order matters significantly in "
                     f"{len(ordered)}; in {lighter_first} of those the smaller probability in the "
                     f"first layer is better.")
    return lines


def best_line(test: Dict[tuple, Estimate], best: tuple) -> str:
    """The best setting and how many others tie with it."""
    others = [key for key in test if key != best]
    text = f"Best mean test accuracy: {format_probabilities(best)} with {test[best].text()}"
    if not all(difference(test[best], test[key]).known for key in others):
        return text + " (no verdict on which settings tie with it: fewer than 2 seeds)."
    tied = sorted(key for key in others if not difference(test[best], test[key]).significant)
    return (f"{text}; {len(tied)} of the other {len(others)} settings are within the spread of it"
            + (f": {', '.join(map(format_probabilities, tied))}." if tied else "."))


def against_no_dropout(test, gap, best: tuple) -> List[str]:
    """The best setting's accuracy and the heaviest dropout's gap against no dropout."""
    lines = []
    none = (0.0, 0.0)
    if none in test and best != none:
        lines.append("Best setting against no dropout, " + compare(best, none, test))
    heaviest = max(test, key=sum)
    if none in gap and heaviest != none:
        narrowing = difference(gap[heaviest], gap[none])
        effect = ("narrows the gap" if narrowing.significant and narrowing.delta < 0 else
                  "widens the gap" if narrowing.significant else "leaves the gap within the spread")
        lines.append(f"The heaviest dropout {format_probabilities(heaviest)} {effect} against "
                     f"none: " + compare(heaviest, none, gap, **GAP))
    return lines


def plot_grids(test, gap, p1s, p2s, path: Path) -> str:
    import numpy as np

    figure, axes = new_figure(2, width=5.2)
    for ax, values, title in ((axes[0], test, "final test accuracy"), (axes[1], gap, "gap (train − test)")):
        matrix = np.array([[values[(a, b)].mean if (a, b) in values else np.nan for b in p2s]
                           for a in p1s], dtype=float)
        image = ax.imshow(matrix, cmap="viridis", origin="lower")
        ax.set_xticks(range(len(p2s)), [f"{b:g}" for b in p2s])
        ax.set_yticks(range(len(p1s)), [f"{a:g}" for a in p1s])
        ax.set(xlabel="p2 (second hidden layer)", ylabel="p1 (first hidden layer)", title=title)
        for i in range(len(p1s)):
            for j in range(len(p2s)):
                if np.isfinite(matrix[i, j]):
                    light = image.norm(matrix[i, j]) > 0.6  # dark text on the bright cells
                    ax.text(j, i, f"{matrix[i, j]:.3f}", ha="center", va="center",
                            color="k" if light else "w", fontsize=8)
        figure.colorbar(image, ax=ax, shrink=0.8)
    return save_figure(figure, path).name


EXERCISE = Exercise(
    number=1,
    title="Change the dropout probabilities of the two hidden layers, and swap them",
    question=("What happens if you change the dropout probabilities of the first and second "
              "hidden layers? In particular, what happens if you swap them, (0.2, 0.5) ↔ "
              "(0.5, 0.2)?"),
    design=("The textbook model (784-256-256-10, SGD lr 0.5, batch 256, 10 epochs) over the grid "
            "p1 × p2 ∈ {0, 0.2, 0.5, 0.8}², which contains the swap (0.2, 0.5) ↔ (0.5, 0.2) and "
            "no dropout (0, 0), with 3 seeds each (48 runs). The metric is the final-epoch test "
            "accuracy; the gap is train accuracy (measured during the epoch, dropout on) minus "
            "test accuracy."),
    analyze=analyze,
    quick=("model.dropout.p.0=0,0.2,0.5", "model.dropout.p.1=0,0.2,0.5"),
)
