"""trainer.precision: bf16 autocast with float32 weights, refused where the hardware has no
native bf16, recorded in the run, kept on resume."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from conftest import REPO, TINY, read_events, read_hparams, run_cli
from dropout_lab import device as device_module
from dropout_lab.hydra_runner import compose, typed_config
from dropout_lab.config import DROPOUT_KINDS, DropoutConfig, ModelConfig
from dropout_lab.errors import ConfigError
from dropout_lab.keys import key
from dropout_lab.model import build_model
from dropout_lab.run_folder import read_summary
from dropout_lab.device import autocast, cpu_has_native_bf16
from dropout_lab.checkpoint import resumable_checkpoint
from dropout_lab.train import train

CPU = torch.device("cpu")
MOMENTUM = ["optim.momentum=0.9", "optim.lr=0.1"]
needs_bf16 = pytest.mark.skipif(not cpu_has_native_bf16(), reason="no native bf16 on this CPU")


def tiny_config(*overrides):
    return typed_config(compose([*TINY, "trainer.device=cpu", *overrides]))


def one_error_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_default_is_fp32_and_fp32_adds_no_autocast():
    assert tiny_config().trainer.precision == "fp32"
    with autocast("fp32", CPU):
        assert not torch.is_autocast_enabled("cpu")  # fp32 runs are the runs of before
    with autocast("bf16", CPU):
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16


@pytest.mark.parametrize("value", ["fp16", "bfloat16", "FP32"])
def test_unknown_precision_is_a_config_error(value):
    with pytest.raises(ConfigError, match=f"unknown trainer.precision '{value}'; choose one of: "
                                          f"fp32, bf16"):
        tiny_config(f"trainer.precision={value}")


def test_unknown_precision_is_one_line_and_exit_2(tmp_path):
    result = run_cli("train", *TINY, "trainer.precision=fp16", f"hydra.run.dir={tmp_path}/run",
                     cwd=tmp_path)
    assert result.returncode == 2
    assert "trainer.precision 'fp16'" in one_error_line(result)


def test_bf16_without_native_bf16_is_refused_in_one_line(monkeypatch, tmp_path):
    monkeypatch.setattr(device_module, "cpu_has_native_bf16", lambda: False)
    with pytest.raises(ConfigError) as refused:
        train(tiny_config("trainer.precision=bf16"), tmp_path)
    message = str(refused.value)
    assert "\n" not in message and "AVX512_BF16 or AMX" in message
    assert "trainer.precision=fp32" in message  # what to do instead
    train(tiny_config("trainer.epochs=1"), tmp_path / "fp32")  # fp32 is not affected


def test_native_bf16_detection_agrees_with_proc_cpuinfo(monkeypatch):
    """torch's CPUID query and the /proc/cpuinfo fallback give the same answer here."""
    if not Path("/proc/cpuinfo").is_file():
        pytest.skip("no /proc/cpuinfo")
    from_torch = cpu_has_native_bf16()
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported", raising=False)
    assert cpu_has_native_bf16() == from_torch


