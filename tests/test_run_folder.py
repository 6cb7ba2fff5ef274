"""The run folder (dropout_lab/run_folder.py): the run record, its one reader and its error policy
(an unreadable summary is a record with status 'unreadable' and the reason, never an
exception, until a command that needs the run asks for it with ``readable()``)."""

import json
from pathlib import Path

import pytest

from dropout_lab.config import Config
from dropout_lab.errors import RunError
from dropout_lab.run_folder import (OVERRIDES, STEADY_EPOCHS, SUMMARY, UNKNOWN, UNREADABLE,
                                    RunRecord, read_overrides, read_run, read_runs,
                                    record_failure, write_summary)

HISTORY = [{"epoch": epoch, "test_accuracy": accuracy, "gap": 0.01 * epoch}
           for epoch, accuracy in enumerate([0.70, 0.80, 0.82, 0.84, 0.83], start=1)]


def summary(**changes) -> dict:
    """A summary as run_log.RunLog.write_summary writes one, for a completed 5-epoch run."""
    return {"status": "completed", "error": None, "run_dir": "x",
            "config": {"seed": 3, "trainer": {"epochs": 5, "steady_epochs": 3}},
            "device": {"name": "cpu", "torch": "2.5.1"},
            "final": HISTORY[-1], "steady": {"test_accuracy": 0.83, "val_accuracy": 0.85,
                                              "epochs": 3},
            "best": {"test_accuracy": 0.84, "epoch": 4}, "epochs_done": 5,
            "timings": {"earlier_seconds": 9.5, "train_seconds": 8.0, "wall_seconds": 9.5},
            "history": HISTORY, **changes}


def run_folder(path: Path, content=None, overrides=None) -> Path:
    """A run folder holding ``content`` as summary.json (a dict, or raw text) and, if given,
    ``overrides`` as Hydra's overrides.yaml (a list, or raw text)."""
    path.mkdir(parents=True)
    if isinstance(content, dict):
        write_summary(path, content)
    elif content is not None:
        (path / SUMMARY).write_text(content)
    if overrides is not None:
        (path / OVERRIDES).parent.mkdir()
        text = overrides if isinstance(overrides, str) else "".join(f"- {o}\n" for o in overrides)
        (path / OVERRIDES).write_text(text)
    return path


def test_a_summary_reads_into_typed_fields(tmp_path):
    run = read_run(run_folder(tmp_path / "004_p=0.5", summary(), ["model.dropout.p=0.5", "+x=1"]))
    assert run.status == "completed" and run.error is None and run.readable() is run
    assert (run.job, run.num, run.epochs_done, run.epochs) == ("004_p=0.5", 4, 5, 5)
    assert run.overrides == ["model.dropout.p=0.5", "+x=1"]
    assert run.params == {"model.dropout.p": "0.5", "x": "1"}
    assert run.config["seed"] == 3 and run.history == HISTORY and run.device["name"] == "cpu"
    assert (run.steady_test_accuracy, run.steady_val_accuracy, run.objective) == (0.83, 0.85, 0.85)
    assert (run.test_accuracy, run.best_test_accuracy, run.gap) == (0.83, 0.84, 0.05)
    assert (run.seconds, run.train_seconds) == (9.5, 8.0)
    assert run.ended_for_good and run.steady_epochs == 3


@pytest.mark.parametrize("content, reason", [
    (None, "no summary.json"),  # missing
    ('{"status": "completed", "hist', "cannot be read"),  # cut off mid-write by a crash
    ("[1, 2]", "not a JSON object"),
])
def test_an_unreadable_summary_is_a_record_with_the_reason(tmp_path, content, reason):
    run = read_run(run_folder(tmp_path / "run", content))
    assert run.status == UNREADABLE and reason in run.error
    assert run.config == {} and run.history == [] and run.steady_test_accuracy is None
    assert not run.ended_for_good
    with pytest.raises(RunError, match=reason):
        run.readable()


def test_an_old_summary_without_status_or_steady_block(tmp_path):
    """A summary written before the steady block and the status existed: status unknown, the
    steady accuracy from its history over the run's window (the default when it names none)."""
    old = summary(config={"seed": 1})
    for key in ("status", "steady", "epochs_done", "device"):
        del old[key]
    run = read_run(run_folder(tmp_path / "run", old))
    assert run.status == UNKNOWN and not run.ended_for_good and run.epochs_done is None
    assert run.steady_epochs == STEADY_EPOCHS
    assert run.steady_test_accuracy == pytest.approx((0.82 + 0.84 + 0.83) / 3)
    windowed = read_run(run_folder(tmp_path / "five", {**old, "config": {
        "trainer": {"steady_epochs": 5}}}))
    assert windowed.steady_test_accuracy == pytest.approx(sum(r["test_accuracy"] for r in HISTORY) / 5)


def test_a_job_that_failed_before_training(tmp_path):
    """record_failure's summary: no config, no epochs; its overrides come from the summary
    when Hydra never wrote overrides.yaml."""
    path = run_folder(tmp_path / "002_lr=9")
    record_failure(path, "optim.lr has to be positive", overrides=["optim.lr=-9"])
    run = read_run(path)
    assert (run.status, run.error, run.overrides) == ("failed", "optim.lr has to be positive",
                                                      ["optim.lr=-9"])
    assert run.config == {} and run.epochs_done is None and run.epochs == 0
    assert run.test_accuracy is None and run.seconds is None


def test_overrides_yaml_has_one_reader(tmp_path):
    """Missing: []; unreadable: RunError naming the file (``--resume`` reports it); a record
    then falls back to the overrides its summary holds."""
    assert read_overrides(run_folder(tmp_path / "none", summary())) == []
    damaged = run_folder(tmp_path / "damaged", summary(overrides=["seed=4"]), "- [seed=4\n")
    with pytest.raises(RunError, match="overrides.yaml"):
        read_overrides(damaged)
    assert read_run(damaged).overrides == ["seed=4"]
    not_a_list = run_folder(tmp_path / "mapping", summary(), "seed: 4\n")
    with pytest.raises(RunError, match="not a list"):
        read_overrides(not_a_list)


def test_read_runs_lists_every_folder_in_path_order_unreadable_ones_included(tmp_path):
    run_folder(tmp_path / "sweep" / "001_b", summary())
    run_folder(tmp_path / "sweep" / "000_a", "not json")
    run_folder(tmp_path / "sweep" / ".hidden" / "x", summary())  # Hydra's own folders
    runs = read_runs(tmp_path)
    assert [run.job for run in runs] == ["000_a", "001_b"]
    assert [run.status for run in runs] == [UNREADABLE, "completed"]


def test_the_steady_window_default_is_the_schemas():
    assert Config().trainer.steady_epochs == STEADY_EPOCHS


def test_a_record_is_immutable():
    run = RunRecord(Path("run"), "completed")
    with pytest.raises(AttributeError):
        run.status = "failed"


@pytest.mark.slow
def test_a_real_runs_record_matches_its_files(tiny_cli_run):
    run_dir = tiny_cli_run[1]
    run, saved = read_run(run_dir), json.loads((run_dir / SUMMARY).read_text())
    assert run.status == "completed" and run.epochs_done == len(run.history) == 2
    assert run.config == saved["config"] and run.final == saved["history"][-1]
    assert run.steady_test_accuracy == saved["steady"]["test_accuracy"]
    assert "model.dropout.p=[0.3,0.4]" in run.overrides  # from .hydra/overrides.yaml
