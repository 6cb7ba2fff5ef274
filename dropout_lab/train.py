"""The one training core: ``train(cfg, run_dir)``. Single runs, sweeps, exercises and tests
all call it; it writes everything into ``run_dir`` and never into the working directory."""

import math
import signal
import threading
import time
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from dropout_lab.activations import ActivationStats
from dropout_lab.config import Config, OptimConfig, ScheduleConfig, flatten_config
from dropout_lab.device import (autocast, check_data_device, describe_device, rng_state,
                                run_device, set_rng_state)
from dropout_lab.data import FashionMNIST, Split, batches, load_fashion_mnist, train_size
from dropout_lab.divergence import CHECK_STEPS, LossWatch
from dropout_lab.errors import ConfigError, DropoutLabError, RunError, one_line
from dropout_lab.disk import exclusive_dir
from dropout_lab.keys import resume_changes
from dropout_lab.model import build_model
from dropout_lab.progress import Progress, describe_epoch
from dropout_lab.run_folder import CHECKPOINT, STEADY_EPOCHS, Status, read_summary
from dropout_lab.run_log import RunLog, load_checkpoint



@dataclass
class RunResult:
    status: Status
    run_dir: Path
    history: List[dict] = field(default_factory=list)
    error: Optional[str] = None
    signal: Optional[int] = None  # the signal that interrupted the run
    steady_epochs: int = STEADY_EPOCHS  # trainer.steady_epochs: the window of the steady metric
    trained: bool = True  # False: a resumed run that was already complete (nothing trained)

    @property
    def final(self) -> dict:
        return self.history[-1] if self.history else {}


class _Interrupted(Exception):
    pass


def build_optimizer(cfg: OptimConfig, params):
    if cfg.name == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                               weight_decay=cfg.weight_decay)
    optimizer = torch.optim.Adam if cfg.name == "adam" else torch.optim.AdamW
    return optimizer(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def build_scheduler(cfg: ScheduleConfig, optimizer, steps_per_epoch: int, epochs: int):
    """torch's LR scheduler for ``cfg``, stepped after every optimiser step; None for a constant
    rate without warm-up (the optimiser is then left exactly as it was).

    Per step, not per epoch: a warm-up of an epoch or two would otherwise be one or two jumps
    (epoch 1 at a tiny rate, then the full one), OneCycleLR is defined per step, and cosine
    decays smoothly. Lengths are given in epochs and turned into steps here; step decay still
    changes the rate only at epoch boundaries.
    """
    from torch.optim import lr_scheduler

    total = steps_per_epoch * epochs
    if cfg.name == "onecycle":
        # cycle_momentum=False: optim.momentum stays what the config says.
        return lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.max_lr or optimizer.defaults["lr"],
                                       total_steps=total, pct_start=cfg.pct_start,
                                       cycle_momentum=False)
    warmup = round(cfg.warmup_epochs * steps_per_epoch)
    if cfg.name == "cosine":
        main = lr_scheduler.CosineAnnealingLR(optimizer, T_max=total - warmup, eta_min=cfg.min_lr)
    elif cfg.name == "step":
        main = lr_scheduler.StepLR(optimizer, step_size=cfg.step_size * steps_per_epoch,
                                   gamma=cfg.gamma)
    elif not warmup:
        return None  # constant: today's training, untouched
    else:
        main = None
    if not warmup:
        return main
    # Linear from optim.lr/warmup up to optim.lr: the first step already learns a little.
    rise = lr_scheduler.LinearLR(optimizer, start_factor=1.0 / warmup, end_factor=1.0,
                                 total_iters=warmup)
    if main is None:
        return rise  # LinearLR holds optim.lr after its last step: constant after warm-up
    return lr_scheduler.SequentialLR(optimizer, [rise, main], milestones=[warmup])


def current_lr(optimizer) -> float:
    """The learning rate the next step uses (one parameter group)."""
    return optimizer.param_groups[0]["lr"]


