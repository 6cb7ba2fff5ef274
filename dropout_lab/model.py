"""The textbook MLP: 784 -> hidden... -> 10 with ReLU and dropout after each hidden ReLU."""

from typing import List, Sequence, Tuple

from torch import nn

from dropout_lab.config import ModelConfig
from dropout_lab.dropout import make_linear, make_noise_layer

N_INPUTS, N_CLASSES = 28 * 28, 10


class MLP(nn.Module):
    """Flatten, then per hidden layer Linear -> ReLU -> noise; a final Linear gives the logits.

    ``layers`` is a list of (kind, p) per hidden layer. DropConnect on hidden layer i drops the
    weights of the linear layer that reads it, the weight-space twin of dropping its units.
    """

    def __init__(self, hidden: Sequence[int], layers: List[Tuple[str, float]],
                 three_valued: str = "uniform"):
        super().__init__()
        sizes = [N_INPUTS, *hidden]
        # The noise kind of the layer a Linear reads from decides whether it drops weights.
        reads_from = [("none", 0.0), *layers]
        modules: List[nn.Module] = [nn.Flatten()]
        for i, (kind, p) in enumerate(layers):
            modules.append(make_linear(sizes[i], sizes[i + 1], *reads_from[i]))
            modules.append(nn.ReLU())
            modules.append(make_noise_layer(kind, p, three_valued))
        modules.append(make_linear(sizes[-1], N_CLASSES, *reads_from[-1]))
        self.net = nn.Sequential(*modules)

    def forward(self, x):  # x: (B, 784) or (B, 1, 28, 28) -> logits (B, 10)
        return self.net(x)


def build_model(cfg: ModelConfig) -> MLP:
    model = MLP(cfg.hidden, cfg.dropout.per_layer(len(cfg.hidden)), cfg.dropout.three_valued)
    if cfg.init == "normal":  # the textbook's concise model: N(0, 0.01) weights, default biases
        for module in model.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=cfg.init_std)
    return model
