"""Sweeps on a real Slurm: `dropout-lab sweep --launcher slurm` against the single-node cluster
scripts/slurm_up.sh starts on this machine (root and Debian's packages; the script installs them
with apt-get when they are missing). Where it cannot start, these tests are skipped with the
reason; in CI (CI=true) they must run, so there they fail instead.

Jobs are real Slurm array tasks running the real training core; the tests requeue and cancel
them with Slurm's own commands (scontrol requeue, scancel) and let Slurm's own time limit
signal them.
"""

import csv
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, TINY, read_events, read_hparams, run_cli, skip_or_fail_in_ci

# Both jobs of a sweep on the node at once (2 cores here), each small.
SLURM = ["--launcher", "slurm", "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1"]
# Epochs long enough (about 0.5 s each on one thread) to requeue or cancel a job in mid-run.
LONGER = ["data.subset=20000", "data.test_subset=500", "trainer.epochs=8",
          "trainer.progress=false", "trainer.num_threads=1"]
HISTORY_METRICS = ["epoch", "train_loss", "train_accuracy", "test_loss", "test_accuracy", "gap"]

pytestmark = pytest.mark.slow


def cannot_start_reason():
    if os.geteuid() != 0:
        return "starting a local Slurm needs root (scripts/slurm_up.sh)"
    if not shutil.which("slurmctld") and not shutil.which("apt-get"):
        return "Slurm is not installed and apt-get is not available to install it"
    return None


def cluster_is_up() -> bool:
    if not shutil.which("scontrol"):
        return False
    ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True)
    return "is UP" in ping.stdout


@pytest.fixture(scope="session")
def slurm_cluster():
    """The local cluster for the session: started here (and stopped at the end) unless it
    already runs; skipped with a reason where it cannot start, but a failure in CI."""
    reason, started_here = cannot_start_reason(), False
    if reason is None and not cluster_is_up():
        up = subprocess.run(["bash", str(REPO / "scripts" / "slurm_up.sh")],
                            capture_output=True, text=True, timeout=900)
        if up.returncode != 0:
            lines = up.stderr.strip().splitlines() or ["no output"]
            reason = f"scripts/slurm_up.sh failed: {lines[0]}"
            sys.stderr.write(up.stderr)
        started_here = up.returncode == 0
    if reason:
        skip_or_fail_in_ci(f"the Slurm tests need a local cluster: {reason}")
    yield
    if started_here:
        subprocess.run(["bash", str(REPO / "scripts" / "slurm_down.sh")],
                       capture_output=True, timeout=300)


def slurm(*args) -> str:
    return subprocess.run(list(args), capture_output=True, text=True, check=True).stdout


def slurm_job_ids(sweep_dir: Path) -> dict:
    """Job number -> Slurm job id ("12_0", or "12" for a one-job sweep), from the folders
    submitit keeps in the sweep (one per job, holding JOBID_submitted.pkl)."""
    folders = [f for f in (sweep_dir / ".submitit").glob("*") if (f / f"{f.name}_submitted.pkl").exists()]
    return {int(f.name.split("_")[1]) if "_" in f.name else 0: f.name for f in folders}


def job_state(job_id: str) -> str:
    return slurm("squeue", "--noheader", "--states=all", "--format=%T", f"--jobs={job_id}").strip()


def wait_for(condition, what: str, sweep=None, timeout: float = 180.0):
    """Poll ``condition`` every 0.1 s until it returns something true; that value.
    Gives up early when the ``sweep`` process ends first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if sweep is not None and sweep.poll() is not None:
            out, err = sweep.communicate()
            raise AssertionError(f"the sweep ended (exit {sweep.returncode}) before {what}:\n{out}{err}")
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def run_folder(sweep_dir: Path, num: int):
    """The job's run folder once it has written its first epoch checkpoint, else None."""
    return next((p.parent for p in sweep_dir.glob(f"{num:03d}_*/checkpoint.pt")), None)


