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

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

from dropout_lab.disk import read_json
from dropout_lab.errors import ConfigError
from dropout_lab.exercises.questions import answer_exercise, arm_values
from dropout_lab.exercises.runs import completed
from dropout_lab.exercises.types import Exercise
from dropout_lab.exercises.writing import (RESULTS, RUNS, save_measurements, write_index,
                                          write_report)
from dropout_lab.inference.sequential import SEQUENTIAL, Design, look_schedule, round_seeds
from dropout_lab.job_names import settings_identity
from dropout_lab.run_folder import RunRecord, Status

OUT_ROOT = Path("outputs/exercises")
DEFAULT_MAX_SEEDS = 30  # --until-decided without --max-seeds
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
    failed: int  # did not complete (an error; or stopped: killed, lost): the report leaves them out
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
    if _sets_seed(overrides):
        raise ConfigError("--seeds and a seed= override both set the seeds: give one of them")
    return [f"seed=range({seeds})"]


def _sets_seed(overrides: List[str]) -> bool:
    return any(o.split("=", 1)[0].lstrip("+~") == "seed" for o in overrides)


def until_decided_seeds(until_decided: bool, max_seeds: Optional[int]) -> Optional[int]:
    """The options' --max-seeds (default 30) with --until-decided; None without it."""
    if not until_decided:
        if max_seeds is not None:
            raise ConfigError("--max-seeds goes with --until-decided (seeds in rounds up to it); "
                              "for a fixed number of seeds use --seeds K")
        return None
    return DEFAULT_MAX_SEEDS if max_seeds is None else max_seeds


def sequential_design(max_seeds: Optional[int], seeds: Optional[int],
                      overrides: List[str]) -> Optional[Design]:
    """``--until-decided --max-seeds M``: the looks (5, 10, 20, 30, ... up to M); None without."""
    if max_seeds is None:
        return None
    if seeds is not None or _sets_seed(overrides):
        raise ConfigError("--until-decided chooses the seeds (0, 1, ... in rounds up to "
                          "--max-seeds): leave out --seeds and seed=")
    try:
        return Design(look_schedule(max_seeds))
    except ValueError as error:
        raise ConfigError(f"--max-seeds: {error}") from None


def run_exercises(which: str, overrides: Optional[List[str]] = None, *, quick: bool = False,
                  jobs: int = 1, out: Optional[Path] = None, seeds: Optional[int] = None,
                  launcher: Optional[str] = None,
                  max_seeds: Optional[int] = None) -> ExercisesResult:
    """Run the chosen exercises into ``out`` (default outputs/exercises/DATE/TIME_ID).
    ``seeds``: seed=range(seeds) for every exercise; ``launcher``: as ``run_sweep``'s;
    ``max_seeds``: until decided, seeds in rounds up to max_seeds for the open questions."""
    from dropout_lab.sweep.plan import new_sweep_dir

    chosen = select(which)
    numbers = [o for o in overrides or [] if o.strip().isdigit()]
    if numbers:  # `exercise 2 7`: a second exercise, not an override
        raise ConfigError(f"{numbers[0]!r} is not an override (key=value); several exercises "
                          f"are one list: dropout-lab exercise {which},{','.join(numbers)}")
    design = sequential_design(max_seeds, seeds, list(overrides or []))
    user_overrides = [*seed_overrides(seeds, list(overrides or [])), *(overrides or [])]
    out_dir = Path(out) if out else new_sweep_dir(OUT_ROOT)
    for exercise in chosen:  # before any run: a refusal after hours of the others would cost them
        check_same_design(out_dir / exercise.experiment, design)
    outcomes = [run_one(exercise, out_dir, user_overrides, quick, jobs, launcher, design)
                for exercise in chosen]
    return ExercisesResult(out_dir, write_index(out_dir), outcomes)


def run_one(exercise: Exercise, out_dir: Path, user_overrides: List[str], quick: bool,
            jobs: int, launcher: Optional[str] = None,
            design: Optional[Design] = None) -> ExerciseOutcome:
    """Sweep, measure, analyse and report one exercise: one sweep, or with a sequential
    ``design`` one round per look, adding seeds to the settings of the open questions."""
    started = time.perf_counter()
    exercise_dir = out_dir / exercise.experiment
    overrides = exercise_overrides(exercise, user_overrides, quick, design)
    sweep = SweepRound(exercise, out_dir, overrides, jobs, launcher)
    if design is None:
        runs = sweep.run([], exercise_dir / RUNS)
        measurements, answers = evaluate(exercise, runs, exercise_dir, quick)
    else:
        runs, measurements, answers = run_rounds(exercise, sweep, design, exercise_dir, quick)
    findings = exercise.analyze(runs, measurements, exercise_dir)
    seconds = time.perf_counter() - started
    context = {"runs": runs, "overrides": overrides, "user_overrides": user_overrides,
               "quick": quick, "sweep_dir": exercise_dir / RUNS, "seconds": seconds,
               "out_dir": out_dir, "answers": answers, "design": design}
    report = write_report(exercise, findings, exercise_dir, context)
    diverged = sum(run.status == Status.DIVERGED for run in runs)
    failed = sum(run.status not in (Status.COMPLETED, Status.DIVERGED) for run in runs)
    return ExerciseOutcome(exercise.number, report, len(runs), diverged, failed, seconds)


def check_same_design(exercise_dir: Path, design: Optional[Design]) -> None:
    """Answers found under a group-sequential design resume only under that design (as
    ``compare`` refuses): choosing other looks after seeing answers voids their error rates."""
    path = exercise_dir / RESULTS
    earlier = read_json(path).get("design", "") if path.is_file() else ""
    wanted = design.text() if design is not None else None
    if earlier.startswith(SEQUENTIAL) and earlier != wanted:
        raise ConfigError(f"{exercise_dir} holds answers under {earlier}; changing --until-decided "
                          f"or --max-seeds after a look voids their error rates: use a new --out")


