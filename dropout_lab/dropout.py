"""Dropout layers: the from-scratch inverted Bernoulli layer, its historical variants, other
noise distributions and DropConnect, each as a function and as an ``nn.Module``.

Every function takes ``training`` as a required keyword (``F.dropout`` defaults it to True, the
pitfall of seed article 002); every module passes ``self.training``, so ``model.eval()`` turns the
noise off without a flag of its own (the pitfall of seed article 001).

Conventions: ``p`` is the probability of dropping a unit, checked by ``check_probability``
(a ``ValueError`` like PyTorch's for p outside [0, 1] or not finite). ``p = 0`` is the identity;
``p = 1`` gives exact zeros that stay in the autograd graph (gradient 0), with no NaN even for
inf inputs, for every kind written here (PyTorch's ``nn.Dropout`` and ``F.dropout``, the
``builtin`` and ``functional`` kinds, multiply by zero: an inf input gives NaN there). For 0 < p < 1 the noise is a multiplication, as in ``nn.Dropout``:
a dropped inf gives NaN (0 * inf), which the run's divergence check then reports.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from dropout_lab.checks import check_choice, check_probability, check_variance_matched
from dropout_lab.config import THREE_VALUED_MODES


def _noise_dtype(x: torch.Tensor) -> torch.dtype:
    """float32 at least: half-precision noise is too coarse (8 to 11 bits). A bf16 uniform
    drops 0.29% at p = 0.001 and everything at p = 0.999."""
    return torch.promote_types(x.dtype, torch.float32)


def _uniform_noise(x: torch.Tensor) -> torch.Tensor:
    """U[0, 1) noise shaped like ``x``, in float32 at least, so that P(u >= p) = 1 - p."""
    return torch.rand_like(x, dtype=_noise_dtype(x))


def _keep_mask(x: torch.Tensor, p: float, value: float = 1.0) -> torch.Tensor:
    """A float mask in x's dtype: ``value`` with probability 1 - p, else 0."""
    return _uniform_noise(x).ge_(p).mul_(value).to(x.dtype)


