"""Sweeps on Slurm: Hydra's submitit launcher, made to survive what a cluster does to jobs.

``configs/hydra/launcher/slurm.yaml`` selects :class:`SlurmLauncher`. It submits the jobs as
Hydra's ``submitit_slurm`` launcher does (one Slurm array task per job, each running
``sweep.job.sweep_task``), then waits for them its own way:

- Job states come from ``squeue``, which every Slurm has. submitit asks ``sacct``, which needs
  accounting storage: without it each poll logs a warning, and a job cancelled before it could
  write its result is never seen to end, so the sweep would wait forever.
- A job that ends without a result (``scancel``, killed at its time limit, its node lost) is
  recorded as stopped in its summary.json (sweep/stopped.py: the same command resumes it from
  its checkpoint) and the sweep goes on; the report and the exit code say so. Hydra's launcher
  would raise at the first such job and stop waiting for the others.
- A job Slurm requeues (``scontrol requeue``, pre-emption, or submitit's checkpoint-and-requeue
  on the signal before the time limit) is not finished: it runs again, and ``sweep.job.train_job``
  resumes it from its last epoch checkpoint, so it ends with the numbers of an uninterrupted run.
  When the signal comes after the last requeue (``max_num_timeout``), submitit raises in the
  job, which records it as stopped by its time limit (sweep/stopped.py), to resume the same way.
- Ctrl-C cancels the sweep's queued and running jobs; each writes its checkpoint on SIGTERM,
  and the same command with ``--sweep-dir`` resumes them.
"""

import logging
import subprocess
import time
from functools import partial
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, filter_overrides
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher as SubmititSlurm

from dropout_lab.errors import one_line
from dropout_lab.run_folder import record_failure
from dropout_lab.sweep.job import job_return, job_run_dir
from dropout_lab.sweep.stopped import stopped
from dropout_lab.sweep.submitit_setup import submitit_executor

log = logging.getLogger(__name__)

# Slurm states after which a job will not run again (squeue's %T). PREEMPTED is not among them:
# a pre-empted job is usually requeued.
ENDED = {"BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL",
         "OUT_OF_MEMORY", "TIMEOUT"}
GONE = "GONE"  # squeue no longer lists the job: it ended more than MinJobAge ago, or was
# an array task cancelled before it started (Slurm keeps no record of those)
RESULT_GRACE_S = 15.0  # how long a result file may take to appear on a shared filesystem
MAX_POLL_S = 30.0


