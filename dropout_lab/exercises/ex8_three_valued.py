"""Exercise 8: noise taking values {0, γ/2, γ} against Bernoulli and Gaussian noise.

All three are multiplicative noises ξ with E[ξ] = 1, so the layer's output is unbiased; at a
variance level v they differ only in shape: Bernoulli {0, 1/(1−p)} with v = p/(1−p), Gaussian
1 + √v·ε, three-valued {0, 1, 2} (γ = 2) with P(0) = P(2) = v/2 (variance-matched; needs v ≤ 1)
or 1/3 each (uniform, v = 2/3, which is the variance of Bernoulli dropout at p = 0.4).
"""

from pathlib import Path
from typing import Dict, List, Tuple

from dropout_lab.exercises.figures import errorbar, save_panels
from dropout_lab.exercises.runs import (dropout_of, group_by, instability, noise_kind,
                                        probabilities, seconds_per_epoch, steady_metric)
from dropout_lab.exercises.stats import difference
from dropout_lab.exercises.types import Exercise, Findings, Table
from dropout_lab.exercises.writing import endpoints_table
from dropout_lab.inference.decide import Question

final = steady_metric  # the exercise's metric: the steady value of each run
from dropout_lab.plots import new_figure
from dropout_lab.run_folder import RunRecord

KIND_NAMES = {"none": "no noise", "custom": "Bernoulli", "gaussian": "Gaussian",
              "three_valued": "three-valued"}


def setting(run: RunRecord):
    """(kind, p, three-valued mode) with one p for all layers; kind none when there is no noise."""
    kind = noise_kind(run)
    if kind == "none":
        return ("none", 0.0, "")
    mode = dropout_of(run)["three_valued"] if kind == "three_valued" else ""
    return (kind, probabilities(run)[0], mode)


def noise_moments(key) -> Dict[str, float]:
    """Var[ξ] and P(ξ = 0) of a setting's noise (the formulas of dropout.py)."""
    from dropout_lab.dropout import three_valued_probabilities

    kind, p, mode = key
    if kind == "none":
        return {"variance": 0.0, "zeros": 0.0}
    if kind == "three_valued":
        q0, q1, q2 = three_valued_probabilities(p, mode)
        return {"variance": q1 + 4 * q2 - 1, "zeros": q0}
    return {"variance": p / (1 - p), "zeros": p if kind == "custom" else 0.0}


def name(key) -> str:
    kind, p, mode = key
    if kind == "none":
        return KIND_NAMES["none"]
    suffix = f" {mode.replace('_', '-')}" if mode else ""
    return f"{KIND_NAMES.get(kind, kind)}{suffix} (p={p:g})"


def analyze(runs: List[RunRecord], measurements: dict, out_dir: Path) -> Findings:
    groups = group_by(runs, setting)
    if not groups:
        return Findings.nothing()
    moments = {key: noise_moments(key) for key in groups}
    order = sorted(groups, key=lambda key: (round(moments[key]["variance"], 6), key[0]))
    pairs = matched_pairs(order, moments)
    tables = [noise_table(groups, order, moments), matched_table(groups, pairs),
              endpoints_table({key: groups[key] for key in order}, {key: name(key) for key in order})]
    lines = (sparsity_lines(order)
             + instability({name(key): final(groups[key]) for key in order}))
    plots = [("Final test accuracy per noise, by the noise variance (mean ± std over seeds)",
              plot_noises(groups, order, moments, out_dir / "noises.png"))]
    return Findings(tables, plots, lines)


def noise(kind: str, p: float, mode: str = "") -> Tuple[str, ...]:
    extra = f",three_valued:{mode}" if mode else ""
    return (f"model.dropout={{kind:{kind},p:{p:g}{extra}}}",)


# Declared before the runs; one family, Holm: three-valued noise against Bernoulli and
# Gaussian noise of the same mean and variance.
QUESTIONS = tuple(
    Question(f"three-valued against {other} at p {p:g}", f"three-valued {mode} (p={p:g})",
             f"{other} (p={p:g})", a_overrides=noise("three_valued", p, mode),
             b_overrides=noise(kind, p))
    for p, mode in ((0.2, "variance_matched"), (0.4, "uniform"))
    for kind, other in (("custom", "Bernoulli"), ("gaussian", "Gaussian")))


