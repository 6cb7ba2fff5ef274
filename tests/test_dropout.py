"""The dropout layers against theory and against torch.nn.Dropout.

Statistical tests draw with a fixed seed, so they are deterministic; their tolerances are
nevertheless chosen so that they would hold for almost any seed: 5 standard errors, a
two-sided normal tail of 5.7e-7 per compared number (the central limit theorem holds well at
the 10^3 to 10^6 samples used), so even the ~350 numbers compared in this file fail together
with probability about 2e-4 under a correct layer, while a wrong mean, variance or drop rate is
off by hundreds of standard errors.

The distribution tests run on float64 and on bfloat16 inputs (what the layers get under
``trainer.precision=bf16``). bf16 rounds each output to 8 significant bits, a relative error of
at most 2^-9 (nn.Dropout's bf16 scale 1/(1-p) adds 0.08% at p = 0.3), far below 5 standard
errors here (1% of the mean); a keep probability drawn from bf16 noise is caught at small p.
"""

import math

import pytest
import torch
from torch import nn

from dropout_lab import dropout as D
from dropout_lab.config import DropoutConfig, ModelConfig
from dropout_lab.errors import ConfigError
from dropout_lab.model import build_model

P = 0.3
DTYPES = [torch.float64, torch.bfloat16]
N_SAMPLES = 100_000  # samples per element of H
H = torch.tensor([0.5, -1.0, 2.0, 3.0], dtype=torch.float64)  # the activations being dropped
Z = 5.0  # tolerance in standard errors (see the module docstring)


def three_valued_variance(q1, q2, gamma=2.0):
    """Var[xi] of xi in {0, gamma/2, gamma} with probabilities (1 - q1 - q2, q1, q2), E[xi] = 1."""
    return gamma ** 2 * (q1 / 4 + q2) - 1


# kind -> (module factory taking p, E[y]/h in training, Var[y]/h^2 in training, P(y = 0), eval y/h).
# None for P(y = 0): the noise has no atom at 0 (Gaussian). The theory is written out here,
# not read from the module under test.
BERNOULLI_VARIANCE = P / (1 - P)
KINDS = {
    "custom": (D.InvertedDropout, 1.0, BERNOULLI_VARIANCE, P, 1.0),
    "custom_inplace": (lambda p: D.InvertedDropout(p, inplace=True), 1.0, BERNOULLI_VARIANCE, P,
                       1.0),
    "builtin": (nn.Dropout, 1.0, BERNOULLI_VARIANCE, P, 1.0),
    "functional": (D.FunctionalDropout, 1.0, BERNOULLI_VARIANCE, P, 1.0),
    # Non-inverted: mean (1-p) h, Var = p (1-p) h^2; eval scales by (1-p), matching the mean.
    "vanilla": (D.VanillaDropout, 1 - P, P * (1 - P), P, 1 - P),
    # Deliberately wrong: training mean (1-p) h, eval h (the mismatch the kind is there to show).
    "unscaled": (D.UnscaledDropout, 1 - P, P * (1 - P), P, 1.0),
    "gaussian": (D.GaussianDropout, 1.0, BERNOULLI_VARIANCE, None, 1.0),
    # Uniform: each value 1/3, variance 4 (1/12 + 1/3) - 1 = 2/3.
    "three_valued_uniform": (lambda p: D.ThreeValuedNoise(p, "uniform"), 1.0,
                             three_valued_variance(1 / 3, 1 / 3), 1 / 3, 1.0),
    # Variance-matched: Bernoulli's variance p/(1-p), reached with P(0) = P(2) = v/2, v = p/(1-p).
    "three_valued_matched": (lambda p: D.ThreeValuedNoise(p, "variance_matched"), 1.0,
                             BERNOULLI_VARIANCE, BERNOULLI_VARIANCE / 2, 1.0),
}
ZERO_RATE_IS_P = [kind for kind in KINDS if KINDS[kind][3] == P]  # the Bernoulli kinds
FUNCTIONS = {  # the functional form of each activation kind, for validation and p = 1
    "inverted_dropout": D.inverted_dropout,
    "vanilla_dropout": D.vanilla_dropout,
    "unscaled_dropout": D.unscaled_dropout,
    "gaussian_dropout": D.gaussian_dropout,
    "three_valued_noise": D.three_valued_noise,
}
MODULES = {
    "InvertedDropout": D.InvertedDropout, "FunctionalDropout": D.FunctionalDropout,
    "VanillaDropout": D.VanillaDropout, "UnscaledDropout": D.UnscaledDropout,
    "GaussianDropout": D.GaussianDropout, "ThreeValuedNoise": D.ThreeValuedNoise,
    "DropConnectLinear": lambda p: D.DropConnectLinear(3, 2, p),
}