class SlurmLauncher(SubmititSlurm):
    """Hydra's ``submitit_slurm`` launcher that waits for every job and records cluster failures."""

    def setup(self, *, hydra_context, task_function, config) -> None:
        """As Hydra's, with the task told that it runs on Slurm (sweep.job.sweep_task's on_slurm)."""
        super().setup(hydra_context=hydra_context, config=config,
                      task_function=partial(task_function, on_slurm=True))

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> List[JobReturn]:
        jobs = self.submit(job_overrides, initial_job_idx)
        try:
            ended = wait_for_jobs(jobs)
        except KeyboardInterrupt:
            cancel_unfinished(jobs)
            raise
        return [self.job_return(job, list(overrides), initial_job_idx + index, ended.get(job.job_id))
                for index, (job, overrides) in enumerate(zip(jobs, job_overrides))]

    def submit(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list:
        """Submit the jobs as one Slurm array (as ``BaseSubmititLauncher.launch`` does, up to its
        wait); the submitit jobs, in order."""
        executor = submitit_executor(self, executor_keys=("max_num_timeout",))
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        log.info(f"Slurm sweep output dir : {sweep_dir}")
        arguments = []
        for index, overrides in enumerate(job_overrides, start=initial_job_idx):
            log.info(f"\t#{index} : {' '.join(filter_overrides(overrides))}")
            arguments.append((list(overrides), "hydra.sweep.dir", index, f"job_id_for_{index}",
                              Singleton.get_state()))
        return executor.map_array(self, *zip(*arguments))

    def job_return(self, job, overrides: List[str], index: int, state: Optional[str]) -> JobReturn:
        """The job's own JobReturn. A job that ended without one stopped from outside: recorded
        so (sweep/stopped.py), to resume; one that raised past sweep_task (a bug) failed."""
        run_dir = self.run_dir(overrides, index)
        if has_result(job):
            try:
                return job.results()[0]
            except Exception as error:  # submitit kept the job's traceback
                reason = f"Slurm job {job.job_id} failed: {last_line(error)}"
                log.error(f"{run_dir.name}: {reason}; its log: {job.paths.stderr}")
                record_failure(run_dir, reason, overrides)
        else:
            how = "left the queue" if state == GONE else f"ended {state}"
            stopped(run_dir, f"its Slurm job {job.job_id} {how} without a result (log: "
                             f"{job.paths.stderr})", overrides, Path(str(self.config.hydra.sweep.dir)))
        return job_return(run_dir, overrides)

    def run_dir(self, overrides: List[str], index: int) -> Path:
        return job_run_dir(self.hydra_context, self.config, overrides, index)


def last_line(error: BaseException) -> str:
    """The exception line at the end of a job's traceback (submitit wraps it in its message)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith(("-----", "You can check", "or at paths", "- "))]
    return lines[-1] if lines else one_line(error)


def wait_for_jobs(jobs: list) -> Dict[str, str]:
    """Wait until every job has written its result or ended without one.

    Returns the final Slurm state (or GONE) of the jobs that ended without a result file.
    """
    started, ended_at, states = time.monotonic(), {}, {}
    pending = list(jobs)
    while pending:
        answer = job_states([job.job_id for job in pending])
        states = states if answer is None else answer  # None: squeue did not answer this time
        now = time.monotonic()
        for job in list(pending):
            if has_result(job):
                pending.remove(job)
            elif states.get(job.job_id, GONE) in ENDED | {GONE}:
                # Its result file may still be on its way through a shared filesystem.
                if now - ended_at.setdefault(job.job_id, now) > RESULT_GRACE_S:
                    pending.remove(job)
            else:
                ended_at.pop(job.job_id, None)  # requeued: running again
        if pending:
            time.sleep(min(MAX_POLL_S, max(1.0, (time.monotonic() - started) / 10)))
    return {job_id: states.get(job_id, GONE) for job_id in ended_at}


def has_result(job) -> bool:
    """Whether the job has written its result file. Changing the folder's mode makes an NFS
    client look at the folder again instead of trusting its cache (as submitit does)."""
    folder = job.paths.folder
    try:
        folder.chmod(folder.stat().st_mode)
    except OSError:
        pass
    return job.paths.result_pickle.exists()


def job_states(job_ids: List[str]) -> Optional[Dict[str, str]]:
    """job id -> Slurm state for the jobs squeue still lists; None when squeue cannot answer.

    Array tasks are asked for by their array's id; squeue lists pending tasks as ranges
    (``12_[3-5]``), which submitit's sacct reader expands.
    """
    from submitit.slurm.slurm import SlurmInfoWatcher

    arrays = sorted({job_id.split("_")[0] for job_id in job_ids})
    command = ["squeue", "--noheader", "--states=all", "--format=%i|%T", f"--jobs={','.join(arrays)}"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as error:
        log.warning(f"squeue did not answer ({one_line(error)}); asking again")
        return None
    if done.returncode != 0:
        if "Invalid job id" in done.stderr:  # none of them is known any more
            return {}
        log.warning(f"squeue failed ({one_line(RuntimeError(done.stderr))}); asking again")
        return None
    info = SlurmInfoWatcher().read_info("JobID|State\n" + done.stdout)
    return {job_id: row["State"].split()[0] for job_id, row in info.items()}


def cancel_unfinished(jobs: list) -> None:
    """scancel the jobs without a result; they checkpoint on the SIGTERM Slurm sends them."""
    unfinished = [job.job_id for job in jobs if not has_result(job)]
    if unfinished:
        log.warning(f"cancelling Slurm jobs {' '.join(unfinished)}")
        subprocess.run(["scancel", *unfinished], check=False)
