"""Hydra launchers for the sweep's local processes that outlive a job's process dying:

- ``WorkerLauncher`` (``--jobs N``, ``--launcher joblib``; configs/hydra/launcher/workers.yaml):
  runs the jobs on N worker processes (workers.py) as Hydra's joblib launcher runs them on
  joblib's, except that a worker that dies takes only its own job with it.
- ``LocalLauncher`` (``--launcher local``; configs/hydra/launcher/local.yaml): Hydra's
  submitit_local launcher, every job a process of its own, waiting for all of them; Hydra's
  raises at the first job without a result and abandons the others.

A job whose process dies (SIGKILL from the OOM killer or ``kill -9``, a segfault) runs again
from its last checkpoint while ``retries`` (``--retries N``) allow; after that it is recorded as
stopped (sweep/stopped.py), with the cause and the epoch: the same sweep with ``--sweep-dir``
continues it from its checkpoint. The other jobs, beside it and after it, run on.
"""

import logging
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, configure_log, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import LocalLauncher as SubmititLocal
from omegaconf import open_dict

from dropout_lab.errors import ConfigError
from dropout_lab.run_folder import Status, read_status
from dropout_lab.sweep.job import job_return, job_run_dir
from dropout_lab.sweep.stopped import stopped, where_it_was
from dropout_lab.sweep.submitit_setup import submitit_executor
from dropout_lab.sweep.workers import RETRY, Task, death_cause, worker_pool

log = logging.getLogger(__name__)

POLL_S = 0.5  # how often LocalLauncher looks at its jobs' processes


class LostJobs:
    """What both launchers do with a job whose process died (``hydra_context``, ``config`` and
    ``retries`` are the launcher's)."""

    hydra_context: Any
    config: Any
    retries: int

    def lost(self, index: int, overrides: List[str], cause: str, deaths: int):
        """RETRY while the job has retries left, else its JobReturn, recorded as stopped."""
        run_dir = job_run_dir(self.hydra_context, self.config, overrides, index)
        status = read_status(run_dir)
        if status is not None and status.final:  # it ended just before its process did
            return job_return(run_dir, overrides)
        if deaths < self.retries:
            log.warning(f"{run_dir.name}: {cause} {where_it_was(run_dir)}; running it again from "
                        f"its last checkpoint (retry {deaths + 1} of {self.retries})")
            return RETRY
        stopped(run_dir, cause, overrides, Path(str(self.config.hydra.sweep.dir)))
        return job_return(run_dir, overrides)


def checked_retries(retries: Any) -> int:
    if not isinstance(retries, int) or retries < 0:
        raise ConfigError(f"hydra.launcher.retries has to be 0 or more, not {retries!r}")
    return retries


# --- N worker processes (--jobs N) ---------------------------------------------------------

class WorkerLauncher(LostJobs, Launcher):
    """Hydra's joblib launcher on dropout-lab's worker processes (see workers.py for why)."""

    def __init__(self, n_jobs: int = 2, retries: int = 0) -> None:
        if not isinstance(n_jobs, int) or n_jobs < 1:
            raise ConfigError(f"hydra.launcher.n_jobs has to be 1 or more, not {n_jobs!r}")
        self.n_jobs, self.retries = n_jobs, checked_retries(retries)
        self.config = self.task_function = self.hydra_context = None

    def setup(self, *, hydra_context, task_function, config) -> None:
        self.config, self.task_function, self.hydra_context = config, task_function, hydra_context

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> List[JobReturn]:
        import cloudpickle

        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        log.info(f"Launching {len(job_overrides)} jobs on {self.n_jobs} worker processes, "
                 f"sweep output dir : {sweep_dir}")
        singleton_state = Singleton.get_state()
        tasks, overrides_of = [], {}
        for index, overrides in enumerate(job_overrides, start=initial_job_idx):
            log.info(f"\t#{index} : {' '.join(filter_overrides(overrides))}")
            overrides_of[index] = list(overrides)
            call = (execute_job, (index, list(overrides), self.hydra_context, self.config,
                                  self.task_function, singleton_state))
            tasks.append(Task(index, cloudpickle.dumps(call)))

        def on_lost(task: Task, exitcode: Optional[int]):
            return self.lost(task.index, overrides_of[task.index], death_cause(exitcode),
                             task.deaths)

        returns = worker_pool(self.n_jobs).run(tasks, on_lost)
        return [returns[task.index] for task in tasks]


