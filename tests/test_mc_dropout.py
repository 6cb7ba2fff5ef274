"""Monte Carlo dropout at inference: `dropout-lab evaluate RUN_DIR --mc-samples K` end to end on
the session's tiny real run, the uncertainty formulas on hand-made numbers, and a run without a
checkpoint (the other error paths are in tests/end_to_end/test_bad_input.py's table)."""

import json
import math
import re
import shutil

import pytest
import torch
from torch import nn

from conftest import invoke, markdown_tables, one_error_line, run_cli
from dropout_lab.config import DropoutConfig, ModelConfig
from dropout_lab.data import Split
from dropout_lab.mc_dropout import mc_evaluate, mc_metrics, mc_statistics, stochastic_layers_on
from dropout_lab.model import build_model

# tiny_cli_run_copy (conftest): a copy of a real run of 1000 images, 2 epochs, the default model
# with custom dropout p = [0.3, 0.4].


@pytest.mark.slow
def test_evaluate_prints_and_writes_the_table(tiny_cli_run_copy):
    result = run_cli("evaluate", tiny_cli_run_copy, "--mc-samples", "8", check=True)
    report = json.loads((tiny_cli_run_copy / "mc_eval.json").read_text())
    metrics = report["metrics"]
    table = (tiny_cli_run_copy / "mc_eval.md").read_text()
    assert markdown_tables(table) == [[3] * 9]  # the header and 8 rows, 3 columns each
    assert "| accuracy |" in table and "mutual information, BALD (nats)" in table
    # The terminal gets the same table aligned, not Markdown, and the layers as the config says
    assert "|" not in result.stdout and "hidden layer 1: custom p=0.3" in result.stdout
    assert re.search(rf"^accuracy +{metrics['test_accuracy']:.4f} +{metrics['mc_accuracy']:.4f}$",
                     result.stdout, re.M), result.stdout
    assert report["stochastic_layers"] == ["net.3=InvertedDropout(p=0.3)",
                                           "net.6=InvertedDropout(p=0.4)"]
    assert metrics["mc_samples"] == 8 and metrics["test_images"] == 500
    # The deterministic pass is training's own evaluation: the same number, exactly.
    summary = json.loads((tiny_cli_run_copy / "summary.json").read_text())
    assert metrics["test_accuracy"] == summary["final"]["test_accuracy"]
    assert metrics["test_loss"] == pytest.approx(summary["final"]["test_loss"], rel=1e-6)
    assert 0.1 < metrics["mc_accuracy"] <= 1.0
    # 0 <= I <= H <= ln 10: mutual information is the part of the entropy the masks add.
    assert 0.0 < metrics["mutual_information"] <= metrics["predictive_entropy"] <= math.log(10)
    # A classifier is less sure where it is wrong: here by far (1.78 vs 2.03 nats on a
    # similar run); a swapped or broken split would invert or erase the gap.
    assert metrics["predictive_entropy_wrong"] > metrics["predictive_entropy_right"]


@pytest.mark.slow
def test_evaluate_is_seeded_and_differs_from_the_eval_pass(tiny_cli_run_copy):
    first = mc_evaluate(tiny_cli_run_copy, 4, seed=1).metrics
    again = mc_evaluate(tiny_cli_run_copy, 4, seed=1).metrics
    other = mc_evaluate(tiny_cli_run_copy, 4, seed=2).metrics
    assert first == again
    assert first["mutual_information"] != other["mutual_information"]
    assert first["test_accuracy"] == other["test_accuracy"]  # the deterministic pass


def test_only_the_noise_layers_are_switched_on():
    model = build_model(ModelConfig(dropout=DropoutConfig(kind=["gaussian", "dropconnect"], p=0.3)))
    layers = stochastic_layers_on(model)
    assert layers == ["net.3=GaussianDropout(p=0.3)", "net.7=DropConnectLinear(p=0.3)"]
    in_training = [type(m).__name__ for m in model.modules() if m.training]
    assert in_training == ["GaussianDropout", "DropConnectLinear"]


