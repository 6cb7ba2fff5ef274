"""Dropout layers: the from-scratch inverted Bernoulli layer, its historical variants, other
noise distributions and DropConnect, each as a function and as an ``nn.Module``.

Every function takes ``training`` as a required keyword (``F.dropout`` defaults it to True, the
pitfall of seed article 002); every module passes ``self.training``, so ``model.eval()`` turns the
noise off without a flag of its own (the pitfall of seed article 001).

Conventions: ``p`` is the probability of dropping a unit; ``p = 0`` is the identity and
``p = 1`` gives zeros (no NaN, also for inf inputs) for every kind.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from dropout_lab.checks import check_choice, check_probability
from dropout_lab.config import THREE_VALUED_MODES
from dropout_lab.errors import ConfigError


# --- inverted Bernoulli dropout, from scratch ---------------------------------------------

class _InvertedDropout(torch.autograd.Function):
    """y = x * keep / (1 - p) with keep ~ Bernoulli(1 - p).

    Backward needs only the keep-mask, saved as ``bool`` (1 byte per element) rather than the
    float mask ``torch.nn.Dropout`` keeps on CPU (4 bytes per element).
    """

    @staticmethod
    def forward(ctx, x, p, inplace):
        keep = torch.rand_like(x) >= p  # P(keep) = 1 - p; bool mask
        ctx.save_for_backward(keep)
        ctx.scale = 1.0 / (1.0 - p)
        if inplace:
            ctx.mark_dirty(x)
            return x.mul_(ctx.scale).masked_fill_(~keep, 0.0)
        # where(), not x * keep: a dropped inf must give 0, not inf * 0 = NaN.
        return torch.where(keep, x * ctx.scale, 0.0)

    @staticmethod
    def backward(ctx, grad_output):
        (keep,) = ctx.saved_tensors
        return torch.where(keep, grad_output * ctx.scale, 0.0), None, None


def inverted_dropout(x: torch.Tensor, p: float, *, training: bool, inplace: bool = False):
    """Inverted dropout from scratch: drop with probability p, scale survivors by 1/(1-p)."""
    p = check_probability(p)
    if not training or p == 0.0:
        return x
    if p == 1.0:
        return x.zero_() if inplace else torch.zeros_like(x)
    return _InvertedDropout.apply(x, p, inplace)


# --- the other activation-noise kinds ----------------------------------------------------

def _keep_mask(x: torch.Tensor, p: float) -> torch.Tensor:
    return torch.rand_like(x) >= p


def vanilla_dropout(x: torch.Tensor, p: float, *, training: bool):
    """The original (2014) form: drop without rescaling in training, multiply by (1-p) in eval."""
    p = check_probability(p)
    if not training:
        return x * (1.0 - p) if p > 0.0 else x
    return torch.where(_keep_mask(x, p), x, 0.0) if p > 0.0 else x


def unscaled_dropout(x: torch.Tensor, p: float, *, training: bool):
    """DELIBERATELY WRONG: drops units and never compensates (the bug of seed article 000).

    Training sees activations shrunk by (1-p) on average, evaluation sees them whole, so the
    next layer gets inputs 1/(1-p) times larger at test time than it was trained on. Kept to
    show that mismatch; use ``inverted_dropout`` for real work.
    """
    p = check_probability(p)
    if not training or p == 0.0:
        return x
    return torch.where(_keep_mask(x, p), x, 0.0)


def gaussian_dropout(x: torch.Tensor, p: float, *, training: bool):
    """Multiplicative Gaussian noise x * (1 + sigma * eps), sigma^2 = p / (1-p).

    Same mean and variance as inverted Bernoulli dropout (Srivastava et al. 2014, section 10).
    """
    p = check_probability(p)
    if not training or p == 0.0:
        return x
    if p == 1.0:
        return torch.zeros_like(x)
    sigma = math.sqrt(p / (1.0 - p))
    return x * (1.0 + sigma * torch.randn_like(x))


THREE_VALUED_GAMMA = 2.0  # the noise takes values {0, gamma/2, gamma} = {0, 1, 2}


def three_valued_probabilities(p: float, mode: str) -> tuple:
    """Probabilities (q0, q1, q2) of the values {0, 1, 2}, chosen so that E[xi] = q1 + 2 q2 = 1.

    uniform: 1/3 each (variance 2/3, as Bernoulli dropout at p = 0.4); p only switches it on.
    variance_matched: Var[xi] = q1 + 4 q2 - 1 = p/(1-p), Bernoulli's variance, which gives
    q0 = q2 = v/2, q1 = 1 - v with v = p/(1-p); it exists for p <= 0.5 only (v <= 1).
    """
    check_choice(mode, "three-valued mode", THREE_VALUED_MODES)
    p = check_probability(p)
    if mode == "uniform":
        return (1 / 3, 1 / 3, 1 / 3)
    if p > 0.5:
        raise ConfigError(
            f"variance-matched three-valued noise needs p <= 0.5 (variance p/(1-p) <= 1), got {p}"
        )
    v = p / (1.0 - p)
    return (v / 2, 1.0 - v, v / 2)


def three_valued_noise(x: torch.Tensor, p: float, *, training: bool, mode: str = "uniform"):
    """x * xi with xi in {0, gamma/2, gamma}, E[xi] = 1 (see ``three_valued_probabilities``)."""
    q0, q1, _ = three_valued_probabilities(p, mode)
    if not training or p == 0.0:
        return x
    u = torch.rand_like(x)
    # xi = 0 below q0, gamma/2 up to q0 + q1, gamma above: two comparisons, no float mask kept.
    xi = ((u >= q0).to(x.dtype) + (u >= q0 + q1).to(x.dtype)) * (THREE_VALUED_GAMMA / 2)
    return x * xi


def dropconnect_linear(x, weight, bias, p: float, *, training: bool):
    """A linear layer whose weights are dropped with probability p and scaled by 1/(1-p).

    One weight mask per forward pass, shared by the whole mini-batch: a per-example mask would
    cost batch x out x in random numbers (51M for the first layer at batch 256) for a gradient
    that is unbiased either way. Eval uses the expected weights, i.e. ``weight`` itself.
    """
    p = check_probability(p)
    if training and p > 0.0:
        weight = inverted_dropout(weight, p, training=True)
    return F.linear(x, weight, bias)


# --- modules -------------------------------------------------------------------------------

class NoiseLayer(nn.Module):
    """Base of the activation-noise modules: validates p once and shows it in ``print(model)``."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        self.p = check_probability(p)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class InvertedDropout(NoiseLayer):
    """Inverted dropout from scratch (the ``custom`` kind).

    Training: zero each element with probability p, scale the rest by 1/(1-p), so E[y] = x.
    Eval: identity. Shape: any; output has the input's shape.

    >>> layer = InvertedDropout(0.5).eval()
    >>> bool((layer(torch.ones(3)) == 1).all())
    True
    """

    def __init__(self, p: float = 0.5, inplace: bool = False):
        super().__init__(p)
        self.inplace = inplace

    def forward(self, x):
        return inverted_dropout(x, self.p, training=self.training, inplace=self.inplace)

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace={self.inplace}"


