"""``dropout-lab sweep``: a Hydra multirun of the one training core, split by job:

    plan.py       the jobs, their folders and configs, before anything runs
    launchers.py  where jobs run (--launcher, --jobs) and joblib's worker processes
    job.py        one job, as every launcher runs it (failures recorded, not raised)
    run.py        the orchestration: plan, launch through Hydra, watch, report
    slurm.py      the Slurm launcher (Hydra's submitit launcher, made to survive a cluster)
"""
