"""Where a sweep's jobs run: the ``--launcher`` names, the overrides that size jobs for them,
and the local worker processes (workers.py: started early, stopped at the end)."""

import os
from typing import List, Optional

from dropout_lab.errors import ConfigError
from dropout_lab.sweep.plan import SweepPlan

# --launcher NAME -> the hydra/launcher config it selects (configs/hydra/launcher/ or a plugin's).
# "joblib" keeps its name (N local processes) but runs on dropout-lab's own worker processes:
# joblib's pool dies whole when one worker is killed (sweep/workers.py).
LAUNCHERS = {"basic": "basic", "joblib": "workers", "local": "local", "slurm": "slurm"}
RETRYING = ("joblib", "local")  # the launchers that run a lost job again (--retries)


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def launcher_overrides(launcher: Optional[str], jobs: int, plan: SweepPlan,
                       user_overrides: List[str], retries: int = 0) -> List[str]:
    """Hydra overrides that select the launcher and size the jobs for it.

    Parallel jobs get ``cores // parallel`` torch threads each (at least 1), so jobs x threads
    does not exceed the cores, and no progress bars (they would interleave). Slurm jobs keep
    torch's default: it follows the CPUs Slurm binds the job to. ``retries``: how many times a
    job whose process died runs again (local processes only: in the basic launcher a job's
    death is the sweep's; Slurm requeues with ``hydra.launcher.max_num_timeout``).
    """
    if jobs < 1:
        raise ConfigError(f"--jobs has to be at least 1, not {jobs}")
    if launcher is None:
        launcher = "joblib" if jobs > 1 else None
    elif launcher not in LAUNCHERS:
        raise ConfigError(f"unknown launcher {launcher!r}; choose one of {', '.join(LAUNCHERS)}")
    if retries < 0:
        raise ConfigError(f"--retries has to be 0 or more, not {retries}")
    if retries and launcher not in RETRYING:
        raise ConfigError(f"--retries needs jobs in local processes (--jobs N, or --launcher "
                          f"{' or '.join(RETRYING)}), not --launcher {launcher or 'basic'}")
    extra = [] if launcher is None else [f"hydra/launcher={LAUNCHERS[launcher]}"]
    if launcher == "joblib":
        extra.append(f"hydra.launcher.n_jobs={jobs}")
    if retries:
        extra.append(f"hydra.launcher.retries={retries}")
    if launcher == "slurm" and jobs > 1:
        extra.append(f"hydra.launcher.array_parallelism={jobs}")
    if plan.sweeper == "optuna" and jobs > 1:
        extra.append(f"hydra.sweeper.n_jobs={jobs}")  # trials asked for, and run, at once

    # submitit_local starts every job of a batch at once; joblib runs `jobs` at a time. A
    # search's batch is `jobs` trials; a grid's is all its jobs.
    batch = len(plan.jobs) or jobs
    parallel = {"joblib": min(jobs, batch), "local": batch}.get(launcher, 1)
    given = {o.split("=", 1)[0].lstrip("+~") for o in user_overrides}
    if parallel > 1 and "trainer.num_threads" not in given:
        extra.append(f"trainer.num_threads={max(1, usable_cores() // parallel)}")
    if parallel > 1 and "trainer.progress" not in given:
        extra.append("trainer.progress=false")
    return extra


def prestart_workers(jobs: int) -> None:
    """Start the ``jobs`` worker processes now: each imports torch and the training code (the
    bulk of a short job's time) while this process plans the sweep and starts Hydra. The launcher
    (``hydra.launcher.n_jobs``, the same number) then finds them ready."""
    from dropout_lab.sweep.workers import worker_pool

    worker_pool(jobs)


def stop_workers() -> None:
    """Stop the idle workers now. Left to this interpreter's exit, winding them down (each
    holding torch) is slow; killing them is quick, and their jobs are all done."""
    from dropout_lab.sweep.workers import stop_pool

    stop_pool()
