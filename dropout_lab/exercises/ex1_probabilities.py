"""Exercise 1: change the two hidden layers' dropout probabilities, and swap them."""

from itertools import combinations
from pathlib import Path
from typing import Dict, List, Tuple

from dropout_lab.disk import save_figure
from dropout_lab.exercises.runs import (format_probabilities, group_by, instability, probabilities,
                                        steady_metric)
from dropout_lab.exercises.stats import Comparison, Estimate, Family, difference, verdict
from dropout_lab.exercises.types import Exercise, Findings, Table
from dropout_lab.exercises.writing import endpoints_table, ties_with_best
from dropout_lab.plots import new_figure

TEXTBOOK = (0.2, 0.5)
NONE = (0.0, 0.0)
GAP = {"metric": "gap", "higher_is_better": None}


def analyze(runs: List[dict], measurements: dict, out_dir: Path) -> Findings:
    groups = group_by(runs, probabilities)
    if not groups:
        return Findings.nothing()
    test = {key: steady_metric(group) for key, group in groups.items()}
    gap = {key: steady_metric(group, "gap") for key, group in groups.items()}
    p1s, p2s = sorted({k[0] for k in groups}), sorted({k[1] for k in groups})
    swaps = [((a, b), (b, a)) for a, b in combinations(sorted(set(p1s) & set(p2s)), 2)
             if (a, b) in groups and (b, a) in groups]
    best = max(test, key=lambda key: test[key].mean)
    heaviest = max(test, key=sum)
    comparisons = family(test, gap, swaps, best, heaviest)
    tables = [*grid_tables(test, gap, p1s, p2s), swap_table(test, gap, swaps, comparisons),
              endpoints_table(dict(sorted(groups.items())),
                              {key: format_probabilities(key) for key in groups})]
    plots = [("Steady test accuracy and gap over the p1 × p2 grid (means over seeds)",
              plot_grids(test, gap, p1s, p2s, out_dir / "grid.png"))]
    numbers = {metric: {format_probabilities(k): [v.mean, v.std, v.n] for k, v in values.items()}
               for metric, values in (("steady_test_accuracy", test), ("gap", gap))}
    lines = conclusion(test, gap, swaps, best, heaviest, comparisons)
    return Findings(tables, plots, lines, numbers=numbers, comparisons=comparisons)


def swap_name(x: tuple, y: tuple, metric: str = "test acc") -> str:
    return f"{metric}: {format_probabilities(x)} − {format_probabilities(y)}"


def family(test, gap, swaps, best, heaviest) -> Dict[str, Comparison]:
    """The exercise's comparisons, Holm-adjusted together: every swap (test accuracy), the
    textbook swap's gap, the best setting and the heaviest dropout against none. The ties with
    the best setting (chosen after seeing the data) are a family of their own."""
    main = Family()
    for x, y in swaps:
        main.add(swap_name(x, y), difference(test[x], test[y]))
    swapped = (TEXTBOOK[1], TEXTBOOK[0])
    if TEXTBOOK in gap and swapped in gap:
        main.add(swap_name(TEXTBOOK, swapped, "gap"), difference(gap[TEXTBOOK], gap[swapped]))
    if NONE in test and best != NONE:
        main.add(f"best − none, {swap_name(best, NONE)}", difference(test[best], test[NONE]))
    if NONE in gap and heaviest != NONE:
        main.add(f"heaviest − none, {swap_name(heaviest, NONE, 'gap')}",
                 difference(gap[heaviest], gap[NONE]))
    ties = Family()
    for key in sorted(test):
        if key != best:
            ties.add(f"best − other, {swap_name(best, key)}", difference(test[best], test[key]))
    return {**main.adjust(), **ties.adjust()}


def grid_tables(test: Dict[tuple, Estimate], gap: Dict[tuple, Estimate], p1s, p2s) -> List[Table]:
    """Steady test accuracy and gap over the p1 × p2 grid."""
    def grid(values: Dict[tuple, Estimate]) -> List[list]:
        return [[f"{p1:g}", *(values.get((p1, p2), Estimate(())).text() for p2 in p2s)]
                for p1 in p1s]

    header = ["p1 \\ p2", *(f"{p2:g}" for p2 in p2s)]
    return [Table("Steady test accuracy (mean ± std over seeds)", header, grid(test),
                  "Rows: p1 (first hidden layer), columns: p2 (second hidden layer)."),
            Table("Gap: train accuracy in eval mode − test accuracy (steady)", header, grid(gap))]


