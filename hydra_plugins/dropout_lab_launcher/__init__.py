"""dropout-lab's Hydra launcher plugins. Hydra instantiates launchers only from the
``hydra_plugins`` namespace package, so the classes are registered here; they are all in
``dropout_lab/sweep/``. Selected by ``configs/hydra/launcher/{workers,local,slurm}.yaml``."""

from dropout_lab.sweep.local import LocalLauncher as _LocalLauncher
from dropout_lab.sweep.local import WorkerLauncher as _WorkerLauncher
from dropout_lab.sweep.slurm import SlurmLauncher as _SlurmLauncher


class SlurmLauncher(_SlurmLauncher):
    """Hydra's submitit_slurm launcher that waits for every job and records cluster failures."""


class WorkerLauncher(_WorkerLauncher):
    """N local worker processes; a worker that dies takes only its own job with it."""


class LocalLauncher(_LocalLauncher):
    """Hydra's submitit_local launcher that waits for every job and records lost ones."""
