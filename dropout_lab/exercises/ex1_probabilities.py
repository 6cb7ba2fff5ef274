"""Exercise 1: change the two hidden layers' dropout probabilities, and swap them."""

from itertools import combinations
from pathlib import Path
from typing import Dict, List, Tuple

from dropout_lab.exercises.base import (Exercise, Findings, Table, final, fmt_p, group_by,
                                        instability, new_figure, probabilities, save_figure)
from dropout_lab.exercises.stats import Estimate, difference, verdict

TEXTBOOK = (0.2, 0.5)


def analyze(runs: List[dict], measurements: dict, out_dir: Path) -> Findings:
    groups = group_by(runs, probabilities)
    test = {key: final(group, "test_accuracy") for key, group in groups.items()}
    gap = {key: final(group, "gap") for key, group in groups.items()}
    p1s, p2s = sorted({k[0] for k in groups}), sorted({k[1] for k in groups})
    missing = Estimate(())

    def grid(values: Dict[tuple, Estimate]) -> List[list]:
        return [[f"{p1:g}", *(values.get((p1, p2), missing).text() for p2 in p2s)] for p1 in p1s]

    header = ["p1 \\ p2", *(f"{p2:g}" for p2 in p2s)]
    tables = [Table("Final test accuracy (mean ± std over seeds)", header, grid(test),
                    "Rows: p1 (first hidden layer), columns: p2 (second hidden layer)."),
              Table("Generalisation gap: train accuracy (dropout on) − test accuracy", header,
                    grid(gap))]

    swaps = [((a, b), (b, a)) for a, b in combinations(sorted(set(p1s) & set(p2s)), 2)
             if (a, b) in groups and (b, a) in groups]
    tables.append(Table(
        "Swapping the probabilities: (a, b) against (b, a)",
        ["(p1, p2)", "test acc", "(p1, p2) swapped", "test acc", "Δ test acc", "Δ gap"],
        [[fmt_p(x), test[x].text(), fmt_p(y), test[y].text(), difference(test[x], test[y]).text(),
          difference(gap[x], gap[y]).text()] for x, y in swaps],
        "Δ = first − swapped; the first has the smaller probability in the first layer."))

    plots = [("Test accuracy and gap over the p1 × p2 grid (means over seeds)",
              plot_grids(test, gap, p1s, p2s, out_dir / "grid.png"))]
    numbers = {"test_accuracy": {fmt_p(k): [v.mean, v.std, v.n] for k, v in test.items()},
               "gap": {fmt_p(k): [v.mean, v.std, v.n] for k, v in gap.items()}}
    return Findings(tables, plots, conclusion(test, gap, swaps), numbers=numbers)


def conclusion(test: Dict[tuple, Estimate], gap: Dict[tuple, Estimate],
               swaps: List[Tuple[tuple, tuple]]) -> List[str]:
    if not test:
        return ["No run completed: nothing to conclude."]
    lines = []
    swapped = (TEXTBOOK[1], TEXTBOOK[0])
    if TEXTBOOK in test and swapped in test:
        lines.append("The textbook swap, " + verdict(fmt_p(TEXTBOOK), test[TEXTBOOK], fmt_p(swapped),
                                                      test[swapped]))
        lines.append("The textbook swap, " + verdict(fmt_p(TEXTBOOK), gap[TEXTBOOK], fmt_p(swapped),
                                                      gap[swapped], metric="gap", higher_is_better=None))
    ordered = [pair for pair in swaps if difference(test[pair[0]], test[pair[1]]).significant]
    lighter_first = sum(difference(test[x], test[y]).delta > 0 for x, y in ordered)
    if swaps:
        lines.append(f"Over all {len(swaps)} swaps, the order matters significantly in "
                     f"{len(ordered)}; in {lighter_first} of those the smaller probability in the "
                     f"first layer is better.")

    best = max(test, key=lambda key: test[key].mean)
    others = [key for key in test if key != best]
    if all(difference(test[best], test[key]).known for key in others):
        tied = sorted(key for key in others if not difference(test[best], test[key]).significant)
        lines.append(f"Best mean test accuracy: {fmt_p(best)} with {test[best].text()}; "
                      f"{len(tied)} of the other {len(others)} settings are within the spread of it"
                      + (f": {', '.join(map(fmt_p, tied))}." if tied else "."))
    else:
        lines.append(f"Best mean test accuracy: {fmt_p(best)} with {test[best].text()} (no verdict "
                     f"on which settings tie with it: fewer than 2 seeds).")
    none = (0.0, 0.0)
    if none in test and best != none:
        lines.append("Best setting against no dropout, " + verdict(fmt_p(best), test[best],
                                                                    fmt_p(none), test[none]))
    heaviest = max(test, key=sum)
    if none in gap and heaviest != none:
        narrowing = difference(gap[heaviest], gap[none])
        effect = ("narrows the gap" if narrowing.significant and narrowing.delta < 0 else
                  "widens the gap" if narrowing.significant else "leaves the gap within the spread")
        lines.append(f"The heaviest dropout {fmt_p(heaviest)} {effect} against none: "
                     + verdict(fmt_p(heaviest), gap[heaviest], fmt_p(none), gap[none],
                               metric="gap", higher_is_better=None))
    return lines + instability({fmt_p(key): value for key, value in test.items()})


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
    return save_figure(figure, path)


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