def start_sweep(sweep_dir: Path, *overrides) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "dropout_lab", "sweep", *SLURM, "--sweep-dir", str(sweep_dir),
         *overrides], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(sweep: subprocess.Popen, timeout: float = 300.0):
    out, err = sweep.communicate(timeout=timeout)
    return sweep.returncode, out, err


def stop(sweep: subprocess.Popen) -> None:
    """After a failed test: Ctrl-C the sweep, which cancels its jobs still on the cluster."""
    if sweep.poll() is None:
        sweep.send_signal(signal.SIGINT)
        try:
            sweep.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            sweep.kill()


def read_report(sweep_dir: Path) -> dict:
    with open(sweep_dir / "report.csv", newline="") as handle:
        return {row["job"]: row for row in csv.DictReader(handle)}


def read_checkpoint_history(run_dir: Path) -> list:
    import torch

    return torch.load(run_dir / "checkpoint.pt", weights_only=True)["history"]


def summary(run_dir: Path) -> dict:
    from dropout_lab.run_folder import read_summary

    return read_summary(run_dir)


def test_grid_sweep_runs_as_slurm_jobs(slurm_cluster, tmp_path):
    sweep_dir = tmp_path / "sweep"
    done = run_cli("sweep", *SLURM, "--sweep-dir", sweep_dir, *TINY, "seed=0,1")
    assert done.returncode == 0, done.stderr
    assert "2 of 2 jobs completed" in done.stdout

    ids = slurm_job_ids(sweep_dir)
    assert sorted(ids) == [0, 1]
    for num in (0, 1):  # Slurm ran them (their processes may still be exiting)
        wait_for(lambda: job_state(ids[num]) == "COMPLETED", f"Slurm job {ids[num]} COMPLETED",
                 timeout=60)
    report = read_report(sweep_dir)
    assert len(report) == 2
    assert sorted(row["seed"] for row in report.values()) == ["0", "1"]
    assert {row["status"] for row in report.values()} == {"completed"}
    for num in (0, 1):  # each job's TensorBoard run, with its swept seed among the hparams
        (run_dir,) = sweep_dir.glob(f"{num:03d}_*")
        events = read_events(run_dir)
        assert [s.step for s in events.Scalars("accuracy/test")] == [1, 2]
        assert read_hparams(events)["seed"] == num


def requeue(job_id: str, how, sweep) -> None:
    """Requeue the running job with ``how`` and wait until it is back in the queue."""
    how()
    wait_for(lambda: job_state(job_id) == "PENDING", f"job {job_id} back in the queue", sweep)


def release(job_id: str) -> None:
    """Let a requeued job start now rather than in two minutes (AuthInfo's cred_expire, 120 s).
    Slurm holds it so long because its node refuses the job's new credential when it is from
    the same second as the requeue ("Job credential revoked"): leave that second first."""
    time.sleep(1.0)
    slurm("scontrol", "update", f"JobId={job_id}", "StartTime=now")