@pytest.fixture(scope="module", params=DTYPES, ids=str)
def samples(request):
    """Each kind's training output for N_SAMPLES copies of H in the param's dtype (H is exact
    in bf16 too): (N_SAMPLES, len(H)), as float64."""
    out = {}
    for kind, (factory, *_theory) in KINDS.items():
        torch.manual_seed(0)
        x = H.to(request.param).repeat(N_SAMPLES, 1)
        y = factory(P).train()(x)
        assert y.dtype == request.param, kind
        out[kind] = y.double()
    return out


def standard_error_of_variance(y: torch.Tensor) -> torch.Tensor:
    """SE of the sample variance per column: sqrt((m4 - m2^2) / n), central moments m2, m4."""
    centred = y - y.mean(dim=0)
    m2, m4 = centred.pow(2).mean(dim=0), centred.pow(4).mean(dim=0)
    return ((m4 - m2 ** 2) / y.shape[0]).sqrt()


@pytest.mark.parametrize("kind", KINDS)
def test_mean_matches_theory(samples, kind):
    _, mean_factor, var_factor, _, _ = KINDS[kind]
    y = samples[kind]
    standard_error = (var_factor * H ** 2 / N_SAMPLES).sqrt()
    assert ((y.mean(dim=0) - mean_factor * H).abs() <= Z * standard_error).all()


@pytest.mark.parametrize("kind", KINDS)
def test_variance_matches_theory(samples, kind):
    _, _, var_factor, _, _ = KINDS[kind]
    y = samples[kind]
    error = (y.var(dim=0) - var_factor * H ** 2).abs()
    assert (error <= Z * standard_error_of_variance(y)).all()


@pytest.mark.parametrize("kind", [k for k in KINDS if KINDS[k][3] is not None])
def test_zero_fraction_is_p(samples, kind):
    zero_probability = KINDS[kind][3]
    zeros = (samples[kind] == 0).double().mean()
    n = samples[kind].numel()
    standard_error = math.sqrt(zero_probability * (1 - zero_probability) / n)
    assert abs(zeros - zero_probability) <= Z * standard_error


def test_gaussian_has_no_zeros(samples):
    assert (samples["gaussian"] != 0).all()


def test_three_valued_takes_only_its_values(samples):
    for kind in ("three_valued_uniform", "three_valued_matched"):
        ratios = torch.unique(samples[kind] / H)
        assert set(ratios.tolist()) <= {0.0, 1.0, 2.0}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("kind", KINDS)
def test_eval_is_identity_or_scaling(kind, dtype):
    factory, _, _, _, eval_factor = KINDS[kind]
    x = torch.randn(64, 8, dtype=dtype)
    y = factory(P).eval()(x.clone())
    assert y.dtype == dtype
    assert torch.equal(y, x) if eval_factor == 1.0 else torch.allclose(y, x * eval_factor)


def test_unscaled_shows_the_train_test_mismatch(samples):
    """Its training mean is (1-p) h but eval returns h: a 1/(1-p) jump the next layer never saw."""
    train_mean = samples["unscaled"].mean(dim=0)
    eval_output = D.UnscaledDropout(P).eval()(H)
    # rtol 0.02 is 10 SE: the mean's relative SE is sqrt(p / (1-p) / N_SAMPLES) = 0.002.
    assert torch.allclose(eval_output * (1 - P), train_mean, rtol=0.02)
    assert not torch.allclose(eval_output, train_mean, rtol=0.1)


@pytest.mark.parametrize("kind", KINDS)
def test_gradients_match_finite_differences(kind):
    factory = KINDS[kind][0]
    layer = factory(P).train()

    def seeded(x):  # the same noise in every call gradcheck makes
        torch.manual_seed(1)
        return layer(x.clone())  # clone: the in-place layer may not write into a leaf

    x = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(seeded, (x,))


def test_custom_gradient_is_the_scaled_mask():
    x = torch.randn(1000, requires_grad=True)
    y = D.inverted_dropout(x, P, training=True)
    grad_output = torch.randn(1000)
    y.backward(grad_output)
    kept = y != 0
    assert torch.allclose(x.grad, torch.where(kept, grad_output / (1 - P), 0.0))


