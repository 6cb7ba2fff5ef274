"""What the submitit launchers (local.py's LocalLauncher, slurm.py's SlurmLauncher) share."""

from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from omegaconf import OmegaConf


def submitit_executor(launcher, executor_keys=(), params=None):
    """submitit's executor for a hydra-submitit-launcher launcher, set up as its
    ``BaseSubmititLauncher.launch`` sets it up: that body, ``BaseQueueConf`` and
    ``params``/``_EXECUTOR`` are the plugin's internals, not an API, so pyproject.toml pins the
    plugin to 1.2.x; check this copy before raising it. ``executor_keys``: launcher keys the
    executor takes when it is made (Slurm's ``max_num_timeout``); ``params``: the launcher's,
    as the caller adjusted them (default ``launcher.params``)."""
    import submitit

    cluster, params = launcher._EXECUTOR, launcher.params if params is None else params
    executor = submitit.AutoExecutor(cluster=cluster, folder=params["submitit_folder"],
                                     **{f"{cluster}_{key}": params[key] for key in executor_keys})
    queue_keys = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(**{
        key if key in queue_keys else f"{cluster}_{key}": value
        for key, value in params.items() if key not in ("submitit_folder", *executor_keys)})
    return executor
