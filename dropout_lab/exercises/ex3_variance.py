"""Exercise 3: the variance of the activations after dropout, in theory and measured.

Theory for inverted dropout, h' = h·ξ/(1-p), ξ ~ Bernoulli(1-p):
    given h:       E[h'|h] = h,  Var[h'|h] = p/(1-p)·h²
    over the data: Var[h'] = Var[h] + p/(1-p)·E[h²]

The first is checked by Monte Carlo on trained networks: the hidden activations h of a fixed
batch of test images are computed once (eval mode, so h is what the dropout layer receives
without upstream noise), then the layer's own dropout is drawn M times. The second is checked
on the per-epoch statistics training logged (logging.activation_stats=true).

The Monte Carlo tolerance. For one element with h > 0, the sample variance s² of M draws of
h' estimates σ² = p/(1−p)·h², and the ratio r = s²/σ² depends on the number of kept draws alone,
not on h: the r of all elements are independent, with E[r] = 1 and Var[r] = c_M =
κ/M − (M−3)/(M(M−1)), κ = (1 − 3q(1−q))/(q(1−q)) the kurtosis of the two-point noise, q = 1 − p.
A unit's estimate is the mean of r over its n examples with h > 0, standard error √(c_M/n); it
passes when |mean r − 1| ≤ 6·SE. The worst case is p = 0.5, where n·(mean r) is nearly a χ²
with n degrees of freedom, skewed: P(|z| > 6) is 1.3·10⁻⁶ at n = 64 (normal tails would say
2·10⁻⁹), so units with at least 64 active examples are checked and all of a network's ≤ 512
units pass a correct formula with probability above 0.999. A wrong formula misses by far more:
without the 1/(1−p) scaling the variance is off by (1−p)², 75% at p = 0.5, hundreds of SE.
The whole layer pools all its elements (normal to a good approximation) with the same 6·SE.
"""

import math
from pathlib import Path
from typing import Dict, List

from dropout_lab.exercises.figures import save_panels
from dropout_lab.exercises.runs import (completed, dropout_name, dropout_of, final, group_by,
                                        last_epoch, probabilities)
from dropout_lab.exercises.stats import difference, estimate
from dropout_lab.exercises.types import Exercise, Findings, Table
from dropout_lab.plots import new_figure
from dropout_lab.report import curve
from dropout_lab.run_folder import RunRecord

Z_LIMIT = 6.0
MIN_EXAMPLES = 64  # a unit is checked when it is active on at least this many examples


def kurtosis_term(p: float, draws: int) -> float:
    """c_M = Var(s²)/σ⁴ for the sample variance of ``draws`` draws of inverted Bernoulli dropout."""
    q = 1.0 - p
    kurtosis = (1.0 - 3.0 * q * (1.0 - q)) / (q * (1.0 - q))
    return kurtosis / draws - (draws - 3) / (draws * (draws - 1))


def mc_variance(noise, h, draws: int, chunk: int = 16):
    """Per-element sample variance (ddof 1) of ``noise(h)`` over ``draws`` independent draws.

    h: (B, units) fixed activations; the noise module runs in training mode on (chunk, B, units)
    copies, and the sums are kept in float64.
    """
    import torch

    total = torch.zeros(h.shape, dtype=torch.float64, device=h.device)
    total_sq = torch.zeros(h.shape, dtype=torch.float64, device=h.device)
    noise.train()
    done = 0
    with torch.no_grad():
        while done < draws:
            n = min(chunk, draws - done)
            y = noise(h.expand(n, *h.shape)).to(torch.float64)  # (n, B, units)
            total += y.sum(dim=0)
            total_sq += (y * y).sum(dim=0)
            done += n
    return (total_sq - total * total / draws) / (draws - 1)


