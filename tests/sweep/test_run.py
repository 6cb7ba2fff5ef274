"""`dropout-lab sweep`: dry runs in-process; real Hydra multiruns in subprocesses on a small data
subset (slow). Bad sweeps, one line each and exit 2, are in tests/end_to_end/test_bad_input.py's table."""

import csv
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import (BUDGET, EPOCHS, REPO, invoke, job_dir, logged_tags, read_events,
                      read_hparams, results, run_cli, start_cli, wait_for_epoch)
from dropout_lab.checkpoint import read_checkpoint
from dropout_lab.run_folder import read_summary

# One epoch on 500 images, one thread, no progress bar: about a second of training a job.
SMALL = [
    "data.subset=500",
    "data.test_subset=500",
    "trainer.epochs=1",
    "trainer.progress=false",
    "trainer.num_threads=1",
]


def job_dirs(sweep_dir: Path):
    return sorted((p for p in sweep_dir.iterdir() if p.is_dir() and not p.name.startswith(".")),
                  key=lambda p: int(p.name.split("_")[0]))


def summaries(sweep_dir: Path):
    return [json.loads((d / "summary.json").read_text()) for d in job_dirs(sweep_dir)]


def report_rows(sweep_dir: Path):
    with open(sweep_dir / "report.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_dry_run_lists_jobs_and_names_bad_cells(tmp_path):
    sweep_dir = tmp_path / "sweep"
    result = invoke("sweep", "--dry-run", "--sweep-dir", sweep_dir,
                    "model.dropout.p=0.2,1.5", "seed=0,1")
    assert result.exit_code == 2, result.stderr
    lines = [line.strip() for line in result.stdout.splitlines()]
    assert lines[0] == "4 jobs:"
    assert "#0: model.dropout.p=0.2 seed=0 -> 000_p=0.2_seed=0" in lines  # the job's folder
    assert "#3: model.dropout.p=1.5 seed=1 -> 003_p=1.5_seed=1" in lines
    assert result.stderr.strip().splitlines() == ["error: 2 of 4 jobs have a bad config: #2, #3"]
    assert "Traceback" not in result.stderr
    assert not sweep_dir.exists()  # nothing ran, nothing written


def test_named_sweep_expands_from_its_config():
    result = invoke("sweep", "--dry-run", "experiment=swap_probs")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[0] == "12 jobs:"  # 2 orders x 2 weight decays x 3 seeds
    assert "model.dropout.p=[0.5,0.2] optim.weight_decay=0.0001 seed=2" in result.stdout


def test_new_sweep_dirs_differ_within_one_second(tmp_path):
    from dropout_lab.sweep.plan import new_sweep_dir

    made = {new_sweep_dir(tmp_path) for _ in range(20)}
    assert len(made) == 20 and all(path.is_dir() for path in made)


@pytest.mark.slow
def test_joblib_grid_runs_every_job_logs_hparams_and_resumes(tmp_path):
    sweep_dir = tmp_path / "sweep"
    args = ["sweep", "--jobs", "2", "--sweep-dir", sweep_dir,
            "model.dropout.p=0.2,0.5", "optim.weight_decay=0,1e-4", *SMALL]
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    assert "sweep: 4 of 4 jobs completed" in result.stdout
    assert "4/4" in result.stderr  # the bar of ended jobs, read from their summaries

    runs = job_dirs(sweep_dir)
    assert len(runs) == 4
    expected = {(0.2, 0.0), (0.2, 1e-4), (0.5, 0.0), (0.5, 1e-4)}
    seen = set()
    for run_dir in runs:
        assert len(list(run_dir.glob("events.out.tfevents.*"))) == 1  # one run each, no extras
        hparams = read_hparams(read_events(run_dir))
        assert hparams["model.dropout.p1"] == hparams["model.dropout.p2"]  # one p for both layers
        seen.add((hparams["model.dropout.p1"], hparams["optim.weight_decay"]))
        assert hparams["status"] == "completed"
        assert "accuracy/test" in read_events(run_dir).Tags()["scalars"]
    assert seen == expected
    # At the top, one event file: the sweep's experiment (its swept keys) for the HParams view.
    assert len(list(sweep_dir.glob("events.out.tfevents.*"))) == 1

    rows = report_rows(sweep_dir)
    assert len(rows) == 4
    assert {(float(r["model.dropout.p"]), float(r["optim.weight_decay"])) for r in rows} == expected
    accuracies = [float(r["steady test acc"]) for r in rows]
    assert accuracies == sorted(accuracies, reverse=True)
    assert (sweep_dir / "report.md").is_file() and (sweep_dir / "test_accuracy.png").is_file()

    # The same sweep into the same directory (one job at a time now: the number of threads
    # does not change the results): every job completed, so none trains again.
    before = {d.name: (d / "summary.json").stat().st_mtime_ns for d in runs}
    again = run_cli(*[arg for arg in args if arg not in ("--jobs", "2")])
    assert again.returncode == 0, again.stderr
    assert "sweep: 4 of 4 jobs completed (all before this command: nothing to train)" in again.stdout
    assert {d.name: (d / "summary.json").stat().st_mtime_ns for d in job_dirs(sweep_dir)} == before


@pytest.mark.slow
def test_failing_jobs_are_recorded_and_the_others_complete(tmp_path):
    sweep_dir = tmp_path / "sweep"
    # Job 1 diverges (SGD with lr 1e9 overflows within 8 steps); jobs 2 and 3 have p = 1.5.
    result = run_cli("sweep", "--sweep-dir", sweep_dir, "model.dropout.p=0.2,1.5",
                     "optim.lr=0.1,1e9", "trainer.batch_size=64", *SMALL)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith(
        "error: 3 of 4 jobs did not complete (#1 diverged, #2 failed, #3 failed)")
    assert "Traceback" not in result.stderr + result.stdout

    statuses = [s["status"] for s in summaries(sweep_dir)]
    assert statuses == ["completed", "diverged", "failed", "failed"]
    failed = summaries(sweep_dir)[2]
    assert "between 0 and 1" in failed["error"] and "\n" not in failed["error"]
    assert "model.dropout.p=1.5" in failed["overrides"]

    rows = {int(r["job"].split("_")[0]): r for r in report_rows(sweep_dir)}
    assert rows[0]["status"] == "completed" and float(rows[0]["steady test acc"]) > 0
    assert rows[1]["status"] == "diverged" and "NaN" in rows[1]["error"]
    assert rows[2]["status"] == "failed" and "1.5" in rows[2]["error"]
    report = (sweep_dir / "report.md").read_text()
    assert "failed" in report and "diverged" in report


@pytest.mark.slow
def test_a_sweep_resumed_with_more_seeds_keeps_its_finished_runs(tmp_path):
    # The larger grid numbers its jobs anew (p=0.5,seed=1 was job 1, is job 3); the finished
    # runs are found under their old numbers, not trained again beside them.
    sweep_dir = tmp_path / "sweep"
    first = run_cli("sweep", "--sweep-dir", sweep_dir, "model.dropout.p=0.2,0.5", "seed=1", *SMALL)
    assert first.returncode == 0, first.stderr
    again = run_cli("sweep", "--sweep-dir", sweep_dir, "model.dropout.p=0.2,0.5", "seed=0,1",
                    *SMALL)
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("completed before, skipped") == 2
    # The first sweep named only p (its seed was constant); the second names p and seed.
    assert [d.name for d in job_dirs(sweep_dir)] == [
        "000_p=0.2", "000_p=0.2_seed=0", "001_p=0.5", "002_p=0.5_seed=0"]
    assert sorted((r["model.dropout.p"], r["seed"]) for r in report_rows(sweep_dir)) == [
        ("0.2", "0"), ("0.2", "1"), ("0.5", "0"), ("0.5", "1")]


@pytest.mark.slow
def test_a_sweep_resumed_in_worker_processes_finds_an_older_versions_folders(tmp_path):
    # Folders named as dropout-lab named them before (brackets, every override): the workers,
    # which resolve the folder names themselves, find them through SWEEP_DIR/job_folders.json.
    sweep_dir = tmp_path / "sweep"
    run_cli("sweep", "--sweep-dir", sweep_dir, "model.dropout.p=0.2,0.5", *SMALL, check=True)
    old_names = ["000_p=0.2,epochs=1,subset=500,test_subset=500",
                 "001_p=0.5,epochs=1,subset=500,test_subset=500"]
    for folder, old_name in zip(job_dirs(sweep_dir), old_names):
        folder.rename(sweep_dir / old_name)
    before = {d.name: (d / "summary.json").stat().st_mtime_ns for d in job_dirs(sweep_dir)}
    again = run_cli("sweep", "--jobs", "2", "--sweep-dir", sweep_dir, "model.dropout.p=0.2,0.5,0.8",
                    *SMALL)
    assert again.returncode == 0, again.stderr
    assert "sweep: 3 of 3 jobs completed" in again.stdout
    assert [d.name for d in job_dirs(sweep_dir)] == [*old_names, "002_p=0.8"]
    assert {name: (sweep_dir / name / "summary.json").stat().st_mtime_ns for name in old_names} \
        == before  # skipped, not trained again


def test_submitit_local_runs_a_two_job_sweep(tmp_path):
    sweep_dir = tmp_path / "sweep"
    result = run_cli("sweep", "--launcher", "local", "--sweep-dir", sweep_dir, "seed=0,1", *SMALL)
    assert result.returncode == 0, result.stderr
    assert [s["status"] for s in summaries(sweep_dir)] == ["completed", "completed"]
    assert (sweep_dir / ".submitit").is_dir()  # the jobs went through submitit
    assert sorted(r["seed"] for r in report_rows(sweep_dir)) == ["0", "1"]


@pytest.mark.slow
def test_optuna_search_finishes_and_reports_its_best(tmp_path):
    sweep_dir = tmp_path / "sweep"
    result = run_cli("sweep", "--sweep-dir", sweep_dir, "experiment=search",
                     "hydra.sweeper.n_trials=3", *SMALL)
    assert result.returncode == 0, result.stderr
    best = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    assert set(best["best_params"]) == {"model.dropout.p.0", "model.dropout.p.1",
                                        "optim.weight_decay", "optim.lr", "optim.momentum",
                                        "optim.schedule.name"}
    steady = [s["steady"] for s in summaries(sweep_dir)]
    assert len(steady) == 3 and all("test_accuracy" in row for row in steady)  # reported beside
    # Tuned on validation: the task returns the steady validation accuracy.
    assert best["best_value"] == pytest.approx(max(row["val_accuracy"] for row in steady))
    # Each trial ran with the probabilities it was given.
    for summary, run_dir in zip(summaries(sweep_dir), job_dirs(sweep_dir)):
        overrides = yaml.safe_load((run_dir / ".hydra" / "overrides.yaml").read_text())
        p0 = next(float(o.split("=")[1]) for o in overrides if o.startswith("model.dropout.p.0="))
        assert summary["config"]["model"]["dropout"]["p"][0] == pytest.approx(p0)
    report = (sweep_dir / "report.md").read_text()
    assert f"Optuna's best: steady val acc {best['best_value']:.4f} (its steady test acc " in report
    assert "\r" not in result.stdout + result.stderr  # redirected: plain lines, no bar


@pytest.mark.slow
def test_interrupted_sweep_resumes_from_the_checkpoint(tmp_path):
    sweep_dir = tmp_path / "sweep"
    args = ["sweep", "--sweep-dir", str(sweep_dir), "seed=0,1", "data.subset=4000",
            "data.test_subset=500", "trainer.epochs=8", "trainer.progress=false",
            "trainer.num_threads=1"]
    process = subprocess.Popen([sys.executable, "-m", "dropout_lab", *args], cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(sweep_dir.glob("000_*/checkpoint.pt")) and time.monotonic() < deadline:
        time.sleep(0.05)
    (first_job,) = sweep_dir.glob("000_*")
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "--sweep-dir" in stderr.strip().splitlines()[-1]
    interrupted = json.loads((first_job / "summary.json").read_text())
    assert interrupted["status"] == "interrupted" and 1 <= interrupted["epochs_done"] < 8
    done_before = interrupted["history"]
    assert not list(sweep_dir.glob("001_*"))

    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    resumed = json.loads((first_job / "summary.json").read_text())
    assert resumed["status"] == "completed" and resumed["epochs_done"] == 8
    # The epochs before the interruption were kept, not trained again.
    assert resumed["history"][:len(done_before)] == done_before
    assert [s["status"] for s in summaries(sweep_dir)] == ["completed", "completed"]


@pytest.mark.slow
def test_sweep_benchmark_script_runs(tmp_path):
    """scripts/bench_sweep.py on a small budget prints its figures (no timing asserted)."""
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "bench_sweep.py"), "--jobs", "2",
         "data.subset=500", "data.test_subset=500"],
        capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 jobs of 1 epoch(s), 2 workers" in result.stdout
    assert re.search(r"overhead: .* = [+-]\d+\.\d%", result.stdout)
    assert re.search(r"floor: .* takes \d+\.\d\d s", result.stdout)


