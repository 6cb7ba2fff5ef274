"""The config schema: one dataclass per config group, checked when Hydra composes the config.

The schema catches unknown keys (also typos inside YAML files) and wrong types; the ranges are
checked in ``__post_init__``, where the value enters. No torch import here: ``--help`` and
``--dry-run`` stay fast.
"""

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from dropout_lab.checks import (check_at_least_zero, check_choice, check_positive,
                                check_probability, check_variance_matched)
from dropout_lab.errors import ConfigError
from dropout_lab.run_folder import STEADY_EPOCHS

# Dropout kinds by where the noise goes. "none" turns a layer's dropout off.
ACTIVATION_NOISE_KINDS = (
    "custom", "builtin", "functional", "vanilla", "unscaled", "gaussian", "three_valued",
)
WEIGHT_NOISE_KINDS = ("dropconnect",)
DROPOUT_KINDS = ("none",) + ACTIVATION_NOISE_KINDS + WEIGHT_NOISE_KINDS
THREE_VALUED_MODES = ("uniform", "variance_matched")
DROPOUT_KINDS_HELP = (
    "Dropout kinds (model.dropout.kind, one for all hidden layers or a list): custom (inverted "
    "dropout from scratch, bool mask), builtin (nn.Dropout), functional (F.dropout), vanilla "
    "(no scaling in training, x(1-p) in eval), gaussian (x(1+sigma eps), same variance), "
    "three_valued (noise in {0,1,2}; model.dropout.three_valued=uniform|variance_matched), "
    "dropconnect (drops weights), none. unscaled is DELIBERATELY WRONG: it drops units and "
    "never compensates, so at test time the next layer sees inputs 1/(1-p) times larger than "
    "in training; it is there to show that mistake, not for real use."
)
INITS = ("default", "normal")
# fp32: everything in float32 (the textbook figures). bf16: the forward pass and the loss under
# autocast to bfloat16; parameters, gradients and optimizer state stay float32.
PRECISIONS = ("fp32", "bf16")
OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "step", "onecycle")
TRAIN_IMAGES = 60000  # Fashion-MNIST's training split; data.validation is carved out of it


@dataclass
class DataConfig:
    dir: Optional[str] = None  # a folder with the four .gz files; env DROPOUT_LAB_DATA also works
    cache_dir: Optional[str] = None  # decoded tensors; default ~/.cache/dropout-lab
    subset: Optional[int] = None  # train on the first N training images (quick runs, tests)
    test_subset: Optional[int] = None  # evaluate on the first N test images
    standardize: bool = False  # subtract the training mean, divide by its std
    download: bool = True  # last resort: torchvision's download, when online
    # Training images held out for validation (0: off): the last N of a fixed permutation of
    # the 60,000, the same for every run and seed; data.subset then counts the rest.
    validation: int = 0

    def __post_init__(self) -> None:
        for name in ("subset", "test_subset"):
            if getattr(self, name) is not None:
                check_positive(getattr(self, name), f"data.{name}", integer=True)
        if (isinstance(self.validation, bool) or not isinstance(self.validation, int)
                or not 0 <= self.validation < TRAIN_IMAGES):
            raise ConfigError(f"data.validation has to be a whole number from 0 (off) to "
                              f"{TRAIN_IMAGES - 1}, but got {self.validation!r}")


