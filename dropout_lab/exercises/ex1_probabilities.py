"""Exercise 1: change the two hidden layers' dropout probabilities, and swap them."""

from itertools import combinations
from pathlib import Path
from typing import Dict, List, Tuple

from dropout_lab.disk import save_figure
from dropout_lab.exercises.runs import (format_probabilities, group_by, instability, probabilities,
                                        steady_metric)
from dropout_lab.exercises.stats import Estimate, difference
from dropout_lab.exercises.types import Exercise, Findings, Table
from dropout_lab.exercises.writing import endpoints_table
from dropout_lab.inference.decide import Question
from dropout_lab.plots import new_figure
from dropout_lab.run_folder import RunRecord

TEXTBOOK = (0.2, 0.5)
NONE = (0.0, 0.0)


def setting(p1: float, p2: float) -> Tuple[str, ...]:
    return (f"model.dropout.p.0={p1:g}", f"model.dropout.p.1={p2:g}")


# Declared before the runs; one family, Holm.
QUESTIONS = (
    Question("the textbook swap", "(0.2, 0.5)", "(0.5, 0.2)",
             a_overrides=setting(0.2, 0.5), b_overrides=setting(0.5, 0.2)),
    Question("the textbook swap, gap", "(0.2, 0.5)", "(0.5, 0.2)", metric="steady gap",
             higher_is_better=False, a_overrides=setting(0.2, 0.5),
             b_overrides=setting(0.5, 0.2)),
    Question("the textbook dropout against none", "(0.2, 0.5)", "(0, 0)",
             a_overrides=setting(0.2, 0.5), b_overrides=setting(0, 0)),
)


def analyze(runs: List[RunRecord], measurements: dict, out_dir: Path) -> Findings:
    groups = group_by(runs, probabilities)
    if not groups:
        return Findings.nothing()
    test = {key: steady_metric(group) for key, group in groups.items()}
    gap = {key: steady_metric(group, "gap") for key, group in groups.items()}
    p1s, p2s = sorted({k[0] for k in groups}), sorted({k[1] for k in groups})
    swaps = [((a, b), (b, a)) for a, b in combinations(sorted(set(p1s) & set(p2s)), 2)
             if (a, b) in groups and (b, a) in groups]
    tables = [*grid_tables(test, gap, p1s, p2s), swap_table(test, gap, swaps),
              endpoints_table(dict(sorted(groups.items())),
                              {key: format_probabilities(key) for key in groups})]
    plots = [("Steady test accuracy and gap over the p1 × p2 grid (means over seeds)",
              plot_grids(test, gap, p1s, p2s, out_dir / "grid.png"))]
    numbers = {metric: {format_probabilities(k): [v.mean, v.std, v.n] for k, v in values.items()}
               for metric, values in (("steady_test_accuracy", test), ("gap", gap))}
    lines = observations(test, swaps)
    return Findings(tables, plots, lines, numbers=numbers)


def swap_name(x: tuple, y: tuple, metric: str = "test acc") -> str:
    return f"{metric}: {format_probabilities(x)} − {format_probabilities(y)}"


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
               swaps: List[Tuple[tuple, tuple]]) -> Table:
    return Table(
        "Swapping the probabilities: (a, b) against (b, a)",
        ["(p1, p2)", "steady test acc", "(p1, p2) swapped", "steady test acc", "Δ test acc",
         "Δ gap"],
        [[format_probabilities(x), test[x].text(), format_probabilities(y), test[y].text(),
          difference(test[x], test[y]).text(), difference(gap[x], gap[y]).text()]
         for x, y in swaps],
        "Δ = first − swapped (95% CI, paired by seed, this comparison alone); the first has the "
        "smaller probability in the first layer. Descriptive: only the textbook swap is a "
        "declared question.")


def observations(test: Dict[tuple, Estimate], swaps) -> List[str]:
    """What the tables show, without verdicts: the highest mean and the swaps' signs."""
    best = max(test, key=lambda key: test[key].mean)
    lines = [f"Highest mean steady test accuracy: {format_probabilities(best)} with "
             f"{test[best].text()} (the highest of {len(test)} noisy means, so optimistic)."]
    if swaps:
        lighter_first = sum(test[x].mean > test[y].mean for x, y in swaps)
        lines.append(f"In {lighter_first} of the {len(swaps)} swaps the mean is higher with the "
                     f"smaller probability in the first layer.")
    return lines + instability({format_probabilities(key): value for key, value in test.items()})


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
    questions=QUESTIONS,
    quick=("model.dropout.p.0=0,0.2,0.5", "model.dropout.p.1=0,0.2,0.5"),
)
