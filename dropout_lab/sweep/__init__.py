"""``dropout-lab sweep``: a Hydra multirun of the one training core, split by job:

    plan.py       the jobs, their folders and configs, before anything runs
    launchers.py  where jobs run (--launcher, --jobs, --retries)
    workers.py    the local worker processes (--jobs N): one dying takes only its own job
    local.py      the launchers over local processes, which record a job whose process died
    job.py        one job, as every launcher runs it (failures recorded, not raised)
    stopped.py    the one rule for a job that stopped before it finished: resumed by a rerun
    run.py        the orchestration: plan, launch through Hydra, watch, report
    slurm.py      the Slurm launcher (Hydra's submitit launcher, made to survive a cluster)
    submitit_setup.py  what the submitit launchers (local.py's and slurm.py's) share
"""
