"""The MLP: shapes, where each hidden layer's dropout lands, train/eval semantics, init."""

import pytest
import torch
from torch import nn

from dropout_lab.config import DropoutConfig, ModelConfig
from dropout_lab.dropout import FunctionalDropout, InvertedDropout
from dropout_lab.model import MLP, build_model

BASIC_KINDS = ["custom", "builtin", "functional", "none"]
LAYER_TYPES = {"custom": InvertedDropout, "builtin": nn.Dropout,
               "functional": FunctionalDropout, "none": nn.Identity}


def model_with(kind="custom", p=(0.2, 0.5), hidden=(256, 256), **extra) -> MLP:
    dropout = DropoutConfig(kind=kind, p=list(p) if isinstance(p, tuple) else p)
    return build_model(ModelConfig(hidden=list(hidden), dropout=dropout, **extra))


def noise_layers(model: MLP) -> list:
    """The module after each hidden ReLU (the net is Flatten, [Linear, ReLU, noise]..., Linear)."""
    modules = list(model.net)
    return [modules[i + 1] for i, m in enumerate(modules) if isinstance(m, nn.ReLU)]


@pytest.mark.parametrize("shape", [(7, 784), (7, 1, 28, 28)])
def test_logits_shape(shape):
    torch.manual_seed(0)
    assert model_with()(torch.rand(shape)).shape == (7, 10)


def test_hidden_sizes():
    model = model_with(hidden=(64, 32, 16), p=0.1)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [
        (784, 64), (64, 32), (32, 16), (16, 10)]
    assert len(noise_layers(model)) == 3


def test_per_layer_kinds_land_after_each_relu():
    model = model_with(kind=["custom", "builtin"], p=(0.1, 0.3))
    first, second = noise_layers(model)
    assert type(first) is InvertedDropout and first.p == 0.1
    assert type(second) is nn.Dropout and second.p == 0.3
    text = repr(model)  # print(model) shows every layer's p
    assert "InvertedDropout(p=0.1, inplace=False)" in text
    assert "Dropout(p=0.3, inplace=False)" in text


@pytest.mark.parametrize("kind", BASIC_KINDS)
def test_one_kind_for_all_layers(kind):
    layers = noise_layers(model_with(kind=kind, p=0.4))
    assert [type(layer) for layer in layers] == [LAYER_TYPES[kind]] * 2
    if kind != "none":
        assert all(layer.p == 0.4 for layer in layers)
        assert "p=0.4" in repr(layers[0])


# --- train/eval semantics of the four basic kinds, through the model's own noise layers ------

@pytest.mark.parametrize("kind", BASIC_KINDS)
def test_eval_mode_is_the_identity(kind):
    layer = noise_layers(model_with(kind=kind, p=0.5))[0].eval()
    x = torch.randn(100, 256)
    assert torch.equal(layer(x), x)


@pytest.mark.parametrize("kind", ["custom", "builtin", "functional"])
@pytest.mark.parametrize("p", [0.2, 0.5])
def test_training_mode_drops_p_and_scales_survivors(kind, p):
    torch.manual_seed(0)
    layer = noise_layers(model_with(kind=kind, p=p))[0].train()
    x = torch.rand(1000, 1000) + 0.5  # no zeros of its own, so every zero was dropped
    y = layer(x)
    dropped = (y == 0).float().mean().item()
    # 1e6 Bernoulli(p) draws: std of the fraction <= 0.0005, so 0.005 is 10 standard deviations.
    assert abs(dropped - p) < 0.005
    kept = y != 0
    assert torch.allclose(y[kept], x[kept] / (1 - p))  # inverted: survivors scaled by 1/(1-p)


def test_none_is_the_identity_in_training():
    layer = noise_layers(model_with(kind="none"))[0].train()
    x = torch.randn(100, 256)
    assert torch.equal(layer(x), x)


@pytest.mark.parametrize("kind", BASIC_KINDS)
def test_model_train_and_eval_follow_the_mode(kind):
    """model.eval() switches the noise off (no flag of its own); model.train() on again."""
    torch.manual_seed(0)
    model = model_with(kind=kind)
    x = torch.rand(64, 784)
    model.eval()
    assert torch.equal(model(x), model(x))
    model.train()
    assert torch.equal(model(x), model(x)) == (kind == "none")


# --- init ----------------------------------------------------------------------------------

def test_normal_init_has_the_configured_std():
    torch.manual_seed(0)
    model = model_with(init="normal", init_std=0.01)
    for linear in (m for m in model.modules() if isinstance(m, nn.Linear)):
        # n >= 2560 weights each (256 x 10): the sample std varies by 0.01 / sqrt(2n) <= 1.4e-4
        # and the mean by 0.01 / sqrt(n) <= 2e-4, so the bounds are > 3.5 standard deviations;
        # the default init would give std 1 / sqrt(3 * fan_in) >= 0.02 for the first layer.
        assert abs(linear.weight.std().item() - 0.01) < 0.0005
        assert abs(linear.weight.mean().item()) < 0.001


def test_default_init_is_pytorchs():
    torch.manual_seed(0)
    first = next(m for m in model_with().modules() if isinstance(m, nn.Linear))
    bound = 1 / 784 ** 0.5  # nn.Linear: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    assert first.weight.abs().max().item() <= bound
    # uniform std = bound / sqrt(3); 200k weights make the estimate good to well under 1%
    assert abs(first.weight.std().item() - bound / 3 ** 0.5) < 0.01 * bound
