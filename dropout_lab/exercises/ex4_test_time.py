"""Exercise 4: why dropout is (usually) not used at test time.

Each trained network is evaluated on the test set deterministically (eval mode: the scaled
expectation of the noise, what training reports) and with its dropout on: single stochastic
passes, and the Monte Carlo average of the softmax over K passes (mc_dropout.mc_statistics), with
the time each takes. Predictive entropy, split by right and wrong predictions, says whether the
passes' disagreement flags the mistakes.
"""

import time
from pathlib import Path
from typing import List

from dropout_lab.exercises.figures import errorbar, log_x_ticks, save_panels
from dropout_lab.exercises.stats import Estimate, change, estimate
from dropout_lab.exercises.types import Exercise, Findings, Table
from dropout_lab.inference.decide import Question
from dropout_lab.plots import new_figure
from dropout_lab.run_folder import RunRecord

FULL_KS, QUICK_KS = (1, 2, 4, 8, 16, 32, 64), (1, 2, 4, 8)
REPEATS = 8  # draws of K passes for K < REPEATS: REPEATS // K of them, for the spread over masks


# --- measurements (torch) ---------------------------------------------------------------------

def auroc(scores, positives) -> float:
    """P(score of a random positive > score of a random negative), ties half: the
    Mann-Whitney statistic. Here: how well entropy ranks wrong predictions above right ones."""
    from scipy.stats import rankdata

    ranks = rankdata(scores.numpy())
    n_pos, n_neg = int(positives.sum()), int((~positives).sum())
    if not n_pos or not n_neg:
        return float("nan")
    return float((ranks[positives.numpy()].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def deterministic_pass(model, split, batch_size: int, precision: str) -> dict:
    """The eval-mode pass (one pass of mc_statistics with the noise off), timed, in the run's
    ``precision``."""
    from dropout_lab.mc_dropout import entropy, mc_metrics, mc_statistics

    model.eval()
    started = time.perf_counter()
    probabilities = mc_statistics(model, split, 1, batch_size, precision)["probabilities"]
    seconds = time.perf_counter() - started
    metrics = mc_metrics(probabilities, entropy(probabilities), split.labels)
    wrong = probabilities.argmax(dim=1) != split.labels
    return {"accuracy": metrics["mc_accuracy"], "seconds": seconds,
            "entropy_right": metrics["predictive_entropy_right"],
            "entropy_wrong": metrics["predictive_entropy_wrong"],
            "auroc": auroc(entropy(probabilities), wrong)}


def mc_passes(model, split, k: int, batch_size: int, precision: str, seed: int) -> dict:
    """One MC prediction from K passes (masks seeded by ``seed``) in the run's ``precision``,
    timed."""
    import torch

    from dropout_lab.mc_dropout import entropy, mc_metrics, mc_statistics, stochastic_layers_on

    stochastic_layers_on(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        started = time.perf_counter()
        statistics = mc_statistics(model, split, k, batch_size, precision)
        seconds = time.perf_counter() - started
    model.eval()
    metrics = mc_metrics(statistics["probabilities"], statistics["sample_entropy"], split.labels)
    wrong = statistics["probabilities"].argmax(dim=1) != split.labels
    return {**metrics, "seconds": seconds,
            "auroc": auroc(entropy(statistics["probabilities"]), wrong),
            "entropy": entropy(statistics["probabilities"]), "wrong": wrong}


def measure(runs: List[RunRecord], out_dir: Path, quick: bool) -> dict:
    from dropout_lab.trained_model import one_thread

    with one_thread():
        return measure_runs(runs, QUICK_KS if quick else FULL_KS)


def measure_runs(runs: List[RunRecord], ks) -> dict:
    import numpy as np

    from dropout_lab.trained_model import run_config, test_split, trained_model

    results = []
    for run in runs:
        model, split = trained_model(run), test_split(run)
        trainer = run_config(run).trainer
        batch_size, precision = trainer.eval_batch_size, trainer.precision
        result = {"seed": run.config["seed"], "job": run.job, "test_images": len(split),
                  "deterministic": deterministic_pass(model, split, batch_size, precision),
                  "mc": {}}
        for k in ks:
            draws = [mc_passes(model, split, k, batch_size, precision, seed=1000 * k + r)
                     for r in range(max(1, REPEATS // k))]
            last = draws[-1]
            result["mc"][str(k)] = {
                "accuracies": [d["mc_accuracy"] for d in draws],
                "seconds": [d["seconds"] for d in draws],
                **{key: last[key] for key in ("predictive_entropy_right", "predictive_entropy_wrong",
                                              "mutual_information_right", "mutual_information_wrong",
                                              "auroc")}}
        bins = np.linspace(0.0, np.log(10.0), 31)
        result["entropy_histogram"] = {
            "bins": bins.tolist(),
            "right": np.histogram(last["entropy"][~last["wrong"]].numpy(), bins)[0].tolist(),
            "wrong": np.histogram(last["entropy"][last["wrong"]].numpy(), bins)[0].tolist()}
        results.append(result)
    return {"ks": list(ks), "repeats": REPEATS, "runs": results}


# --- analysis -----------------------------------------------------------------------------------

def fastest(results: List[dict], k=None) -> float:
    """The shortest time measured for K passes (deterministic: k None) over networks and draws:
    timings on a shared machine only ever err upwards, so the minimum is the cost estimate."""
    if k is None:
        return min(r["deterministic"]["seconds"] for r in results)
    return min(t for r in results for t in r["mc"][str(k)]["seconds"])


def mask_mean(result: dict, k: int, field: str = "accuracies") -> float:
    """One network's K-pass ``field`` averaged over its mask draws."""
    values = result["mc"][str(k)][field]
    return sum(values) / len(values)


def per_seed(results: List[dict], k: int, field: str = "accuracies") -> Estimate:
    """The seed-level mean of K-pass accuracies (averaged over the mask draws of each seed)."""
    return estimate(mask_mean(r, k, field) for r in results)


def analyze(runs: List[RunRecord], measurements: dict, out_dir: Path) -> Findings:
    results = measurements.get("runs", [])
    if not results:
        return Findings.nothing("No trained network to evaluate: nothing to conclude.")
    ks = measurements["ks"]
    deterministic = estimate(r["deterministic"]["accuracy"] for r in results)
    deltas = {k: change(mask_mean(r, k) - r["deterministic"]["accuracy"] for r in results)
              for k in ks}
    top = str(ks[-1])
    gain = change(r["mc"][top]["auroc"] - r["deterministic"]["auroc"] for r in results)
    tables = [accuracy_table(results, ks, deterministic, deltas, measurements["repeats"]),
              entropy_table(results, top)]
    plots = [("Test accuracy and cost against the number of stochastic passes K",
              plot_k(results, ks, deterministic, out_dir / "mc_accuracy.png")),
             (f"Predictive entropy of right and wrong predictions, K = {top} (seed "
              f"{results[0]['seed']})", plot_entropy(results[0], out_dir / "entropy.png"))]
    return Findings(tables, plots, observations(results, ks, deltas, fastest(results), gain),
                    numbers={"deterministic": [deterministic.mean, deterministic.std],
                             "delta": {k: [d.delta, d.se] for k, d in deltas.items()}})


LARGEST_K, ONE_PASS = "the MC average of the largest K", "one stochastic pass"
# Declared before the runs; one family, Holm. Both arms are measurements of the same networks.
QUESTIONS = (
    Question(LARGEST_K, "MC average of the largest K passes", "deterministic pass",
             metric="test accuracy"),
    Question(ONE_PASS, "one stochastic pass", "deterministic pass", metric="test accuracy"),
)


def question_values(question: Question, runs: List[RunRecord], measurements: dict):
    """({seed: the MC accuracy}, {seed: the deterministic accuracy}) of each trained network."""
    results = measurements.get("runs", [])
    if not results:
        return {}, {}
    k = measurements["ks"][-1] if question.name == LARGEST_K else measurements["ks"][0]
    return ({r["seed"]: mask_mean(r, k) for r in results},
            {r["seed"]: r["deterministic"]["accuracy"] for r in results})


def accuracy_table(results: List[dict], ks, deterministic: Estimate, deltas: dict,
                   repeats: int) -> Table:
    det_seconds = fastest(results)
    rows = [["deterministic (eval mode)", deterministic.text(), "", "", f"{det_seconds:.3f}", "1.0"]]
    for k in ks:
        spread = estimate(a for r in results for a in r["mc"][str(k)]["accuracies"])
        rows.append([f"MC, K = {k}", per_seed(results, k).text(), spread.text(),
                     deltas[k].text(), f"{fastest(results, k):.3f}",
                     f"{fastest(results, k) / det_seconds:.1f}"])
    return Table(
        "Test accuracy: deterministic pass against K stochastic passes averaged",
        ["prediction", "test acc (mean ± std over seeds)", "spread over mask draws",
         "Δ vs deterministic (paired by seed)", "seconds (fastest)", "cost × deterministic"], rows,
        f"{len(results)} trained networks, {results[0]['test_images']} test images. K = 1 is a "
        f"single stochastic pass. The mask-draw spread pools {repeats}//K draws "
        f"per network; Δ pairs each network with its own deterministic pass (95% CI over the "
        f"networks, this row alone).")


def entropy_table(results: List[dict], top: str) -> Table:
    """Entropy and mutual information of right and wrong predictions, at the largest K."""
    def deterministic(key: str, digits: int = 4) -> str:
        return estimate(r["deterministic"][key] for r in results).text(digits)

    def mc(key: str, digits: int = 4) -> str:
        return estimate(r["mc"][top][key] for r in results).text(digits)

    rows = [["deterministic", deterministic("entropy_right"), deterministic("entropy_wrong"),
             deterministic("auroc", 3), "", ""],
            [f"MC, K = {top}", mc("predictive_entropy_right"), mc("predictive_entropy_wrong"),
             mc("auroc", 3), mc("mutual_information_right"), mc("mutual_information_wrong")]]
    return Table(
        "Predictive entropy (nats) of right and wrong predictions",
        ["prediction", "entropy, right", "entropy, wrong", "AUROC (entropy flags wrong)",
         "mutual information, right", "mutual information, wrong"], rows,
        "AUROC: the probability that a random wrong prediction has a higher entropy than a random "
        "right one (0.5: no signal).")


def observations(results, ks, deltas, det_seconds, gain) -> List[str]:
    """What the measurements show, without verdicts (those are the declared questions')."""
    cost = fastest(results, ks[-1]) / det_seconds
    lines = ["Test accuracy, MC average − deterministic pass, per K: "
             + "; ".join(f"K = {k}: {deltas[k].text()}" for k in ks) + ".",
             f"The MC average of K = {ks[-1]} passes costs {cost:.0f}× the deterministic pass's "
             f"time; the deterministic pass (eval mode) is the one-pass approximation of that "
             f"average (the expected value of the noise)."]
    return lines + [entropy_line(results, str(ks[-1]), gain)]


def entropy_line(results, k: str, gain) -> str:
    """Do the MC passes flag the mistakes? Entropy of wrong vs right, and AUROC vs deterministic."""
    right = estimate(r["mc"][k]["predictive_entropy_right"] for r in results)
    wrong = estimate(r["mc"][k]["predictive_entropy_wrong"] for r in results)
    area = estimate(r["mc"][k]["auroc"] for r in results)
    higher = "higher" if wrong.mean > right.mean else "lower"
    return (f"Uncertainty: wrong predictions have a {higher} mean predictive entropy than right "
            f"ones (K = {k}: {wrong.text(3)} against {right.text(3)} nats); entropy ranks a "
            f"wrong prediction above a right one with probability {area.text(3)}; the AUROC "
            f"change against the deterministic softmax's is {gain.text(3)}.")


def plot_k(results, ks, deterministic: Estimate, path: Path) -> str:
    figure, axes = new_figure(2, width=5.0)
    errorbar(axes[0], ks, [per_seed(results, k) for k in ks], "MC average of K passes")
    axes[0].axhline(deterministic.mean, color="k", linestyle="--", label="deterministic (eval)")
    axes[0].set(xlabel="K stochastic passes", ylabel="test accuracy",
                title="accuracy (mean ± std over seeds)")
    seconds = [fastest(results, k) for k in ks]
    det = fastest(results)
    axes[1].plot(ks, seconds, marker="o", label="MC, K passes")
    axes[1].axhline(det, color="k", linestyle="--", label="deterministic")
    axes[1].set(yscale="log", xlabel="K stochastic passes", ylabel="seconds",
                title="time for the test set (fastest)")
    for ax in axes:
        log_x_ticks(ax, ks)
    return save_panels(figure, axes, path)


def plot_entropy(result: dict, path: Path) -> str:
    histogram = result["entropy_histogram"]
    bins = histogram["bins"]
    figure, axes = new_figure(1, width=6.0)
    for label in ("right", "wrong"):
        counts = histogram[label]
        total = sum(counts) or 1
        axes[0].stairs([c / total for c in counts], bins, label=f"{label} ({sum(counts)})")
    axes[0].set(xlabel="predictive entropy (nats)", ylabel="fraction of predictions",
                title="entropy of the MC prediction")
    return save_panels(figure, axes, path)


EXERCISE = Exercise(
    number=4,
    title="Why dropout is not used at test time",
    question=("Why is dropout typically not used at test time? Compare the deterministic "
              "evaluation with single stochastic passes and with the Monte Carlo average of K "
              "passes, its cost, and what the passes' disagreement tells about the mistakes."),
    design=("The textbook model with dropout (0.2, 0.5), 10 epochs, 5 seeds (5 runs). Each "
            "trained network is evaluated on the full test set in eval mode and with its dropout "
            "layers on (mc_dropout.mc_statistics): K = 1, 2, 4, ..., 64 passes averaged in softmax "
            "space, each timed (one torch thread); for K < 8, 8/K independent draws give the "
            "spread over masks."),
    analyze=analyze,
    measure=measure,
    questions=QUESTIONS,
    values=question_values,
)