def train_epoch(model, optimizer, split: Split, batch_size: int, generator, progress,
                interrupted: threading.Event, precision: str = "fp32", scheduler=None,
                divergence_threshold: Optional[float] = None) -> dict:
    """One pass over the shuffled training set with dropout on; mean loss and accuracy, or
    {"diverged": why} (divergence.py). ``scheduler`` (build_scheduler's) steps after every
    optimiser step."""
    model.train()
    watch = LossWatch(divergence_threshold)
    device = split.images.device
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    for step, (images, labels) in enumerate(batches(split, batch_size, generator)):
        with autocast(precision, device):
            logits = model(images)  # (B, 10); bf16 under autocast
            loss = F.cross_entropy(logits, labels)  # float32: autocast runs it in fp32
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        loss_sum += loss.detach() * labels.shape[0]  # NaN/inf from the first bad step on
        correct += (logits.argmax(dim=1) == labels).sum()
        if progress is not None:
            progress.update(1)
            if step % 20 == 0:
                progress.set_postfix(loss=f"{loss.item():.3f}")
        if (step + 1) % CHECK_STEPS == 0 and (why := watch.diverged(loss_sum.item(),
                                                                     (step + 1) * batch_size)):
            return {"diverged": why}
        if interrupted.is_set():
            raise _Interrupted
    n = len(split)
    if why := watch.diverged(loss_sum.item(), n):
        return {"diverged": why}
    return {"train_loss": loss_sum.item() / n, "train_accuracy": correct.item() / n}


@torch.no_grad()
def evaluate_split(model, split: Split, batch_size: int, name: str = "test",
                   precision: str = "fp32") -> dict:
    """Mean loss and accuracy on ``split`` in eval mode (no dropout): {name}_loss and
    {name}_accuracy, in the precision the model trains in (a bf16 run: its bf16 forward pass)."""
    model.eval()
    loss_sum, correct = 0.0, 0
    for images, labels in batches(split, batch_size):
        with autocast(precision, split.images.device):
            logits = model(images)
        # float32: in bf16 (8 significant bits) a batch's summed loss rounds to a multiple of 16
        loss_sum += F.cross_entropy(logits.float(), labels, reduction="sum").item()
        correct += (logits.argmax(dim=1) == labels).sum().item()
    return {f"{name}_loss": loss_sum / len(split), f"{name}_accuracy": correct / len(split)}


def epoch_metrics(model, data: FashionMNIST, train_metrics: dict, cfg: Config) -> dict:
    """The epoch's test metrics, and the clean gap: train accuracy in eval mode (no dropout) on
    a fixed training subset, minus test accuracy. The dropout-on train accuracy of the epoch
    (the textbook's figure) gives ``gap_dropout_on``; heavy dropout makes that one negative."""
    batch_size, precision = cfg.trainer.eval_batch_size, cfg.trainer.precision
    metrics = {**train_metrics, **evaluate_split(model, data.test, batch_size, precision=precision)}
    if data.validation is not None:  # data.validation > 0: the held-out training images
        metrics.update(evaluate_split(model, data.validation, batch_size, "val", precision))
    metrics["gap_dropout_on"] = metrics["train_accuracy"] - metrics["test_accuracy"]
    if cfg.trainer.eval_train_subset:
        subset = data.train.head(cfg.trainer.eval_train_subset)
        metrics.update(evaluate_split(model, subset, batch_size, "train_eval", precision))
        metrics["gap"] = metrics["train_eval_accuracy"] - metrics["test_accuracy"]
    return metrics


@contextmanager
def stop_on_signals():
    """SIGINT/SIGTERM set an event the loop checks after each step (main thread only)."""
    event = threading.Event()
    event.signum = None
    if threading.current_thread() is not threading.main_thread():
        yield event
        return

    def handler(signum, _frame):
        event.signum = signum
        event.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield event
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def config_dict(cfg: Config) -> dict:
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)


