"""The one training core: ``train(cfg, run_dir)``. Single runs, sweeps, exercises and tests
all call it; it writes everything into ``run_dir`` and never into the working directory.

The loop lives here: an epoch (``train_epoch``), its evaluation (``epoch_metrics``), and the run
(``_train``: build, resume, the epochs, close). What a checkpoint holds and whether a resume may
continue is checkpoint.py's, the optimiser and schedule optim.py's, Ctrl-C/SIGTERM signals.py's."""

import math
import threading
import time
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

import torch
import torch.nn.functional as F

from dropout_lab.activations import ActivationStats
from dropout_lab.checkpoint import (Checkpoint, TrainingState, remove_unfinished_saves,
                                    resumable_checkpoint, save_checkpoint)
from dropout_lab.config import Config, config_dict
from dropout_lab.device import autocast, check_data_device, describe_device, run_device
from dropout_lab.data import FashionMNIST, Split, batches, load_fashion_mnist, train_size
from dropout_lab.divergence import CHECK_STEPS, LossWatch
from dropout_lab.errors import DropoutLabError, one_line
from dropout_lab.disk import exclusive_dir
from dropout_lab.model import build_model
from dropout_lab.optim import build_optimizer, build_scheduler, current_lr
from dropout_lab.progress import Progress, describe_epoch
from dropout_lab.run_folder import STEADY_EPOCHS, Status, read_summary
from dropout_lab.run_log import RunLog
from dropout_lab.signals import Interrupted, signal_name, stop_on_signals



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
            raise Interrupted
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
    checkpoint = resumable_checkpoint(cfg, run_dir) if resume else None  # before any write
    if cfg.trainer.num_threads:
        torch.set_num_threads(cfg.trainer.num_threads)
    state = training_state(cfg, data)
    history, start_epoch = [], 1
    if checkpoint is not None:
        checkpoint.restore(state, run_dir)
        history, start_epoch = checkpoint.history, checkpoint.epoch + 1
        if start_epoch > cfg.trainer.epochs and read_summary(run_dir)["status"] == Status.COMPLETED:
            return RunResult(Status.COMPLETED, run_dir, history,  # nothing left to do: as is
                             steady_epochs=cfg.trainer.steady_epochs, trained=False)

    data = data or load_fashion_mnist(cfg.data, state.device)
    steps_per_epoch = math.ceil(len(data.train) / cfg.trainer.batch_size)
    remove_unfinished_saves(run_dir)  # left by a process killed while saving
    log = RunLog(run_dir, config_dict(cfg), start_epoch, history, cfg.logging.tensorboard,
                 cfg.trainer.steady_epochs, describe_device(state.device), in_sweep)
    progress = _progress_bar(cfg, steps_per_epoch * cfg.trainer.epochs,
                             steps_per_epoch * (start_epoch - 1))
    with stop_on_signals() as interrupted:
        try:
            status, error = run_epochs(cfg, state, data, log, progress, interrupted, start_epoch)
        except Interrupted:
            status = Status.INTERRUPTED
            error = f"stopped by {signal_name(interrupted.signum)} after epoch {len(log.history)}"
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


def training_state(cfg: Config, data: Optional[FashionMNIST]) -> TrainingState:
    """The run's model, optimiser, scheduler and shuffle generator on its device, as ``cfg.seed``
    makes them; a resume then restores its checkpoint into them."""
    torch.manual_seed(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)  # the shuffle order, on the CPU
    device = run_device(cfg.trainer)
    check_data_device(data, device)
    model = build_model(cfg.model).to(device)
    optimizer = build_optimizer(cfg.optim, model.parameters())
    # Built before a restore: building a scheduler sets the optimiser's lr, which the
    # checkpoint's optimiser state then puts back where the interrupted run left it.
    scheduler = build_scheduler(cfg.optim.schedule, optimizer,
                                math.ceil(train_size(cfg.data) / cfg.trainer.batch_size),
                                cfg.trainer.epochs)
    return TrainingState(model, optimizer, scheduler, generator, device)


def run_epochs(cfg: Config, state: TrainingState, data: FashionMNIST, log: RunLog,
               progress: Optional[Progress], interrupted: threading.Event,
               start_epoch: int) -> tuple:
    """Train epochs ``start_epoch`` to trainer.epochs, each logged, then checkpointed, then in
    the summary; (status, error): completed, or diverged and why. Raises Interrupted."""
    # Hooks only when asked for: without them the training loop is untouched.
    activation_stats = ActivationStats(state.model) if cfg.logging.activation_stats else None
    for epoch in range(start_epoch, cfg.trainer.epochs + 1):
        started = time.perf_counter()
        lr = current_lr(state.optimizer)  # the epoch's first step's
        train_metrics = train_epoch(state.model, state.optimizer, data.train,
                                    cfg.trainer.batch_size, state.generator, progress,
                                    interrupted, cfg.trainer.precision, state.scheduler,
                                    cfg.trainer.divergence_threshold)
        if train_metrics.get("diverged"):
            return Status.DIVERGED, f"{train_metrics['diverged']} in epoch {epoch}"
        metrics = {"epoch": epoch, "lr": lr,
                   **epoch_metrics(state.model, data, train_metrics, cfg)}
        metrics["epoch_seconds"] = time.perf_counter() - started
        if activation_stats is not None:
            metrics.update(activation_stats.epoch_metrics())
        log.log_epoch(metrics)
        if cfg.logging.checkpoint:
            save_checkpoint(log.run_dir, Checkpoint.take(state, epoch, log.history, log.config))
        log.write_summary(Status.RUNNING)  # after the checkpoint: never ahead of it
        if progress is not None:  # a line that stays, above the bar on a terminal
            progress.note(describe_epoch(metrics, cfg.trainer.epochs))
    return Status.COMPLETED, None