def test_dropconnect_gradients_match_finite_differences():
    layer = D.DropConnectLinear(5, 3, P).double().train()

    def seeded(x, weight, bias):
        torch.manual_seed(1)
        return D.dropconnect_linear(x, weight, bias, P, training=True)

    x = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(seeded, (x, layer.weight, layer.bias))


@pytest.mark.parametrize("kind", KINDS)
def test_same_seed_same_noise(kind):
    layer = KINDS[kind][0](P).train()
    x = torch.randn(32, 16)
    outputs = []
    for seed in (7, 7, 8):
        torch.manual_seed(seed)
        outputs.append(layer(x.clone()))
    assert torch.equal(outputs[0], outputs[1])
    assert not torch.equal(outputs[0], outputs[2])


def _inf_input():
    x = torch.tensor([[math.inf, -math.inf, 1.0, -2.0], [0.0, 3.0, math.inf, 5.0]])
    return (x * 1.0).requires_grad_()  # via a leaf that requires grad


@pytest.mark.parametrize("name", FUNCTIONS)
@pytest.mark.parametrize("training", [True, False])
def test_p_one_gives_zeros_without_nan(name, training):
    leaf = _inf_input()
    x = leaf * 1.0  # non-leaf, so the in-place form may write into it too
    y = FUNCTIONS[name](x, 1.0, training=training)
    if training or name == "vanilla_dropout":  # vanilla's eval scales by 1 - p = 0
        assert torch.equal(y, torch.zeros_like(y))
        assert y.requires_grad  # still in the graph: the gradient is 0, not missing
        y.sum().backward()
        assert torch.equal(leaf.grad, torch.zeros_like(leaf))
    else:
        assert y is x


def test_p_one_inplace_and_modules_and_dropconnect():
    x = _inf_input() * 1.0
    assert torch.equal(D.inverted_dropout(x, 1.0, training=True, inplace=True), torch.zeros(2, 4))
    for name, make in MODULES.items():
        if name in ("DropConnectLinear", "FunctionalDropout"):  # see below; F.dropout gives NaN
            continue
        y = make(1.0).train()(_inf_input())
        assert torch.equal(y, torch.zeros_like(y)), name
    layer = D.DropConnectLinear(4, 3, 1.0).train()
    layer.weight.data[0, 0] = math.inf
    assert torch.equal(layer(torch.ones(2, 4)), layer.bias.expand(2, 3))  # bias only


@pytest.mark.parametrize("p", [1.5, -0.1, math.nan, math.inf])
def test_bad_p_raises_like_pytorch(p):
    message = f"dropout probability has to be between 0 and 1, but got {p}"
    for name, function in FUNCTIONS.items():
        with pytest.raises(ValueError, match=message):
            function(torch.ones(3), p, training=True)
    with pytest.raises(ValueError, match=message):
        D.dropconnect_linear(torch.ones(3), torch.ones(2, 3), None, p, training=True)
    for name, make in MODULES.items():
        with pytest.raises(ValueError, match=message):
            make(p)
    if not math.isnan(p):  # nn.Dropout's own check lets NaN through; ours does not
        with pytest.raises(ValueError, match=message):
            nn.Dropout(p)


def test_p_that_is_no_number_is_refused():
    with pytest.raises(ValueError, match="has to be a number between 0 and 1, but got 'half'"):
        D.InvertedDropout("half")


def test_variance_matched_three_valued_needs_p_at_most_half():
    with pytest.raises(ConfigError, match="needs p <= 0.5"):
        D.ThreeValuedNoise(0.6, "variance_matched")
    config = DropoutConfig(kind="three_valued", p=[0.2, 0.6], three_valued="variance_matched")
    with pytest.raises(ConfigError, match="hidden layer 2 has p = 0.6"):
        config.per_layer(2)
    assert D.three_valued_probabilities(0.5, "variance_matched") == (0.5, 0.0, 0.5)  # = Bernoulli
    q0, q1, q2 = D.three_valued_probabilities(P, "variance_matched")
    assert math.isclose(three_valued_variance(q1, q2), BERNOULLI_VARIANCE)


# Survivors are x / (1 - p): exactly for ours in float32, up to rounding for PyTorch's
# x * (m / (1-p)); in bf16 up to one step of 8 significant bits (2^-7 relative) for both.
SURVIVOR_RTOL = {torch.float32: 1e-6, torch.bfloat16: 2 ** -7}


