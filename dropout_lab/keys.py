"""The registry of config keys and metrics: every fact about a key or a metric, written once.

For each config key of the schema (config.py): its short name in job folder names and the runs
table (``short``, default its last part), its display name on the HParams dashboard
(``display``; None: the key itself, listed after the named ones), what it does to a run's
numbers (``effect``) and whether a resume may change it (``resumable``). For each metric: its
TensorBoard tag, its key in summary.json's history and its display name.

job_names.py, hparams.py, runs_table.py, train.py and sweep/plan.py read these lists instead of
keeping their own. Adding a config key touches config.py and ``KEYS`` here, nothing else
(tests/test_keys.py fails for a schema key without an entry, and for an entry without a key).

No torch, no Hydra import: job folder names and `dropout-lab runs` read it.
"""

from dataclasses import dataclass
from enum import Enum
from typing import Dict, Iterable, List, Optional, Tuple


class Effect(str, Enum):
    """What a key does to a run's numbers."""
    RESULTS = "results"  # another value, another run
    LAST_DIGITS = "last_digits"  # the order of floating-point sums only (README, trainer.num_threads)
    NONE = "none"  # paths, switches, the progress bar: the same numbers


@dataclass(frozen=True)
class Key:
    name: str  # the dotted config key, and the hparam's name
    display: Optional[str] = None  # the HParams dashboard's name; None: shown by its key
    description: str = ""
    short: Optional[str] = None  # job folder names, runs table; None: the key's last part
    effect: Effect = Effect.RESULTS
    # Whether a resume (`train --resume`, a sweep run again into its --sweep-dir) may change it:
    # where, how fast and what is logged, never what an epoch computes.
    resumable: bool = False
    # Whether a job folder's name may show it: not paths (their '/' would nest folders) and not
    # what the launcher sets per --jobs (threads, the progress bar).
    in_folder_names: bool = True

    @property
    def short_name(self) -> str:
        return self.short or self.name.rpartition(".")[2]


_NONE = dict(effect=Effect.NONE, resumable=True)
# In the HParams dashboard's reading order: the settings a reader of a dropout experiment looks
# for first (per-layer probabilities model.dropout.p1, p2, ... in the first place).
KEYS: Tuple[Key, ...] = (
    Key("model.dropout.p", "p", "dropout probability of hidden layer {k}"),
    Key("model.dropout.kind", "dropout kind", "the hidden layers' noise (per layer when they differ)"),
    Key("optim.weight_decay", "weight decay", "L2 penalty of the optimiser", short="wd"),
    Key("optim.lr", "lr", "learning rate"),
    Key("optim.name", "optimizer", "sgd, adam or adamw", short="optim"),
    Key("model.hidden", "hidden", "hidden layer sizes"),
    # More epochs continue the same training, unless the schedule spreads over them
    # (SCHEDULES_OVER_EPOCHS): then a resume may not change it.
    Key("trainer.epochs", "epochs", "epochs trained", resumable=True),
    Key("trainer.batch_size", "batch size", "training batch size", short="batch"),
    Key("seed", "seed", "seeds the weights, the dropout masks and the shuffle order"),
    Key("optim.momentum", "momentum", "SGD momentum"),
    Key("optim.schedule.name", "schedule", "learning-rate schedule: constant, cosine, step or onecycle",
        short="schedule"),
    Key("optim.schedule.warmup_epochs", "warm-up epochs", "linear rise to optim.lr first", short="warmup"),
    Key("optim.schedule.min_lr", "min lr", "cosine: the final learning rate"),
    Key("optim.schedule.step_size", "step size", "step: epochs between decays"),
    Key("optim.schedule.gamma", "step gamma", "step: the factor of each decay"),
    Key("optim.schedule.max_lr", "max lr", "onecycle: the peak (optim.lr when absent)"),
    Key("optim.schedule.pct_start", "rise fraction", "onecycle: fraction of training rising"),
    Key("model.dropout.three_valued", "three-valued noise", "uniform or variance_matched", short="noise"),
    Key("model.init", "init", "weight initialisation"),
    Key("model.init_std", "init std", "std of the normal initialisation"),
    Key("data.subset", "train images", "the first N training images (all when absent)"),
    Key("data.test_subset", "test images", "the first N test images (all when absent)"),
    Key("data.validation", "validation images", "training images held out for validation (0: none)",
        short="val"),
    Key("data.standardize", "standardize", "zero mean, unit std inputs"),
    Key("trainer.eval_train_subset", "train eval images", "training images evaluated, dropout off",
        short="eval_subset"),
    Key("trainer.steady_epochs", "steady epochs", "epochs averaged by the steady metric"),
    # Another device gives other numbers (other kernels), but a run may move: the checkpoint
    # holds the state, and the device each part ran on is recorded (summary.json's device).
    Key("trainer.device", "device", "where it trained", resumable=True),
    Key("trainer.precision"),  # refused on resume: bf16 and fp32 epochs compute differently
    Key("trainer.divergence_threshold"),  # where a run ends diverged: another value, another run
    Key("trainer.num_threads", effect=Effect.LAST_DIGITS, resumable=True, in_folder_names=False),
    Key("trainer.eval_batch_size", **_NONE),
    Key("trainer.progress", **_NONE, in_folder_names=False),
    Key("data.dir", **_NONE, in_folder_names=False),
    Key("data.cache_dir", **_NONE, in_folder_names=False),
    Key("data.download", **_NONE),
    Key("logging.tensorboard", **_NONE),
    Key("logging.checkpoint", **_NONE),
    Key("logging.activation_stats", **_NONE),
)
# The order of settings in a job folder's name (what sweeps usually vary first, budgets last;
# other keys follow by name). ``optim`` is the config group (``optim=adam``).
FOLDER_ORDER = ("model.dropout.p", "model.dropout.kind", "model.dropout.three_valued",
                "optim.weight_decay", "optim.lr", "optim", "optim.name", "optim.momentum",
                "optim.schedule.name", "optim.schedule.warmup_epochs", "model.hidden",
                "model.init", "model.init_std", "seed", "trainer.epochs", "trainer.batch_size",
                "data.subset", "data.test_subset", "data.standardize", "data.validation",
                "trainer.eval_train_subset", "trainer.steady_epochs")
