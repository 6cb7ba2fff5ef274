"""The HParams dashboard's view of runs (hparams.py): which hparams, their types and domains,
which columns are shown by default; then the real event files a run and a sweep write."""

import pytest

from conftest import TINY, read_events, read_hparams, run_cli
from dropout_lab import hparams
from dropout_lab.config import Config


def default_config(**changes) -> dict:
    """The schema's default config as a run's summary.json holds it, with dotted ``changes``."""
    import dataclasses

    config = dataclasses.asdict(Config())
    for key, value in changes.items():
        *parents, last = key.split("__")
        node = config
        for parent in parents:
            node = node[parent]
        node[last] = value
    return config


def parse_experiment(summary):
    """The api_pb2.Experiment inside an experiment Summary."""
    from tensorboard.plugins.hparams import metadata

    (value,) = summary.value
    return metadata.parse_experiment_plugin_data(value.metadata.plugin_data.content)


# --- the hparams of one run ---------------------------------------------------------------

def test_per_layer_probabilities_are_numbers_and_lead_the_reading_order():
    values = hparams.hparam_values(default_config(model__dropout__p=[0.2, 0.5]))
    assert list(values)[:5] == ["model.dropout.p1", "model.dropout.p2", "model.dropout.kind",
                                "optim.weight_decay", "optim.lr"]
    assert (values["model.dropout.p1"], values["model.dropout.p2"]) == (0.2, 0.5)
    assert "model.dropout.p" not in values  # no string "[0.2, 0.5]" for the axes to choke on


def test_one_probability_for_all_layers_gives_one_number_per_layer():
    values = hparams.hparam_values(default_config(model__dropout__p=0.3, model__hidden=[64, 32, 16]))
    assert [values[f"model.dropout.p{k}"] for k in (1, 2, 3)] == [0.3, 0.3, 0.3]
    assert values["model.hidden"] == "[64,32,16]"


def test_dropout_kinds_one_name_when_alike_per_layer_when_not():
    assert hparams.hparam_values(default_config(model__dropout__kind=["custom", "custom"]))[
        "model.dropout.kind"] == "custom"
    assert hparams.hparam_values(default_config(model__dropout__kind=["none", "dropconnect"]))[
        "model.dropout.kind"] == "none,dropconnect"


def test_types_are_kept_and_settings_that_cannot_change_results_left_out():
    values = hparams.hparam_values(default_config(data__standardize=True, data__subset=1000))
    assert values["data.standardize"] is True  # a bool, not 1.0
    assert values["data.subset"] == 1000 and "data.test_subset" not in values  # None: unset
    for key in ("data.dir", "data.cache_dir", "data.download", "trainer.progress",
                "trainer.num_threads", "logging.tensorboard", "logging.checkpoint"):
        assert key not in values


def test_a_key_the_schema_gains_later_still_shows():
    config = default_config()
    config["model"]["new_knob"] = 3
    assert hparams.hparam_values(config)["model.new_knob"] == 3


# --- columns shown by default -------------------------------------------------------------

def grid(**axes):
    """hparam_values of every run of a grid over ``axes`` (dotted keys as __)."""
    import itertools

    keys = list(axes)
    return [hparams.hparam_values(default_config(**dict(zip(keys, combo))))
            for combo in itertools.product(*axes.values())]


def test_a_sweep_shows_its_swept_keys_then_fills_five_with_the_headline():
    runs = grid(model__dropout__p=[[0.2, 0.5], [0.5, 0.2]], optim__weight_decay=[0.0, 1e-4])
    assert hparams.swept_names(runs) == ["model.dropout.p1", "model.dropout.p2", "optim.weight_decay"]
    shown = hparams.shown_by_default(list(runs[0]), hparams.swept_names(runs))
    assert shown == ["model.dropout.p1", "model.dropout.p2", "optim.weight_decay",
                     "model.dropout.kind", "optim.lr"]


def test_a_single_run_shows_the_headline():
    (values,) = grid()
    assert hparams.shown_by_default(list(values), []) == [
        "model.dropout.p1", "model.dropout.p2", "model.dropout.kind", "optim.weight_decay", "optim.lr"]


def test_more_than_five_swept_keys_are_all_marked():
    runs = grid(seed=[0, 1], trainer__epochs=[1, 2], trainer__batch_size=[64, 128],
                optim__momentum=[0.0, 0.9], model__init=["default", "normal"],
                model__hidden=[[8, 8], [16, 16]])
    shown = hparams.shown_by_default(list(runs[0]), hparams.swept_names(runs))
    assert set(shown) == {"seed", "trainer.epochs", "trainer.batch_size", "optim.momentum",
                          "model.init", "model.hidden"}


