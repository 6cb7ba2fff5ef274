"""dropout_lab/sweep/stopped.py, the one rule for a sweep job that stopped before it finished:
recorded as stopped with why and where, and resumed by the next run of the same command; only
an error of the job's config or code fails it, to start anew. (The real stops, with real
processes: sweep/test_workers.py, end_to_end/test_reliability.py's full disk, sweep/test_slurm.py.)"""

import errno
from pathlib import Path

import pytest

from dropout_lab.disk import atomic_write
from dropout_lab.errors import ConfigError, RunError
from dropout_lab.run_folder import (CHECKPOINT, read_summary, record_failure, rerun_resumes,
                                    write_summary)
from dropout_lab.sweep.run import ended_jobs, summary_stamps
from dropout_lab.sweep.stopped import TIME_LIMIT, stop_cause, stopped


class UncompletedJobError(RuntimeError):
    """Named as submitit's (submitit.core.utils), which its signal handler raises in a Slurm job
    after the last requeue; stop_cause knows it by name so that no Slurm-less process imports
    submitit."""


def full_disk_error(tmp_path: Path) -> RunError:
    def write(_handle):
        raise OSError(errno.ENOSPC, "No space left on device")
    with pytest.raises(RunError) as raised:
        atomic_write(tmp_path / CHECKPOINT, write)
    return raised.value


def test_what_the_machine_stops_is_told_apart_from_the_jobs_own_errors(tmp_path):
    assert stop_cause(MemoryError()).startswith("ran out of memory")
    assert stop_cause(RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to "
                                   "allocate 1 bytes")).startswith("ran out of memory")
    assert stop_cause(full_disk_error(tmp_path)) == (
        f"ran out of disk space (cannot write {tmp_path / CHECKPOINT}: No space left on device)")
    assert stop_cause(UncompletedJobError("Job not requeued because: timed-out too many times.")) \
        == TIME_LIMIT
    assert stop_cause(ConfigError("model.dropout.p has to be between 0 and 1")) is None
    assert stop_cause(RunError("cannot write x: Permission denied")) is None
    assert stop_cause(ValueError("a bug")) is None


def job(tmp_path: Path, status: str, epochs_done: int = 2, checkpoint: bool = True) -> Path:
    run_dir = tmp_path / "000_seed=0"
    run_dir.mkdir(parents=True)
    write_summary(run_dir, {"status": status, "epochs_done": epochs_done,
                            "config": {"trainer": {"epochs": 5}}})
    if checkpoint:
        (run_dir / CHECKPOINT).write_bytes(b"whole")
    return run_dir


@pytest.mark.parametrize("status", ["running", "interrupted"])
def test_a_stopped_job_is_recorded_with_why_and_where_and_resumes(tmp_path, status):
    run_dir = job(tmp_path, status)
    stopped(run_dir, "its Slurm job 12_0 ended CANCELLED without a result", ["seed=0"], tmp_path)
    summary = read_summary(run_dir)
    assert summary["status"] == "stopped" and summary["overrides"] == ["seed=0"]
    assert summary["error"] == (
        f"its Slurm job 12_0 ended CANCELLED without a result in epoch 3 of 5; run the same sweep "
        f"with --sweep-dir {tmp_path} to resume it from its last checkpoint")
    assert rerun_resumes(run_dir)


def test_the_time_limit_hint_names_the_longer_limit(tmp_path):
    run_dir = job(tmp_path, "running")
    stopped(run_dir, TIME_LIMIT, ["seed=0"], tmp_path)
    assert read_summary(run_dir)["error"].endswith(
        f"in epoch 3 of 5; run the same sweep with --sweep-dir {tmp_path} (and a longer "
        f"hydra.launcher.timeout_min) to resume it from its last checkpoint")


@pytest.mark.parametrize("status", ["completed", "diverged"])
def test_a_job_that_ended_for_good_keeps_its_result(tmp_path, status):
    run_dir = job(tmp_path, status)
    stopped(run_dir, "its process ended without a result", [], tmp_path)
    assert read_summary(run_dir)["status"] == status


def test_a_job_its_own_error_failed_starts_anew(tmp_path):
    run_dir = job(tmp_path, "running")
    record_failure(run_dir, "model.dropout.p has to be between 0 and 1", ["seed=0"])
    assert read_summary(run_dir)["status"] == "failed"
    assert not rerun_resumes(run_dir)


def test_a_stopped_job_without_a_checkpoint_starts_anew_unless_it_had_no_epoch(tmp_path):
    assert not rerun_resumes(job(tmp_path / "a", "stopped", epochs_done=2, checkpoint=False))
    assert rerun_resumes(job(tmp_path / "b", "stopped", epochs_done=0, checkpoint=False))


def test_progress_counts_only_the_jobs_that_ended_in_this_run(tmp_path):
    """A rerun of a sweep with 1 completed and 2 stopped jobs: at its start nothing has ended in
    this run, though 3 summaries say ended; a job counts once its summary changes to ended."""
    from dropout_lab.sweep.plan import SweepPlan

    subdirs = ["000_seed=0", "001_seed=1", "002_seed=2"]
    for subdir, status in zip(subdirs, ["completed", "stopped", "stopped"]):
        (tmp_path / subdir).mkdir()
        write_summary(tmp_path / subdir, {"status": status})
    plan = SweepPlan("basic", jobs=[["seed=0"], ["seed=1"], ["seed=2"]], subdirs=subdirs, problems={})
    before = summary_stamps([tmp_path / subdir for subdir in subdirs])
    assert ended_jobs(tmp_path, plan, before) == {}
    write_summary(tmp_path / subdirs[1], {"status": "running"})  # resumed: not ended
    assert ended_jobs(tmp_path, plan, before) == {}
    write_summary(tmp_path / subdirs[1], {"status": "completed"})
    write_summary(tmp_path / subdirs[2], {"status": "stopped", "error": "again"})
    assert ended_jobs(tmp_path, plan, before) == {"completed": 1, "stopped": 1}


@pytest.mark.parametrize("summary", [None, "{not json"])
def test_a_job_without_a_readable_summary_stopped_before_its_first_epoch(tmp_path, summary):
    """where_it_was reads the run as a RunRecord: no summary, or a damaged one, says where
    nothing was trained rather than failing the recording of the stop."""
    from dropout_lab.sweep.stopped import where_it_was

    tmp_path.joinpath("job").mkdir()
    if summary is not None:
        (tmp_path / "job" / "summary.json").write_text(summary)
    assert where_it_was(tmp_path / "job") == "before its first epoch"