# Schedules spread over trainer.epochs: a resume that trains longer would continue another one.
SCHEDULES_OVER_EPOCHS = ("cosine", "onecycle")

BY_NAME: Dict[str, Key] = {key.name: key for key in KEYS}


def key(name: str) -> Key:
    """The registry entry of config key ``name`` (a key the registry lacks: one that changes
    results, shown by its name)."""
    return BY_NAME.get(name) or Key(name)


def names_with(effect: Effect) -> frozenset:
    return frozenset(k.name for k in KEYS if k.effect == effect)


NO_EFFECT = names_with(Effect.NONE)
LAST_DIGITS = names_with(Effect.LAST_DIGITS)
CANNOT_CHANGE_RESULTS = NO_EFFECT | LAST_DIGITS  # not hparams, not runs/diff columns
SHORT_NAMES = {name: key(name).short_name for name in FOLDER_ORDER}


def resume_changes(saved: Dict[str, object], wanted: Dict[str, object]) -> List[str]:
    """The keys of flat config ``saved`` (a run's) that ``wanted`` (a resume's) changes but a
    resume may not: one rule for `train --resume` and for a sweep run again into its folder."""
    schedule = saved.get("optim.schedule.name")
    changed = []
    for name, value in saved.items():
        fixed = not key(name).resumable or (
            name == "trainer.epochs" and schedule in SCHEDULES_OVER_EPOCHS)
        if fixed and wanted.get(name) != value:
            changed.append(name)
    return changed


def resumable_names() -> List[str]:
    """The keys a resume may change, for messages."""
    return [k.name for k in KEYS if k.resumable]