@pytest.mark.parametrize("dtype", SURVIVOR_RTOL, ids=str)
def test_custom_and_builtin_agree_in_distribution(dtype):
    """Zero fraction and survivor scale of the custom layer and nn.Dropout."""
    x = (torch.rand(400, 500) + 0.5).to(dtype)  # no zeros of its own
    n = x.numel()
    fractions = {}
    for name, layer in {"custom": D.InvertedDropout(P), "builtin": nn.Dropout(P)}.items():
        torch.manual_seed(0)
        y = layer(x)
        kept = y != 0
        fractions[name] = 1 - kept.double().mean().item()
        assert abs(fractions[name] - P) <= Z * math.sqrt(P * (1 - P) / n), name
        assert y.dtype == dtype
        assert torch.allclose(y[kept].float(), x[kept].float() / (1 - P),
                              rtol=SURVIVOR_RTOL[dtype], atol=0), name
    # The two fractions differ by 5 SE of a difference of two independent binomial fractions.
    assert abs(fractions["custom"] - fractions["builtin"]) <= Z * math.sqrt(2 * P * (1 - P) / n)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_custom_saves_a_bool_mask_for_backward(dtype):
    x = torch.randn(64, 32, dtype=dtype, requires_grad=True)
    saved = []

    def pack(tensor):
        saved.append(tensor)
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        y = D.InvertedDropout(P)(x)
    assert [(t.dtype, t.element_size(), t.shape) for t in saved] == [(torch.bool, 1, x.shape)]
    y.sum().backward()  # and backward works from it
    assert x.grad.dtype == dtype and torch.equal(x.grad != 0, y != 0)


def test_inplace_overwrites_the_input_and_matches_the_copy():
    x = torch.randn(50, 40)
    torch.manual_seed(3)
    expected = D.InvertedDropout(P)(x)
    target = x.clone()
    torch.manual_seed(3)
    returned = D.InvertedDropout(P, inplace=True)(target)
    assert returned is target and torch.equal(target, expected)
    assert D.InvertedDropout(P, inplace=True).eval()(target) is target  # eval: untouched


def test_inplace_on_a_leaf_that_requires_grad_is_refused_like_pytorch():
    leaf = torch.randn(3, requires_grad=True)
    for layer in (D.InvertedDropout(P, inplace=True), nn.Dropout(P, inplace=True)):
        with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
            layer(leaf)


@pytest.mark.parametrize("p", [0.001, 0.999])
@pytest.mark.parametrize("kind", ZERO_RATE_IS_P)
def test_bf16_input_keeps_the_exact_drop_rate(kind, p):
    """The drop rate is p on bf16 inputs too, at the p where a bf16 uniform is furthest off:
    drawn in bf16 it drops 0.29% at p = 0.001 (60 SE off here) and 100% at p = 0.999 (30 SE)."""
    x = torch.ones(1_000_000, dtype=torch.bfloat16)
    torch.manual_seed(0)
    y = KINDS[kind][0](p).train()(x)
    assert y.dtype == torch.bfloat16
    zeros = (y == 0).double().mean().item()
    assert abs(zeros - p) <= Z * math.sqrt(p * (1 - p) / x.numel())


def test_dropconnect_expected_output_is_the_linear_layer():
    """Monte Carlo over weight masks: the mean training output equals the eval (plain) output."""
    torch.manual_seed(0)
    layer = D.DropConnectLinear(20, 5, P).double()
    x = torch.randn(3, 20, dtype=torch.float64)
    with torch.no_grad():
        draws = torch.stack([layer.train()(x) for _ in range(2000)])  # (2000, 3, 5)
        expected = layer.eval()(x)
    assert torch.equal(expected, nn.functional.linear(x, layer.weight, layer.bias))
    # 5 SE per output, SE from the draws' own spread (2000 independent masks).
    standard_error = draws.std(dim=0) / math.sqrt(draws.shape[0])
    assert ((draws.mean(dim=0) - expected).abs() <= Z * standard_error).all()


def test_dropconnect_mask_is_shared_by_the_batch():
    layer = D.DropConnectLinear(20, 5, P).train()
    y = layer(torch.ones(4, 20))  # four identical examples
    assert torch.equal(y, y[:1].expand(4, 5))


