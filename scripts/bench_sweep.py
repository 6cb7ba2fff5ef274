#!/usr/bin/env python
"""Benchmark: the overhead of a parallel sweep.

Runs ``dropout-lab sweep --jobs 2`` (joblib, 2 local worker processes) of 8 one-epoch jobs on
the full Fashion-MNIST in a subprocess, and compares its wall time (the whole command: start,
planning, workers, report) with the ideal: the sum of the jobs' own training time (their
summaries' ``timings.train_seconds``) divided by the 2 workers. Overhead = wall / ideal - 1;
the target is under 25 %. The machine's load average is printed with the figures: on a shared
machine, a neighbour's load slows both the jobs and the overhead around them. It then times
the floor no sweep can go below: a fresh Python importing torch and making an optimiser, what
every worker does before its first job. Extra arguments are config overrides for every job.

    .venv/bin/python scripts/bench_sweep.py [--jobs 8] [--workers 2] [--epochs 1] [--keep]
                                            [OVERRIDES...]
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dropout_lab.report import load_runs


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} cores"


def import_seconds() -> float:
    """Wall time of what every worker process must do before its first job: start Python,
    import torch, make an optimiser (torch.optim imports torch._dynamo on first use)."""
    code = "import torch; torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)"
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--jobs", type=int, default=8, help="jobs in the sweep (seeds)")
    parser.add_argument("--workers", type=int, default=2, help="joblib worker processes")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the sweep directory")
    parser.add_argument("overrides", nargs="*", help="config overrides for every job")
    args = parser.parse_args()

    sweep_dir = Path(tempfile.mkdtemp(prefix="bench_sweep_"))
    command = [sys.executable, "-m", "dropout_lab", "sweep", "--jobs", str(args.workers),
               "--sweep-dir", str(sweep_dir), f"seed=range({args.jobs})",
               f"trainer.epochs={args.epochs}", *args.overrides]
    print(f"before: {load()}")
    started, started_at = time.perf_counter(), time.time()
    result = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - started
    ended_at = time.time()
    print(f"after:  {load()}")
    if result.returncode != 0:
        print(result.stdout, result.stderr, sep="\n", file=sys.stderr)
        return result.returncode

    runs = load_runs(sweep_dir)
    train = sum(run.train_seconds for run in runs)
    job_wall = sum(run.seconds for run in runs)
    ideal = train / args.workers
    print(f"{len(runs)} jobs of {args.epochs} epoch(s), {args.workers} workers")
    print(f"sweep wall time                     {wall:7.2f} s")
    print(f"sum of the jobs' training time      {train:7.2f} s  (/ {args.workers} = {ideal:.2f} s)")
    print(f"sum of the jobs' wall time in train {job_wall:7.2f} s")
    print(f"overhead: wall / (training / {args.workers}) - 1 = {wall / ideal - 1:+.1%} (target < 25%)")
    # Where the wall time went, from the files' times: start-up until Hydra wrote the first
    # job's config, the jobs, the report, and the exit.
    first_job = min((run.run_dir / ".hydra" / "config.yaml").stat().st_mtime for run in runs)
    last_job = max((run.run_dir / "summary.json").stat().st_mtime for run in runs)
    report = (sweep_dir / "report.md").stat().st_mtime
    print(f"phases: start-up {first_job - started_at:.2f} s, jobs {last_job - first_job:.2f} s, "
          f"report {report - last_job:.2f} s, exit {ended_at - report:.2f} s")
    imports = import_seconds()
    print(f"floor: a fresh Python importing torch and making its first optimizer takes "
          f"{imports:.2f} s, {imports / ideal:.0%} of the ideal, before any job can start")
    if args.keep:
        print(f"sweep directory: {sweep_dir}")
    else:
        shutil.rmtree(sweep_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