def resumable_checkpoint(cfg: Config, run_dir: Path) -> Optional[dict]:
    """The checkpoint ``train(cfg, run_dir, resume=True)`` continues from, refused (ConfigError)
    when ``cfg`` changes what an epoch computes; None when the run died before its first one.

    Call it before anything writes into ``run_dir``: a refused resume leaves the run untouched.
    """
    run_dir = Path(run_dir)
    summary = read_summary(run_dir)  # RunError when run_dir is not a run
    if not (run_dir / CHECKPOINT).is_file():
        if summary.get("epochs_done"):
            raise RunError(f"{run_dir} has {summary['epochs_done']} epochs but no {CHECKPOINT} to "
                           f"resume from (trained with logging.checkpoint=false?); start a new run")
        return None
    checkpoint = load_checkpoint(run_dir)
    saved, wanted = flatten_config(checkpoint.get("config", {})), flatten_config(config_dict(cfg))
    changed = [f"{key}={wanted.get(key)} (the run has {saved[key]})"
               for key in resume_changes(saved, wanted)]
    if changed:
        raise ConfigError(f"cannot resume {run_dir} with {', '.join(changed)}: a resumed run "
                          f"continues the same training (only trainer.epochs, device, threads, "
                          f"data paths and logging may change); start a new run instead")
    return checkpoint


def restore_scheduler(checkpoint: dict, scheduler, run_dir: Path) -> None:
    """The scheduler's position (after ``restore`` loaded the optimiser, whose lr it holds)."""
    if scheduler is None:
        return
    if "scheduler" not in checkpoint:
        raise ConfigError(f"the checkpoint in {run_dir} holds no learning-rate schedule; resume "
                          f"it with the schedule it was started with")
    scheduler.load_state_dict(checkpoint["scheduler"])


def restore(checkpoint: dict, model, optimizer, generator: torch.Generator, run_dir: Path,
            device: torch.device) -> None:
    """Load a checkpoint's weights, optimiser state and RNG states (the shuffle's included)."""
    try:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
    except (RuntimeError, ValueError, KeyError) as error:
        detail = "; ".join(line.strip() for line in str(error).strip().splitlines()[:2])
        raise ConfigError(f"the config does not fit the checkpoint in {run_dir}: "
                          f"{detail}") from None
    set_rng_state(checkpoint["rng"], device, generator)


def scheduler_state(scheduler) -> dict:
    """The checkpoint's scheduler entry: {} for a constant rate (nothing to restore)."""
    return {} if scheduler is None else {"scheduler": scheduler.state_dict()}


def _progress_bar(cfg: Config, total: int, initial: int) -> Optional[Progress]:
    """Batches on a terminal's bar; elsewhere a line per epoch (see progress.py)."""
    if not cfg.trainer.progress:
        return None
    return Progress(total, initial=initial, unit="batch", leave=False)


def train(cfg: Config, run_dir: Path, resume: bool = False,
          data: Optional[FashionMNIST] = None, in_sweep: bool = False) -> RunResult:
    """Train the MLP ``cfg`` describes, logging into ``run_dir``; resume from its checkpoint.

    ``data`` lets a caller that trains several models on the same split load it once;
    ``in_sweep``: the run is a sweep's job (the sweep declares the HParams experiment).
    Another process training into ``run_dir`` at the same time is refused (RunError): two
    writers would interleave their checkpoints.
    """
    run_dir = Path(run_dir)
    with exclusive_dir(run_dir):
        return _train(cfg, run_dir, resume, data, in_sweep)


