"""dropout_lab/checkpoint.py: what a checkpoint holds (round trip, restore), the atomic write, the
weights_only read, the resume check and removal. No training: a tiny model and optimiser stand in
for a run's (bit-exact resume of real runs: end_to_end/test_reliability.py, test_optim.py)."""

import os
import pickle
import resource

import pytest
import torch

from conftest import assert_same_tensors
from dropout_lab.checkpoint import (Checkpoint, TrainingState, has_checkpoint, read_checkpoint,
                                    remove_checkpoint, save_checkpoint, verify_checkpoint)
from dropout_lab.config import Config, config_dict
from dropout_lab.disk import TEMP_SUFFIX
from dropout_lab.errors import ConfigError, RunError
from dropout_lab.optim import build_scheduler

CPU = torch.device("cpu")


def training_state(seed: int, schedule: str = "cosine") -> TrainingState:
    """A small model, Adam (state to restore), a scheduler and a shuffle generator, seeded."""
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Dropout(0.5), torch.nn.Linear(3, 2))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    cfg = Config()
    cfg.optim.schedule.name = schedule
    scheduler = build_scheduler(cfg.optim.schedule, optimizer, steps_per_epoch=5, epochs=4)
    return TrainingState(model, optimizer, scheduler, torch.Generator().manual_seed(seed), CPU)


def step(state: TrainingState) -> None:
    """One training step with dropout on: moves weights, Adam's moments, the rate and the RNG."""
    state.model.train()
    loss = state.model(torch.randn(8, 4, generator=state.generator)).square().mean()
    state.optimizer.zero_grad()
    loss.backward()
    state.optimizer.step()
    state.scheduler.step()


def taken(state: TrainingState, epoch: int = 1) -> Checkpoint:
    return Checkpoint.take(state, epoch, [{"epoch": epoch, "test_accuracy": 0.5}],
                           config_dict(Config()))


def test_contents_round_trip_and_restore_continues_the_same_run(tmp_path):
    state = training_state(seed=1)
    for _ in range(3):
        step(state)
    saved = taken(state, epoch=3)
    save_checkpoint(tmp_path, saved)
    read = read_checkpoint(tmp_path)
    for part in ("model", "optimizer", "rng", "epoch", "history", "config", "scheduler"):
        assert_same_tensors(getattr(read, part), getattr(saved, part))

    # The run goes on one step; a fresh state of another seed, restored, takes the same step.
    step(state)
    expected = taken(state, epoch=4)
    other = training_state(seed=2)
    read.restore(other, tmp_path)  # torch's global RNG too: back to where the checkpoint was
    step(other)
    for part in ("model", "optimizer", "rng", "scheduler"):
        assert_same_tensors(getattr(taken(other, epoch=4), part), getattr(expected, part))
    assert other.optimizer.param_groups[0]["lr"] != 0.01  # the cosine schedule did move


def test_constant_rate_holds_no_scheduler_and_a_schedule_needs_one(tmp_path):
    constant = training_state(seed=1, schedule="constant")
    assert constant.scheduler is None
    save_checkpoint(tmp_path, taken(constant))
    assert read_checkpoint(tmp_path).scheduler is None
    with pytest.raises(ConfigError, match="holds no learning-rate schedule"):
        read_checkpoint(tmp_path).restore(training_state(seed=1), tmp_path)


def test_restore_into_another_model_is_one_config_error(tmp_path):
    save_checkpoint(tmp_path, taken(training_state(seed=1)))
    state = training_state(seed=1)
    state.model[0] = torch.nn.Linear(4, 5)  # another width than the checkpoint's
    with pytest.raises(ConfigError, match="the config does not fit the checkpoint") as error:
        read_checkpoint(tmp_path).restore(state, tmp_path)
    assert "\n" not in str(error.value)