def exercise_overrides(exercise: Exercise, user_overrides: List[str], quick: bool,
                       design: Optional[Design]) -> List[str]:
    """The overrides of every sweep of ``exercise`` (--quick's, then the user's)."""
    quick_overrides = QUICK + exercise.quick if quick else ()
    if design is not None:  # the rounds set the seeds
        quick_overrides = tuple(o for o in quick_overrides if not o.startswith("seed="))
    return [*quick_overrides, *user_overrides]


def earlier_out(which: str, overrides: List[str], *, quick: bool = False,
                seeds: Optional[int] = None, max_seeds: Optional[int] = None) -> Optional[Path]:
    """The newest folder under OUT_ROOT where the first chosen exercise ran before with the
    same settings (its first sweep's multirun.yaml), or None: without --out an invocation
    starts anew, and the user may rather continue that one."""
    from dropout_lab.sweep.plan import earlier_sweep

    exercise = select(which)[0]
    design = sequential_design(max_seeds, seeds, overrides)
    user_overrides = [*seed_overrides(seeds, overrides), *overrides]
    sweep = [f"experiment={exercise.experiment}",
             *exercise_overrides(exercise, user_overrides, quick, design)]
    folder = Path(exercise.experiment) / RUNS
    if design is not None:  # its first round
        sweep.append(round_seeds(0, design.looks[0]))
        folder /= round_name((), 0, design.looks[0])
    found = earlier_sweep(sweep, OUT_ROOT, pattern=f"*/*/{folder.as_posix()}/multirun.yaml")
    return found.parents[len(folder.parts) - 1] if found else None


@dataclass
class SweepRound:
    """Runs one sweep of an exercise (the whole grid, or one setting) into a folder."""

    exercise: Exercise
    out_dir: Path
    overrides: List[str]
    jobs: int
    launcher: Optional[str]

    def run(self, extra: List[str], sweep_dir: Path) -> List[dict]:
        from dropout_lab.sweep.run import SweepInterrupted, run_sweep

        try:
            result = run_sweep([f"experiment={self.exercise.experiment}", *self.overrides,
                                *extra], sweep_dir=sweep_dir, jobs=self.jobs,
                               launcher=self.launcher)
        except SweepInterrupted:
            raise SweepInterrupted(f"exercise {self.exercise.number} interrupted; run the same "
                                   f"command with --out {self.out_dir} to resume it") from None
        return runs_of_jobs(result.runs, result.jobs)


def evaluate(exercise: Exercise, runs: List[RunRecord], exercise_dir: Path, quick: bool,
             design: Optional[Design] = None):
    """Measurements on the trained models (where the exercise makes any) and the answers to
    its declared questions."""
    measurements = {}
    if exercise.measure is not None and completed(runs):
        measurements = exercise.measure(completed(runs), exercise_dir, quick)
        save_measurements(exercise_dir, measurements)
    values_of = exercise.values or (lambda question, runs_, _: arm_values(question, runs_))
    values = {q.name: values_of(q, runs, measurements) for q in exercise.questions}
    return measurements, answer_exercise(exercise.questions, values, design)


def run_rounds(exercise: Exercise, sweep: SweepRound, design: Design, exercise_dir: Path,
               quick: bool):
    """One round per look: the whole grid at the first, then only the settings (arms) of the
    questions still undecided; stops when every question is decided."""
    runs, first, answers = [], 0, []
    for n in design.looks:
        for arm in open_arms(exercise, answers):
            runs += sweep.run([*arm, round_seeds(first, n)],
                              exercise_dir / RUNS / round_name(arm, first, n))
        first = n
        measurements, answers = evaluate(exercise, runs, exercise_dir, quick, design)
        if all(answer.decided for answer in answers):
            break
    return runs, measurements, answers


def open_arms(exercise: Exercise, answers) -> List[Tuple[str, ...]]:
    """The settings that need seeds: all (one sweep of the grid, ``()``) at the first round or
    where an open question's arm is not one setting, else each open question's two arms."""
    if not answers:
        return [()]
    arms = []
    for question, answer in zip(exercise.questions, answers):
        if not answer.decided:
            for arm in (question.a_overrides, question.b_overrides):
                if arm not in arms:
                    arms.append(arm)
    return [()] if () in arms else arms


def round_name(arm: Tuple[str, ...], first: int, last: int) -> str:
    """'seeds_5-9' for the grid, 'seeds_5-9_p.0=0.2_p.1=0.5' for one setting: a folder name
    without characters that need quoting."""
    name = f"seeds_{first}-{last - 1}"
    if arm:
        words = "_".join(short_override(o) for o in arm)
        name += "_" + re.sub(r"[^A-Za-z0-9.=_-]+", "-", words).strip("-")[:80]
    return name


def short_override(override: str) -> str:
    """'p.0=0.2' for 'model.dropout.p.0=0.2', 'lr=0.1' for 'optim.lr=0.1'."""
    key, _, value = override.partition("=")
    parts = key.split(".")
    return ".".join(parts[-2:] if parts[-1].isdigit() else parts[-1:]) + "=" + value


def runs_of_jobs(runs: List[RunRecord], jobs: List[List[str]]) -> List[RunRecord]:
    """The runs made by these jobs. A folder resumed with other overrides (say --quick into a
    full run's --out) also holds the earlier runs, and an analysis must not mix the two."""
    wanted = {settings_identity(job) for job in jobs}
    return [run for run in runs if settings_identity(run.overrides) in wanted]
