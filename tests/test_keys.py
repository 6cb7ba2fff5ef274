"""The registry of config keys and metrics (dropout_lab/keys.py): it covers the schema, the lists
other modules used to keep are generated from it, and a key added to the schema and the registry
shows in job folder names, the HParams declaration and the runs table with nothing else edited."""

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from dropout_lab import hparams, job_names, keys, report, run_log, runs_table
from dropout_lab.checks import check_variance_matched
from dropout_lab.config import Config, DropoutConfig, TrainerConfig, schema_keys
from dropout_lab.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def unregistered(schema_names, registry_names):
    """What CI says when the schema and the registry disagree (empty when they agree)."""
    missing = sorted(set(schema_names) - set(registry_names))
    stale = sorted(set(registry_names) - set(schema_names))
    problems = []
    if missing:
        problems.append(f"config keys without a registry entry: {', '.join(missing)}; add a "
                        f"Key(...) for each to KEYS in dropout_lab/keys.py")
    if stale:
        problems.append(f"registry entries without a config key: {', '.join(stale)}; remove "
                        f"them from KEYS in dropout_lab/keys.py")
    return problems


def test_every_schema_key_has_one_registry_entry_and_every_entry_a_key():
    names = [key.name for key in keys.KEYS]
    assert len(names) == len(set(names)), "a key registered twice"
    assert unregistered(schema_keys(), names) == []


def test_a_key_added_to_the_schema_alone_fails_with_a_line_naming_it():
    problems = unregistered([*schema_keys(), "trainer.label_smoothing"], keys.BY_NAME)
    assert problems == ["config keys without a registry entry: trainer.label_smoothing; add a "
                        "Key(...) for each to KEYS in dropout_lab/keys.py"]


def test_folder_order_names_registered_keys_or_the_optim_group():
    assert set(keys.FOLDER_ORDER) - set(keys.BY_NAME) == {"optim"}  # the group: optim=adam


def test_the_generated_lists_are_the_ones_the_modules_kept():
    """The values the modules spelled out before the registry, so no output changed."""
    assert hparams.LEFT_OUT == {"data.dir", "data.cache_dir", "data.download", "trainer.progress",
                                "trainer.eval_batch_size", "logging.tensorboard",
                                "logging.checkpoint", "logging.activation_stats",
                                "trainer.num_threads"}
    assert hparams.LAST_DIGITS == {"trainer.num_threads"}
    assert job_names.short_key("optim.weight_decay") == "wd"
    assert job_names.short_key("model.dropout.p.1") == "p2"
    assert job_names.short_key("trainer.eval_train_subset") == "eval_subset"
    assert [s.display for s in hparams.settings()[:5]] == ["p", "dropout kind", "weight decay",
                                                          "lr", "optimizer"]
    assert run_log.EPOCH_TAGS["lr"] == "optim/lr" and len(run_log.EPOCH_TAGS) == 12
    assert run_log.STEADY_TAGS == {"test_accuracy": "steady/accuracy_test",
                                   "val_accuracy": "steady/accuracy_val"}
    assert [tag for tag, _, _ in hparams.METRICS][:3] == ["steady/accuracy_test",
                                                          "steady/accuracy_val",
                                                          "best/accuracy_test"]
    assert hparams.VALIDATION_METRICS == {"steady/accuracy_val", "accuracy/val", "loss/val"}
    assert report.METRICS == {"steady_test_accuracy": "steady test acc",
                              "test_accuracy": "final test acc", "best_test_accuracy": "best test acc",
                              "train_eval_accuracy": "train acc (eval)", "gap": "gap"}
    assert (report.LEAD, report.VALIDATION_LEAD) == ("steady_test_accuracy", "steady_val_accuracy")
    assert list(runs_table.METRIC_COLUMNS.items())[:5] == [
        ("steady", "steady"), ("val", "val"), ("test_acc", "test acc"), ("best", "best"), ("gap", "gap")]
    assert runs_table.DIFF_METRICS[:4] == [
        ("test acc (steady)", "steady", "test_accuracy"), ("val acc (steady)", "steady", "val_accuracy"),
        ("test acc (final)", "final", "test_accuracy"), ("test acc (best)", "best", "test_accuracy")]


