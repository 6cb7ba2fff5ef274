"""Reading an exercise's runs: run records (report.load_runs) to settings, groups of seeds and
estimates over them, and the names of settings in tables and conclusions. No torch import."""

from typing import Callable, Dict, Hashable, List, Optional, Sequence, Tuple

from dropout_lab.config import DropoutConfig
from dropout_lab.exercises.stats import Estimate, estimate
from dropout_lab.run_folder import Status, best, steady

# --- runs and groups of seeds ---------------------------------------------------------------


def completed(runs: Sequence[dict]) -> List[dict]:
    return [run for run in runs if run["status"] == Status.COMPLETED]


def group_by(runs: Sequence[dict], key: Callable[[dict], Hashable]) -> Dict[Hashable, List[dict]]:
    """Completed runs grouped by ``key(run)`` (a setting: runs in one group differ in the seed)."""
    groups: Dict[Hashable, List[dict]] = {}
    for run in completed(runs):
        groups.setdefault(key(run), []).append(run)
    return groups


def seeds(runs: Sequence[dict]) -> List[int]:
    """The seeds of the completed runs."""
    return sorted({run["config"]["seed"] for run in completed(runs)})


# --- the run's setting, from its resolved config ---------------------------------------------

def dropout_of(run: dict) -> dict:
    """The run's model.dropout config: kind, p (a number or one per layer), three_valued."""
    return run["config"]["model"]["dropout"]


def probabilities(run: dict) -> Tuple[float, ...]:
    """(p1, p2, ...) of the run's hidden layers; zeros for kind none."""
    dropout, n_layers = dropout_of(run), len(run["config"]["model"]["hidden"])
    if dropout["kind"] == "none":
        return (0.0,) * n_layers
    layers = DropoutConfig(kind=dropout["kind"], p=dropout["p"],
                           three_valued=dropout.get("three_valued", "uniform")).per_layer(n_layers)
    return tuple(p for _, p in layers)


def noise_kind(run: dict) -> str:
    """The run's dropout kind; 'none' also where every probability is 0 (no noise at all)."""
    kind = dropout_of(run)["kind"]
    return "none" if kind == "none" or not any(probabilities(run)) else kind


# --- a metric of each run, as an estimate over the runs ---------------------------------------

def last_epoch(run: dict) -> dict:
    """The run's last history row ({} for a run without epochs)."""
    return (run["history"] or [{}])[-1]


def value_at_epoch(run: dict, epoch: int, metric: str) -> Optional[float]:
    rows = [row for row in run["history"] if row["epoch"] == epoch]
    return rows[0].get(metric) if rows else None


def final(runs: Sequence[dict], metric: str = "test_accuracy") -> Estimate:
    """A final metric of each run (report.METRICS keys or any key of the last epoch)."""
    return estimate(run[metric] if metric in run else last_epoch(run).get(metric) for run in runs)


def at_epoch(runs: Sequence[dict], epoch: int, metric: str) -> Estimate:
    return estimate(value_at_epoch(run, epoch, metric) for run in runs)


def tail_mean(runs: Sequence[dict], metric: str, epochs: int) -> Estimate:
    """Each run's mean of ``metric`` over its last ``epochs`` epochs: steadier than the last
    epoch alone where test accuracy swings from epoch to epoch."""
    return estimate(steady(run["history"], metric, epochs) for run in runs)


def peak(runs: Sequence[dict]) -> Tuple[Estimate, Estimate]:
    """(best test accuracy, its epoch) of each run, as estimates over the runs."""
    bests = [best(run["history"]) for run in runs]
    return (estimate(row.get("test_accuracy") for row in bests),
            estimate(float(row["epoch"]) for row in bests if row))


def seconds_per_epoch(runs: Sequence[dict]) -> Estimate:
    """Training time per epoch (train pass and test evaluation) of each run, as measured."""
    return estimate(run["train_seconds"] / run["epochs"] for run in runs
                    if run.get("train_seconds") and run.get("epochs"))


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