# --- a sweep killed without warning (SIGKILL: no handler runs, the job's summary still says
# running) and run again into the same sweep directory: the killed job resumes from its last
# checkpoint and ends with exactly the numbers of the same run left alone (conftest's
# reference_run: BUDGET, seed 0, the first job's config); the job that never started runs.


@pytest.mark.slow
def test_sweep_killed_mid_job_resumes_to_the_same_numbers(reference_run, tmp_path):
    sweep_dir = tmp_path / "sweep"
    args = ["sweep", "--sweep-dir", sweep_dir, *BUDGET, "seed=0,1"]
    process = start_cli(*args)
    first_job = job_dir(sweep_dir, 0)
    wait_for_epoch(process, first_job, 2)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
    killed = read_summary(first_job)
    assert killed["status"] == "running" and 2 <= killed["epochs_done"] < EPOCHS
    assert [p.name.split("_")[0] for p in sweep_dir.iterdir() if p.name[0].isdigit()] == ["000"]

    again = run_cli(*args)
    assert again.returncode == 0, again.stderr
    assert "sweep: 2 of 2 jobs completed" in again.stdout
    resumed = read_summary(first_job)
    assert resumed["status"] == "completed" and resumed["epochs_done"] == EPOCHS
    assert resumed["history"][:killed["epochs_done"]] == killed["history"]  # kept, not redone

    # The same run (seed 0), never interrupted, as a single `train`.
    assert read_summary(reference_run)["config"] == resumed["config"]
    assert results(resumed["history"]) == results(read_summary(reference_run)["history"])
    mine, theirs = read_checkpoint(first_job).model, read_checkpoint(reference_run).model
    assert all(mine[key].equal(theirs[key]) for key in theirs)
    events = read_events(first_job)
    for tag in logged_tags(resumed):
        assert [point.step for point in events.Scalars(tag)] == list(range(1, EPOCHS + 1))