def execute_job(index: int, overrides: List[str], hydra_context, config, task_function,
                singleton_state: Dict[Any, Any]) -> JobReturn:
    """Run one job in a worker process, as Hydra's joblib launcher does (its ``execute_job``)."""
    setup_globals()
    Singleton.set_state(singleton_state)
    sweep_config = hydra_context.config_loader.load_sweep_config(config, list(overrides))
    with open_dict(sweep_config):
        sweep_config.hydra.job.id = f"{sweep_config.hydra.job.name}_{index}"
        sweep_config.hydra.job.num = index
    HydraConfig.instance().set_config(sweep_config)
    return run_job(hydra_context=hydra_context, config=sweep_config, task_function=task_function,
                   job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")


# --- submitit processes, all jobs at once (--launcher local) --------------------------------

class LocalLauncher(LostJobs, SubmititLocal):
    """Hydra's submitit_local launcher that waits for every job and records lost ones.

    submitit runs each job in a process under a controller process of its own, which does not
    pass on how its job ended: a lost job's cause names no signal."""

    CAUSE = "its process ended without a result (killed? out of memory?)"

    def __init__(self, retries: int = 0, **params: Any) -> None:
        super().__init__(**params)
        self.retries = checked_retries(retries)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> List[JobReturn]:
        executor = self.executor()
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        log.info(f"Submitit '{self._EXECUTOR}' sweep output dir : {sweep_dir}")
        running: Dict[int, list] = {}  # index -> [submitit job, overrides, deaths]
        for index, overrides in enumerate(job_overrides, start=initial_job_idx):
            log.info(f"\t#{index} : {' '.join(filter_overrides(overrides))}")
            running[index] = [self.submit(executor, list(overrides), index), list(overrides), 0]
        returns: Dict[int, JobReturn] = {}
        while running:
            for index, (job, overrides, deaths) in list(running.items()):
                if not job.done():
                    continue
                del running[index]
                if job.paths.result_pickle.exists():
                    returns[index] = self.own_return(job, overrides, index)
                    continue
                value = self.lost(index, overrides, self.CAUSE, deaths)
                if value is RETRY:
                    running[index] = [self.submit(executor, overrides, index), overrides, deaths + 1]
                else:
                    returns[index] = value
            if running:
                time.sleep(POLL_S)
        return [returns[index] for index in sorted(returns)]

    def own_return(self, job, overrides: List[str], index: int) -> JobReturn:
        """The job's JobReturn. A job stopped by SIGINT or SIGTERM (its summary "interrupted")
        raised KeyboardInterrupt to stop the sweep, as in a worker process: so it does here."""
        try:
            return job.results()[0]
        except Exception:
            run_dir = job_run_dir(self.hydra_context, self.config, overrides, index)
            if read_status(run_dir) == Status.INTERRUPTED:
                raise KeyboardInterrupt from None
            raise  # a bug: loudly, with submitit's copy of the job's traceback

    def executor(self):
        """submitit's executor (submitit_setup.py), with ``gpus_per_node: null`` meaning the GPUs
        this process sees (submitit's own null hides them all: CUDA_VISIBLE_DEVICES="")."""
        from dropout_lab.device import visible_gpus

        params = dict(self.params)
        gpus = visible_gpus() if params.get("gpus_per_node") is None else None
        if gpus is not None:
            params["gpus_per_node"] = len(gpus)
        executor = submitit_executor(self, params=params)
        if gpus:  # which ones: LocalExecutor's key, which AutoExecutor does not pass on
            executor._executor.update_parameters(visible_gpus=gpus)
        return executor

    def submit(self, executor, overrides: List[str], index: int):
        return executor.submit(self, overrides, "hydra.sweep.dir", index, f"job_id_for_{index}",
                               Singleton.get_state())
