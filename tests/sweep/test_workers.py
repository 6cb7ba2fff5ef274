"""A sweep outlives its workers (issue 15), with real processes: a job's process killed with
SIGKILL mid-job (what the OOM killer does) or a job that runs out of memory under a limit is
recorded as stopped with its cause (not failed: nothing in its config is wrong), the other jobs
complete, the sweep ends with its one-line
summary and exit code 1 (no traceback), and a rerun with --sweep-dir continues the lost job from
its checkpoint to exactly the numbers of an uninterrupted run; with --retries the sweep does that
by itself."""

import os
import re
import signal
import time
from pathlib import Path

import pytest

from conftest import results, run_cli, start_cli
from dropout_lab.errors import RunError
from dropout_lab.run_folder import read_summary
from memory_limit import TESTS, memory_limit_overrides

EPOCHS = 4
# Epochs long enough (5,000 images, ~0.2 s each on one core; on the CPU, whatever the host has)
# that a kill after epoch 1 lands
# while epochs are still to run; Adam, so that the optimiser has state to restore.
BUDGET = ["data.subset=5000", "data.test_subset=500", f"trainer.epochs={EPOCHS}",
          "trainer.progress=false", "trainer.num_threads=1", "optim=adam", "trainer.device=cpu"]
# The job that is killed: seed 1, the second job, which starts beside the first.
KILLED_SEED = 1
# Out of memory: a [4096,4096] MLP with Adam needs about 320 MB for its weights, gradients and
# moments; a [64,64] one next to nothing. Jobs may grow by LIMIT_MB (the first job in a worker
# process grows by about 140 MB: TensorBoard's thread, first-use allocations). One batch per
# epoch keeps the wide model cheap to train. On the CPU: RLIMIT_AS never sees GPU memory.
LIMIT_MB = 260
OOM_BUDGET = ["data.subset=256", "data.test_subset=256", f"trainer.epochs={EPOCHS}",
              "trainer.progress=false", "trainer.num_threads=1", "optim=adam", "trainer.device=cpu"]


def job_dir(sweep_dir: Path, num: int) -> Path:
    (found,) = [p for p in sweep_dir.iterdir() if p.is_dir() and p.name.startswith(f"{num:03d}_")]
    return found


def descendants(pid: int) -> list:
    """The processes below ``pid`` (children, grandchildren...), from /proc."""
    children = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # ended meanwhile
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        below = children.get(todo.pop(), [])
        found += below
        todo += below
    return found


def process_training(sweep_pid: int, run_dir: Path):
    """The process below the sweep training into ``run_dir``: the one holding the folder open
    (train() locks it with flock while it trains), or None."""
    target = os.path.realpath(run_dir)
    for pid in descendants(sweep_pid):
        try:
            links = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
        except OSError:
            continue
        if target in links:
            return pid
    return None


def kill_mid_job(process, sweep_dir: Path, num: int, timeout: float = 600) -> dict:
    """SIGKILL the process training job ``num`` once its summary says running with an epoch
    done; its summary as it was just before (the history the checkpoint holds at least)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the sweep ended early:\n{process.communicate()}"
        try:
            summary = read_summary(job_dir(sweep_dir, num))
        except (ValueError, FileNotFoundError, RunError):  # not started or not written yet
            summary = {}
        if summary.get("status") == "running" and 1 <= summary.get("epochs_done", 0) < EPOCHS:
            pid = process_training(process.pid, job_dir(sweep_dir, num))
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
                return summary
        time.sleep(0.02)
    process.kill()
    raise AssertionError(f"job #{num} was not seen mid-training within {timeout} s")


def statuses(sweep_dir: Path, jobs: int) -> list:
    return [read_summary(job_dir(sweep_dir, num))["status"] for num in range(jobs)]


def assert_no_traceback(*outputs: str) -> None:
    for output in outputs:
        assert "Traceback" not in output and "TerminatedWorkerError" not in output, output


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict:
    """The killed job's run (seed 1), trained once, left alone, as a single `train`."""
    run_dir = tmp_path_factory.mktemp("alone") / "run"
    run_cli("train", *BUDGET, f"seed={KILLED_SEED}", f"hydra.run.dir={run_dir}", check=True)
    return read_summary(run_dir)