def _all_dropped(x: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """p = 1: exact zeros (no 0 * inf = NaN), still attached to the graph with gradient 0."""
    if inplace:
        return x.zero_()
    return x.masked_fill(torch.ones((), dtype=torch.bool, device=x.device), 0.0)


# --- inverted Bernoulli dropout, from scratch ---------------------------------------------

class _InvertedDropout(torch.autograd.Function):
    """y = x * keep / (1 - p) with keep ~ Bernoulli(1 - p), for 0 < p < 1.

    Backward needs only the keep-mask, saved as ``bool`` (1 byte per element) rather than the
    float mask ``torch.nn.Dropout`` keeps on CPU (4 bytes per element).

    Speed on CPU: PyTorch's CPU kernels that mix a bool tensor with a float one (``where``,
    ``masked_fill``, ``x * keep``) are several times slower than float-only ones, and every new
    large tensor costs page faults. So the forward pass turns the uniform noise into the scaled
    float mask in place and multiplies the input into that same buffer: one large allocation,
    float-only kernels. The bool mask is one extra comparison of the same noise with the same p,
    hence exactly the mask that was applied.
    """

    @staticmethod
    def forward(ctx, x, p, inplace):
        noise = _uniform_noise(x)
        keep = noise >= p  # P(keep) = 1 - p
        ctx.save_for_backward(keep)
        ctx.scale = 1.0 / (1.0 - p)
        mask = noise.ge_(p).mul_(ctx.scale)  # {0, 1/(1-p)}, in the noise buffer
        if inplace:
            ctx.mark_dirty(x)
            return x.mul_(mask)
        return mask.mul_(x).to(x.dtype)  # the output reuses the noise buffer

    @staticmethod
    def backward(ctx, grad_output):
        (keep,) = ctx.saved_tensors
        grad_input = keep.to(grad_output.dtype).mul_(grad_output).mul_(ctx.scale)
        return grad_input, None, None


def inverted_dropout(x: torch.Tensor, p: float, *, training: bool, inplace: bool = False):
    """Inverted dropout from scratch: drop with probability p, scale survivors by 1/(1-p).

    Args:
        x: any shape and floating dtype.
        p: probability of an element being zeroed.
        training: apply dropout (True) or return ``x`` unchanged (False). Required, no default.
        inplace: overwrite ``x`` instead of returning a new tensor (as ``F.dropout``).
    """
    p = check_probability(p)
    if not training or p == 0.0:
        return x
    if p == 1.0:
        return _all_dropped(x, inplace)
    return _InvertedDropout.apply(x, p, inplace)


# --- the other activation-noise kinds ----------------------------------------------------

def vanilla_dropout(x: torch.Tensor, p: float, *, training: bool):
    """The original (2014) form: drop without rescaling in training, multiply by (1-p) in eval.

    The expected output in training, (1-p) x, is what eval returns, so train and test agree;
    the scaling just sits at test time instead of training time (inverted dropout).
    """
    p = check_probability(p)
    if p == 0.0:
        return x
    if p == 1.0:
        return _all_dropped(x)
    if not training:
        return x * (1.0 - p)
    return x * _keep_mask(x, p)


def unscaled_dropout(x: torch.Tensor, p: float, *, training: bool):
    """DELIBERATELY WRONG: drops units and never compensates (the bug of seed article 000).

    Training sees activations shrunk by (1-p) on average, evaluation sees them whole, so the
    next layer gets inputs 1/(1-p) times larger at test time than it was trained on. Kept to
    show that mismatch; use ``inverted_dropout`` for real work.
    """
    p = check_probability(p)
    if not training or p == 0.0:
        return x
    if p == 1.0:
        return _all_dropped(x)
    return x * _keep_mask(x, p)


def gaussian_dropout(x: torch.Tensor, p: float, *, training: bool):
    """Multiplicative Gaussian noise x * (1 + sigma * eps), eps ~ N(0, 1), sigma^2 = p / (1-p).

    Same mean (x) and variance (p/(1-p) x^2) as inverted Bernoulli dropout (Srivastava et al.
    2014, section 10). At p = 1 the variance is infinite; the layer returns zeros, like the
    other kinds.
    """
    p = check_probability(p)
    if not training or p == 0.0:
        return x
    if p == 1.0:
        return _all_dropped(x)
    sigma = math.sqrt(p / (1.0 - p))
    # 1 + sigma * eps in float32 at least: in bf16 it would be rounded to steps of 1/128.
    noise = torch.randn_like(x, dtype=_noise_dtype(x)).mul_(sigma).add_(1.0)
    return (x * noise).to(x.dtype)


THREE_VALUED_GAMMA = 2.0  # the noise takes values {0, gamma/2, gamma} = {0, 1, 2}


def three_valued_probabilities(p: float, mode: str) -> tuple:
    """Probabilities (q0, q1, q2) of the values {0, gamma/2, gamma} = {0, 1, 2}, E[xi] = 1.

    E[xi] = gamma (q1/2 + q2) = q1 + 2 q2 = 1;  Var[xi] = gamma^2 (q1/4 + q2) - 1 = q1 + 4 q2 - 1.

    uniform: 1/3 each (variance 2/3, as Bernoulli dropout at p = 0.4) for any 0 < p < 1; p = 0
    turns it off and p = 1 gives zeros, as for every kind.
    variance_matched: Var[xi] = p/(1-p), Bernoulli's variance, which gives q0 = q2 = v/2,
    q1 = 1 - v with v = p/(1-p); it exists for p <= 0.5 only (v <= 1), and at p = 0.5 it is
    inverted Bernoulli dropout itself (values {0, 2}).
    """
    check_choice(mode, "three-valued mode", THREE_VALUED_MODES)
    p = check_probability(p)
    if mode == "uniform":
        return (1 / 3, 1 / 3, 1 / 3)
    check_variance_matched(p)
    v = p / (1.0 - p)
    return (v / 2, 1.0 - v, v / 2)


def three_valued_noise(x: torch.Tensor, p: float, *, training: bool, mode: str = "uniform"):
    """x * xi with xi in {0, gamma/2, gamma}, E[xi] = 1 (see ``three_valued_probabilities``)."""
    q0, q1, _ = three_valued_probabilities(p, mode)
    if not training or p == 0.0:
        return x
    if p == 1.0:
        return _all_dropped(x)
    u = _uniform_noise(x)
    # xi = 0 below q0, gamma/2 up to q0 + q1, gamma above: the sum of two steps, times gamma/2.
    xi = (u >= q0).to(x.dtype) + (u >= q0 + q1).to(x.dtype)
    return x * xi.mul_(THREE_VALUED_GAMMA / 2)


def dropconnect_linear(x, weight, bias, p: float, *, training: bool):
    """A linear layer whose weights are dropped with probability p and scaled by 1/(1-p).

    The mask is per batch: one weight mask per forward pass, shared by every example of the
    mini-batch. A per-example mask (as in Wan et al. 2013) would need batch x out x in random
    numbers (51M for the first layer at batch 256) and a batched matmul instead of one GEMM;
    the per-batch mask keeps the cost of a plain linear layer. The gradient is unbiased either
    way; the price is that the examples of a batch share their noise. Eval uses the expected
    weights, i.e. ``weight`` itself, so E[train output] = eval output.
    """
    p = check_probability(p)
    if training and p > 0.0:
        weight = inverted_dropout(weight, p, training=True)
    return F.linear(x, weight, bias)


# --- modules -------------------------------------------------------------------------------

class NoiseLayer(nn.Module):
    """Base of the activation-noise modules: validates p once and shows it in ``print(model)``.

    Args:
        p: probability of dropping a unit (or, for the other noises, the p whose Bernoulli
            variance p/(1-p) they match). Shape: any; the output has the input's shape.
    """

    def __init__(self, p: float = 0.5):
        super().__init__()
        self.p = check_probability(p)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class InvertedDropout(NoiseLayer):
    """Inverted dropout from scratch (the ``custom`` kind).

    Training: zero each element with probability p, scale the rest by 1/(1-p), so E[y] = x;
    backward keeps a bool mask (1 byte per element). Eval: identity.

    Args:
        p: probability of an element being zeroed. Default: 0.5.
        inplace: do the operation in place, as ``nn.Dropout(inplace=True)``. Default: False.

    Shape: any; the output has the input's shape.

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
    """``F.dropout(x, p, training=self.training)``: PyTorch's kernel, the functional way.

    Training and eval as ``nn.Dropout``; the point is the explicit ``training=self.training``.
    """

    def forward(self, x):
        return F.dropout(x, self.p, training=self.training)


class VanillaDropout(NoiseLayer):
    """Non-inverted (2014) dropout: training zeroes with probability p and does not rescale;
    eval multiplies by (1-p). See ``vanilla_dropout``."""

    def forward(self, x):
        return vanilla_dropout(x, self.p, training=self.training)


class UnscaledDropout(NoiseLayer):
    """DELIBERATELY WRONG dropout: training zeroes with probability p and never compensates;
    eval is the identity, so test-time inputs to the next layer are 1/(1-p) times larger than
    in training. For the lesson only; see ``unscaled_dropout``."""

    def forward(self, x):
        return unscaled_dropout(x, self.p, training=self.training)


class GaussianDropout(NoiseLayer):
    """Multiplicative Gaussian noise 1 + sigma * eps, sigma^2 = p/(1-p): Bernoulli dropout's
    mean and variance (see ``gaussian_dropout``). Eval: identity."""

    def forward(self, x):
        return gaussian_dropout(x, self.p, training=self.training)


class ThreeValuedNoise(NoiseLayer):
    """Multiplicative noise xi in {0, gamma/2, gamma} = {0, 1, 2} with E[xi] = 1. Eval: identity.

    Args:
        p: 0 turns it off, 1 gives zeros; in ``variance_matched`` mode Var[xi] = p/(1-p)
            (needs p <= 0.5), in ``uniform`` mode the noise does not depend on p otherwise.
        mode: ``uniform`` (each value 1/3) or ``variance_matched``
            (see ``three_valued_probabilities``).
    """

    def __init__(self, p: float = 0.5, mode: str = "uniform"):
        super().__init__(p)
        self.probabilities = three_valued_probabilities(self.p, mode)  # refuses impossible ones
        self.mode = mode

    def forward(self, x):
        return three_valued_noise(x, self.p, training=self.training, mode=self.mode)

    def extra_repr(self) -> str:
        probabilities = ", ".join(f"{q:.3g}" for q in self.probabilities)
        return f"p={self.p}, mode={self.mode}, P(0, 1, 2)=({probabilities})"


class DropConnectLinear(nn.Linear):
    """``nn.Linear`` with DropConnect on its weights (see ``dropconnect_linear``).

    Training: each weight is dropped with probability p and the rest scaled by 1/(1-p), one
    mask per batch; the bias is kept. Eval: the plain linear layer (the expected weights).
    Shape: (*, in_features) -> (*, out_features).
    """

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