def test_each_metric_is_named_once_per_reader_and_every_reader_names_known_tags():
    for order in (keys.DECLARED_ORDER, keys.DIFF_ORDER, keys.REPORT_ORDER, keys.RUNS_ORDER):
        assert len(set(order)) == len(order) and set(order) <= set(keys.BY_TAG)
    assert all(m.display for m in keys.metrics(keys.DECLARED_ORDER + keys.DIFF_ORDER))
    assert all(m.label for m in keys.metrics(keys.REPORT_ORDER))
    assert all(m.column for m in keys.metrics(keys.RUNS_ORDER))
    tags = [m.tag for m in keys.METRICS]
    assert len(tags) == len(set(tags))


def test_configs_exclude_keys_leave_the_registry_its_keys():
    """Job folder names leave out paths, threads and progress by the registry alone: the
    Hydra config lists only what is not a config key (the experiment group)."""
    config = yaml.safe_load((REPO / "configs" / "config.yaml").read_text())
    assert config["hydra"]["job"]["config"]["override_dirname"]["exclude_keys"] == ["experiment"]
    assert {k.name for k in keys.KEYS if not k.in_folder_names} == {
        "trainer.num_threads", "trainer.progress", "data.dir", "data.cache_dir"}
    name = job_names.job_folder(3, ["optim.lr=0.1", "trainer.num_threads=2", "data.dir=/a/b",
                                    "trainer.progress=false", "experiment=swap_probs"],
                                ["experiment"])
    assert name == "003_lr=0.1"


# --- the resume rule: one for `train --resume` and a sweep run again into its folder ----------

def flat(**changes):
    from dropout_lab.config import flatten_config

    config = flatten_config(dataclasses.asdict(Config()))
    return {**config, **changes}


@pytest.mark.parametrize("change", [{"trainer.device": "cuda"}, {"trainer.num_threads": 4},
                                    {"trainer.progress": False}, {"data.dir": "/elsewhere"},
                                    {"logging.tensorboard": False}, {"trainer.epochs": 20},
                                    {"trainer.eval_batch_size": 512}])
def test_a_resume_may_change_where_how_fast_and_how_long(change):
    assert keys.resume_changes(flat(), flat(**change)) == []


@pytest.mark.parametrize("change", [{"optim.lr": 0.1}, {"trainer.precision": "bf16"},
                                    {"seed": 1}, {"trainer.batch_size": 128},
                                    {"model.dropout.p": [0.5, 0.5]},
                                    {"trainer.steady_epochs": 5}])
def test_a_resume_may_not_change_what_an_epoch_computes(change):
    assert keys.resume_changes(flat(), flat(**change)) == list(change)


@pytest.mark.parametrize("schedule", keys.SCHEDULES_OVER_EPOCHS)
def test_more_epochs_cannot_resume_a_schedule_spread_over_the_epochs(schedule):
    saved = flat(**{"optim.schedule.name": schedule})
    assert keys.resume_changes(saved, {**saved, "trainer.epochs": 20}) == ["trainer.epochs"]
    assert keys.resume_changes(saved, {**saved, "trainer.device": "cpu"}) == []


# --- one check of variance-matched three-valued noise ----------------------------------------

def test_variance_matched_noise_is_checked_once_with_one_message():
    from dropout_lab.dropout import three_valued_probabilities

    check_variance_matched(0.5)  # the largest p it exists for
    messages = []
    for refuse in (lambda: three_valued_probabilities(0.6, "variance_matched"),
                   lambda: DropoutConfig("three_valued", [0.2, 0.6], "variance_matched")
                   .per_layer(2)):
        with pytest.raises(ConfigError) as caught:
            refuse()
        messages.append(str(caught.value))
    assert messages[0] == messages[1].replace("hidden layer 2 has p", "got p")


# --- adding a key: the schema and the registry, nothing else ---------------------------------

@dataclass
class SmoothingTrainer(TrainerConfig):
    label_smoothing: float = 0.0  # the test's new key


@dataclass
class SmoothingConfig(Config):
    trainer: SmoothingTrainer = field(default_factory=SmoothingTrainer)


NEW_KEY = keys.Key("trainer.label_smoothing", "label smoothing", "cross-entropy's smoothing",
                   short="ls")


@pytest.fixture
def registry_with_new_key(monkeypatch):
    """The registry as a commit adding trainer.label_smoothing would leave it."""
    monkeypatch.setattr(keys, "KEYS", (*keys.KEYS, NEW_KEY))
    monkeypatch.setattr(keys, "BY_NAME", {**keys.BY_NAME, NEW_KEY.name: NEW_KEY})


