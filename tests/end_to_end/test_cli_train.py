"""`dropout-lab train` end to end: the real CLI in a subprocess (the session's tiny run), the
event file read back; --print-config and --help in-process. Bad input: tests/end_to_end/test_bad_input.py."""

import subprocess
import sys

import pytest
import yaml

from conftest import REPO, invoke, read_events, read_hparams
from dropout_lab.run_folder import read_summary
from dropout_lab.run_log import EPOCH_TAGS, custom_scalars

EPOCHS = 2  # TINY's trainer.epochs


@pytest.mark.slow
def test_train_exits_0_with_a_closing_summary(tiny_cli_run):
    result, run_dir = tiny_cli_run
    lines = result.stdout.strip().splitlines()
    assert lines[-4].startswith("completed: train loss ") and f"after {EPOCHS} epochs" in lines[-4]
    steady = read_summary(run_dir)["steady"]  # the run holds out a validation split
    assert lines[-4].endswith(f"; steady test acc {steady['test_accuracy']:.4f}, val acc "
                              f"{steady['val_accuracy']:.4f} (mean of the last {EPOCHS})")
    # 2 epochs, a steady window of 3: the steady mean reaches back to epoch 1, said once
    assert lines[-3].startswith("note: 2 epochs <= trainer.steady_epochs=3: the steady mean "
                                "includes epoch 1")
    assert lines[-2] == f"run: {run_dir}"  # outside the working directory: as given
    assert lines[-1] == f"view: dropout-lab tensorboard {run_dir}"  # the venv's, not PATH's
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_run_folder_contents(tiny_cli_run):
    _, run_dir = tiny_cli_run
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    saved = yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())
    assert saved["model"]["dropout"]["p"] == [0.3, 0.4]  # the override reached the run
    summary = read_summary(run_dir)
    assert summary["status"] == "completed" and summary["epochs_done"] == EPOCHS
    assert summary["config"]["model"]["dropout"]["p"] == [0.3, 0.4]
    assert len(list(run_dir.glob("events.out.tfevents.*"))) == 1
    # Every event file is in the run folder itself: no second (hparams) run below it.
    assert [p for p in run_dir.rglob("events.out.tfevents.*") if p.parent != run_dir] == []
    assert not (run_dir / "train.log").exists()  # Hydra's job log: only when something is logged


@pytest.mark.slow
def test_scalars_have_one_point_per_epoch(tiny_cli_run):
    _, run_dir = tiny_cli_run
    events = read_events(run_dir)
    scalars = events.Tags()["scalars"]
    summary = read_summary(run_dir)
    for key, tag in EPOCH_TAGS.items():
        assert tag in scalars
        points = events.Scalars(tag)
        assert [p.step for p in points] == list(range(1, EPOCHS + 1))
        # float32 in the event file against the float64 in summary.json
        assert [p.value for p in points] == pytest.approx([r[key] for r in summary["history"]],
                                                          rel=1e-6)
    for tag in ("loss/train", "loss/test", "accuracy/train", "accuracy/test", "accuracy/gap"):
        assert tag in scalars  # the documented tags, spelled out


@pytest.mark.slow
def test_hparams_are_in_the_same_run(tiny_cli_run):
    _, run_dir = tiny_cli_run
    hparams = read_hparams(read_events(run_dir))
    assert hparams["status"] == "completed"
    assert (hparams["model.dropout.p1"], hparams["model.dropout.p2"]) == (0.3, 0.4)
    assert hparams["optim.lr"] == 0.5
    assert hparams["data.subset"] == 1000


@pytest.mark.slow
def test_custom_scalars_put_train_and_test_accuracy_on_one_chart(tiny_cli_run):
    from tensorboard.plugins.custom_scalar import layout_pb2, metadata

    _, run_dir = tiny_cli_run
    events = read_events(run_dir)
    (tag,) = events.PluginTagToContent(metadata.PLUGIN_NAME)
    layout = layout_pb2.Layout.FromString(events.Tensors(tag)[0].tensor_proto.string_val[0])
    charts = {chart.title: list(chart.multiline.tag) for category in layout.category
              for chart in category.chart}
    assert charts == {title: tags for category in custom_scalars(validation=True).values()
                      for title, (_, tags) in category.items()}
    # The tiny run holds out a validation split: its curve joins train and test.
    assert charts["accuracy (train vs val vs test)"] == [
        "accuracy/train", "accuracy/train_eval", "accuracy/test", "accuracy/val"]
    assert ["optim/lr"] in charts.values()


def test_print_config_prints_yaml_and_trains_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke("train", "--print-config", "optim=adam", "model.dropout.p=0.1")
    assert result.exit_code == 0, result.stderr
    cfg = yaml.safe_load(result.stdout)
    assert cfg["optim"]["name"] == "adam" and cfg["model"]["dropout"]["p"] == 0.1
    assert set(cfg) >= {"seed", "data", "model", "optim", "trainer", "logging"}
    assert list(tmp_path.iterdir()) == []  # no outputs/ folder: nothing ran


@pytest.mark.parametrize("args", [["--help"], ["train", "--help"]])
def test_help_answers(args):
    result = invoke(*args)
    assert result.exit_code == 0, result.stderr
    assert "train" in result.stdout
    if args[0] == "train":
        for text in ("--print-config", "Config groups", "model.dropout.p", "optim.lr"):
            assert text in result.stdout


@pytest.mark.slow
def test_cli_import_does_not_import_torch_or_hydra():
    code = ("import sys, dropout_lab.cli; "
            "print(sorted(m for m in ('torch', 'hydra') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=REPO, check=True)
    assert result.stdout.strip() == "[]"