def test_a_model_without_noise_has_no_mutual_information():
    torch.manual_seed(0)
    model = build_model(ModelConfig(dropout=DropoutConfig(kind="none")))
    split = Split(torch.rand(64, 784), torch.randint(0, 10, (64,)))
    assert stochastic_layers_on(model) == []
    stats = mc_statistics(model, split, samples=5, batch_size=16)
    labels = split.labels
    metrics = mc_metrics(stats["probabilities"], stats["sample_entropy"], labels)
    assert metrics["mutual_information"] == pytest.approx(0.0, abs=1e-6)
    with torch.no_grad():
        expected = nn.functional.softmax(model(split.images), dim=1)
    assert torch.allclose(stats["probabilities"], expected, atol=1e-6)


def test_uncertainty_formulas_on_hand_made_passes():
    """Two images, two passes each over two classes (written out, in nats)."""
    passes = torch.tensor([[[1.0, 0.0], [0.5, 0.5]],    # pass 1: image A sure of 0, B unsure
                           [[0.0, 1.0], [0.5, 0.5]]])   # pass 2: A sure of 1, B unsure
    probabilities = passes.mean(dim=0)  # both [0.5, 0.5]
    sample_entropy = torch.special.entr(passes).sum(-1).mean(0)  # A: 0, B: ln 2
    metrics = mc_metrics(probabilities, sample_entropy, torch.tensor([0, 1]))
    ln2 = math.log(2)
    assert metrics["predictive_entropy"] == pytest.approx(ln2)
    # A's uncertainty comes all from the disagreement of the passes, B's none of it.
    assert metrics["mutual_information"] == pytest.approx(ln2 / 2)
    assert metrics["mc_loss"] == pytest.approx(ln2)
    # argmax of [0.5, 0.5] is class 0: A (label 0) right, B (label 1) wrong.
    assert metrics["mc_accuracy"] == 0.5
    assert metrics["mutual_information_right"] == pytest.approx(ln2)
    assert metrics["mutual_information_wrong"] == pytest.approx(0.0)


def test_no_wrong_predictions_give_an_empty_group_not_nan():
    metrics = mc_metrics(torch.tensor([[0.9, 0.1]]), torch.tensor([0.3]), torch.tensor([0]))
    assert metrics["predictive_entropy_wrong"] is None and metrics["mc_accuracy"] == 1.0


@pytest.mark.slow
def test_a_run_without_checkpoint_is_refused(tmp_path, tiny_cli_run):
    run_dir = tmp_path / "no-checkpoint"  # as a run trained with logging.checkpoint=false
    run_dir.mkdir()
    shutil.copy(tiny_cli_run[1] / "summary.json", run_dir)
    result = invoke("evaluate", run_dir)
    assert result.exit_code == 2  # a folder evaluate cannot read: a usage error
    assert one_error_line(result.stderr).startswith(
        f"error: {run_dir} has no checkpoint.pt to evaluate")


@pytest.mark.slow
def test_a_bf16_runs_deterministic_pass_is_its_training_evaluation(tmp_path, monkeypatch):
    """evaluate rebuilds the model in the run's precision: the deterministic pass of a bf16 run
    is the bf16 evaluation training logged, to the last bit (rebuilt in fp32 its loss differed
    in the fourth digit: 1.263777 against 1.264), and its masks draw under the same autocast."""
    from conftest import TINY
    from dropout_lab import device as device_module
    from dropout_lab.device import cpu_has_native_bf16
    from dropout_lab.errors import ConfigError
    from dropout_lab.hydra_runner import compose, typed_config
    from dropout_lab.train import train

    if not cpu_has_native_bf16():
        pytest.skip("no native bf16 on this CPU")
    result = train(typed_config(compose([*TINY, "trainer.precision=bf16"])), tmp_path)
    metrics = mc_evaluate(tmp_path, 2).metrics
    assert metrics["test_loss"] == result.final["test_loss"]
    assert metrics["test_accuracy"] == result.final["test_accuracy"]
    # Where training would refuse bf16, so does evaluate: not an fp32 pass recorded as the run's.
    monkeypatch.setattr(device_module, "cpu_has_native_bf16", lambda: False)
    with pytest.raises(ConfigError, match="trainer.precision=bf16 needs a CPU with native bf16"):
        mc_evaluate(tmp_path, 2)