def variance_partners(order):
    """(three-valued setting, Bernoulli setting at the same variance)."""
    bernoulli = [k for k in order if k[0] == "custom"]
    return [(three, partner) for three in order if three[0] == "three_valued"
            for partner in bernoulli
            if abs(noise_moments(partner)["variance"] - noise_moments(three)["variance"]) < 1e-6]


def matched_pairs(order: List[tuple], moments: Dict[tuple, dict]) -> List[Tuple[float, tuple, tuple]]:
    """(variance, three-valued setting, another noise at that variance), by variance."""
    levels: Dict[float, List[tuple]] = {}
    for key in order:
        if key[0] != "none":
            levels.setdefault(round(moments[key]["variance"], 6), []).append(key)
    return [(variance, three, other) for variance, keys in levels.items()
            for three in keys if three[0] == "three_valued"
            for other in keys if other[0] != "three_valued"]


def noise_table(groups, order, moments) -> Table:
    return Table(
        "Steady metrics per noise (mean ± std over seeds); every noise has E[ξ] = 1",
        ["noise", "Var[ξ]", "P(ξ = 0)", "steady test acc", "gap", "s/epoch"],
        [[name(key), f"{moments[key]['variance']:.3f}", f"{moments[key]['zeros']:.3f}",
          final(groups[key]).text(), final(groups[key], "gap").text(),
          seconds_per_epoch(groups[key]).text(2)] for key in order],
        "s/epoch: as measured with jobs running side by side; it follows the machine's load "
        "more than the noise, so it is shown, not compared.")


def matched_table(groups, pairs) -> Table:
    rows = [[f"{variance:.3f}", name(three), name(other),
             difference(final(groups[three]), final(groups[other])).text(),
             difference(final(groups[three], "gap"), final(groups[other], "gap")).text()]
            for variance, three, other in pairs]
    return Table("Three-valued noise against the others at the same variance",
                 ["Var[ξ]", "three-valued", "against", "Δ test acc", "Δ gap"], rows,
                 "Δ = three-valued − the other; matched mean (1) and variance, so only "
                 "the shape of the noise differs.")


def sparsity_lines(order) -> List[str]:
    """How much of the signal each noise removes outright at the same variance."""
    return [f"{name(three)} zeroes {noise_moments(three)['zeros']:.0%} of the units where "
            f"{name(partner)} zeroes {noise_moments(partner)['zeros']:.0%} for the same variance."
            for three, partner in variance_partners(order)]


def plot_noises(groups, order, moments, path: Path) -> str:
    figure, axes = new_figure(1, width=7.0)
    ax = axes[0]
    markers = {"none": "s", "custom": "o", "gaussian": "^", "three_valued": "D"}
    for key in order:
        errorbar(ax, [moments[key]["variance"]], [final(groups[key])], name(key),
                 marker=markers.get(key[0], "x"), linestyle="none")
    ax.set(xlabel="noise variance Var[ξ]", ylabel="steady test accuracy",
           title="test accuracy by noise and variance")
    return save_panels(figure, axes, path, legend_size="small")


EXERCISE = Exercise(
    number=8,
    title="Noise with values {0, γ/2, γ} instead of Bernoulli dropout",
    question=("Replace the dropout random variable with a variable taking values [0, γ/2, γ]. "
              "Can you design something that works better than the binary dropout function? Why "
              "might you want to use it? Why not?"),
    design=("The textbook model and budget (10 epochs) with one multiplicative noise in both "
            "hidden layers, all with mean 1: at variance 1/4 (Bernoulli p = 0.2), Bernoulli, "
            "Gaussian and variance-matched three-valued noise; at variance 2/3 (Bernoulli "
            "p = 0.4), Bernoulli, Gaussian and the uniform three-valued noise {0, 1, 2} (γ = 2, "
            "each value 1/3); and no noise; 8 seeds each (56 runs): the matched comparisons are "
            "close, so the exercise gets more seeds. Matching mean and variance leaves only the "
            "shape of the noise to differ."),
    analyze=analyze,
    quick=("model.dropout={kind:none},{kind:custom,p:0.4},{kind:gaussian,p:0.4},"
           "{kind:three_valued,p:0.4,three_valued:uniform}",),
    questions=QUESTIONS,
)
