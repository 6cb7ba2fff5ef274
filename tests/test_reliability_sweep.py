"""A sweep killed without warning (SIGKILL: no handler runs, the job's summary still says
running) and run again into the same sweep directory: the killed job resumes from its last
checkpoint and ends with exactly the numbers of the same run left alone; the job that never
started runs. The run left alone is conftest's reference_run (BUDGET, seed 0: the first job's
config)."""

import signal

import pytest

from conftest import (BUDGET, EPOCHS, job_dir, logged_tags, read_events, results, run_cli,
                      start_cli, wait_for_epoch)
from dropout_lab.run_folder import read_summary
from dropout_lab.checkpoint import read_checkpoint


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
