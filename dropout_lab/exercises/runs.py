"""Reading an exercise's runs: run records (run_folder.RunRecord, from report.load_runs) to
settings, groups of seeds and estimates over them, and the names of settings in tables and
conclusions. No torch import."""

from typing import Callable, Dict, Hashable, List, Optional, Sequence, Tuple

from dropout_lab.config import DropoutConfig
from dropout_lab.exercises.stats import Estimate, estimate, estimate_by_seed
from dropout_lab.run_folder import RunRecord, Status, best, steady

# --- runs and groups of seeds ---------------------------------------------------------------


def completed(runs: Sequence[RunRecord]) -> List[RunRecord]:
    return [run for run in runs if run.status == Status.COMPLETED]


def group_by(runs: Sequence[RunRecord], key: Callable[[RunRecord], Hashable]) -> Dict[Hashable, List[RunRecord]]:
    """Completed runs grouped by ``key(run)`` (a setting: runs in one group differ in the seed)."""
    groups: Dict[Hashable, List[RunRecord]] = {}
    for run in completed(runs):
        groups.setdefault(key(run), []).append(run)
    return groups


def seeds(runs: Sequence[RunRecord]) -> List[int]:
    """The seeds of the completed runs."""
    return sorted({run.config["seed"] for run in completed(runs)})


# --- the run's setting, from its resolved config ---------------------------------------------

def dropout_of(run: RunRecord) -> dict:
    """The run's model.dropout config: kind, p (a number or one per layer), three_valued."""
    return run.config["model"]["dropout"]


def probabilities(run: RunRecord) -> Tuple[float, ...]:
    """(p1, p2, ...) of the run's hidden layers; zeros for kind none."""
    dropout, n_layers = dropout_of(run), len(run.config["model"]["hidden"])
    if dropout["kind"] == "none":
        return (0.0,) * n_layers
    layers = DropoutConfig(kind=dropout["kind"], p=dropout["p"],
                           three_valued=dropout.get("three_valued", "uniform")).per_layer(n_layers)
    return tuple(p for _, p in layers)


def noise_kind(run: RunRecord) -> str:
    """The run's dropout kind; 'none' also where every probability is 0 (no noise at all)."""
    kind = dropout_of(run)["kind"]
    return "none" if kind == "none" or not any(probabilities(run)) else kind


# --- a metric of each run, as an estimate over the runs ---------------------------------------

def last_epoch(run: RunRecord) -> dict:
    """The run's last history row ({} for a run without epochs)."""
    return (run.history or [{}])[-1]


def value_at_epoch(run: RunRecord, epoch: int, metric: str) -> Optional[float]:
    rows = [row for row in run.history if row["epoch"] == epoch]
    return rows[0].get(metric) if rows else None


def per_run(runs: Sequence[RunRecord], value: Callable[[RunRecord], Optional[float]]) -> Estimate:
    """``value(run)`` of each run as an Estimate keyed by seed, so that comparisons of settings
    that ran the same seeds are paired; not keyed where a seed repeats (never paired then)."""
    seeds_of = [run.config.get("seed") for run in runs]
    if None in seeds_of or len(set(seeds_of)) != len(seeds_of):
        return estimate(value(run) for run in runs)
    return estimate_by_seed({seed: value(run) for seed, run in zip(seeds_of, runs)})


def steady_value(run: RunRecord, metric: str = "test_accuracy") -> Optional[float]:
    """The run's steady ``metric``: the mean over its last trainer.steady_epochs epochs (the
    summary's ``steady`` block for the test accuracy, else computed from the history)."""
    if metric == "test_accuracy":
        return run.steady_test_accuracy
    return steady(run.history, metric, run.steady_epochs)


def steady_metric(runs: Sequence[RunRecord], metric: str = "test_accuracy") -> Estimate:
    """The primary metric of the exercises: each run's steady ``metric`` (default the steady
    test accuracy), keyed by seed."""
    return per_run(runs, lambda run: steady_value(run, metric))


def final(runs: Sequence[RunRecord], metric: str = "test_accuracy") -> Estimate:
    """A final-epoch metric of each run (any key of the last epoch)."""
    return per_run(runs, lambda run: last_epoch(run).get(metric))


def best_epoch(runs: Sequence[RunRecord]) -> Estimate:
    """Each run's best-epoch test accuracy (optimistic: the maximum of a noisy curve)."""
    return per_run(runs, lambda run: best(run.history).get("test_accuracy"))


def at_epoch(runs: Sequence[RunRecord], epoch: int, metric: str) -> Estimate:
    return per_run(runs, lambda run: value_at_epoch(run, epoch, metric))


def window_mean(run: RunRecord, epoch: int, metric: str, epochs: int) -> Optional[float]:
    """The run's mean of ``metric`` over the ``epochs`` epochs ending at ``epoch``."""
    rows = [row for row in run.history if epoch - epochs < row["epoch"] <= epoch]
    return steady(rows, metric, epochs) if rows else None


def peak(runs: Sequence[RunRecord]) -> Tuple[Estimate, Estimate]:
    """(best test accuracy, its epoch) of each run, as estimates over the runs."""
    bests = [best(run.history) for run in runs]
    return (estimate(row.get("test_accuracy") for row in bests),
            estimate(float(row["epoch"]) for row in bests if row))


def seconds_per_epoch(runs: Sequence[RunRecord]) -> Estimate:
    """Training time per epoch (train pass and test evaluation) of each run, as measured."""
    return estimate(run.train_seconds / run.epochs for run in runs
                    if run.train_seconds and run.epochs)


def instability(estimates: Dict[str, Estimate], threshold: float = 0.05) -> List[str]:
    """A warning line for settings whose spread over seeds exceeds ``threshold`` (a run that
    collapsed or diverged in some seed): their verdicts carry little weight."""
    shaky = {name: est for name, est in estimates.items() if (est.std or 0.0) > threshold}
    if not shaky:
        return []
    worst = ", ".join(f"{name} (std {est.std:.3f}, lowest run {min(est.values):.3f})"
                      for name, est in shaky.items())
    return [f"Unstable over seeds: {worst}; at least one run there fell far below the others, "
            f"so verdicts involving these settings carry little weight."]


# --- names of settings ----------------------------------------------------------------------

def format_probabilities(values: Sequence[float]) -> str:
    """'(0.2, 0.5)'."""
    return "(" + ", ".join(f"{v:g}" for v in values) + ")"


def dropout_name(probs: Sequence[float]) -> str:
    """'no dropout' or 'dropout (0.2, 0.5)' for a tuple of per-layer probabilities."""
    return "no dropout" if not any(probs) else f"dropout {format_probabilities(probs)}"