class FunctionalDropout(NoiseLayer):
    """``F.dropout(x, p, training=self.training)``: PyTorch's kernel, the functional way."""

    def forward(self, x):
        return F.dropout(x, self.p, training=self.training)


class VanillaDropout(NoiseLayer):
    """Non-inverted dropout: no scaling in training, output times (1-p) in eval."""

    def forward(self, x):
        return vanilla_dropout(x, self.p, training=self.training)


class UnscaledDropout(NoiseLayer):
    """DELIBERATELY WRONG dropout with no compensation; see ``unscaled_dropout``."""

    def forward(self, x):
        return unscaled_dropout(x, self.p, training=self.training)


class GaussianDropout(NoiseLayer):
    """Multiplicative Gaussian noise with Bernoulli dropout's mean and variance."""

    def forward(self, x):
        return gaussian_dropout(x, self.p, training=self.training)


class ThreeValuedNoise(NoiseLayer):
    """Multiplicative noise taking values {0, gamma/2, gamma} with mean 1."""

    def __init__(self, p: float = 0.5, mode: str = "uniform"):
        super().__init__(p)
        three_valued_probabilities(self.p, mode)  # refuse impossible settings at construction
        self.mode = mode

    def forward(self, x):
        return three_valued_noise(x, self.p, training=self.training, mode=self.mode)

    def extra_repr(self) -> str:
        return f"p={self.p}, mode={self.mode}"


class DropConnectLinear(nn.Linear):
    """``nn.Linear`` with DropConnect on its weights (see ``dropconnect_linear``)."""

    def __init__(self, in_features: int, out_features: int, p: float = 0.5, bias: bool = True):
        super().__init__(in_features, out_features, bias=bias)
        self.p = check_probability(p)

    def forward(self, x):
        return dropconnect_linear(x, self.weight, self.bias, self.p, training=self.training)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, p={self.p}"


_ACTIVATION_LAYERS = {
    "custom": InvertedDropout,
    "builtin": nn.Dropout,
    "functional": FunctionalDropout,
    "vanilla": VanillaDropout,
    "unscaled": UnscaledDropout,
    "gaussian": GaussianDropout,
}


def make_noise_layer(kind: str, p: float, three_valued: str = "uniform") -> nn.Module:
    """The module that follows a hidden ReLU; ``nn.Identity`` when the noise is not there."""
    if kind in ("none", "dropconnect"):
        return nn.Identity()
    if kind == "three_valued":
        return ThreeValuedNoise(p, three_valued)
    return _ACTIVATION_LAYERS[kind](p)


def make_linear(in_features: int, out_features: int, kind: str, p: float) -> nn.Linear:
    """A linear layer; with ``dropconnect`` the weights it reads are dropped instead."""
    if kind == "dropconnect":
        return DropConnectLinear(in_features, out_features, p)
    return nn.Linear(in_features, out_features)


def is_stochastic(module: nn.Module) -> bool:
    """True for every layer whose output is random in training mode (for MC dropout)."""
    return isinstance(module, (NoiseLayer, nn.modules.dropout._DropoutNd, DropConnectLinear))
