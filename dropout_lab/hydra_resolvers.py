"""dropout-lab's OmegaConf resolvers.

``${dropout_lab.job_folder:NUM,OVERRIDES,EXCLUDE_KEYS,SWEEP_DIR[,WIDTH]}`` is job_names.job_folder: configs/
config.yaml's ``hydra.sweep.subdir``, resolved by Hydra when it starts a job and by the sweep
planner (sweep/plan.py) before anything runs. The planner registers it in the sweep's process
before Hydra starts; Hydra's launchers hand the registered resolvers to the processes that
start jobs (joblib workers, submitit on Slurm nodes) with the rest of Hydra's state
(``hydra.core.singleton.Singleton.get_state``). What the name depends on beyond the job's own
overrides reaches those processes as files and settings, not as state: the sweep's constant
keys in EXCLUDE_KEYS, the folders of a resumed sweep in SWEEP_DIR/job_folders.json, and for a
sweep of 1,000 jobs or more the number's WIDTH (the planner sets hydra.sweep.subdir with it).
"""

from dropout_lab.job_names import NUM_WIDTH, job_folder

JOB_FOLDER = "dropout_lab.job_folder"


def register_resolvers() -> None:
    """Register the resolvers (idempotent)."""
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver(JOB_FOLDER):
        OmegaConf.register_new_resolver(
            JOB_FOLDER, lambda num, overrides, exclude, sweep_dir, width=NUM_WIDTH: job_folder(
                num, list(overrides), list(exclude), str(sweep_dir), int(width)))