def test_failed_write_leaves_the_previous_checkpoint_whole(tmp_path):
    """RLIMIT_FSIZE makes the second save's write fail halfway (EFBIG), as a full disk would;
    the first checkpoint stays as it was and no temp file is left."""
    state = training_state(seed=1)
    first = taken(state, epoch=1)
    save_checkpoint(tmp_path, first)
    size = (tmp_path / "checkpoint.pt").stat().st_size
    state.model[0] = torch.nn.Linear(4, 4096)  # a second checkpoint far larger than the limit
    second = taken(state, epoch=2)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (2 * size, hard))  # SIGXFSZ: Python ignores it
    try:
        with pytest.raises(RunError, match="cannot write .*checkpoint.pt: File too large"):
            save_checkpoint(tmp_path, second)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    kept = read_checkpoint(tmp_path)
    assert kept.epoch == 1
    assert_same_tensors(kept.model, first.model)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["checkpoint.pt"]


class RunsCode:
    """Unpickling it would run a shell command (what a malicious checkpoint does)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_checkpoint_that_would_run_code_is_refused_not_run(tmp_path):
    marker = tmp_path / "code-ran"
    save_checkpoint(tmp_path, taken(training_state(seed=1)))
    contents = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    contents["model"] = RunsCode(marker)
    torch.save(contents, tmp_path / "checkpoint.pt")
    with pytest.raises(pickle.UnpicklingError):  # sanity: torch's refusal, beneath ours
        torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    with pytest.raises(RunError, match=r"checkpoint.pt cannot be read \(UnpicklingError\)"):
        read_checkpoint(tmp_path)
    assert not marker.exists()


def test_a_file_that_is_not_a_checkpoint_is_refused(tmp_path):
    torch.save({"model": {}, "epoch": 1}, tmp_path / "checkpoint.pt")  # fields missing
    with pytest.raises(RunError, match=r"cannot be read \(TypeError\); start the run anew"):
        read_checkpoint(tmp_path)
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(RunError, match="cannot be read"):
        read_checkpoint(tmp_path)


def test_verify_refuses_a_changed_config_in_one_line(tmp_path):
    checkpoint = taken(training_state(seed=1))
    changed = Config()
    changed.model.hidden = [64, 64]
    changed.seed = 7
    with pytest.raises(ConfigError) as error:
        verify_checkpoint(checkpoint, changed, tmp_path)
    line = str(error.value)
    assert "\n" not in line
    assert line.startswith(f"cannot resume {tmp_path} with ")
    assert "model.hidden=[64, 64] (the run has [256, 256])" in line and "seed=7" in line


def test_verify_allows_where_and_how_long_but_not_a_schedules_length(tmp_path):
    checkpoint = taken(training_state(seed=1))
    allowed = Config()
    allowed.trainer.epochs, allowed.trainer.num_threads = 50, 1
    allowed.logging.tensorboard = False
    verify_checkpoint(checkpoint, allowed, tmp_path)  # raises nothing

    cosine = Config()
    cosine.optim.schedule.name = "cosine"
    checkpoint.config = config_dict(cosine)
    cosine.trainer.epochs += 1
    with pytest.raises(ConfigError, match=r"trainer\.epochs="):
        verify_checkpoint(checkpoint, cosine, tmp_path)


def test_verify_counts_keys_the_schema_gained_since_as_their_defaults(tmp_path):
    """A run saved before trainer.divergence_threshold existed resumes under today's schema;
    a real change of such a key is still refused."""
    checkpoint = taken(training_state(seed=1))
    del checkpoint.config["trainer"]["divergence_threshold"]
    verify_checkpoint(checkpoint, Config(), tmp_path)  # raises nothing
    changed = Config()
    changed.trainer.divergence_threshold = 10.0
    with pytest.raises(ConfigError, match=r"trainer\.divergence_threshold=10\.0"):
        verify_checkpoint(checkpoint, changed, tmp_path)


def test_remove_deletes_the_checkpoint_and_unfinished_saves(tmp_path):
    save_checkpoint(tmp_path, taken(training_state(seed=1)))
    leftover = tmp_path / f".checkpoint.pt.abc123{TEMP_SUFFIX}"  # a save killed halfway
    leftover.write_bytes(b"half")
    (tmp_path / "summary.json").write_text("{}")
    assert has_checkpoint(tmp_path)
    remove_checkpoint(tmp_path)
    assert not has_checkpoint(tmp_path)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["summary.json"]
    remove_checkpoint(tmp_path)  # nothing to remove: no error
    with pytest.raises(RunError, match="has no checkpoint.pt"):
        read_checkpoint(tmp_path)