@pytest.mark.slow
def test_a_killed_worker_loses_only_its_job_and_a_rerun_resumes_it(tmp_path, uninterrupted):
    sweep_dir = tmp_path / "sweep"
    args = ["sweep", "--jobs", "2", "--sweep-dir", sweep_dir, "seed=0,1,2,3", *BUDGET]
    process = start_cli(*args)
    before = kill_mid_job(process, sweep_dir, KILLED_SEED)
    stdout, stderr = process.communicate(timeout=600)

    assert process.returncode == 1, stderr
    assert_no_traceback(stdout, stderr)
    assert stderr.strip().splitlines()[-1] == (
        f"error: 1 of 4 jobs did not complete (#1 stopped); see {sweep_dir / 'report.md'}; the "
        f"stopped ones resume from their last checkpoint when you run the same command with "
        f"--sweep-dir {sweep_dir}")
    assert "sweep: 3 of 4 jobs completed" in stdout
    assert statuses(sweep_dir, 4) == ["completed", "stopped", "completed", "completed"]
    lost = read_summary(job_dir(sweep_dir, 1))
    assert re.fullmatch(
        rf"worker killed by SIGKILL \(out of memory\?\) in epoch \d of {EPOCHS}; run the same "
        rf"sweep with --sweep-dir {re.escape(str(sweep_dir))} to resume it from its last checkpoint",
        lost["error"]), lost["error"]
    assert lost["history"][:before["epochs_done"]] == before["history"]
    assert "SIGKILL" in (sweep_dir / "report.md").read_text()

    # The same command again: the three completed jobs are skipped, the lost one continues
    # from its checkpoint (its first epochs are kept, not trained again) to the same numbers.
    again = run_cli(*args)
    assert again.returncode == 0, again.stderr
    assert "sweep: 4 of 4 jobs completed" in again.stdout
    assert again.stdout.count("completed before, skipped") == 3
    resumed = read_summary(job_dir(sweep_dir, 1))
    assert resumed["status"] == "completed" and resumed.get("error") is None
    assert resumed["history"][:lost["epochs_done"]] == lost["history"]
    assert results(resumed["history"]) == results(uninterrupted["history"])


@pytest.mark.slow
@pytest.mark.parametrize("launcher", [["--jobs", "2"], ["--launcher", "local"]],
                         ids=["joblib", "local"])
def test_with_retries_a_killed_job_runs_again_from_its_checkpoint(tmp_path, uninterrupted, launcher):
    sweep_dir = tmp_path / "sweep"
    process = start_cli("sweep", *launcher, "--retries", "1", "--sweep-dir", sweep_dir,
                        "seed=0,1", *BUDGET)
    before = kill_mid_job(process, sweep_dir, KILLED_SEED)
    stdout, stderr = process.communicate(timeout=600)

    assert process.returncode == 0, stderr
    assert_no_traceback(stdout, stderr)
    assert "sweep: 2 of 2 jobs completed" in stdout
    assert "running it again from its last checkpoint (retry 1 of 1)" in stdout + stderr
    retried = read_summary(job_dir(sweep_dir, 1))
    assert retried["history"][:before["epochs_done"]] == before["history"]  # resumed, not redone
    assert results(retried["history"]) == results(uninterrupted["history"])


@pytest.mark.slow
def test_a_job_out_of_memory_is_recorded_and_a_rerun_completes_it(tmp_path):
    sweep_dir = tmp_path / "sweep"
    args = ["sweep", "--jobs", "2", "--sweep-dir", sweep_dir,
            "model.hidden=[64,64],[128,128],[4096,4096]", *OOM_BUDGET]
    limited = run_cli(*args, *memory_limit_overrides(LIMIT_MB), env={"PYTHONPATH": str(TESTS)})

    assert limited.returncode == 1, limited.stderr
    assert_no_traceback(limited.stdout, limited.stderr)
    assert limited.stderr.strip().splitlines()[-1].startswith(
        f"error: 1 of 3 jobs did not complete (#2 stopped); see {sweep_dir / 'report.md'}; the "
        f"stopped ones resume")
    assert statuses(sweep_dir, 3) == ["completed", "completed", "stopped"]
    stopped = read_summary(job_dir(sweep_dir, 2))
    assert "can't allocate memory" in stopped["error"] and "\n" not in stopped["error"]
    assert re.search(r"ran out of memory \(.*\) in epoch 1 of 4; run the same sweep",
                     stopped["error"]), stopped["error"]

    # With the memory to do it, the same sweep completes the job, as a run left alone would.
    again = run_cli(*args)
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("completed before, skipped") == 2
    alone = tmp_path / "alone"
    run_cli("train", *OOM_BUDGET, "model.hidden=[4096,4096]", f"hydra.run.dir={alone}", check=True)
    completed = read_summary(job_dir(sweep_dir, 2))
    assert completed["status"] == "completed"
    assert results(completed["history"]) == results(read_summary(alone)["history"])