def test_requeued_job_resumes_and_matches_an_uninterrupted_run(slurm_cluster, tmp_path):
    """One job requeued twice in mid-run: by `scontrol requeue` (what pre-emption does), then by
    the signal Slurm sends before the time limit, which submitit turns into checkpoint-and-requeue.
    It resumes each time and ends with exactly the numbers of the same run left alone."""
    sweep_dir, uninterrupted_dir = tmp_path / "sweep", tmp_path / "uninterrupted"
    overrides = [*LONGER, "trainer.epochs=10", "seed=3"]
    reference = subprocess.Popen(  # the same run left alone, trained meanwhile
        [sys.executable, "-m", "dropout_lab", "train", *overrides,
         f"hydra.run.dir={uninterrupted_dir}"], cwd=REPO, stdout=subprocess.DEVNULL)
    sweep = start_sweep(sweep_dir, *overrides)
    try:
        run_dir = wait_for(lambda: run_folder(sweep_dir, 0), "the job's first checkpoint", sweep)
        job_id = slurm_job_ids(sweep_dir)[0]
        requeue(job_id, lambda: slurm("scontrol", "requeue", job_id), sweep)
        first = summary(run_dir)
        assert first["status"] == "interrupted" and 1 <= first["epochs_done"] < 10  # on SIGTERM
        kept_first = read_checkpoint_history(run_dir)
        release(job_id)

        wait_for(lambda: len(read_checkpoint_history(run_dir)) > len(kept_first),
                 "a checkpoint after the resume", sweep)
        # As at signal_delay_s before the time limit (sbatch --signal=USR2@...).
        requeue(job_id, lambda: slurm("scancel", "--signal=USR2", job_id), sweep)
        kept_second = read_checkpoint_history(run_dir)
        assert len(kept_first) < len(kept_second) < 10
        release(job_id)
        code, out, err = finish(sweep)
        assert reference.wait(timeout=300) == 0
    finally:
        stop(sweep)
        reference.kill()
    assert code == 0, err
    assert "Restarts=2" in slurm("scontrol", "show", "job", job_id)

    resumed = summary(run_dir)
    assert resumed["status"] == "completed" and resumed["epochs_done"] == 10
    # Resumed, not restarted: the epochs before each requeue kept their measured durations.
    assert resumed["history"][:len(kept_second)] == kept_second
    assert kept_second[:len(kept_first)] == kept_first
    expected = summary(uninterrupted_dir)["history"]
    assert ([{k: row[k] for k in HISTORY_METRICS} for row in resumed["history"]]
            == [{k: row[k] for k in HISTORY_METRICS} for row in expected])  # exactly equal
    steps = [s.step for s in read_events(run_dir).Scalars("accuracy/test")]
    assert steps == list(range(1, 11))  # no duplicate or missing epochs after the resumes


def test_cancelled_job_is_stopped_and_the_other_completes(slurm_cluster, tmp_path):
    sweep_dir = tmp_path / "sweep"
    sweep = start_sweep(sweep_dir, *LONGER, "seed=0,1")
    try:
        wait_for(lambda: run_folder(sweep_dir, 1), "job 1's first checkpoint", sweep)
        cancelled = slurm_job_ids(sweep_dir)[1]
        slurm("scancel", cancelled)
        code, out, err = finish(sweep)
    finally:
        stop(sweep)
    assert code == 1, out + err
    assert "1 of 2 jobs completed" in out
    report = read_report(sweep_dir)
    rows = {row["seed"]: row for row in report.values()}
    assert rows["0"]["status"] == "completed"
    assert rows["1"]["status"] == "stopped"  # not failed: nothing in its config is wrong
    assert f"its Slurm job {cancelled} ended CANCELLED without a result" in rows["1"]["error"]
    assert job_state(cancelled) == "CANCELLED"


# Training longer than one attempt under a 2-minute limit can hold. With signal_delay_s = 30
# Slurm signals the job at its first time-limit check (every 30 s here) once 30 s are left, or
# up to 60 s earlier (sbatch --signal), so 30 to 90 s after it starts: late enough for the job to
# have its handler in place and a checkpoint written (a 1-minute limit could signal it as it
# started: plan.check_time_limit refuses that now). 300 epochs of 20,000 images take about
# 150 s on an idle core. max_num_timeout=0: the first signal stops the job; a requeue at the
# signal is test_requeued_job_resumes_and_matches_an_uninterrupted_run's, with the same SIGUSR2.
LIMITED_EPOCHS = 300
TIME_LIMITED = ["data.subset=20000", "data.test_subset=500", f"trainer.epochs={LIMITED_EPOCHS}",
                "trainer.eval_train_subset=0", "trainer.progress=false", "trainer.num_threads=1",
                "seed=5"]
TWO_MINUTES = ["hydra.launcher.timeout_min=2", "hydra.launcher.signal_delay_s=30",
               "hydra.launcher.max_num_timeout=0"]
LONGER_LIMIT = ["hydra.launcher.timeout_min=10"]
EPOCH_METRICS = ["epoch", "train_loss", "train_accuracy", "test_loss", "test_accuracy"]


