"""Sweep planning (sweep/plan.py): each job's config without a Hydra composition per job, the same
as Hydra's; the constant keys left out of folder names; old folders found on resume."""

import json
import re
import subprocess
import sys

import pytest

from conftest import REPO

from dropout_lab.errors import ConfigError
from dropout_lab.sweep.plan import constant_keys, plan_sweep

# Config groups (experiment=strong overrides optim to adamw; optim=adam,sgd choose again),
# lists, a list that does not fit model.hidden (range errors), floats and ints.
MIXED_GRID = ["experiment=strong", "optim=adam,sgd", "model.dropout.p=[0.2,0.5],[0.5,0.2]",
              "model.hidden=[128],[256,256]", "optim.lr=0.01,0.1", "seed=0,1",
              "data.subset=1000"]


def hydra_composition(job):
    """What a job's config is when Hydra composes it in full (as `dropout-lab train` does)."""
    from omegaconf import OmegaConf

    from dropout_lab.hydra_runner import compose, typed_config

    config = OmegaConf.structured(typed_config(compose(job)))
    return json.loads(json.dumps(OmegaConf.to_container(config, resolve=True), default=str))


@pytest.mark.parametrize("overrides", [
    MIXED_GRID,
    ["experiment=exercise_7", "data.subset=1000"],  # dict values: {kind:custom,p:[0.2,0.5]}
    ["experiment=exercise_1"],  # list items: model.dropout.p.0, model.dropout.p.1
    ["model.dropout.p=[0.2,0.2]", "model.dropout.p.1=0.5,0.8", "optim.lr=0.1,1e-3"],  # nested
    ["model.dropout.p=0.3,[0.2,0.5],0.1,[0.9]", "model.hidden=[64],[64,64]",  # one key: a list,
     "trainer.epochs=1,2", "data.subset=null,100"],  # then a number; int and null values
    ["model.dropout={kind:custom,p:0.5},{kind:none}", "model.dropout.three_valued=variance_matched",
     "model.dropout.kind=three_valued,custom"],  # one node inside another, 0.5 and variance_matched
])
def test_the_planned_configs_are_hydras(overrides):
    plan = plan_sweep(overrides)
    assert len(plan.configs) + len(plan.problems) == len(plan.jobs) > 1
    sample = sorted({*range(0, len(plan.jobs), max(1, len(plan.jobs) // 5)), len(plan.jobs) - 1})
    for num in sample:
        try:
            expected = hydra_composition(plan.jobs[num])
        except ConfigError as error:
            assert plan.problems[num] == str(error), plan.jobs[num]
        else:
            assert plan.configs[num] == expected, plan.jobs[num]


def test_the_mixed_grid_has_problems_and_configs_to_compare():
    """The comparison above covers both outcomes: range errors named and configs made."""
    plan = plan_sweep(MIXED_GRID)
    assert len(plan.problems) == 16 and len(plan.configs) == 16  # hidden=[128] with two p's
    assert {plan.configs[num]["optim"]["name"] for num in plan.configs} == {"adam", "sgd"}


def test_a_bad_value_stops_the_plan_as_hydra_would():
    with pytest.raises(ConfigError, match="trainer.epochs"):
        plan_sweep(["trainer.epochs=2,many"])
    with pytest.raises(ConfigError, match="optim"):
        plan_sweep(["optim=adam,nadam"])


def test_constant_keys_are_those_with_one_value():
    jobs = [["seed=0", "trainer.epochs=3"], ["seed=1", "trainer.epochs=3"]]
    assert constant_keys(jobs) == ["trainer.epochs"]
    assert constant_keys(jobs[:1]) == []  # one job: its name keeps them all


def test_folders_name_only_the_swept_keys():
    plan = plan_sweep(["model.dropout.p=[0.2,0.5],[0.5,0.2]", "optim.weight_decay=0,1e-4",
                       "trainer.epochs=3", "data.subset=2000"])
    assert plan.subdirs == ["000_p=0.2-0.5_wd=0", "001_p=0.2-0.5_wd=1e-4",
                            "002_p=0.5-0.2_wd=0", "003_p=0.5-0.2_wd=1e-4"]
    assert plan_sweep(["seed=4", "trainer.epochs=3"]).subdirs == ["000_seed=4_epochs=3"]


def test_the_mixed_grid_needs_no_composition_per_job(monkeypatch):
    """The comparison above is with the fast path: here a job left to Hydra would fail."""
    import dropout_lab.sweep.plan as plan_module

    def composed(job_cfg):
        raise AssertionError("a job was composed by Hydra")

    monkeypatch.setattr(plan_module, "full_record", composed)
    for overrides in (MIXED_GRID, ["experiment=exercise_7"], ["experiment=exercise_1"],
                      ["model.dropout.p=0.3,[0.2,0.5]", "model.hidden=[64],[64,64]"]):
        assert len(plan_sweep(overrides).jobs) > 1


def made_folder(sweep_dir, name, overrides):
    """A job folder as Hydra leaves it: its overrides in .hydra/overrides.yaml."""
    import yaml

    (sweep_dir / name / ".hydra").mkdir(parents=True)
    (sweep_dir / name / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))


def test_a_resumed_sweep_finds_its_folders_under_their_old_names(tmp_path):
    from dropout_lab.hydra_runner import hydra_quoted

    grid = ["model.dropout.p=[0.2,0.5],[0.5,0.2]", "seed=0,1", "trainer.epochs=3",
            f"hydra.sweep.dir={hydra_quoted(tmp_path)}"]
    # An older version's name (brackets, constants), and a run with p constant (seed swept).
    made_folder(tmp_path, "000_p=[0.2,0.5],seed=1,epochs=3",
                ["model.dropout.p=[0.2,0.5]", "seed=1", "trainer.epochs=3"])
    made_folder(tmp_path, "001_seed=1", ["seed=1", "trainer.epochs=3",
                                         "model.dropout.p=[0.5,0.2]", "trainer.num_threads=2"])
    # Another sweep's run under the name job 0 would get: job 0 gets a name of its own.
    made_folder(tmp_path, "000_p=0.2-0.5_seed=0", ["model.dropout.p=[0.2,0.5]", "seed=0"])
    plan = plan_sweep(grid)
    assert plan.subdirs[1:] == ["000_p=[0.2,0.5],seed=1,epochs=3", "002_p=0.5-0.2_seed=0",
                                "001_seed=1"]
    assert plan.subdirs[0].startswith("000_p=0.2-0.5_seed=0_") and len(set(plan.subdirs)) == 4
    assert plan_sweep(grid).subdirs == plan.subdirs  # the same every time it is planned
    # Only the jobs whose folder is not their plain name are in the map the workers read.
    assert set(plan.folder_map.values()) == {plan.subdirs[0], plan.subdirs[1], plan.subdirs[3]}


def test_a_rerun_without_sweep_dir_names_the_earlier_sweep(tmp_path, monkeypatch):
    """One line on stderr before anything runs: where the same sweep ran, how to continue it."""
    import yaml

    from conftest import invoke

    grid = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"
    search = "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper"
    for name, task, sweeper in [
            ("2026-12-01/10-00-00_aaaaaa", ["seed=0,1", "trainer.num_threads=1"], grid),
            ("2026-12-02/09-00-00_bbbbbb", ["seed=0,1,2"], grid),  # newer, another grid
            ("2026-12-02/10-00-00_cccccc", ["seed=0,1"], search)]:  # newer, cannot continue
        (tmp_path / "outputs/sweeps" / name).mkdir(parents=True)
        (tmp_path / "outputs/sweeps" / name / "multirun.yaml").write_text(yaml.safe_dump(
            {"hydra": {"overrides": {"hydra": [], "task": task}, "sweeper": {"_target_": sweeper}}}))
    monkeypatch.chdir(tmp_path)
    result = invoke("sweep", "--dry-run", "seed=0,1")
    assert result.exit_code == 0, result.stderr
    earlier = "outputs/sweeps/2026-12-01/10-00-00_aaaaaa"
    assert result.stderr.splitlines() == [
        f"note: the same sweep ran before in {earlier}; this one starts anew (to continue "
        f"that one instead, run the same command with --sweep-dir {earlier})"]
    assert invoke("sweep", "--dry-run", "seed=0,1", "--sweep-dir", "elsewhere").stderr == ""
    assert invoke("sweep", "--dry-run", "seed=1,0").stderr == ""  # another order: other jobs


def test_slurm_time_limit_too_short_for_its_signal_is_refused_before_anything_runs():
    """Slurm may send the signal before the time limit up to 60 s before signal_delay_s: with
    the default 120 s, a 3-minute limit could signal the job at its start, before it can
    checkpoint. Refused in the plan, so a dry run says so too; 4 minutes, or 3 with a shorter
    delay, leave the 30 s asked for."""
    from conftest import invoke

    refused = invoke("sweep", "--dry-run", "--launcher", "slurm", "hydra.launcher.timeout_min=3",
                     "seed=0,1")
    assert refused.exit_code == 2
    assert refused.stderr.splitlines() == [
        "error: hydra.launcher.timeout_min=3 with hydra.launcher.signal_delay_s=120 signals the job "
        "to checkpoint 60 s after it starts, and Slurm may send that signal up to 60 s earlier, "
        "before the job can checkpoint; leave at least 90 s between them: raise timeout_min or "
        "lower signal_delay_s"]
    for enough in (["hydra.launcher.timeout_min=4"],
                   ["hydra.launcher.timeout_min=3", "hydra.launcher.signal_delay_s=90"]):
        result = invoke("sweep", "--dry-run", "--launcher", "slurm", *enough, "seed=0,1")
        assert result.exit_code == 0, result.stderr
    local = invoke("sweep", "--dry-run", "--launcher", "local", "hydra.launcher.timeout_min=1",
                   "seed=0,1")  # no signal before a local job's limit
    assert local.exit_code == 0, local.stderr


@pytest.mark.slow
def test_plan_benchmark_script_runs():
    """scripts/bench_plan.py on two small grids prints the slope (no timing asserted)."""
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "bench_plan.py"), "--seeds", "2", "5",
         "--repeat", "1"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 jobs (model.dropout.p=0.2,0.5 seed=range(2)): dry run" in result.stdout
    assert re.search(r"per job: \([\d.]+ - [\d.]+\) s / \(10 - 4\) jobs = -?\d+\.\d\d ms", result.stdout)


def test_a_sweep_of_1000_jobs_or_more_numbers_its_folders_so_that_they_sort():
    from hydra import compose, initialize_config_dir

    from dropout_lab.config import config_dir
    from dropout_lab.sweep.plan import resolved_subdir

    plan = plan_sweep(["seed=range(1001)"])
    assert plan.subdirs[:2] == ["0000_seed=0", "0001_seed=1"] and plan.subdirs[-1] == "1000_seed=1000"
    assert sorted(plan.subdirs) == plan.subdirs
    # Hydra, given the planner's overrides, resolves hydra.sweep.subdir to the same names.
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose("config", overrides=plan.hydra_overrides, return_hydra_config=True)
    for num in (0, 999, 1000):
        assert resolved_subdir(cfg, num, plan.jobs[num]) == plan.subdirs[num]


def test_a_sweep_saved_before_a_key_existed_resumes(tmp_path):
    """A job folder whose saved config lacks a key the schema gained since (here
    trainer.divergence_threshold, added after sweeps were made with the old schema) ran as the
    key's default does: the sweep resumes into it. A real difference is still refused."""
    from dropout_lab.run_folder import write_summary
    from dropout_lab.sweep.plan import check_resumable

    plan = plan_sweep(["optim.lr=0.1,0.2", "data.subset=100"])
    for num, subdir in enumerate(plan.subdirs):
        config = json.loads(json.dumps(plan.configs[num]))
        del config["trainer"]["divergence_threshold"]
        (tmp_path / subdir).mkdir()
        write_summary(tmp_path / subdir, {"status": "completed", "config": config})
    check_resumable(tmp_path, plan)  # no error: the missing key is its default
    config["optim"]["lr"] = 0.3
    write_summary(tmp_path / plan.subdirs[-1], {"status": "completed", "config": config})
    with pytest.raises(ConfigError, match="holds a run of another config"):
        check_resumable(tmp_path, plan)
