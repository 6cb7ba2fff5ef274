"""The CUDA path on a real GPU (`pytest -m cuda`; skipped without one; sized for about 2 minutes
there): every dropout kind in fp32 and bf16, identical reruns, exact resume, a GPU run continued
and evaluated on the CPU, a parallel sweep sharing one GPU. scripts/gpu_check.sh runs these on
a lent GPU machine."""

import json

import pytest
import torch

from conftest import TINY, results, run_cli
from dropout_lab.config import DROPOUT_KINDS, DropoutConfig, ModelConfig
from dropout_lab.device import autocast, check_precision
from dropout_lab.dropout import is_stochastic
from dropout_lab.errors import ConfigError
from dropout_lab.hydra_runner import compose, typed_config
from dropout_lab.model import build_model
from dropout_lab.run_folder import read_summary
from dropout_lab.train import train

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

GPU = ["trainer.device=cuda"]  # after TINY, whose trainer.device=cpu it overrides
P = 0.3
# The kinds whose noise is a Bernoulli keep mask on the activations: a fraction 1 - p non-zero.
BERNOULLI = {"custom", "builtin", "functional", "vanilla", "unscaled"}


def bf16_or_skip(precision):
    if precision == "bf16":
        try:
            check_precision("bf16", torch.device("cuda"))
        except ConfigError as error:
            pytest.skip(str(error))


def gpu_config(*overrides):
    return typed_config(compose([*TINY, *GPU, *overrides]))


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("kind", DROPOUT_KINDS)
def test_every_kind_on_the_gpu(kind, precision):
    """Output on the GPU in the precision's dtype, the keep rate 1 - p (a million draws: sd
    0.00046, so ±0.005 is 10 sd), float32 gradients on the GPU, finite and non-zero."""
    bf16_or_skip(precision)
    cuda = torch.device("cuda")
    torch.manual_seed(0)
    model = build_model(ModelConfig(hidden=[64, 64], dropout=DropoutConfig(kind=kind, p=P)))
    model.to(cuda).train()
    images, labels = torch.rand(256, 784, device=cuda), torch.randint(0, 10, (256,), device=cuda)
    with autocast(precision, cuda):
        logits = model(images)
        loss = torch.nn.functional.cross_entropy(logits, labels)
    loss.backward()
    assert logits.device.type == "cuda"
    assert logits.dtype == (torch.bfloat16 if precision == "bf16" else torch.float32)
    for name, parameter in model.named_parameters():
        assert parameter.grad.device.type == "cuda" and parameter.grad.dtype == torch.float32
        assert torch.isfinite(parameter.grad).all() and parameter.grad.abs().sum() > 0, name
    if kind in BERNOULLI:
        noise = next(module for module in model.modules() if is_stochastic(module))
        dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        kept = (noise(torch.ones(1000, 1000, device=cuda, dtype=dtype)) != 0).double().mean()
        assert kept.item() == pytest.approx(1 - P, abs=0.005)


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_two_identical_gpu_runs_agree(tmp_path, precision):
    bf16_or_skip(precision)
    first = train(gpu_config(f"trainer.precision={precision}"), tmp_path / "a")
    second = train(gpu_config(f"trainer.precision={precision}"), tmp_path / "b")
    assert first.status == second.status == "completed"
    assert results(first.history) == results(second.history)
    device = read_summary(tmp_path / "a")["device"]
    assert device["name"].startswith("cuda:") and device["gpu"] and device["cuda"]


@pytest.mark.slow
def test_two_epochs_resumed_to_four_equal_four_straight(tmp_path):
    straight = train(gpu_config("trainer.epochs=4", "optim=adam"), tmp_path / "straight")
    train(gpu_config("trainer.epochs=2", "optim=adam"), tmp_path / "resumed")
    resumed = train(gpu_config("trainer.epochs=4", "optim=adam"), tmp_path / "resumed",
                    resume=True)
    assert results(resumed.history) == results(straight.history)


@pytest.mark.slow
def test_a_gpu_run_continues_and_is_evaluated_on_the_cpu(tmp_path):
    """The checkpoint of a GPU run (its CUDA generator included) resumes with trainer.device=cpu
    (statistically the same run, not bit for bit), then `evaluate --mc-samples 4` on the CPU."""
    run_dir = tmp_path / "run"
    run_cli("train", *TINY, *GPU, "trainer.epochs=1", f"hydra.run.dir={run_dir}", check=True)
    assert read_summary(run_dir)["device"]["name"].startswith("cuda")
    run_cli("train", "--resume", run_dir, "trainer.device=cpu", "trainer.epochs=2", check=True)
    summary = read_summary(run_dir)
    assert summary["status"] == "completed" and summary["epochs_done"] == 2
    assert summary["device"]["name"] == "cpu"  # the last session's
    run_cli("evaluate", run_dir, "--mc-samples", "4", check=True)
    metrics = json.loads((run_dir / "mc_eval.json").read_text())["metrics"]
    assert metrics["test_accuracy"] == pytest.approx(summary["final"]["test_accuracy"], abs=0.004)
    assert 0.1 < metrics["mc_accuracy"] <= 1.0


@pytest.mark.slow
def test_a_parallel_sweep_shares_one_gpu(tmp_path):
    sweep_dir = tmp_path / "sweep"
    run_cli("sweep", "--jobs", "2", "--sweep-dir", sweep_dir, "seed=0,1", *TINY, *GPU,
            check=True)
    jobs = sorted(path for path in sweep_dir.iterdir() if path.is_dir() and path.name[0].isdigit())
    assert len(jobs) == 2
    for job in jobs:
        summary = read_summary(job)
        assert summary["status"] == "completed", job
        assert summary["device"]["name"].startswith("cuda:"), job