def latest_job_id(sweep_dir: Path) -> str:
    """The Slurm job id of the sweep's latest submission (a one-job sweep: one per run)."""
    ids = [f.name for f in (sweep_dir / ".submitit").glob("*") if (f / f"{f.name}_submitted.pkl").exists()]
    return max(ids, key=lambda job_id: int(job_id.split("_")[0]))


def test_time_limit_and_scancel_stop_a_job_and_reruns_resume_it(slurm_cluster, tmp_path):
    """Issue 24's cycle on one job whose 2-minute time limit is shorter than its training:
    Slurm's signal before the limit checkpoints it and, no requeue being left
    (max_num_timeout=0), it is recorded as stopped by its time limit, with its epoch. The
    same sweep with a longer limit resumes it; `scancel` stops it again; the same sweep resumes
    it again, and it ends with exactly the per-epoch history of the same run left alone."""
    sweep_dir, alone_dir = tmp_path / "sweep", tmp_path / "alone"
    reference = subprocess.Popen(  # the same run left alone, trained meanwhile
        [sys.executable, "-m", "dropout_lab", "train", *TIME_LIMITED, f"hydra.run.dir={alone_dir}"],
        cwd=REPO, stdout=subprocess.DEVNULL)
    sweep = start_sweep(sweep_dir, *TIME_LIMITED, *TWO_MINUTES)
    try:
        code, out, err = finish(sweep)
        assert code == 1, out + err
        assert err.strip().splitlines()[-1].startswith("error: 1 of 1 jobs did not complete (#0 stopped)")
        (run_dir,) = sweep_dir.glob("000_*")
        timed_out = summary(run_dir)
        # Signalled after its first checkpoints, not as it started.
        assert timed_out["status"] == "stopped" and 1 <= timed_out["epochs_done"] < LIMITED_EPOCHS
        assert timed_out["error"].startswith(
            "reached its Slurm time limit after its last requeue (hydra.launcher.max_num_timeout) "
            f"in epoch {timed_out['epochs_done'] + 1} of {LIMITED_EPOCHS}; run the same sweep with "
            f"--sweep-dir {sweep_dir} (and a longer hydra.launcher.timeout_min)"), timed_out["error"]

        sweep = start_sweep(sweep_dir, *TIME_LIMITED, *LONGER_LIMIT)  # resumes; then scancel
        kept = len(timed_out.get("history", []))
        wait_for(lambda: len(read_checkpoint_history(run_dir)) > kept, "a checkpoint after the resume", sweep)
        cancelled = latest_job_id(sweep_dir)
        slurm("scancel", cancelled)
        code, out, err = finish(sweep)
        assert code == 1, out + err
        stopped = summary(run_dir)
        assert stopped["status"] == "stopped", stopped
        assert stopped["error"].startswith(f"its Slurm job {cancelled} ended CANCELLED without a result")
        assert stopped["history"][:kept] == timed_out.get("history", [])  # resumed, not redone
        assert len(stopped["history"]) > kept

        sweep = start_sweep(sweep_dir, *TIME_LIMITED, *LONGER_LIMIT)  # resumes to the end
        code, out, err = finish(sweep)
        assert reference.wait(timeout=600) == 0
    finally:
        stop(sweep)
        reference.kill()
    assert code == 0, out + err
    assert "1 of 1 jobs completed" in out
    completed = summary(run_dir)
    assert completed["status"] == "completed" and completed["epochs_done"] == LIMITED_EPOCHS
    assert completed["history"][:len(stopped["history"])] == stopped["history"]
    expected = summary(alone_dir)["history"]
    assert ([{k: row[k] for k in EPOCH_METRICS} for row in completed["history"]]
            == [{k: row[k] for k in EPOCH_METRICS} for row in expected])  # exactly equal
    steps = [s.step for s in read_events(run_dir).Scalars("accuracy/test")]
    assert steps == list(range(1, LIMITED_EPOCHS + 1))  # no duplicate or missing epochs after the resumes