def _train(cfg: Config, run_dir: Path, resume: bool, data: Optional[FashionMNIST],
           in_sweep: bool) -> RunResult:
    checkpoint = resumable_checkpoint(cfg, run_dir) if resume else None
    if cfg.trainer.num_threads:
        torch.set_num_threads(cfg.trainer.num_threads)
    torch.manual_seed(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)  # the shuffle order, on the CPU
    device = run_device(cfg.trainer)
    check_data_device(data, device)
    precision = cfg.trainer.precision
    model = build_model(cfg.model).to(device)
    optimizer = build_optimizer(cfg.optim, model.parameters())
    # Built before restore(): building a scheduler sets the optimiser's lr, which the
    # checkpoint's optimiser state then puts back where the interrupted run left it.
    scheduler = build_scheduler(cfg.optim.schedule, optimizer,
                                math.ceil(train_size(cfg.data) / cfg.trainer.batch_size),
                                cfg.trainer.epochs)
    config = config_dict(cfg)

    history, start_epoch = [], 1
    if checkpoint is not None:
        restore(checkpoint, model, optimizer, generator, run_dir, device)
        restore_scheduler(checkpoint, scheduler, run_dir)
        history, start_epoch = checkpoint["history"], checkpoint["epoch"] + 1
        if start_epoch > cfg.trainer.epochs and read_summary(run_dir)["status"] == Status.COMPLETED:
            return RunResult(Status.COMPLETED, run_dir, history,  # nothing left to do: as is
                             steady_epochs=cfg.trainer.steady_epochs, trained=False)

    data = data or load_fashion_mnist(cfg.data, device)
    steps_per_epoch = math.ceil(len(data.train) / cfg.trainer.batch_size)
    log = RunLog(run_dir, config, start_epoch, history, cfg.logging.tensorboard,
                 cfg.trainer.steady_epochs, describe_device(device), in_sweep)
    progress = _progress_bar(cfg, steps_per_epoch * cfg.trainer.epochs,
                             steps_per_epoch * (start_epoch - 1))
    # Hooks only when asked for: without them the training loop is untouched.
    activation_stats = ActivationStats(model) if cfg.logging.activation_stats else None
    status, error = Status.COMPLETED, None
    with stop_on_signals() as interrupted:
        try:
            for epoch in range(start_epoch, cfg.trainer.epochs + 1):
                started = time.perf_counter()
                lr = current_lr(optimizer)  # the epoch's first step's
                train_metrics = train_epoch(model, optimizer, data.train, cfg.trainer.batch_size,
                                            generator, progress, interrupted, precision,
                                            scheduler, cfg.trainer.divergence_threshold)
                if train_metrics.get("diverged"):
                    status, error = Status.DIVERGED, f"{train_metrics['diverged']} in epoch {epoch}"
                    break
                metrics = {"epoch": epoch, "lr": lr,
                           **epoch_metrics(model, data, train_metrics, cfg)}
                metrics["epoch_seconds"] = time.perf_counter() - started
                if activation_stats is not None:
                    metrics.update(activation_stats.epoch_metrics())
                log.log_epoch(metrics)
                if cfg.logging.checkpoint:
                    log.save_checkpoint({"model": model.state_dict(),
                                         "optimizer": optimizer.state_dict(),
                                         "rng": rng_state(device, generator), "epoch": epoch,
                                         "config": config, **scheduler_state(scheduler)})
                log.write_summary(Status.RUNNING)  # after the checkpoint: never ahead of it
                if progress is not None:  # a line that stays, above the bar on a terminal
                    progress.note(describe_epoch(metrics, cfg.trainer.epochs))
        except _Interrupted:
            status = Status.INTERRUPTED
            error = f"stopped by {signal.Signals(interrupted.signum).name} after epoch {len(log.history)}"
        except Exception as failure:  # record it, then let the caller decide how loud to be
            # The full disk that failed the run may refuse the summary too: report the cause.
            with suppress(DropoutLabError):
                log.close(Status.FAILED, one_line(failure))
            raise
        finally:
            if progress is not None:
                progress.close()
        log.close(status, error)  # with the handlers still on: a signal now cannot cut it short
    return RunResult(status, run_dir, log.history, error, interrupted.signum,
                     cfg.trainer.steady_epochs)
