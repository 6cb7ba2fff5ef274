"""dropout-lab's Hydra launcher plugin. Hydra instantiates launchers only from the
``hydra_plugins`` namespace package, so the class is registered here; it is all in
``dropout_lab/sweep/slurm.py``. Selected by ``configs/hydra/launcher/slurm.yaml``."""

from dropout_lab.sweep.slurm import SlurmLauncher as _SlurmLauncher


class SlurmLauncher(_SlurmLauncher):
    """Hydra's submitit_slurm launcher that waits for every job and records cluster failures."""
