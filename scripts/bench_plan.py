#!/usr/bin/env python
"""Benchmark: what planning a sweep costs per job.

Times ``dropout-lab sweep GRID seed=range(S) --dry-run`` (a fresh process: start, compose,
plan and check every job, print; nothing trains) for two seed counts, and prints the marginal
cost per job as the slope between them, (t2 - t1) / (jobs2 - jobs1): the fixed cost of the
command (Python, imports, one Hydra composition) cancels out. Each size runs ``--repeat``
times, the fastest kept (a shared machine's neighbours only ever slow a run down). The target
is at most 5 ms per job. The machine's load average is printed with the figures. Extra
arguments are overrides for the grid (default: model.dropout.p=0.2,0.5, two jobs a seed);
``experiment=exercise_1`` times an exercise's grid (16 jobs a seed).

    .venv/bin/python scripts/bench_plan.py [--seeds 25 200] [--repeat 2] [OVERRIDES...]
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

TARGET_MS = 5.0


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} cores"


def dry_run(grid, seeds: int, cwd: str):
    """(jobs, wall seconds) of one dry run of the grid with ``seeds`` seeds."""
    command = [sys.executable, "-m", "dropout_lab", "sweep", "--dry-run", *grid,
               f"seed=range({seeds})"]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, cwd=cwd)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"the dry run failed: {' '.join(command)}\n{result.stderr}")
    return int(result.stdout.split()[0]), seconds  # its first line: "N jobs:"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--seeds", type=int, nargs=2, default=[25, 200], metavar=("S1", "S2"),
                        help="the two seed counts (the grid's sizes are these times its settings)")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each size (the fastest kept)")
    parser.add_argument("overrides", nargs="*", help="the grid (default: model.dropout.p=0.2,0.5)")
    args = parser.parse_args()
    grid = args.overrides or ["model.dropout.p=0.2,0.5"]

    print(f"before: {load()}")
    cwd = tempfile.mkdtemp(prefix="bench_plan_")  # no earlier sweeps under outputs/ there
    sizes = []
    for seeds in args.seeds:
        runs = [dry_run(grid, seeds, cwd) for _ in range(args.repeat)]
        jobs, seconds = runs[0][0], min(wall for _, wall in runs)
        sizes.append((jobs, seconds))
        print(f"{jobs} jobs ({' '.join(grid)} seed=range({seeds})): dry run {seconds:.2f} s "
              f"(fastest of {args.repeat})")
    (jobs1, t1), (jobs2, t2) = sizes
    slope_ms = (t2 - t1) / (jobs2 - jobs1) * 1000
    print(f"per job: ({t2:.2f} - {t1:.2f}) s / ({jobs2} - {jobs1}) jobs = {slope_ms:.2f} ms "
          f"(target <= {TARGET_MS:.0f} ms: {'met' if slope_ms <= TARGET_MS else 'NOT met'})")
    print(f"fixed: {t1 - slope_ms / 1000 * jobs1:.2f} s a dry run (start, imports, composition)")
    print(f"after: {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
