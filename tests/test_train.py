"""The training core ``train(cfg, run_dir)`` on the real data with a tiny budget (slow), and
single steps of the epoch loop and of the benchmark's hand-written floor (fast)."""

import math
import subprocess
import sys

import pytest
import torch

from conftest import REPO, TINY, read_events, read_hparams, results
from dropout_lab.hydra_runner import compose, typed_config
from dropout_lab.messages import run_exit_code
from dropout_lab.run_folder import read_summary
from dropout_lab.checkpoint import read_checkpoint
from dropout_lab.train import train

METRICS = ("train_loss", "train_accuracy", "test_loss", "test_accuracy", "gap", "epoch_seconds")


def tiny_config(*overrides):
    return typed_config(compose([*TINY, *overrides]))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One tiny run (2 epochs on 1000 images), started from an empty working directory."""
    cwd = tmp_path_factory.mktemp("cwd")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(cwd)
        result = train(tiny_config(), tmp_path_factory.mktemp("run"))
    return result, cwd


@pytest.mark.slow
def test_tiny_run_completes_with_finite_metrics(tiny_run):
    result, _ = tiny_run
    assert result.status == "completed" and result.error is None
    assert [row["epoch"] for row in result.history] == [1, 2]
    for row in result.history:
        assert all(math.isfinite(row[key]) for key in METRICS)
        assert 0 <= row["train_accuracy"] <= 1 and 0 <= row["test_accuracy"] <= 1
        assert row["gap"] == pytest.approx(row["train_eval_accuracy"] - row["test_accuracy"])
        assert row["gap_dropout_on"] == pytest.approx(row["train_accuracy"] - row["test_accuracy"])
    # It learns: chance level is loss ln(10) = 2.30 and accuracy 0.1.
    assert result.final["train_loss"] < result.history[0]["train_loss"] < math.log(10)
    assert result.final["test_accuracy"] > 0.2  # twice chance, after only 8 SGD steps
    assert run_exit_code(result) == 0


@pytest.mark.slow
def test_steady_metric_is_the_mean_of_the_last_epochs(tiny_run):
    result, _ = tiny_run
    steady = read_summary(result.run_dir)["steady"]
    tests = [row["test_accuracy"] for row in result.history]
    assert steady["epochs"] == 2  # trainer.steady_epochs = 3, but the run has only 2
    assert steady["test_accuracy"] == pytest.approx(sum(tests) / 2)
    assert steady["gap"] == pytest.approx(sum(row["gap"] for row in result.history) / 2)


@pytest.mark.slow
def test_clean_gap_measurement_leaves_training_unchanged(tiny_run, tmp_path):
    """The eval-mode pass over the training subset draws no random numbers: with it off, the
    run's dropout masks and shuffles, hence its numbers, are the same to the last bit."""
    result, _ = tiny_run
    off = train(tiny_config("trainer.eval_train_subset=0"), tmp_path / "off")
    assert "gap" not in off.final and "train_eval_accuracy" not in off.final
    keys = ("train_loss", "train_accuracy", "test_loss", "test_accuracy", "gap_dropout_on")
    assert [[row[k] for k in keys] for row in off.history] == \
        [[row[k] for k in keys] for row in result.history]


@pytest.mark.slow
def test_run_folder_holds_summary_checkpoint_and_events(tiny_run):
    result, cwd = tiny_run
    names = sorted(p.name for p in result.run_dir.iterdir())
    events = [name for name in names if name.startswith("events.out.tfevents.")]
    assert len(events) == 1  # one event file: the hparams went into the run's own file
    assert sorted(set(names) - set(events)) == ["checkpoint.pt", "summary.json"]
    summary = read_summary(result.run_dir)
    assert summary["status"] == "completed" and summary["epochs_done"] == 2
    assert summary["history"] == result.history
    assert summary["final"] == result.history[-1]
    assert summary["best"]["test_accuracy"] == max(r["test_accuracy"] for r in result.history)
    assert summary["config"]["data"]["subset"] == 1000
    assert list(cwd.iterdir()) == []  # train() writes into run_dir only, never the cwd


@pytest.mark.slow
def test_same_seed_gives_identical_numbers_and_weights(tiny_run, tmp_path):
    first, _ = tiny_run
    again = train(tiny_config(), tmp_path)
    assert results(again.history) == results(first.history)
    first_weights = read_checkpoint(first.run_dir).model
    again_weights = read_checkpoint(again.run_dir).model
    assert first_weights.keys() == again_weights.keys()
    assert all(torch.equal(first_weights[k], again_weights[k]) for k in first_weights)