def test_the_experiment_declares_types_domains_and_what_to_show():
    from tensorboard.plugins.hparams import api_pb2

    runs = grid(model__dropout__p=[[0.2, 0.5], [0.5, 0.2]], optim__weight_decay=[0.0, 1e-4])
    experiment = parse_experiment(hparams.experiment_summary(runs, ["completed", "diverged"]))
    infos = {info.name: info for info in experiment.hparam_infos}
    assert infos["model.dropout.p1"].type == api_pb2.DATA_TYPE_FLOAT64
    assert infos["model.dropout.p1"].display_name == "p1"
    assert [v.number_value for v in infos["model.dropout.p1"].domain_discrete.values] == [0.2, 0.5]
    assert infos["data.standardize"].type == api_pb2.DATA_TYPE_BOOL
    assert infos["model.dropout.kind"].type == api_pb2.DATA_TYPE_STRING
    assert [v.string_value for v in infos["status"].domain_discrete.values] == ["completed", "diverged"]
    assert {name for name, info in infos.items() if info.differs} == {
        "model.dropout.p1", "model.dropout.p2", "optim.weight_decay", "model.dropout.kind", "optim.lr"}
    assert [m.name.tag for m in experiment.metric_infos][:5] == [
        "steady/accuracy_test", "best/accuracy_test", "accuracy/test", "accuracy/train_eval",
        "accuracy/gap"]


def test_validation_metrics_are_declared_when_a_run_holds_out_a_split():
    plain = [m.name.tag for m in parse_experiment(hparams.experiment_summary(grid())).metric_infos]
    assert "optim/lr" in plain and not {"steady/accuracy_val", "accuracy/val", "loss/val"} & set(plain)
    runs = grid(data__validation=[0, 10000])  # one run with a split is enough
    tags = [m.name.tag for m in parse_experiment(hparams.experiment_summary(runs)).metric_infos]
    assert tags[:5] == ["steady/accuracy_test", "steady/accuracy_val", "best/accuracy_test",
                        "accuracy/test", "accuracy/val"]
    assert {"loss/val", "optim/lr"} <= set(tags)


def test_many_values_of_a_number_make_an_interval():
    runs = grid(optim__lr=[0.01 * k for k in range(1, 13)])
    experiment = parse_experiment(hparams.experiment_summary(runs))
    (lr,) = [info for info in experiment.hparam_infos if info.name == "optim.lr"]
    assert lr.HasField("domain_interval")
    assert (lr.domain_interval.min_value, lr.domain_interval.max_value) == pytest.approx((0.01, 0.12))


# --- real event files ---------------------------------------------------------------------

def experiment_in(accumulator):
    from tensorboard.plugins.hparams import metadata

    content = accumulator.PluginTagToContent(metadata.PLUGIN_NAME).get(metadata.EXPERIMENT_TAG)
    return metadata.parse_experiment_plugin_data(content) if content is not None else None


@pytest.mark.slow
def test_a_single_run_declares_its_own_experiment(tmp_path):
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

    run_cli("train", *TINY, "model.dropout.p=[0.3,0.4]", "data.validation=500",
            f"hydra.run.dir={tmp_path}", check=True)
    events = read_events(tmp_path)
    values = read_hparams(events)
    assert (values["model.dropout.p1"], values["model.dropout.p2"]) == (0.3, 0.4)
    assert values["status"] == "completed" and values["data.standardize"] is False
    assert values["data.validation"] == 500 and values["optim.schedule.name"] == "constant"
    shown = {info.display_name for info in experiment_in(events).hparam_infos if info.differs}
    assert shown == {"p1", "p2", "dropout kind", "weight decay", "lr"}
    metrics = [m.name.tag for m in experiment_in(events).metric_infos]
    assert {"steady/accuracy_val", "accuracy/val", "loss/val", "optim/lr"} <= set(metrics)
    for tag in metrics:  # each declared metric has its scalar in the run
        assert events.Scalars(tag), tag
    end = events.PluginTagToContent(metadata.PLUGIN_NAME)[metadata.SESSION_END_INFO_TAG]
    assert plugin_data_pb2.HParamsPluginData.FromString(end).session_end_info.status == \
        api_pb2.STATUS_SUCCESS


@pytest.mark.slow
def test_a_sweep_declares_the_experiment_once_at_its_root(tmp_path):
    sweep_dir = tmp_path / "sweep"
    run_cli("sweep", "--sweep-dir", sweep_dir, "optim.weight_decay=0,1e-4", *TINY, check=True)
    root = list(sweep_dir.glob("events.out.tfevents.*"))
    assert len(root) == 1
    experiment = experiment_in(read_events(sweep_dir))
    swept = [info for info in experiment.hparam_infos if info.name == "optim.weight_decay"]
    assert [v.number_value for v in swept[0].domain_discrete.values] == [0.0, 1e-4]
    assert swept[0].differs
    jobs = sorted(p for p in sweep_dir.iterdir() if p.is_dir())
    budget = "epochs=2,subset=1000,test_subset=500,device=cpu"
    assert [job.name for job in jobs] == [f"000_wd=0,{budget}", f"001_wd=1e-4,{budget}"]
    for job in jobs:  # the jobs write their sessions only: one experiment in the sweep
        events = read_events(job)
        assert experiment_in(events) is None
        assert read_hparams(events)["optim.weight_decay"] in (0.0, 1e-4)
