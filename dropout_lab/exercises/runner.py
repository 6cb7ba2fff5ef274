"""``dropout-lab exercise N|all``: the textbook's eight dropout exercises, answered by experiments.

Each exercise runs its named sweep (configs/experiment/exercise_N.yaml) with the sweep
machinery, so every run is a normal run, then measures what the runs alone do not tell (the
trained models' activations, Monte Carlo passes) and writes report.md with a conclusion computed
from the numbers. An invocation writes into one folder:

    OUT/
      index.md                    links the reports, with each one's first finding and time
      exercise_N/
        report.md, results.json   the answer (results.json: tables, conclusion, key numbers)
        measurements.json         measurements on the trained models (exercises 3 and 4)
        *.png                     the plots
        runs/                     the sweep: one run folder per job, its report.md

Running again with the same ``--out`` resumes: completed runs are skipped, the rest trained,
the reports rewritten.
"""

import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

from dropout_lab.errors import ConfigError
from dropout_lab.exercises.runs import completed
from dropout_lab.exercises.types import Exercise
from dropout_lab.exercises.writing import RUNS, save_measurements, write_index, write_report
from dropout_lab.job_names import settings_identity
from dropout_lab.run_folder import Status

OUT_ROOT = Path("outputs/exercises")
# --quick: a small data subset, 2 epochs, one seed, one thread; exercises shrink their grids too.
QUICK = ("data.subset=1000", "data.test_subset=500", "trainer.epochs=2", "seed=0",
         "trainer.num_threads=1", "trainer.progress=false")


def registry() -> dict:
    """number -> Exercise, in order."""
    from dropout_lab.exercises import (ex1_probabilities, ex2_epochs, ex3_variance, ex4_test_time,
                                       ex5_width, ex6_weight_decay, ex7_dropconnect,
                                       ex8_three_valued)

    modules = (ex1_probabilities, ex2_epochs, ex3_variance, ex4_test_time, ex5_width,
               ex6_weight_decay, ex7_dropconnect, ex8_three_valued)
    return {module.EXERCISE.number: module.EXERCISE for module in modules}


def select(which: str) -> List[Exercise]:
    """'all', 'N' or 'N,M,...' -> the exercises; ConfigError otherwise."""
    exercises = registry()
    if which.strip().lower() == "all":
        return list(exercises.values())
    chosen = []
    for part in which.split(","):
        part = part.strip()
        if not part.isdigit() or int(part) not in exercises:
            raise ConfigError(f"exercise has to be 'all' or a number from 1 to {len(exercises)} "
                              f"(e.g. 3 or 1,3), not {which!r}")
        chosen.append(exercises[int(part)])
    return chosen


@dataclass
class ExerciseOutcome:
    number: int
    report: Path
    jobs: int
    diverged: int  # a result: the report lists them (exercise 2's runs without dropout may)
    failed: int  # an error or a lost job: the report leaves them out
    seconds: float


@dataclass
class ExercisesResult:
    out_dir: Path
    index: Path
    outcomes: List[ExerciseOutcome]


def seed_overrides(seeds: Optional[int], overrides: List[str]) -> List[str]:
    """``--seeds K`` as the override seed=range(K), which replaces the seeds each exercise's
    YAML sweeps (hydra.sweeper.params.seed); ConfigError with a seed= override as well."""
    if seeds is None:
        return []
    if seeds < 2:
        raise ConfigError(f"--seeds has to be at least 2 (a test needs two seeds), not {seeds}")
    if any(o.split("=", 1)[0].lstrip("+~") == "seed" for o in overrides):
        raise ConfigError("--seeds and a seed= override both set the seeds: give one of them")
    return [f"seed=range({seeds})"]


def run_exercises(which: str, overrides: Optional[List[str]] = None, *, quick: bool = False,
                  jobs: int = 1, out: Optional[Path] = None, seeds: Optional[int] = None,
                  launcher: Optional[str] = None) -> ExercisesResult:
    """Run the chosen exercises into ``out`` (default outputs/exercises/DATE/TIME_ID).
    ``seeds``: seed=range(seeds) for every exercise; ``launcher``: as ``run_sweep``'s."""
    from dropout_lab.sweep.plan import new_sweep_dir

    chosen = select(which)
    numbers = [o for o in overrides or [] if o.strip().isdigit()]
    if numbers:  # `exercise 2 7`: a second exercise, not an override
        raise ConfigError(f"{numbers[0]!r} is not an override (key=value); several exercises "
                          f"are one list: dropout-lab exercise {which},{','.join(numbers)}")
    user_overrides = [*seed_overrides(seeds, list(overrides or [])), *(overrides or [])]
    out_dir = Path(out) if out else new_sweep_dir(OUT_ROOT)
    outcomes = [run_one(exercise, out_dir, user_overrides, quick, jobs, launcher)
                for exercise in chosen]
    return ExercisesResult(out_dir, write_index(out_dir), outcomes)


def run_one(exercise: Exercise, out_dir: Path, user_overrides: List[str], quick: bool,
            jobs: int, launcher: Optional[str] = None) -> ExerciseOutcome:
    """Sweep, measure, analyse and report one exercise."""
    from dropout_lab.sweep.run import SweepInterrupted, run_sweep

    started = time.perf_counter()
    exercise_dir = out_dir / exercise.experiment
    overrides = [*(QUICK + exercise.quick if quick else ()), *user_overrides]
    try:
        result = run_sweep([f"experiment={exercise.experiment}", *overrides],
                           sweep_dir=exercise_dir / RUNS, jobs=jobs, launcher=launcher)
    except SweepInterrupted:
        raise SweepInterrupted(f"exercise {exercise.number} interrupted; run the same command "
                               f"with --out {out_dir} to resume it") from None
    runs = runs_of_jobs(result.runs, result.jobs)
    measurements = {}
    if exercise.measure is not None and completed(runs):
        measurements = exercise.measure(completed(runs), exercise_dir, quick)
        save_measurements(exercise_dir, measurements)
    findings = exercise.analyze(runs, measurements, exercise_dir)
    seconds = time.perf_counter() - started
    context = {"runs": runs, "overrides": overrides, "user_overrides": user_overrides,
               "quick": quick, "sweep_dir": exercise_dir / RUNS, "seconds": seconds}
    report = write_report(exercise, findings, exercise_dir, context)
    diverged = sum(run["status"] == Status.DIVERGED for run in runs)
    failed = sum(run["status"] not in (Status.COMPLETED, Status.DIVERGED) for run in runs)
    return ExerciseOutcome(exercise.number, report, len(runs), diverged, failed, seconds)


def runs_of_jobs(runs: List[dict], jobs: List[List[str]]) -> List[dict]:
    """The runs made by these jobs. A folder resumed with other overrides (say --quick into a
    full run's --out) also holds the earlier runs, and an analysis must not mix the two."""
    wanted = {settings_identity(job) for job in jobs}
    return [run for run in runs if settings_identity(run["overrides"]) in wanted]
