"""Monte Carlo dropout at inference (Gal & Ghahramani 2016): evaluate a trained run with K
stochastic passes, only its noise layers (``dropout.is_stochastic``) in training mode.

From the K softmax outputs p_k of each test image:
    MC prediction         argmax of p = mean_k p_k
    predictive entropy    H[p] = -sum_c p_c ln p_c (nats; ln 10 = 2.303 at most)
    mutual information    H[p] - mean_k H[p_k] (BALD): the part of the uncertainty that comes
                          from the weights (the masks disagree), not from the data
The deterministic pass (eval mode) is the one training reports as test accuracy.

``dropout-lab evaluate RUN_DIR --mc-samples K`` writes mc_eval.json and mc_eval.md into RUN_DIR.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F

from dropout_lab.checkpoint import has_checkpoint
from dropout_lab.checks import check_positive
from dropout_lab.data import Split, batches
from dropout_lab.device import autocast
from dropout_lab.dropout import is_stochastic
from dropout_lab.errors import ConfigError, RunError
from dropout_lab.disk import atomic_write, write_json
from dropout_lab.run_folder import CHECKPOINT, RunRecord, has_summary, read_run

MC_JSON, MC_MARKDOWN = "mc_eval.json", "mc_eval.md"


@dataclass
class MCEvaluation:
    metrics: Dict[str, float]
    stochastic_layers: List[str]
    table: str  # markdown, as written to mc_eval.md
    text: str  # the same for a terminal: aligned columns
    paths: Dict[str, Path]


def stochastic_layers_on(model: torch.nn.Module) -> List[str]:
    """Eval mode for the whole model, then training mode for its noise layers only; returns
    them as 'name=Kind(p=...)'."""
    model.eval()
    layers = []
    for name, module in model.named_modules():
        if is_stochastic(module):
            module.train()
            layers.append(f"{name}={type(module).__name__}(p={module.p})")
    return layers


def entropy(probabilities: torch.Tensor) -> torch.Tensor:
    """H[p] in nats along the last axis; 0 ln 0 = 0."""
    return torch.special.entr(probabilities).sum(dim=-1)


@torch.no_grad()
def mc_statistics(model: torch.nn.Module, split: Split, samples: int, batch_size: int,
                  precision: str = "fp32") -> dict:
    """Per test image: mean softmax over ``samples`` passes of ``model`` in the mode it is in
    and in the run's ``precision`` (N, C), and the mean of the passes' own entropies (N,)."""
    mean_probabilities, mean_sample_entropy = [], []
    for images, _labels in batches(split, batch_size):
        with autocast(precision, images.device):  # K passes (K, B, C), each with its own masks
            logits = [model(images).float() for _ in range(samples)]
        passes = torch.stack([F.softmax(one, dim=-1) for one in logits])
        mean_probabilities.append(passes.mean(dim=0))
        mean_sample_entropy.append(entropy(passes).mean(dim=0))
    return {"probabilities": torch.cat(mean_probabilities),
            "sample_entropy": torch.cat(mean_sample_entropy)}


def mc_metrics(probabilities: torch.Tensor, sample_entropy: torch.Tensor,
               labels: torch.Tensor) -> Dict[str, Optional[float]]:
    """Accuracy, NLL, predictive entropy and mutual information of the MC prediction, the
    uncertainties also split by right and wrong predictions (None where a group is empty)."""
    predictive_entropy = entropy(probabilities)
    # H[mean] >= mean H by concavity; clamp the rounding error of nearly equal passes.
    mutual_information = (predictive_entropy - sample_entropy).clamp(min=0.0)
    right = probabilities.argmax(dim=1) == labels
    picked = probabilities.gather(1, labels[:, None]).squeeze(1)

    def mean(values: torch.Tensor, where: torch.Tensor) -> Optional[float]:
        return values[where].mean().item() if where.any() else None

    everywhere = torch.ones_like(right)
    return {
        "mc_accuracy": right.double().mean().item(),
        "mc_loss": -picked.clamp(min=torch.finfo(picked.dtype).tiny).log().mean().item(),
        "predictive_entropy": mean(predictive_entropy, everywhere),
        "predictive_entropy_right": mean(predictive_entropy, right),
        "predictive_entropy_wrong": mean(predictive_entropy, ~right),
        "mutual_information": mean(mutual_information, everywhere),
        "mutual_information_right": mean(mutual_information, right),
        "mutual_information_wrong": mean(mutual_information, ~right),
    }


ROWS = [  # (label, deterministic key, MC key)
    ("accuracy", "test_accuracy", "mc_accuracy"),
    ("NLL (nats)", "test_loss", "mc_loss"),
    # Each label says what it is: Markdown drops a cell's leading spaces (no indented sub-rows)
    ("predictive entropy (nats)", None, "predictive_entropy"),
    ("predictive entropy, right predictions", None, "predictive_entropy_right"),
    ("predictive entropy, wrong predictions", None, "predictive_entropy_wrong"),
    ("mutual information, BALD (nats)", None, "mutual_information"),
    ("mutual information, right predictions", None, "mutual_information_right"),
    ("mutual information, wrong predictions", None, "mutual_information_wrong"),
]


def noise_layers(config) -> str:
    """The run's noise as its config names it: 'hidden layer 1: custom p=0.2, ...'."""
    layers = config.model.dropout.per_layer(len(config.model.hidden))
    named = [f"hidden layer {i + 1}: {kind} p={p:g}" for i, (kind, p) in enumerate(layers)
             if kind != "none" and p > 0]
    return ", ".join(named) or "none (every MC pass equals the deterministic one)"


