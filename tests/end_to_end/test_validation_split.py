"""The validation split (data.validation): held out from the training images by a fixed
permutation, evaluated each epoch, in the steady metrics, and what a search tunes on. Bad
sizes: rows of tests/end_to_end/test_bad_input.py's table."""

import math

import pytest
import torch

from conftest import TINY, read_events
from dropout_lab.config import DataConfig
from dropout_lab.data import load_fashion_mnist, load_raw, train_size, validation_split
from dropout_lab.hydra_runner import compose, typed_config
from dropout_lab.run_folder import read_summary
from dropout_lab.sweep.job import objective
from dropout_lab.train import train

CPU = torch.device("cpu")


def test_split_is_a_fixed_partition_of_the_training_images():
    kept, held_out = validation_split(60000, 10000)
    assert len(kept) == 50000 and len(held_out) == 10000
    assert torch.equal(torch.sort(torch.cat([kept, held_out])).values, torch.arange(60000))
    assert torch.equal(kept, torch.sort(kept).values)  # training images keep their order
    again_kept, again_held_out = validation_split(60000, 10000)  # no seed: the same every time
    assert torch.equal(kept, again_kept) and torch.equal(held_out, again_held_out)
    assert held_out[:5].tolist() != list(range(5))  # drawn, not the first or last images
    assert validation_split(60000, 0) == (None, None)


def test_a_smaller_split_is_part_of_a_larger_one():
    """The last N of one permutation: validation=1000 holds out a subset of validation=10000."""
    small, large = validation_split(60000, 1000)[1], validation_split(60000, 10000)[1]
    assert set(small.tolist()) <= set(large.tolist())


def test_loaded_splits_hold_the_right_images():
    config = DataConfig(validation=10000, subset=20000)
    data = load_fashion_mnist(config, CPU)
    raw = load_raw(config)
    kept, held_out = validation_split(60000, 10000)
    assert len(data.train) == 20000 == train_size(config)  # data.subset counts the rest
    assert len(data.validation) == 10000 and len(data.test) == 10000
    assert torch.equal(data.validation.labels, raw["train_labels"][held_out].long())
    assert torch.equal(data.train.images[:3] * 255,
                       raw["train_images"][kept[:3]].reshape(3, -1).float())


def test_validation_off_leaves_the_training_images_as_they_were():
    data = load_fashion_mnist(DataConfig(subset=500), CPU)
    raw = load_raw(DataConfig())
    assert data.validation is None
    assert torch.equal(data.train.images * 255, raw["train_images"][:500].reshape(500, -1).float())
    assert train_size(DataConfig()) == 60000 and train_size(DataConfig(validation=10000)) == 50000


def test_standardize_uses_the_remaining_training_images_only():
    data = load_fashion_mnist(DataConfig(validation=10000, standardize=True), CPU)
    assert abs(data.train.images.mean().item()) < 1e-4
    assert abs(data.train.images.std().item() - 1) < 1e-4
    assert abs(data.validation.images.mean().item()) < 0.05  # the same transform, other images


@pytest.mark.slow
def test_run_with_validation_logs_it_each_epoch_and_in_the_steady_metrics(tmp_path):
    result = train(typed_config(compose([*TINY, "data.validation=2000"])), tmp_path)
    assert result.status == "completed"
    for row in result.history:
        assert 0 <= row["val_accuracy"] <= 1 and math.isfinite(row["val_loss"])
    summary = read_summary(tmp_path)
    mean = sum(row["val_accuracy"] for row in result.history) / 2
    assert summary["steady"]["val_accuracy"] == pytest.approx(mean)
    assert summary["config"]["data"]["validation"] == 2000
    events = read_events(tmp_path)
    assert [p.step for p in events.Scalars("accuracy/val")] == [1, 2]
    assert [p.step for p in events.Scalars("loss/val")] == [1, 2]
    assert objective(summary["steady"]) == summary["steady"]["val_accuracy"]


def test_objective_is_steady_validation_accuracy_else_steady_test_accuracy():
    assert objective({"val_accuracy": 0.8, "test_accuracy": 0.9}) == 0.8  # tune on validation
    assert objective({"test_accuracy": 0.9}) == 0.9  # no validation split: as before
    assert objective(None) == -math.inf  # failed or diverged
    assert objective({"val_accuracy": float("nan")}) == -math.inf