def check_layer(noise, h, p: float, draws: int) -> dict:
    """Per-unit Monte Carlo variance against p/(1-p)·h², with the tolerance of the docstring."""
    import torch

    h = h.to(torch.float32)
    s2 = mc_variance(noise, h, draws)  # (B, units)
    theory = (p / (1.0 - p)) * h.to(torch.float64) ** 2
    active = theory > 0  # h = 0 has variance 0 under both
    ratio = torch.where(active, s2 / theory.clamp_min(1e-300), 0.0)  # r = s²/σ², (B, units)
    examples = active.sum(dim=0)  # n per unit
    checked = examples >= MIN_EXAMPLES
    c_m = kurtosis_term(p, draws)
    unit_error = ratio.sum(dim=0)[checked] / examples[checked] - 1.0  # mean r - 1 per unit
    unit_se = torch.sqrt(c_m / examples[checked])
    z = unit_error / unit_se
    layer_error = (ratio[active].mean() - 1.0).item()
    layer_se = math.sqrt(c_m / int(active.sum()))
    shown = theory.sum(dim=0) > 0
    return {
        "p": p, "draws": draws, "examples": int(h.shape[0]), "units": int(h.shape[1]),
        "checked_units": int(checked.sum()), "min_examples": MIN_EXAMPLES,
        "median_abs_relative_error": unit_error.abs().median().item(),
        "max_abs_relative_error": unit_error.abs().max().item(),
        "max_relative_tolerance": (Z_LIMIT * unit_se).max().item(),
        "max_abs_z": z.abs().max().item(),
        "z_limit": Z_LIMIT,
        "passed": bool((z.abs() <= Z_LIMIT).all()) and abs(layer_error) <= Z_LIMIT * layer_se,
        "layer_relative_error": layer_error,
        "layer_relative_se": layer_se,
        # for the plot: each unit's variance averaged over the batch, MC and theory
        "theory_per_unit": theory.mean(dim=0)[shown].tolist(),
        "mc_per_unit": s2.mean(dim=0)[shown].tolist(),
    }


def hidden_activations(model, images) -> List:
    """The input of each hidden layer's noise module (its ReLU output), in eval mode: (B, units)."""
    import torch
    from torch import nn

    model.eval()
    activations = []
    x = images
    with torch.no_grad():
        for module in model.net:
            x = module(x)
            if isinstance(module, nn.ReLU):
                activations.append(x.clone())
    return activations


def measure(runs: List[RunRecord], out_dir: Path, quick: bool) -> dict:
    """The Monte Carlo check on every trained network with Bernoulli dropout."""
    from dropout_lab.activations import hidden_layers
    from dropout_lab.dropout import InvertedDropout
    from dropout_lab.trained_model import one_thread, test_images, trained_model

    import torch

    draws, batch = (400, 512) if quick else (4000, 512)
    checks = []
    for run in runs:
        if dropout_of(run)["kind"] != "custom" or not any(probabilities(run)):
            continue
        model = trained_model(run)
        images = test_images(run, batch)
        for k, (h, (_, noise)) in enumerate(zip(hidden_activations(model, images),
                                                hidden_layers(model)), start=1):
            if isinstance(noise, InvertedDropout) and 0.0 < noise.p < 1.0:
                with one_thread(), torch.random.fork_rng(devices=[]):  # same masks on a rerun
                    torch.manual_seed(1000 * run.config["seed"] + k)
                    check = check_layer(noise, h, noise.p, draws)
                checks.append({"run": run.job, "seed": run.config["seed"], "layer": k, **check})
    return {"draws": draws, "examples": batch, "checks": checks}


# --- the analysis ------------------------------------------------------------------------------

LAYER_STATS = ("var_before_noise", "var_after_noise", "mean_square_before_noise")


def layer_count(runs: List[RunRecord]) -> int:
    keys = {key for run in runs for key in last_epoch(run)}
    return sum(f"layer{k}_var_before_noise" in keys for k in range(1, 100))


def analyze(runs: List[RunRecord], measurements: dict, out_dir: Path) -> Findings:
    tables, plots, lines = [], [], []
    checks = measurements.get("checks", [])
    if checks:
        tables.append(mc_table(checks, measurements["examples"]))
        plots.append(("Per-unit variance of h' given h: Monte Carlo against p/(1−p)·h²",
                      plot_scatter(checks, out_dir / "variance_check.png")))
        lines.append(mc_conclusion(checks))
    else:
        lines.append("No trained network with Bernoulli dropout to check the formula on.")

    groups = group_by(runs, probabilities)
    n_layers = layer_count(completed(runs))
    if n_layers:
        tables.append(identity_table(groups, n_layers))
        tables.append(variance_table(groups, n_layers))
        plots.append(("Each hidden layer's activation variance per epoch (mean over units and "
                      "seeds): before the noise (ReLU output) and after it",
                      plot_variance(groups, n_layers, out_dir / "variance_over_training.png")))
        lines += training_observations(groups, n_layers)
    else:
        lines.append("The runs logged no activation statistics (logging.activation_stats=false).")
    return Findings(tables, plots, lines, numbers={"mc_checks": [
        {k: v for k, v in c.items() if not k.endswith("per_unit")} for c in checks]})