def run_summary(smoothing: float, accuracy: float) -> dict:
    config = dataclasses.asdict(SmoothingConfig(trainer=SmoothingTrainer(label_smoothing=smoothing)))
    return {"status": "completed", "config": config, "epochs_done": 1,
            "final": {"test_accuracy": accuracy}, "steady": {"test_accuracy": accuracy}}


def test_a_new_key_shows_in_folder_names_hparams_and_the_runs_table(registry_with_new_key,
                                                                     tmp_path):
    assert unregistered(schema_keys(SmoothingConfig()), keys.BY_NAME) == []
    # Job folder names: its short name, after the keys FOLDER_ORDER ranks.
    assert (job_names.job_folder(1, ["trainer.label_smoothing=0.1", "optim.lr=0.1"])
            == "001_lr=0.1_ls=0.1")
    # The HParams declaration: its value and display name, among the named settings.
    runs = [hparams.hparam_values(run_summary(s, 0.8)["config"]) for s in (0.0, 0.1)]
    assert runs[1]["trainer.label_smoothing"] == 0.1
    experiment = hparams.experiment_summary(runs)
    plugin = experiment.value[0].metadata.plugin_data.content
    from tensorboard.plugins.hparams import plugin_data_pb2

    infos = plugin_data_pb2.HParamsPluginData.FromString(plugin).experiment.hparam_infos
    info = next(i for i in infos if i.name == "trainer.label_smoothing")
    assert (info.display_name, info.description, info.differs) == (
        "label smoothing", "cross-entropy's smoothing", True)
    # The runs table: a column under its short name, one row per run.
    for num, (smoothing, accuracy) in enumerate(((0.0, 0.81), (0.1, 0.83))):
        folder = tmp_path / f"00{num}"
        folder.mkdir()
        (folder / "summary.json").write_text(json.dumps(run_summary(smoothing, accuracy)))
    table = runs_table.runs_text(tmp_path)
    header = next(line for line in table.splitlines() if " ls " in f" {line} ")
    rows = [line.split() for line in table.splitlines() if line.startswith("00")]
    column = header.split().index("ls")
    assert [row[column] for row in rows] == ["0", "0.1"], table


# --- a sweep resumed by the same rule as a single run ------------------------------------------

@pytest.mark.slow
def test_a_resumed_sweep_trains_its_completed_jobs_longer_and_refuses_another_config(tmp_path):
    """`train --resume RUN trainer.epochs=2` trains a completed one-epoch run on; a sweep run
    again into its folder with trainer.epochs=2 does the same to each completed job (before, it
    trained new runs beside them: the sweep's rule was not the single run's)."""
    from conftest import run_cli
    from dropout_lab.run_folder import read_summary

    budget = ["data.subset=500", "data.test_subset=200", "trainer.progress=false",
              "trainer.num_threads=1", "trainer.device=cpu", "seed=0,1"]
    sweep = ["sweep", "--sweep-dir", tmp_path / "sweep", *budget]
    first = run_cli(*sweep, "trainer.epochs=1")
    assert first.returncode == 0, first.stderr
    jobs = sorted(p for p in (tmp_path / "sweep").iterdir() if p.name[0].isdigit())
    assert [p.name for p in jobs] == ["000_seed=0", "001_seed=1"]
    before = [read_summary(job)["history"] for job in jobs]

    longer = run_cli(*sweep, "trainer.epochs=2")
    assert longer.returncode == 0, longer.stderr
    for job, history in zip(jobs, before):
        summary = read_summary(job)
        assert (summary["status"], summary["epochs_done"]) == ("completed", 2)
        assert summary["history"][:1] == history  # continued, not redone

    # Another learning rate is another run: new folders, the earlier runs left as they are.
    other = run_cli(*sweep, "trainer.epochs=2", "optim.lr=0.1")
    assert other.returncode == 0, other.stderr
    folders = sorted(p.name for p in (tmp_path / "sweep").iterdir() if p.name[0].isdigit())
    assert len(folders) == 4 and folders[0] == "000_seed=0" and folders[1].startswith("000_seed=0_")
    assert [read_summary(job)["epochs_done"] for job in jobs] == [2, 2]