# --- metrics ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Metric:
    tag: str  # the TensorBoard tag
    history: str  # its key in an epoch of summary.json's history (steady, best: the key they sum up)
    display: Optional[str] = None  # the HParams dashboard's and `diff`'s name
    description: str = ""
    validation: bool = False  # only with data.validation > 0
    label: Optional[str] = None  # a sweep report's column (report.md, report.csv)
    column: Optional[str] = None  # `dropout-lab runs`' column

    @property
    def part(self) -> str:
        """Where summary.json holds it at the end: ``final`` (the last epoch), ``steady``, ``best``."""
        kind = self.tag.partition("/")[0]
        return kind if kind in ("steady", "best") else "final"

    @property
    def record(self) -> str:
        """Its key in a report's record of a run: ``steady_test_accuracy``, ``test_accuracy``."""
        return self.history if self.part == "final" else f"{self.part}_{self.history}"


# Per-epoch scalars (step = epoch), in the order run_log.py writes them, then the end-of-run ones.
METRICS: Tuple[Metric, ...] = (
    Metric("loss/train", "train_loss"),
    Metric("loss/train_eval", "train_eval_loss"),
    Metric("loss/test", "test_loss", "test loss", "test cross-entropy, last epoch"),
    Metric("accuracy/train", "train_accuracy"),
    Metric("accuracy/train_eval", "train_eval_accuracy", "train acc (eval)",
           "accuracy on a training subset, dropout off", label="train acc (eval)"),
    Metric("accuracy/test", "test_accuracy", "test acc (final)", "test accuracy after the last epoch",
           label="final test acc", column="test acc"),
    Metric("accuracy/gap", "gap", "gap (train - test)", "train acc (eval) minus test acc, last epoch",
           label="gap", column="gap"),
    Metric("accuracy/gap_dropout_on", "gap_dropout_on"),
    Metric("time/epoch_seconds", "epoch_seconds"),
    # The rate at the epoch's first step; not declared: the last epoch's rate (about 0 under
    # cosine) says nothing of a run, its chart does.
    Metric("optim/lr", "lr"),
    Metric("loss/val", "val_loss", "val loss", "validation cross-entropy, last epoch", True),
    Metric("accuracy/val", "val_accuracy", "val acc (final)", "validation accuracy after the last epoch",
           True),
    # Written once, at the end of a run.
    Metric("steady/accuracy_test", "test_accuracy", "test acc (steady)",
           "mean test accuracy, last trainer.steady_epochs epochs", label="steady test acc",
           column="steady"),
    Metric("steady/accuracy_val", "val_accuracy", "val acc (steady)",
           "mean validation accuracy, last trainer.steady_epochs epochs (what a sweep tunes)", True,
           label="steady val acc", column="val"),
    Metric("best/accuracy_test", "test_accuracy", "test acc (best)", "highest test accuracy of any epoch",
           label="best test acc", column="best"),
)
BY_TAG: Dict[str, Metric] = {metric.tag: metric for metric in METRICS}
# Each reader's metrics, in its order (the names are the Metric's):
# the HParams dashboard's columns (the first five are shown by default),
DECLARED_ORDER = ("steady/accuracy_test", "steady/accuracy_val", "best/accuracy_test",
                  "accuracy/test", "accuracy/val", "accuracy/train_eval", "accuracy/gap",
                  "loss/test", "loss/val")
# `dropout-lab diff`'s rows,
DIFF_ORDER = ("steady/accuracy_test", "steady/accuracy_val", "accuracy/test", "best/accuracy_test",
              "accuracy/train_eval", "accuracy/gap", "loss/test")
# a sweep report's columns (the first leads and sorts; the steady validation accuracy leads
# instead when a run holds a split out),
REPORT_ORDER = ("steady/accuracy_test", "accuracy/test", "best/accuracy_test",
                "accuracy/train_eval", "accuracy/gap")
# `dropout-lab runs`' columns.
RUNS_ORDER = ("steady/accuracy_test", "steady/accuracy_val", "accuracy/test", "best/accuracy_test",
              "accuracy/gap")


def epoch_tags() -> Dict[str, str]:
    """History key -> TensorBoard tag of the scalars written each epoch."""
    return {m.history: m.tag for m in METRICS if m.part == "final"}


def steady_tags() -> Dict[str, str]:
    """History key -> tag of the steady metrics written at the end of a run."""
    return {m.history: m.tag for m in METRICS if m.part == "steady"}


def metrics(order: Iterable[str]) -> List[Metric]:
    """The Metrics of the tags in ``order``."""
    return [BY_TAG[tag] for tag in order]
