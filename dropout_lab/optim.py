"""The optimiser and the learning-rate schedule a run's config asks for (optim.* and
optim.schedule.*), built fresh for every run; the training loop (train.py) steps them and the
checkpoint (checkpoint.py) saves and restores their state."""

import torch

from dropout_lab.config import OptimConfig, ScheduleConfig


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
