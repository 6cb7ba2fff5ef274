"""Where a sweep's jobs run: the ``--launcher`` names, the overrides that size jobs for them,
and joblib's worker processes (started early, stopped at the end)."""

import os
import threading
from typing import List, Optional

from dropout_lab.errors import ConfigError
from dropout_lab.sweep.plan import SweepPlan

# --launcher NAME -> the hydra/launcher config it selects (configs/hydra/launcher/ or a plugin's)
LAUNCHERS = {"basic": "basic", "joblib": "joblib", "local": "submitit_local", "slurm": "slurm"}


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def launcher_overrides(launcher: Optional[str], jobs: int, plan: SweepPlan,
                       user_overrides: List[str]) -> List[str]:
    """Hydra overrides that select the launcher and size the jobs for it.

    Parallel jobs get ``cores // parallel`` torch threads each (at least 1), so jobs x threads
    does not exceed the cores, and no progress bars (they would interleave). Slurm jobs keep
    torch's default: it follows the CPUs Slurm binds the job to.
    """
    if jobs < 1:
        raise ConfigError(f"--jobs has to be at least 1, not {jobs}")
    if launcher is None:
        launcher = "joblib" if jobs > 1 else None
    elif launcher not in LAUNCHERS:
        raise ConfigError(f"unknown launcher {launcher!r}; choose one of {', '.join(LAUNCHERS)}")
    extra = [] if launcher is None else [f"hydra/launcher={LAUNCHERS[launcher]}"]
    if launcher == "joblib":
        extra.append(f"hydra.launcher.n_jobs={jobs}")
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


def prestart_workers(jobs: int) -> threading.Thread:
    """Start joblib's ``jobs`` worker processes now, in the background, and import torch and the
    training code in them (about 3.5 s a process), while this process plans the sweep and starts
    Hydra. Hydra's joblib launcher then asks joblib for an executor with the same arguments
    (its defaults, as below) and joblib hands it these warm workers. If the arguments differ
    (``hydra.launcher.*`` overrides), joblib starts new workers: slower, not wrong."""
    from joblib import Parallel, delayed

    def warm_up() -> None:
        Parallel(n_jobs=jobs, backend="loky", prefer="processes", max_nbytes=None,
                 mmap_mode="r", temp_folder=None)(delayed(import_training)() for _ in range(jobs))

    thread = threading.Thread(target=warm_up, name="prestart-workers", daemon=True)
    thread.start()
    return thread


def stop_workers() -> None:
    """Stop joblib's idle workers now. Left to this interpreter's exit, winding them down (each
    holding torch) takes seconds; killing them takes 0.2 s, and their jobs are all done."""
    from joblib.externals.loky import get_reusable_executor

    get_reusable_executor(reuse=True).shutdown(wait=True, kill_workers=True)


def import_training() -> int:
    """Run in a worker: import what every job needs (torch, the training core, TensorBoard)."""
    import torch
    import torch.utils.tensorboard  # noqa: F401  (RunLog's SummaryWriter)

    import dropout_lab.train  # noqa: F401

    # A process's first torch optimizer imports torch._dynamo (about 1.7 s, 900 modules).
    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    return os.getpid()