@dataclass
class DropoutConfig:
    kind: Any = "custom"  # one kind for all hidden layers, or a list with one per layer
    p: Any = field(default_factory=lambda: [0.2, 0.5])  # one p for all, or one per layer
    three_valued: str = "uniform"  # uniform (gamma = 2) or variance_matched (same variance as p)

    def per_layer(self, n_layers: int) -> List[Tuple[str, float]]:
        """(kind, p) for each hidden layer; raises ConfigError on a bad kind, p or length."""
        kinds = self._expand(self.kind, n_layers, "model.dropout.kind")
        probs = self._expand(self.p, n_layers, "model.dropout.p")
        layers = []
        for i, (kind, p) in enumerate(zip(kinds, probs)):
            check_choice(kind, "dropout kind (model.dropout.kind)", DROPOUT_KINDS)
            p = check_probability(p, f"model.dropout.p (the probability of hidden layer {i + 1})")
            if kind == "three_valued" and self.three_valued == "variance_matched":
                check_variance_matched(p, f"hidden layer {i + 1} has")
            layers.append((kind, p))
        return layers

    @staticmethod
    def _expand(value: Any, n_layers: int, name: str) -> list:
        values = per_layer_values(value, n_layers)
        if len(values) != n_layers:
            raise ConfigError(
                f"{name} has {len(values)} values but model.hidden has {n_layers} layers; "
                f"give one value per hidden layer or a single value for all"
            )
        return values

    def __post_init__(self) -> None:
        check_choice(self.three_valued, "model.dropout.three_valued", THREE_VALUED_MODES)


@dataclass
class ModelConfig:
    hidden: List[int] = field(default_factory=lambda: [256, 256])
    init: str = "default"  # default: PyTorch's nn.Linear init; normal: N(0, init_std) weights
    init_std: float = 0.01
    dropout: DropoutConfig = field(default_factory=DropoutConfig)

    def __post_init__(self) -> None:
        if not self.hidden:
            raise ConfigError("model.hidden needs at least one hidden layer size")
        for size in self.hidden:
            check_positive(size, "every size in model.hidden", integer=True)
        check_choice(self.init, "model.init", INITS)
        check_positive(self.init_std, "model.init_std")
        self.dropout.per_layer(len(self.hidden))


@dataclass
class ScheduleConfig:
    """The learning rate over training (stepped after every optimiser step; lengths in epochs).

    constant: optim.lr throughout. cosine: from optim.lr down to min_lr over the epochs after
    the warm-up. step: optim.lr times gamma every step_size epochs after the warm-up.
    onecycle: up from max_lr/25 to max_lr (optim.lr when null) over the first pct_start of
    training, then down to max_lr/25e4 (torch's OneCycleLR; its rise is the warm-up).
    warmup_epochs: a linear rise to optim.lr first (constant, cosine, step).
    """

    name: str = "constant"
    warmup_epochs: float = 0.0
    min_lr: float = 0.0  # cosine: the final learning rate
    step_size: int = 10  # step: epochs between decays
    gamma: float = 0.1  # step: the factor of each decay
    max_lr: Optional[float] = None  # onecycle: the peak; null = optim.lr
    pct_start: float = 0.3  # onecycle: the fraction of training spent rising

    def __post_init__(self) -> None:
        check_choice(self.name, "learning-rate schedule (optim.schedule.name)", SCHEDULES)
        check_at_least_zero(self.warmup_epochs, "optim.schedule.warmup_epochs")
        check_at_least_zero(self.min_lr, "optim.schedule.min_lr")
        check_positive(self.step_size, "optim.schedule.step_size", integer=True)
        if isinstance(self.gamma, bool) or not 0.0 < self.gamma <= 1.0:
            raise ConfigError(f"optim.schedule.gamma has to be in (0, 1], but got {self.gamma}")
        if self.max_lr is not None:
            check_positive(self.max_lr, "optim.schedule.max_lr")
        if isinstance(self.pct_start, bool) or not 0.0 < self.pct_start < 1.0:
            raise ConfigError(f"optim.schedule.pct_start has to be in (0, 1), "
                              f"but got {self.pct_start}")
        if self.name == "onecycle" and self.warmup_epochs:
            raise ConfigError("optim.schedule.warmup_epochs does not apply to onecycle, whose "
                              "rise is its warm-up; set optim.schedule.pct_start instead")


@dataclass
class OptimConfig:
    name: str = "sgd"
    lr: float = 0.5
    momentum: float = 0.0
    weight_decay: float = 0.0
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)

    def __post_init__(self) -> None:
        check_choice(self.name, "optimizer (optim)", OPTIMIZERS)
        check_positive(self.lr, "optim.lr")
        for name in ("momentum", "weight_decay"):
            check_at_least_zero(getattr(self, name), f"optim.{name}")
        if self.schedule.name == "cosine" and self.schedule.min_lr > self.lr:
            raise ConfigError(f"optim.schedule.min_lr ({self.schedule.min_lr}) is above optim.lr "
                              f"({self.lr}): cosine decays from optim.lr down to min_lr")