def describe(run_dir: Path, run: RunRecord, metrics: Dict[str, float], layers: str) -> str:
    return (f"Run {run.status} after {run.epochs} "
            f"epochs; {metrics['test_images']} test images; K = {metrics['mc_samples']} passes "
            f"(seed {metrics['seed']}) with the noise on: {layers}.")


def table_rows(metrics: Dict[str, float]) -> List[list]:
    return [[label, metrics[det] if det else None, metrics[mc]] for label, det, mc in ROWS]


def table_header(metrics: Dict[str, float]) -> List[str]:
    return ["metric", "deterministic (eval)", f"MC dropout, K={metrics['mc_samples']}"]


def format_table(run_dir: Path, run: RunRecord, metrics: Dict[str, float], layers: str) -> str:
    """mc_eval.md: a heading, what ran, the table in Markdown."""
    from dropout_lab.tables import markdown_table

    return (f"# MC dropout: {run_dir.name}\n\n{describe(run_dir, run, metrics, layers)}\n\n"
            + markdown_table(table_header(metrics), table_rows(metrics)) + "\n")


def format_text(run_dir: Path, run: RunRecord, metrics: Dict[str, float], layers: str) -> str:
    """What ``evaluate`` prints: the same as mc_eval.md, aligned for a terminal."""
    from dropout_lab.runs_table import aligned
    from dropout_lab.tables import cell

    rows = [[label, *(cell(value) for value in values)]
            for label, *values in table_rows(metrics)]
    return "\n".join([f"MC dropout: {run_dir}", describe(run_dir, run, metrics, layers), "",
                      *aligned([table_header(metrics), *rows], right_from=1)])


def mc_evaluate(run_dir: Path, mc_samples: int, seed: int = 0) -> MCEvaluation:
    """Evaluate the run in ``run_dir`` (its last checkpoint) with ``mc_samples`` stochastic
    passes; write mc_eval.json and mc_eval.md into it. Raises RunError / ConfigError."""
    from omegaconf.errors import OmegaConfBaseException

    from dropout_lab.trained_model import run_config, test_split, trained_model
    from dropout_lab.train import evaluate_split

    check_positive(mc_samples, "--mc-samples", integer=True)
    run_dir = Path(run_dir)
    if not has_summary(run_dir):  # a wrong argument (exit 2), not a failed run
        what = "no summary.json" if run_dir.is_dir() else "not a directory"
        raise ConfigError(f"{run_dir} is not a dropout-lab run ({what}); give a run folder")
    run = read_run(run_dir).readable()  # RunError: summary.json damaged
    if not has_checkpoint(run_dir):  # also a run this command cannot read: exit 2
        raise ConfigError(f"{run_dir} has no {CHECKPOINT} to evaluate (trained with "
                       f"logging.checkpoint=false, or stopped before its first epoch)")
    try:
        config = run_config(run)
        model = trained_model(run)
    except (OmegaConfBaseException, RuntimeError, KeyError) as error:
        raise RunError(f"the config and checkpoint in {run_dir} do not fit this version of "
                       f"dropout-lab: {str(error).strip().splitlines()[0]}") from None
    split = test_split(run)
    batch_size, precision = config.trainer.eval_batch_size, config.trainer.precision
    metrics = {"mc_samples": mc_samples, "seed": seed, "test_images": len(split),  # the
               **evaluate_split(model, split, batch_size, precision=precision)}  # training's pass
    layers = stochastic_layers_on(model)
    with torch.random.fork_rng(devices=[]):  # seed the masks without touching the caller's RNG
        torch.manual_seed(seed)
        statistics = mc_statistics(model, split, mc_samples, batch_size, precision)
    model.eval()
    metrics.update(mc_metrics(statistics["probabilities"], statistics["sample_entropy"],
                              split.labels))
    described = noise_layers(config)
    table = format_table(run_dir, run, metrics, described)
    paths = {"json": run_dir / MC_JSON, "markdown": run_dir / MC_MARKDOWN}
    write_json(paths["json"], {"run_dir": str(run_dir), "stochastic_layers": layers,
                               "metrics": metrics})
    atomic_write(paths["markdown"], lambda out: out.write(table.encode()))
    return MCEvaluation(metrics, layers, table, format_text(run_dir, run, metrics, described),
                        paths)
