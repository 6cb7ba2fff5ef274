"""dropout_lab/divergence.py: a run whose training loss becomes NaN, or grows past
trainer.divergence_threshold, ends diverged with the value that tripped it; a healthy run never
does (every exercise at --quick completes: tests/exercises/test_exercises.py; the margins of full runs are
measured in the README's Reliability section)."""

import math

import pytest

from conftest import run_cli
from dropout_lab.divergence import LossWatch
from dropout_lab.run_folder import read_summary


def test_nan_or_infinite_loss_diverges_with_or_without_a_threshold():
    assert LossWatch(None).diverged(math.nan, 256) == "loss became NaN or infinite"
    assert LossWatch(100.0).diverged(math.inf, 256) == "loss became NaN or infinite"


def test_a_window_past_the_threshold_diverges_with_its_value():
    watch = LossWatch(100.0)
    assert watch.diverged(2.3 * 6400, 6400) is None  # the first 25 steps at chance
    # The next window's mean is (2.3*6400 + 150*6400 - 2.3*6400) / 6400 = 150.
    assert watch.diverged(2.3 * 6400 + 150 * 6400, 12800) == (
        "training loss 150 exceeded trainer.divergence_threshold=100")


def test_the_window_is_the_steps_since_the_last_check_not_the_epoch_so_far():
    # One bad window (mean 120, tripping) then a healthy one: the second is judged alone, at
    # its own mean 0.5, though the epoch's mean so far (60.25) is still high.
    watch = LossWatch(100.0)
    assert watch.diverged(120 * 100, 100) is not None
    assert watch.diverged(120 * 100 + 0.5 * 100, 200) is None
    assert LossWatch(None).diverged(1e30, 1) is None  # null: NaN/inf only


@pytest.mark.slow
def test_an_exploding_but_finite_run_ends_diverged(tmp_path):
    """Issue 24's case: at lr 1e6 the loss reaches ~4.6e14 and stays finite; the run used to
    end completed with chance accuracy. Now it is diverged, in epoch 1, with the value."""
    run_dir = tmp_path / "run"
    done = run_cli("train", "optim.lr=1e6", "data.subset=512", "data.test_subset=512",
                   "trainer.epochs=1", "trainer.num_threads=1", f"hydra.run.dir={run_dir}")
    assert done.returncode == 1, done.stderr
    summary = read_summary(run_dir)
    assert summary["status"] == "diverged"
    assert "exceeded trainer.divergence_threshold=100000 in epoch 1" in summary["error"]
    value = float(summary["error"].split("training loss ")[1].split()[0])
    assert 1e12 < value < math.inf  # finite: only the threshold catches it
    assert "Traceback" not in done.stderr
