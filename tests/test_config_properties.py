"""Property-based tests of the config: generated overrides, valid and invalid, through the real
Hydra composition. Valid configs build the model and train one step; invalid ones raise
ConfigError (never another exception type), and exactly the ones a plain reading of the rules
calls invalid do.
"""

import math

import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, event, given, settings, strategies as st

from dropout_lab.hydra_runner import compose, typed_config
from dropout_lab.config import DROPOUT_KINDS
from dropout_lab.errors import ConfigError
from dropout_lab.model import build_model
from dropout_lab.optim import build_optimizer


def mostly(good, bad):
    """``good`` values, and ``bad`` ones about one draw in ten (a config draws a dozen values,
    so a third or so come out valid)."""
    return st.integers(0, 9).flatmap(lambda i: bad if i == 0 else good)


P = mostly(st.sampled_from([0.0, 0.5, 1.0]) | st.floats(0, 1),
           st.sampled_from([-0.1, 1.5, math.nan, math.inf, -math.inf, 1.0000001]))
KIND = mostly(st.sampled_from(DROPOUT_KINDS), st.just("magic"))
SIZE = mostly(st.integers(1, 48), st.sampled_from([0, -3]))


def fmt(value) -> str:
    """A value as Hydra's override grammar reads it back (nan, inf, lists)."""
    if isinstance(value, list):
        return "[" + ",".join(fmt(v) for v in value) + "]"
    return repr(value) if isinstance(value, float) and math.isfinite(value) else str(value)


@st.composite
def settings_and_overrides(draw):
    """A dict of the drawn settings and the override strings that set them."""
    hidden = draw(st.lists(SIZE, min_size=1, max_size=3))
    n_layers = len(hidden)

    def value_or_list(element):  # one value for all layers, or a list: of the right length or not
        right = st.lists(element, min_size=n_layers, max_size=n_layers)
        wrong = st.sampled_from([n_layers - 1, n_layers + 1]).flatmap(
            lambda n: st.lists(element, min_size=n, max_size=n))
        return element | mostly(right, wrong)

    drawn = {
        "model.hidden": hidden,
        "model.dropout.p": draw(value_or_list(P)),
        "model.dropout.kind": draw(value_or_list(KIND)),
        "model.dropout.three_valued": draw(st.sampled_from(["uniform", "variance_matched"])),
        "optim": draw(st.sampled_from(["sgd", "adam", "adamw"])),
        "optim.lr": draw(mostly(st.floats(1e-5, 2.0),
                                st.sampled_from([0.0, -0.1, math.nan, math.inf]))),
        "trainer.epochs": draw(mostly(st.integers(1, 5), st.integers(-2, 0))),
        "trainer.batch_size": draw(mostly(st.integers(1, 64), st.integers(-2, 0))),
    }
    return drawn, [f"{key}={fmt(value)}" for key, value in drawn.items()]


def expected_valid(drawn: dict) -> bool:
    """The rules, read off the README and the schema, applied by hand."""
    hidden = drawn["model.hidden"]
    n_layers = len(hidden)

    def per_layer(value):
        if isinstance(value, list):
            return value if len(value) == n_layers else None
        return [value] * n_layers

    ps, kinds = per_layer(drawn["model.dropout.p"]), per_layer(drawn["model.dropout.kind"])
    if ps is None or kinds is None:
        return False
    if any(size <= 0 for size in hidden):
        return False
    if not all(math.isfinite(p) and 0 <= p <= 1 for p in ps) or "magic" in kinds:
        return False
    if drawn["model.dropout.three_valued"] == "variance_matched" and any(
            kind == "three_valued" and p > 0.5 for kind, p in zip(kinds, ps)):
        return False  # variance p/(1-p) of three-valued noise is at most 1, reached at p = 0.5
    lr = drawn["optim.lr"]
    return (math.isfinite(lr) and lr > 0 and drawn["trainer.epochs"] > 0
            and drawn["trainer.batch_size"] > 0)


def one_training_step(cfg) -> float:
    """Build the model and optimiser the config names and take one step on a synthetic batch
    (the step's mechanics do not depend on the images being Fashion-MNIST)."""
    torch.manual_seed(0)
    model = build_model(cfg.model)
    optimizer = build_optimizer(cfg.optim, model.parameters())
    batch = min(cfg.trainer.batch_size, 16)
    images, labels = torch.rand(batch, 784), torch.randint(0, 10, (batch,))  # (B, 784), (B,)
    model.train()
    loss = F.cross_entropy(model(images), labels)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(settings_and_overrides())
def test_generated_configs_train_a_step_or_fail_with_config_error(case):
    drawn, overrides = case
    event("valid" if expected_valid(drawn) else "invalid")  # --hypothesis-show-statistics
    try:
        cfg = typed_config(compose(overrides))
    except ConfigError:  # any other exception type fails the test
        assert not expected_valid(drawn), f"refused a valid config: {overrides}"
        return
    assert expected_valid(drawn), f"accepted an invalid config: {overrides}"
    assert math.isfinite(one_training_step(cfg))