@pytest.mark.slow
def test_another_seed_gives_other_numbers(tiny_run, tmp_path):
    first, _ = tiny_run
    other = train(tiny_config("seed=1"), tmp_path)
    assert other.status == "completed"
    assert results(other.history) != results(first.history)


@pytest.mark.slow
def test_divergence_stops_the_run_and_is_recorded(tmp_path):
    # lr = 1e6 overflows the weights within the first steps: the loss becomes NaN in epoch 1.
    result = train(tiny_config("optim.lr=1e6", "trainer.epochs=3"), tmp_path)
    assert result.status == "diverged"
    assert "NaN or infinite" in result.error
    assert len(result.history) < 3  # stopped early instead of training on garbage
    assert run_exit_code(result) == 1
    summary = read_summary(tmp_path)
    assert summary["status"] == "diverged" and "NaN" in summary["error"]
    assert read_hparams(read_events(tmp_path))["status"] == "diverged"


class StepCounter:
    """Stands where the progress bar goes: counts the steps ``train_epoch`` took."""

    steps = 0

    def update(self, n):
        self.steps += n

    def set_postfix(self, **_):
        pass


def test_divergence_is_caught_within_the_check_interval():
    # 4000 images at batch 16: 250 steps. lr = 1e6 gives NaN within the first steps, so the
    # epoch must stop at the first check, after CHECK_STEPS steps, not at its end.
    import threading

    from dropout_lab.data import load_fashion_mnist
    from dropout_lab.model import build_model
    from dropout_lab.divergence import CHECK_STEPS
    from dropout_lab.optim import build_optimizer
    from dropout_lab.train import train_epoch

    cfg = tiny_config("optim.lr=1e6", "data.subset=4000")
    data = load_fashion_mnist(cfg.data, torch.device("cpu"))
    model = build_model(cfg.model)
    counter = StepCounter()
    result = train_epoch(model, build_optimizer(cfg.optim, model.parameters()), data.train, 16,
                         torch.Generator().manual_seed(0), counter, threading.Event())
    assert result == {"diverged": "loss became NaN or infinite"}
    assert counter.steps == CHECK_STEPS < len(data.train) // 16


@pytest.mark.slow
def test_benchmark_script_runs(tmp_path):
    """scripts/bench_train.py on a tiny budget runs and prints its ratio (no timing asserted)."""
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "bench_train.py"), "--rounds", "1",
         "--skip-textbook", "--floor", "data.subset=512", "data.test_subset=256",
         "trainer.num_threads=1"],
        capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "ratio" in result.stdout and "torch.mm only" in result.stdout
    assert "(c) the floor" in result.stdout and "x this floor" in result.stdout
    assert list(tmp_path.iterdir()) == []


def test_benchmark_floor_step_is_the_same_sgd_step_as_autograd():
    """The hand-written epoch of bench_train.py (c) computes what train_epoch does: one step
    from the same weights gives the same loss and the same new weights (dropout off)."""
    sys.path.insert(0, str(REPO / "scripts"))
    from bench_train import FloorEpoch

    from dropout_lab.data import load_fashion_mnist
    from dropout_lab.model import build_model
    from dropout_lab.optim import build_optimizer

    cfg = tiny_config("model.dropout.kind=none")
    data = load_fashion_mnist(cfg.data, torch.device("cpu"))
    images, labels = data.train.images[:64], data.train.labels[:64]
    floor = FloorEpoch(cfg, data)
    torch.manual_seed(cfg.seed)  # as FloorEpoch does: the same initial weights
    model = build_model(cfg.model)
    optimizer = build_optimizer(cfg.optim, model.parameters())
    loss = torch.nn.functional.cross_entropy(model(images), labels)
    loss.backward()
    optimizer.step()

    floor_loss, _ = floor.step(images, labels, cfg.optim.lr)
    assert floor_loss.item() == pytest.approx(loss.item() * 64, rel=1e-5)
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    for weight, bias, linear in zip(floor.weights, floor.biases, linears):
        torch.testing.assert_close(weight, linear.weight.detach(), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(bias, linear.bias.detach(), rtol=1e-5, atol=1e-6)