@dataclass
class TrainerConfig:
    epochs: int = 10
    batch_size: int = 256
    eval_batch_size: int = 2048
    device: str = "auto"  # auto (CUDA when present), cpu, cuda, cuda:N
    num_threads: Optional[int] = None  # torch threads; None keeps torch's default
    progress: bool = True
    # Each epoch, the first N training images are also evaluated in eval mode (no dropout):
    # the clean generalisation gap. Train accuracy measured during the epoch has dropout on.
    eval_train_subset: int = 10000  # 0: off
    steady_epochs: int = STEADY_EPOCHS  # the steady metric: the mean test accuracy of the last k epochs
    precision: str = "fp32"  # fp32 or bf16 (autocast; needs native bf16: see device.py)
    # A run whose mean training loss over a window of steps exceeds this ends diverged (as a
    # NaN loss does); None: only NaN/inf. See divergence.py and the README for the default.
    divergence_threshold: Optional[float] = 1e5

    def __post_init__(self) -> None:
        check_choice(self.precision, "trainer.precision", PRECISIONS)
        if self.divergence_threshold is not None:
            check_positive(self.divergence_threshold, "trainer.divergence_threshold")
        check_positive(self.epochs, "trainer.epochs", integer=True)
        check_positive(self.steady_epochs, "trainer.steady_epochs", integer=True)
        if isinstance(self.eval_train_subset, bool) or self.eval_train_subset < 0:
            raise ConfigError(f"trainer.eval_train_subset has to be a whole number >= 0 (0: off), "
                              f"but got {self.eval_train_subset!r}")
        check_positive(self.batch_size, "trainer.batch_size", integer=True)
        check_positive(self.eval_batch_size, "trainer.eval_batch_size", integer=True)
        if self.num_threads is not None:
            check_positive(self.num_threads, "trainer.num_threads", integer=True)
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise ConfigError(f"trainer.device has to be auto, cpu, cuda or cuda:N, not {self.device!r}")


@dataclass
class LoggingConfig:
    tensorboard: bool = True
    checkpoint: bool = True  # a checkpoint after every epoch, for --resume
    activation_stats: bool = False  # per hidden layer, activation variance per epoch (exercise 3)


@dataclass
class Config:
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)

    def __post_init__(self) -> None:
        # Across groups: a warm-up has to leave epochs for the schedule that follows it.
        warmup, epochs = self.optim.schedule.warmup_epochs, self.trainer.epochs
        if warmup and warmup >= epochs:
            raise ConfigError(f"optim.schedule.warmup_epochs ({warmup}) has to be less than "
                              f"trainer.epochs ({epochs})")


def with_schema_defaults(config: Dict[str, Any]) -> Dict[str, Any]:
    """A saved config with the keys the schema gained since filled in with their defaults: a run
    saved before a key existed ran as its default does (trainer.divergence_threshold, say)."""
    def fill(saved: Any, defaults: Any) -> Any:
        if not (isinstance(saved, dict) and isinstance(defaults, dict)):
            return saved
        return {**defaults, **{key: fill(value, defaults.get(key)) for key, value in saved.items()}}

    return fill(config, asdict(Config()))


def per_layer_values(value: Any, n_layers: int) -> list:
    """A per-layer setting (one value for all layers, or a list) as a list (not checked)."""
    if isinstance(value, (list, tuple)) or _is_list_config(value):
        return list(value)
    return [value] * n_layers


def flatten_config(tree: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}, values as they are (a config as summary.json holds it)."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten_config(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _is_list_config(value: Any) -> bool:
    from omegaconf import ListConfig

    return isinstance(value, ListConfig)