class TextbookNet(nn.Module):
    """Seed article 001's pattern: dropout follows the model's own flag, not nn.Module.training."""

    def __init__(self, is_training: bool = True):
        super().__init__()
        self.is_training = is_training
        self.linear_1, self.linear_2 = nn.Linear(784, 256), nn.Linear(256, 10)

    def forward(self, x):
        h = torch.relu(self.linear_1(x))
        if self.is_training:
            h = D.inverted_dropout(h, 0.5, training=True)
        return self.linear_2(h)


def test_a_separate_flag_keeps_dropping_after_eval_ours_does_not():
    x = torch.rand(8, 784)
    pitfall = TextbookNet().eval()  # eval() does not touch is_training
    assert not torch.equal(pitfall(x), pitfall(x))  # still random at "test" time
    for kind in ("custom", "builtin", "functional", "gaussian", "three_valued", "dropconnect"):
        ours = build_model(ModelConfig(dropout=DropoutConfig(kind=kind, p=0.5)))
        assert not torch.equal(ours.train()(x), ours(x)), kind
        ours.eval()
        assert torch.equal(ours(x), ours(x)), kind


def test_print_model_shows_every_hyper_parameter():
    text = str(build_model(ModelConfig(dropout=DropoutConfig(kind=["custom", "three_valued"],
                                                             p=[0.2, 0.4]))))
    assert "InvertedDropout(p=0.2, inplace=False)" in text
    assert "ThreeValuedNoise(p=0.4, mode=uniform, P(0, 1, 2)=(0.333, 0.333, 0.333))" in text
    text = str(build_model(ModelConfig(dropout=DropoutConfig(kind="dropconnect", p=0.3))))
    assert "DropConnectLinear(in_features=256, out_features=256, bias=True, p=0.3)" in text


def test_is_stochastic_marks_every_noise_layer():
    model = build_model(ModelConfig(dropout=DropoutConfig(kind=["gaussian", "dropconnect"], p=0.3)))
    stochastic = [type(m).__name__ for m in model.modules() if D.is_stochastic(m)]
    assert stochastic == ["GaussianDropout", "DropConnectLinear"]


@pytest.mark.slow
def test_custom_and_builtin_train_the_default_model_equally_well(tmp_path):
    """The default model (784-256-256-10, p = [0.2, 0.5]) on 10000 images for 3 epochs, seed 0.

    lr 0.1 instead of the default 0.5: after only 120 steps at lr 0.5 the final accuracy swings by
    up to 0.2 from epoch to epoch, which would make any band meaningless. Calibration over seeds
    0-7 (paired runs, same seed): train accuracy (epoch mean, dropout on) differs by sd 0.006,
    at most 0.009, so 0.03 is 5 sd, while the deliberately wrong 'unscaled' kind trails by 0.17;
    test accuracy differs by sd 0.036, at most 0.06 (different masks, different trajectories),
    so 0.12 is 3.4 sd; every run reached test accuracy >= 0.52 (chance: 0.1).
    """
    from dropout_lab.config import Config, DataConfig, LoggingConfig, OptimConfig, TrainerConfig
    from dropout_lab.data import load_fashion_mnist
    from dropout_lab.train import train

    data_config = DataConfig(subset=10000)
    data = load_fashion_mnist(data_config, torch.device("cpu"))
    final = {}
    for kind in ("custom", "builtin"):
        config = Config(seed=0, data=data_config,
                        model=ModelConfig(dropout=DropoutConfig(kind=kind)),
                        optim=OptimConfig(lr=0.1),
                        trainer=TrainerConfig(epochs=3, progress=False, num_threads=1,
                                              device="cpu"),  # as the data
                        logging=LoggingConfig(tensorboard=False, checkpoint=False))
        result = train(config, tmp_path / kind, data=data)
        assert result.status == "completed"
        final[kind] = result.final
    assert abs(final["custom"]["train_accuracy"] - final["builtin"]["train_accuracy"]) <= 0.03
    assert abs(final["custom"]["test_accuracy"] - final["builtin"]["test_accuracy"]) <= 0.12
    assert min(final[kind]["test_accuracy"] for kind in final) >= 0.45


def test_unscaled_says_plainly_that_it_is_wrong():
    from conftest import invoke

    for documented in (D.unscaled_dropout, D.UnscaledDropout):
        assert "DELIBERATELY WRONG" in documented.__doc__
    result = invoke("train", "--help")
    assert result.exit_code == 0, result.stderr
    help_text = " ".join(result.stdout.split())  # unwrap lines
    assert "unscaled is DELIBERATELY WRONG: it drops units and never compensates" in help_text