def swap_table(test: Dict[tuple, Estimate], gap: Dict[tuple, Estimate],
               swaps: List[Tuple[tuple, tuple]], comparisons: Dict[str, Comparison]) -> Table:
    def gap_cell(x, y):
        name = swap_name(x, y, "gap")
        return (comparisons[name] if name in comparisons else difference(gap[x], gap[y])).text()

    return Table(
        "Swapping the probabilities: (a, b) against (b, a)",
        ["(p1, p2)", "steady test acc", "(p1, p2) swapped", "steady test acc", "Δ test acc",
         "Δ gap"],
        [[format_probabilities(x), test[x].text(), format_probabilities(y), test[y].text(),
          comparisons[swap_name(x, y)].text(), gap_cell(x, y)] for x, y in swaps],
        "Δ = first − swapped; the first has the smaller probability in the first layer. "
        "Δ test acc is Holm-adjusted with the exercise's family; a Δ gap outside the family "
        "(all but the textbook swap's) is shown with its unadjusted p.")


def compare(a: tuple, b: tuple, values: Dict[tuple, Estimate], comparison: Comparison,
            **metric) -> str:
    """The verdict on setting a against setting b (``metric``: verdict's metric and direction)."""
    return verdict(format_probabilities(a), values[a], format_probabilities(b), values[b],
                   comparison=comparison, **metric)


def conclusion(test, gap, swaps, best, heaviest, comparisons) -> List[str]:
    return (swap_lines(test, gap, swaps, comparisons) + [best_line(test, best, comparisons)]
            + against_no_dropout(test, gap, best, heaviest, comparisons)
            + instability({format_probabilities(key): value for key, value in test.items()}))


def swap_lines(test, gap, swaps, comparisons) -> List[str]:
    """The textbook swap's verdicts, and how often the order matters over all swaps."""
    lines = []
    swapped = (TEXTBOOK[1], TEXTBOOK[0])
    if TEXTBOOK in test and swapped in test:
        lines.append("The textbook swap, steady " + compare(
            TEXTBOOK, swapped, test, comparisons[swap_name(TEXTBOOK, swapped)]))
        lines.append("The textbook swap, " + compare(
            TEXTBOOK, swapped, gap, comparisons[swap_name(TEXTBOOK, swapped, "gap")], **GAP))
    tested = [comparisons[swap_name(x, y)] for x, y in swaps]
    ordered = [c for c in tested if c.significant]
    if swaps:
        lighter_first = sum(c.delta > 0 for c in ordered)
        lines.append(f"Over all {len(swaps)} swaps, the order matters significantly (after "
                     f"Holm's correction) in {len(ordered)}; in {lighter_first} of those the "
                     f"smaller probability in the first layer is better.")
    return lines


def best_line(test: Dict[tuple, Estimate], best: tuple, comparisons) -> str:
    """The best setting and how many others are not significantly below it."""
    others = [c for name, c in comparisons.items() if name.startswith("best − other")]
    text = (f"Best mean steady test accuracy: {format_probabilities(best)} with "
            f"{test[best].text()}")
    if not all(c.known for c in others):
        return text + " (no verdict on which settings tie with it: fewer than 2 seeds)."
    tied = sorted(key for key in test if key != best and not comparisons[
        f"best − other, {swap_name(best, key)}"].significant)
    return f"{text}; " + ties_with_best([format_probabilities(key) for key in tied], len(others))


def against_no_dropout(test, gap, best: tuple, heaviest: tuple, comparisons) -> List[str]:
    """The best setting's accuracy and the heaviest dropout's gap against no dropout."""
    lines = []
    name = f"best − none, {swap_name(best, NONE)}"
    if name in comparisons:
        lines.append("Best setting against no dropout, steady "
                     + compare(best, NONE, test, comparisons[name]))
    name = f"heaviest − none, {swap_name(heaviest, NONE, 'gap')}"
    if name in comparisons:
        narrowing = comparisons[name]
        effect = ("narrows the gap" if narrowing.significant and narrowing.delta < 0 else
                  "widens the gap" if narrowing.significant else
                  "does not change the gap significantly")
        lines.append(f"The heaviest dropout {format_probabilities(heaviest)} {effect} against "
                     f"none: " + compare(heaviest, NONE, gap, narrowing, **GAP))
    return lines


def plot_grids(test, gap, p1s, p2s, path: Path) -> str:
    import numpy as np

    figure, axes = new_figure(2, width=5.2)
    for ax, values, title in ((axes[0], test, "steady test accuracy"),
                                (axes[1], gap, "gap (train in eval mode − test)")):
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
            "no dropout (0, 0), with 6 seeds each (96 runs): the swaps are close, so the "
            "exercise gets more seeds. Settings share the seeds, so comparisons are paired by "
            "seed (same batch order and initial weights)."),
    analyze=analyze,
    quick=("model.dropout.p.0=0,0.2,0.5", "model.dropout.p.1=0,0.2,0.5"),
)