def mc_table(checks: List[dict], examples: int) -> Table:
    return Table(
        "Monte Carlo check of Var[h'|h] = p/(1−p)·h² on trained networks (per unit)",
        ["seed", "layer", "p", "units checked", "draws", "median |rel. err.|",
         "max |rel. err.|", "max tolerance", "max |z|", "passed",
         "whole layer rel. err. (SE)"],
        [[c["seed"], c["layer"], f"{c['p']:g}", f"{c['checked_units']}/{c['units']}", c["draws"],
          f"{c['median_abs_relative_error']:.2%}", f"{c['max_abs_relative_error']:.2%}",
          f"{c['max_relative_tolerance']:.2%}", f"{c['max_abs_z']:.2f}",
          "yes" if c["passed"] else "NO",
          f"{c['layer_relative_error']:+.3%} ({c['layer_relative_se']:.3%})"] for c in checks],
        f"h fixed on {examples} test images; per unit, the relative error is "
        f"the mean over its examples of s²/(p/(1−p)·h²) − 1 (units active on at least "
        f"{MIN_EXAMPLES} images); tolerance {Z_LIMIT:g}·SE, SE = √(c_M/n) from the number of "
        f"draws M and examples n (see dropout_lab/exercises/ex3_variance.py); z = error/SE.")


def mc_conclusion(checks: List[dict]) -> str:
    failed = [c for c in checks if not c["passed"]]
    worst = max(checks, key=lambda c: c["max_abs_z"])
    units = sum(c["checked_units"] for c in checks)
    if failed:
        return (f"The formula Var[h'|h] = p/(1−p)·h² does NOT hold: in {len(failed)} of "
                f"{len(checks)} layer checks a unit or the whole layer misses by more than "
                f"{Z_LIMIT:g}·SE (worst unit |z| = {worst['max_abs_z']:.1f}, layer {worst['layer']}).")
    return (f"Var[h'|h] = p/(1−p)·h² holds: over {units} units in {len(checks)} layers of "
            f"trained networks, the Monte Carlo variance ({checks[0]['draws']} draws) agrees "
            f"with the formula within {Z_LIMIT:g}·SE for every unit (largest |z| = "
            f"{worst['max_abs_z']:.2f}; median relative error "
            f"{max(c['median_abs_relative_error'] for c in checks):.2%} or less).")


def identity_table(groups: Dict[tuple, List[RunRecord]], n_layers: int) -> Table:
    rows = []
    for key, group in groups.items():
        for k in range(1, n_layers + 1):
            p = key[k - 1]
            measured = estimate(last_epoch(r)[f"layer{k}_var_after_noise"] for r in group)
            predicted = estimate(last_epoch(r)[f"layer{k}_var_before_noise"]
                                 + p / (1 - p) * last_epoch(r)[f"layer{k}_mean_square_before_noise"]
                                 for r in group)
            rows.append([dropout_name(key), k, f"{p:g}",
                         estimate(last_epoch(r)[f"layer{k}_var_before_noise"] for r in group).text(),
                         predicted.text(), measured.text(),
                         f"{measured.mean / predicted.mean - 1:+.3%}"])
    return Table("Over the data, last epoch: Var[h'] = Var[h] + p/(1−p)·E[h²]",
                 ["setting", "layer", "p", "Var[h] (before noise)", "predicted Var[h']",
                  "measured Var[h']", "measured/predicted − 1"], rows,
                 "Per unit over the epoch's training examples, averaged over units; the "
                 "prediction uses the same epoch's Var[h] and E[h²] (training passes).")


