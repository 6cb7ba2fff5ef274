"""`dropout-lab train` end to end: the real CLI in a subprocess, the event file read back."""

import subprocess
import sys

import pytest
import yaml

from conftest import REPO, TINY, read_events, read_hparams, run_cli
from dropout_lab.run_folder import read_summary
from dropout_lab.run_log import CUSTOM_SCALARS, EPOCH_TAGS

EPOCHS = 2  # TINY's trainer.epochs


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """One tiny `dropout-lab train` run into a run dir of our choosing (with a validation
    split, so that every epoch tag is logged)."""
    run_dir = tmp_path_factory.mktemp("cli") / "run"
    result = run_cli("train", *TINY, "model.dropout.p=[0.3,0.4]", "data.validation=500",
                     f"hydra.run.dir={run_dir}", check=True)
    return result, run_dir


def test_train_exits_0_with_a_closing_summary(cli_run):
    result, run_dir = cli_run
    lines = result.stdout.strip().splitlines()
    assert lines[-3].startswith("completed: train loss ") and f"after {EPOCHS} epochs" in lines[-3]
    assert lines[-2] == f"run: {run_dir}"
    assert lines[-1] == f"view: tensorboard --logdir {run_dir}"
    assert "Traceback" not in result.stderr


def test_run_folder_contents(cli_run):
    _, run_dir = cli_run
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    saved = yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())
    assert saved["model"]["dropout"]["p"] == [0.3, 0.4]  # the override reached the run
    summary = read_summary(run_dir)
    assert summary["status"] == "completed" and summary["epochs_done"] == EPOCHS
    assert summary["config"]["model"]["dropout"]["p"] == [0.3, 0.4]
    assert len(list(run_dir.glob("events.out.tfevents.*"))) == 1
    # Every event file is in the run folder itself: no second (hparams) run below it.
    assert [p for p in run_dir.rglob("events.out.tfevents.*") if p.parent != run_dir] == []


def test_scalars_have_one_point_per_epoch(cli_run):
    _, run_dir = cli_run
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


def test_hparams_are_in_the_same_run(cli_run):
    _, run_dir = cli_run
    hparams = read_hparams(read_events(run_dir))
    assert hparams["status"] == "completed"
    assert hparams["model.dropout.p"] == "[0.3, 0.4]"
    assert hparams["optim.lr"] == 0.5
    assert hparams["data.subset"] == 1000


def test_custom_scalars_put_train_and_test_accuracy_on_one_chart(cli_run):
    from tensorboard.plugins.custom_scalar import layout_pb2, metadata

    _, run_dir = cli_run
    events = read_events(run_dir)
    (tag,) = events.PluginTagToContent(metadata.PLUGIN_NAME)
    layout = layout_pb2.Layout.FromString(events.Tensors(tag)[0].tensor_proto.string_val[0])
    charts = {chart.title: list(chart.multiline.tag) for category in layout.category
              for chart in category.chart}
    assert charts == {title: tags for category in CUSTOM_SCALARS.values()
                      for title, (_, tags) in category.items()}
    assert ["accuracy/train", "accuracy/train_eval", "accuracy/test"] in charts.values()


def test_print_config_prints_yaml_and_trains_nothing(tmp_path):
    result = run_cli("train", "--print-config", "optim=adam", "model.dropout.p=0.1", cwd=tmp_path,
                     check=True)
    cfg = yaml.safe_load(result.stdout)
    assert cfg["optim"]["name"] == "adam" and cfg["model"]["dropout"]["p"] == 0.1
    assert set(cfg) >= {"seed", "data", "model", "optim", "trainer", "logging"}
    assert list(tmp_path.iterdir()) == []  # no outputs/ folder: nothing ran


@pytest.mark.parametrize("override, words", [
    ("model.dropout.p=1.5", ["model.dropout.p", "1.5"]),
    ("trainer.epochs=0", ["trainer.epochs"]),
    ("model.dropout.kind=magic", ["magic"]),
    ("nosuchkey=1", ["nosuchkey"]),
    ("model.dropout.p=[0.1,0.2,0.3]", ["model.dropout.p"]),
])
def test_bad_override_is_one_line_and_exit_2(tmp_path, override, words):
    run_dir = tmp_path / "run"
    result = run_cli("train", *TINY, override, f"hydra.run.dir={run_dir}")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert all(word in lines[0] for word in words)
    assert "Traceback" not in result.stderr
    assert not run_dir.exists()  # refused before a run folder was made


def test_verbose_shows_the_traceback():
    result = run_cli("train", "-v", "trainer.epochs=0")
    assert result.returncode != 0
    assert "Traceback" in result.stderr and "ConfigError" in result.stderr


def test_missing_data_folder_is_one_line(tmp_path):
    missing = tmp_path / "nowhere"
    # An empty cache folder: a cache decoded earlier would serve the run without the source.
    result = run_cli("train", *TINY, f"data.dir={missing}", f"data.cache_dir={tmp_path / 'cache'}",
                     f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines == [f"error: data folder {missing} does not exist; " + lines[0].split("; ", 1)[1]]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("args", [["--help"], ["train", "--help"]])
def test_help_answers(args):
    result = run_cli(*args, check=True)
    assert "train" in result.stdout
    if args[0] == "train":
        for text in ("--print-config", "Config groups", "model.dropout.p", "optim.lr"):
            assert text in result.stdout


def test_cli_import_does_not_import_torch_or_hydra():
    code = ("import sys, dropout_lab.cli; "
            "print(sorted(m for m in ('torch', 'hydra') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=REPO, check=True)
    assert result.stdout.strip() == "[]"
