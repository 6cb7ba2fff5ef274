"""Per-epoch statistics of the hidden activations (``logging.activation_stats=true``).

For each hidden layer k, over the training passes of an epoch (dropout on), each unit's
activation is summarised before the noise layer (the ReLU output h) and after it (h'):

    layer{k}_var_before_noise        mean over units of Var[h_j]   (over the epoch's examples)
    layer{k}_var_after_noise         mean over units of Var[h'_j]
    layer{k}_mean_square_before_noise  mean over units of E[h_j^2]

For inverted dropout, Var[h'_j] = Var[h_j] + p/(1-p) E[h_j^2] (exercise 3 checks it on these
numbers). Forward hooks collect the sums only while the model is in training mode, so the
eval passes do not count; without the option no hook exists and training runs as before.
"""

from typing import Dict, List, Tuple

import torch
from torch import nn

STAT_NAMES = ("var_before_noise", "var_after_noise", "mean_square_before_noise")


def hidden_layers(model: nn.Module) -> List[Tuple[nn.Module, nn.Module]]:
    """(ReLU, noise module) of each hidden layer of an MLP (model.py: Linear, ReLU, noise...)."""
    modules = list(model.net)
    return [(module, modules[i + 1]) for i, module in enumerate(modules) if isinstance(module, nn.ReLU)]


class _Moments:
    """Per-unit running sums of x and x^2 over examples, in float64 (60,000 terms per epoch)."""

    def __init__(self):
        self.count, self.total, self.total_sq = 0, None, None

    def add(self, x: torch.Tensor) -> None:  # x: (B, units)
        x = x.detach().to(torch.float64)
        total, total_sq = x.sum(dim=0), (x * x).sum(dim=0)
        if self.total is None:
            self.total, self.total_sq = total, total_sq
        else:
            self.total += total
            self.total_sq += total_sq
        self.count += x.shape[0]

    def mean_square(self) -> float:
        return (self.total_sq / self.count).mean().item()

    def variance(self) -> float:
        """Mean over units of each unit's (population) variance over the examples."""
        mean = self.total / self.count
        return (self.total_sq / self.count - mean * mean).clamp_min(0.0).mean().item()


class ActivationStats:
    """Collects the statistics of the module docstring for one model, epoch by epoch."""

    def __init__(self, model: nn.Module):
        self._moments: Dict[str, _Moments] = {}
        self._handles = []
        for k, (relu, noise) in enumerate(hidden_layers(model), start=1):
            self._watch(relu, f"layer{k}_before")
            self._watch(noise, f"layer{k}_after")

    def _watch(self, module: nn.Module, name: str) -> None:
        self._moments[name] = _Moments()

        def hook(mod, _inputs, output):
            if mod.training:
                self._moments[name].add(output.flatten(1))

        self._handles.append(module.register_forward_hook(hook))

    def epoch_metrics(self) -> Dict[str, float]:
        """This epoch's statistics (history keys as in the module docstring); starts anew."""
        metrics = {}
        layers = sorted({name.rsplit("_", 1)[0] for name in self._moments})
        for layer in layers:
            before, after = self._moments[f"{layer}_before"], self._moments[f"{layer}_after"]
            if not before.count:
                continue
            metrics[f"{layer}_var_before_noise"] = before.variance()
            metrics[f"{layer}_var_after_noise"] = after.variance()
            metrics[f"{layer}_mean_square_before_noise"] = before.mean_square()
        for name in self._moments:
            self._moments[name] = _Moments()
        return metrics

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