def variance_table(groups: Dict[tuple, List[RunRecord]], n_layers: int) -> Table:
    rows = []
    for key, group in groups.items():
        for k in range(1, n_layers + 1):
            first = estimate(r.history[0][f"layer{k}_var_before_noise"] for r in group)
            rows.append([dropout_name(key), k, first.text(), final(group, f"layer{k}_var_before_noise").text(),
                         final(group, f"layer{k}_var_after_noise").text()])
    return Table("Activation variance per layer: first and last epoch (mean ± std over seeds)",
                 ["setting", "layer", "Var[h] epoch 1", "Var[h] last epoch", "Var[h'] last epoch"],
                 rows)


def training_observations(groups: Dict[tuple, List[RunRecord]], n_layers: int) -> List[str]:
    lines = []
    plain = [key for key in groups if not any(key)]
    noisy = [key for key in groups if any(key)]
    for key in noisy:
        group = groups[key]
        ratios = []
        for k in range(1, n_layers + 1):
            after, before = (final(group, f"layer{k}_var_after_noise"),
                             final(group, f"layer{k}_var_before_noise"))
            ratios.append(f"layer {k} (p = {key[k - 1]:g}) ×{after.mean / before.mean:.2f}")
        lines.append(f"With {dropout_name(key)}, the noise multiplies the activation variance the "
                     f"next layer sees, at the last epoch: " + ", ".join(ratios) + ".")
        if plain:
            for k in range(1, n_layers + 1):
                metric = f"layer{k}_var_before_noise"
                mine, theirs = final(group, metric), final(groups[plain[0]], metric)
                lines.append(f"Layer {k} before the noise, last epoch, Var[h]: "
                             f"{dropout_name(key)} {mine.text()} vs {dropout_name(plain[0])} "
                             f"{theirs.text()}, Δ = {difference(mine, theirs).text()}.")
    return lines


def plot_scatter(checks: List[dict], path: Path) -> str:
    figure, axes = new_figure(1, width=5.5, height=5.0)
    ax = axes[0]
    lows, highs = [], []
    for k in sorted({c["layer"] for c in checks}):
        theory = [t for c in checks if c["layer"] == k for t in c["theory_per_unit"]]
        mc = [m for c in checks if c["layer"] == k for m in c["mc_per_unit"]]
        ax.scatter(theory, mc, s=6, alpha=0.5, label=f"layer {k}")
        lows.append(min(theory))
        highs.append(max(theory))
    line = [min(lows), max(highs)]
    ax.plot(line, line, "k--", linewidth=1, label="y = x")
    ax.set(xscale="log", yscale="log", xlabel="p/(1−p)·h², averaged over the batch",
           ylabel="Monte Carlo variance of h'", title="Var[h'|h] per unit")
    return save_panels(figure, axes, path)


def plot_variance(groups, n_layers: int, path: Path) -> str:
    figure, axes = new_figure(n_layers, width=5.0)
    for k, ax in enumerate(axes, start=1):
        for key, group in groups.items():
            epochs, means, _ = curve(group, f"layer{k}_var_before_noise")
            ax.plot(epochs, means, label=f"{dropout_name(key)}: before noise")
            if any(key):
                epochs, means, _ = curve(group, f"layer{k}_var_after_noise")
                ax.plot(epochs, means, "--", label=f"{dropout_name(key)}: after noise")
        ax.set(xlabel="epoch", ylabel="mean over units of Var[activation]", title=f"hidden layer {k}")
    return save_panels(figure, axes, path, legend_size="small")


EXERCISE = Exercise(
    number=3,
    title="The variance of the activations after dropout",
    question=("Compute the variance of the activation random variables after applying dropout: "
              "check p/(1−p)·h² against Monte Carlo on a trained network, and follow each hidden "
              "layer's activation variance over training, with and without dropout."),
    design=("The textbook model trained for 20 epochs without dropout and with dropout "
            "(0.2, 0.5), 3 seeds each (6 runs), with logging.activation_stats=true: every epoch "
            "logs, per hidden layer, the per-unit variance over the epoch's training examples of "
            "the ReLU output h (before the noise) and of h' (after it), averaged over units, and "
            "E[h²] (TensorBoard tags activations/layer{k}_...). Each trained network with "
            "dropout then gets the Monte Carlo check: h fixed on a batch of test images, the "
            "layer's dropout drawn many times, per-unit variance against the formula."),
    analyze=analyze,
    measure=measure,
)