@needs_bf16
@pytest.mark.parametrize("kind", DROPOUT_KINDS)
def test_every_kind_trains_under_autocast(kind):
    """Forward in bf16 (the noise layers get bf16 activations), gradients in float32."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(hidden=[32, 32], dropout=DropoutConfig(kind=kind, p=0.3)))
    seen = []
    for module in model.net[3::3]:  # the noise module after each hidden ReLU
        module.register_forward_hook(lambda _m, inputs, _out: seen.append(inputs[0].dtype))
    with autocast("bf16", CPU):
        logits = model(torch.rand(16, 784))
        loss = F.cross_entropy(logits, torch.randint(0, 10, (16,)))
    loss.backward()
    assert logits.dtype == torch.bfloat16 and loss.dtype == torch.float32
    assert seen == [torch.bfloat16, torch.bfloat16]
    for name, parameter in model.named_parameters():
        assert parameter.dtype == parameter.grad.dtype == torch.float32, name
        assert torch.isfinite(parameter.grad).all() and parameter.grad.abs().sum() > 0, name


@pytest.fixture(scope="module")
def bf16_run(tmp_path_factory):
    if not cpu_has_native_bf16():
        pytest.skip("no native bf16 on this CPU")
    run_dir = tmp_path_factory.mktemp("bf16")
    # Momentum, so that the optimizer has state; lr 0.1, as 0.5 with momentum overshoots in
    # 8 steps (fp32 and bf16 alike reach test accuracy ~0.54 here).
    return train(tiny_config("trainer.precision=bf16", *MOMENTUM), run_dir)


def test_bf16_run_learns_and_keeps_float32_state(bf16_run):
    from dropout_lab.checkpoint import read_checkpoint

    assert bf16_run.status == "completed"
    assert bf16_run.final["test_accuracy"] > 0.3  # three times chance
    checkpoint = read_checkpoint(bf16_run.run_dir)
    assert {w.dtype for w in checkpoint.model.values()} == {torch.float32}
    momentum = [s["momentum_buffer"] for s in checkpoint.optimizer["state"].values()]
    assert momentum and {m.dtype for m in momentum} == {torch.float32}


def test_bf16_run_records_its_precision(bf16_run):
    assert read_summary(bf16_run.run_dir)["config"]["trainer"]["precision"] == "bf16"
    assert read_hparams(read_events(bf16_run.run_dir))["trainer.precision"] == "bf16"


def test_bf16_and_fp32_runs_differ(bf16_run, tmp_path):
    fp32 = train(tiny_config(*MOMENTUM), tmp_path)
    assert fp32.final["train_loss"] != bf16_run.final["train_loss"]  # bf16 was really used


def test_resume_with_another_precision_is_refused(tmp_path):
    """Through the CLI: one line, exit 2; precision changes what an epoch computes."""
    run_dir = tmp_path / "run"
    run_cli("train", *TINY, "trainer.epochs=1", f"hydra.run.dir={run_dir}", cwd=tmp_path,
            check=True)
    result = run_cli("train", "--resume", run_dir, "trainer.epochs=2", "trainer.precision=bf16",
                     cwd=tmp_path)
    assert result.returncode == 2
    line = one_error_line(result)
    assert "cannot resume" in line and "trainer.precision=bf16 (the run has fp32)" in line
    assert read_summary(run_dir)["epochs_done"] == 1  # untouched
    assert not key("trainer.precision").resumable
    # The same precision resumes as before.
    assert resumable_checkpoint(tiny_config("trainer.epochs=2"), run_dir).epoch == 1


@needs_bf16
def test_benchmark_script_compares_bf16(tmp_path):
    """scripts/bench_train.py --precision bf16 on a tiny budget prints (e) (no timing asserted)."""
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "bench_train.py"), "--rounds", "1",
         "--skip-textbook", "--precision", "bf16", "data.subset=512", "data.test_subset=256",
         "trainer.num_threads=1"],
        capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "(e) the epoch with trainer.precision=bf16" in result.stdout
    assert "torch.mm only, same shapes, bf16" in result.stdout
    assert "faster than the fp32 epoch" in result.stdout


def test_bf16_evaluation_losses_are_summed_in_float32(bf16_run):
    """A bf16 logit's cross-entropy summed in bf16 keeps 8 significant bits: every test loss
    came out a multiple of 16/2000 on 2,000 images. Summed in float32, a loss sum (500 images,
    one evaluation batch) is almost never a bf16 number: 2 epochs x 2 splits here, each with
    odds 2^-15 or so of being one by chance."""
    for epoch in bf16_run.history:
        for name, images in (("test", 500), ("train_eval", 1000)):
            total = epoch[f"{name}_loss"] * images
            assert torch.tensor(total).bfloat16().item() != pytest.approx(total, rel=1e-9), name
