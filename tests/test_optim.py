"""Learning-rate schedules (optim.schedule): the rate step by step for each kind, an exact
restore from a checkpoint, the config, and a tiny run that logs the rate. Bad values: rows of
tests/end_to_end/test_bad_input.py's table."""

import io
import math

import pytest
import torch

from conftest import TINY, read_events, run_cli
from dropout_lab.config import ScheduleConfig
from dropout_lab.errors import ConfigError
from dropout_lab.hydra_runner import compose, typed_config
from dropout_lab.run_folder import read_summary
from dropout_lab.checkpoint import read_checkpoint, resumable_checkpoint
from dropout_lab.optim import build_scheduler
from dropout_lab.train import train

STEPS_PER_EPOCH, EPOCHS, LR = 4, 5, 1.0


def make(cfg: ScheduleConfig, lr: float = LR, momentum: float = 0.9):
    """An SGD optimiser on one parameter and the scheduler ``cfg`` builds for it."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(3))], lr=lr, momentum=momentum)
    return optimizer, build_scheduler(cfg, optimizer, STEPS_PER_EPOCH, EPOCHS)


def rates(optimizer, scheduler, steps: int) -> list:
    """The rate of each of the next ``steps`` steps, stepping as train_epoch does."""
    seen = []
    for _ in range(steps):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
    return seen


def schedule_rates(**kwargs) -> list:
    return rates(*make(ScheduleConfig(**kwargs)), STEPS_PER_EPOCH * EPOCHS)


def test_constant_without_warmup_builds_no_scheduler():
    """The default leaves the optimiser untouched: the textbook run stays bit-identical."""
    optimizer, scheduler = make(ScheduleConfig())
    assert scheduler is None
    assert "initial_lr" not in optimizer.param_groups[0]


def test_warmup_rises_linearly_then_holds():
    seen = schedule_rates(warmup_epochs=1)
    assert seen[:4] == pytest.approx([0.25, 0.4375, 0.625, 0.8125])  # from lr/4 up, per step
    assert seen[4:] == pytest.approx([LR] * 16)


def test_cosine_decays_from_lr_to_min_lr_after_the_warmup():
    seen = schedule_rates(name="cosine", warmup_epochs=1, min_lr=0.1)
    decay = seen[4:]  # 16 steps of cosine after 4 of warm-up
    expected = [0.1 + 0.9 * (1 + math.cos(math.pi * t / 16)) / 2 for t in range(16)]
    assert decay == pytest.approx(expected)
    assert all(a > b for a, b in zip(decay, decay[1:]))


def test_step_decays_at_epoch_boundaries():
    seen = schedule_rates(name="step", step_size=2, gamma=0.5)
    per_epoch = [seen[i:i + STEPS_PER_EPOCH] for i in range(0, len(seen), STEPS_PER_EPOCH)]
    assert all(len(set(epoch)) == 1 for epoch in per_epoch)  # one rate within an epoch
    assert [epoch[0] for epoch in per_epoch] == pytest.approx([1, 1, 0.5, 0.5, 0.25])


def test_onecycle_peaks_at_max_lr_and_keeps_the_momentum():
    optimizer, scheduler = make(ScheduleConfig(name="onecycle", max_lr=2.0, pct_start=0.25))
    seen = rates(optimizer, scheduler, STEPS_PER_EPOCH * EPOCHS)
    assert seen[0] == pytest.approx(2.0 / 25)  # torch's div_factor
    # The peak at step pct_start * total - 1 = 4 (torch counts the rise's steps from 0).
    assert max(seen) == pytest.approx(2.0) and seen.index(max(seen)) == 4
    assert seen[-1] < seen[0]
    assert optimizer.param_groups[0]["momentum"] == 0.9  # cycle_momentum=False


def test_onecycle_peak_defaults_to_optim_lr():
    assert max(rates(*make(ScheduleConfig(name="onecycle"), lr=0.3), 20)) == pytest.approx(0.3)


@pytest.mark.parametrize("kwargs", [
    dict(warmup_epochs=2), dict(name="cosine"), dict(name="cosine", warmup_epochs=1.5),
    dict(name="step", step_size=1, gamma=0.7, warmup_epochs=1), dict(name="onecycle"),
], ids=lambda kwargs: "-".join(f"{k}={v}" for k, v in kwargs.items()))
def test_a_restored_scheduler_continues_exactly(kwargs):
    """Interrupted after 7 steps, saved and loaded as a checkpoint is (weights_only), rebuilt
    and restored in train()'s order (scheduler built, optimiser state, scheduler state): the
    same rates, bit for bit, as without the interruption."""
    cfg = ScheduleConfig(**kwargs)
    total = STEPS_PER_EPOCH * EPOCHS
    left_alone = rates(*make(cfg), total)

    optimizer, scheduler = make(cfg)
    before = rates(optimizer, scheduler, 7)
    buffer = io.BytesIO()
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)

    optimizer, scheduler = make(cfg)
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    assert before + rates(optimizer, scheduler, total - 7) == left_alone


# --- the config (bad values: tests/end_to_end/test_bad_input.py's table) --------------------------------

def test_schedule_overrides_compose():
    cfg = typed_config(compose(["optim.schedule.name=cosine", "optim.schedule.warmup_epochs=2"]))
    assert (cfg.optim.schedule.name, cfg.optim.schedule.warmup_epochs) == ("cosine", 2)
    assert typed_config(compose([])).optim.schedule == ScheduleConfig()  # constant by default


# --- runs -----------------------------------------------------------------------------------------

SCHEDULED = [*TINY, "trainer.epochs=3", "optim.schedule.name=cosine",
             "optim.schedule.warmup_epochs=1", "optim.lr=0.2"]


@pytest.mark.slow
def test_scheduled_run_logs_each_epochs_rate_and_checkpoints_the_schedule(tmp_path):
    result = train(typed_config(compose(SCHEDULED)), tmp_path)
    assert result.status == "completed"
    steps = math.ceil(1000 / 256)  # 4 steps per epoch: 4 of warm-up, then 8 of cosine
    expected = [0.2 / steps, 0.2, 0.2 * (1 + math.cos(math.pi * steps / (2 * steps))) / 2]
    assert [row["lr"] for row in result.history] == pytest.approx(expected)
    events = read_events(tmp_path)
    assert [p.value for p in events.Scalars("optim/lr")] == pytest.approx(expected)
    assert read_checkpoint(tmp_path).scheduler["last_epoch"] == 3 * steps
    assert read_summary(tmp_path)["config"]["optim"]["schedule"]["name"] == "cosine"


@pytest.mark.slow
def test_default_run_logs_the_constant_rate_and_no_scheduler(tmp_path):
    result = train(typed_config(compose(TINY)), tmp_path)
    assert [row["lr"] for row in result.history] == [0.5, 0.5]
    assert read_checkpoint(tmp_path).scheduler is None


@pytest.mark.slow
def test_resume_that_would_stretch_a_cosine_schedule_is_refused(tmp_path):
    train(typed_config(compose(SCHEDULED)), tmp_path)
    with pytest.raises(ConfigError, match=r"trainer.epochs=5 \(the run has 3\)"):
        resumable_checkpoint(typed_config(compose([*SCHEDULED, "trainer.epochs=5"])), tmp_path)


@pytest.mark.slow
def test_resume_may_train_a_step_schedule_longer(tmp_path):
    step = [*TINY, "optim.schedule.name=step", "optim.schedule.step_size=1"]
    train(typed_config(compose(step)), tmp_path)
    longer = typed_config(compose([*step, "trainer.epochs=3"]))
    assert resumable_checkpoint(longer, tmp_path) is not None
    result = train(longer, tmp_path, resume=True)
    assert [row["lr"] for row in result.history] == pytest.approx([0.5, 0.05, 0.005])


@pytest.mark.slow
def test_train_accepts_the_strong_recipe(tmp_path):
    """``dropout-lab train experiment=strong`` is one run (here with a tiny budget on top)."""
    run_dir = tmp_path / "run"
    result = run_cli("train", "experiment=strong", *TINY, f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr
    config = read_summary(run_dir)["config"]
    assert config["optim"]["schedule"]["name"] != "constant" and config["data"]["standardize"]
    assert config["model"]["hidden"] == [256, 256]