def config_dir() -> Path:
    """The Hydra config folder: inside the installed package, or configs/ of a source checkout."""
    packaged = Path(__file__).resolve().parent / "configs"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parent.parent / "configs"


def register_schema() -> None:
    """Put the schema in Hydra's ConfigStore; configs/config.yaml lists it first in its defaults."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="config_schema", node=Config)


def to_typed(cfg) -> Config:
    """Turn a composed DictConfig into a validated ``Config`` (runs every ``__post_init__``).

    Keys outside the schema are refused too: Hydra's ``+key=value`` appends them past the
    schema's struct check, and ``to_object`` would silently ignore them.
    """
    from omegaconf import OmegaConf

    unknown = list(_keys_outside_schema(cfg, Config()))
    if unknown:
        raise ConfigError(f"unknown config key {', '.join(unknown)}{did_you_mean(unknown[0])}")
    return OmegaConf.to_object(cfg)


def config_dict(cfg: Config) -> dict:
    """``cfg`` as plain, resolved data: what summary.json and the checkpoint record of a run."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)


def _keys_outside_schema(node, schema, prefix: str = ""):
    """Dotted names of the keys in ``node`` that the dataclass ``schema`` does not declare."""
    import dataclasses

    declared = {f.name for f in dataclasses.fields(schema)}
    for key in node:
        if key not in declared:
            yield f"{prefix}{key}"
        elif dataclasses.is_dataclass(getattr(schema, key)):
            yield from _keys_outside_schema(node[key], getattr(schema, key), f"{prefix}{key}.")


def schema_keys(node: Any = None, prefix: str = "") -> Dict[str, Any]:
    """Every key of the schema as its full dotted path, with its default: {'trainer.epochs': 10}."""
    import dataclasses

    keys = {}
    for f in dataclasses.fields(node or Config()):
        value = getattr(node or Config(), f.name)
        if dataclasses.is_dataclass(value):
            keys.update(schema_keys(value, f"{prefix}{f.name}."))
        else:
            keys[f"{prefix}{f.name}"] = value
    return keys


def override_value(value: Any) -> str:
    """A value as Hydra's override grammar writes it: null, true, [256,256]."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(override_value(item) for item in value) + "]"
    return str(value)


def nearest_keys(key: str) -> List[str]:
    """The schema keys (full dotted paths, or a group's) a mistyped ``key`` most likely meant,
    best first: every part close to the same part of the path, aligned from the end, so a key
    missing its group (epochs) finds trainer.epochs and model.dropout.foo finds nothing."""
    from difflib import SequenceMatcher

    paths = list(schema_keys())
    candidates = paths + sorted({path.rsplit(".", 1)[0] for path in paths if "." in path})
    parts = key.split(".")

    def closeness(path: str) -> float:
        tail = path.split(".")[-len(parts):]
        if len(tail) < len(parts):
            return 0.0
        return min(SequenceMatcher(None, a, b).ratio() for a, b in zip(parts, tail))

    scored = sorted(((closeness(path), path) for path in candidates), key=lambda s: -s[0])
    return [path for score, path in scored[:2] if score >= 0.75]


def did_you_mean(key: str) -> str:
    """'; did you mean trainer.epochs?' for a mistyped key, else where the keys are listed."""
    near = nearest_keys(key)
    if near:
        return f"; did you mean {' or '.join(near)}?"
    return "; `dropout-lab train --help` lists the keys"


def help_keys() -> str:
    """The config keys with their defaults, for ``--help`` (read off the schema), written as
    overrides are (``data.subset=null``: copied onto the command line, each one works)."""
    groups = sorted(p.name for p in config_dir().iterdir() if p.is_dir() and p.name != "hydra")
    keys = "  ".join(f"{key}={override_value(value)}" for key, value in schema_keys().items())
    return (f"Config groups: {', '.join(groups)} (e.g. optim=adam).\n\n"
            f"Keys and defaults: {keys}.\n\n"
            f"{DROPOUT_KINDS_HELP}\n\n"
            f"Hydra's own overrides work too, e.g. hydra.run.dir=DIR. See README.md, 'Config'.")
