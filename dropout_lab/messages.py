"""What each command tells its user: the closing lines, the one error line for stderr, and the
exit code. The library returns results; only this module words them, and ``exit_code`` is the
one place that maps an outcome to a number:

    0    everything asked for completed (a diverged exercise run is a measured result)
    1    a run or job failed, diverged (train, sweep) or was lost
    2    usage or config error (a dry run that found bad configs; a folder argument that is
         not what the command reads), with or without -v
    128+N  a run stopped by signal N (130: Ctrl-C, 143: SIGTERM)

Paths in these lines are relative to the working directory when under it (``shown_path``):
what a person types next.
"""

from pathlib import Path
from typing import Optional

from dropout_lab.run_folder import Status, steady


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def exit_code(*, failed: bool = False, bad_config: bool = False,
              signal: Optional[int] = None) -> int:
    if signal:
        return 128 + signal
    if bad_config:
        return 2
    return 1 if failed else 0


# --- train ------------------------------------------------------------------------------------

def run_starting(run_dir: Path, resume: Optional[Path]) -> str:
    """The first line of a run, before torch and the data load (seconds of nothing else)."""
    return f"{'resuming' if resume else 'starting'} {shown_path(run_dir)} (loading torch and the data)"


def describe_run(result) -> str:
    """The closing lines of a run: status, final metrics, where it is, how to look at it, and
    how to go on (a stopped run: --resume)."""
    final, epochs = result.final, len(result.history)
    metrics = (f"train loss {final['train_loss']:.4f}, train acc {final['train_accuracy']:.4f}, "
               f"test acc {final['test_accuracy']:.4f}" if final else "no epoch finished")
    status = result.status if result.trained else "already complete, nothing trained"
    line = f"{status}: {metrics} after {plural(epochs, 'epoch')}"
    window = min(result.steady_epochs, epochs)
    if window > 1:
        line += f"; steady test acc {steady(result.history, 'test_accuracy', window):.4f}"
        if "val_accuracy" in result.history[-1]:  # data.validation holds out a split
            line += f", val acc {steady(result.history, 'val_accuracy', window):.4f}"
        line += f" (mean of the last {window})"
    if result.error:
        line += f" ({result.error})"
    run = shown_path(result.run_dir)
    lines = [line]
    if result.status == Status.COMPLETED and 0 < epochs <= result.steady_epochs:
        lines.append(steady_note(epochs, result.steady_epochs))
    lines += [f"run: {run}", f"view: dropout-lab tensorboard {run}"]
    if result.status == Status.INTERRUPTED:
        lines.append(f"resume: dropout-lab train --resume {run}")
    elif not result.trained:
        lines.append(f"to train longer: dropout-lab train --resume {run} trainer.epochs=N")
    return "\n".join(lines)


def steady_note(epochs: int, window: int) -> str:
    """The warning for runs no longer than their steady window: the mean is no endpoint."""
    return (f"note: {plural(epochs, 'epoch')} <= trainer.steady_epochs={window}: the steady "
            f"mean includes epoch 1; train longer or lower trainer.steady_epochs to compare "
            f"where runs end")


def shown_path(path: Path) -> str:
    """A path as a person types it: relative to the working directory when under it."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def run_exit_code(result) -> int:
    """0 for a completed run, 128 + signal for an interrupted one, 1 otherwise."""
    interrupted = result.status == Status.INTERRUPTED and result.signal
    return exit_code(failed=result.status != Status.COMPLETED,
                     signal=result.signal if interrupted else None)


# --- sweep ------------------------------------------------------------------------------------

def describe_sweep(result, dry_run: bool = False) -> str:
    """The jobs (dry run), or the closing lines of a sweep: counts, report, TensorBoard."""
    if dry_run:
        if result.sweeper != "basic":
            return (f"{result.sweeper} search: the sweeper proposes its trials as it runs "
                    f"(hydra.sweeper.n_trials); nothing to list")
        lines = [f"{len(result.jobs)} jobs:"]
        for num, job in enumerate(result.jobs):
            lines.append(f"  #{num}: {' '.join(job)} -> {result.folders[num]}")
            if num in result.problems:
                lines.append(f"      bad config: {result.problems[num]}")
        return "\n".join(lines)
    from dropout_lab.report import steady_from_the_start

    done = sum(run.status == Status.COMPLETED for run in result.runs)
    before = " (all before this command: nothing to train)" if result.nothing_to_run else ""
    early = steady_from_the_start(result.runs)
    note = [f"note: {len(early)} of {len(result.runs)} runs trained no more epochs than "
            f"trainer.steady_epochs: the steady mean the report ranks by includes epoch 1"
            ] if early else []
    sweep_dir = shown_path(result.sweep_dir)
    return "\n".join([f"sweep: {done} of {len(result.runs)} jobs completed{before}", *note,
                      f"report: {Path(sweep_dir) / 'report.md'}",
                      f"view: dropout-lab tensorboard {sweep_dir}"])


def earlier_sweep_note(sweep_dir) -> str:
    """The line for a sweep started again without --sweep-dir: where the earlier one is."""
    return (f"note: the same sweep ran before in {sweep_dir}; this one starts anew (to continue "
            f"that one instead, run the same command with --sweep-dir {sweep_dir})")


def sweep_problem(result, dry_run: bool = False) -> Optional[str]:
    """The one line for stderr: the bad cells of a dry run, or the jobs that did not complete."""
    if dry_run and result.problems:
        return (f"{len(result.problems)} of {len(result.jobs)} jobs have a bad config: "
                + ", ".join(f"#{num}" for num in result.problems))
    if not dry_run and result.failed:
        named = [f"#{run.num} {run.status}" if run.num is not None else
                 f"{run.job} {run.status}" for run in result.runs if run.job in result.failed]
        resumable = {status.value for status in Status if status.resumable}
        resumes = any(run.status in resumable for run in result.runs if run.job in result.failed)
        resume = (f"; the stopped ones resume from their last checkpoint when you run the same "
                  f"command with --sweep-dir {result.sweep_dir}" if resumes else "")
        return (f"{len(result.failed)} of {len(result.runs)} jobs did not complete "
                f"({', '.join(named)}); see {Path(shown_path(result.sweep_dir)) / 'report.md'}{resume}")
    if not dry_run and not result.runs:
        return "the sweep ran no jobs"
    return None


def sweep_exit_code(result, dry_run: bool = False) -> int:
    if dry_run:
        return exit_code(bad_config=bool(result.problems))
    return exit_code(failed=bool(result.failed or not result.runs))


# --- exercise ---------------------------------------------------------------------------------

def describe_exercises(result) -> str:
    lines = []
    for o in result.outcomes:
        counts = [plural(o.jobs, "job"), *([f"{o.diverged} diverged"] if o.diverged else []),
                  *([f"{o.failed} did not complete"] if o.failed else []), f"{o.seconds:.0f} s"]
        lines.append(f"exercise {o.number}: {shown_path(o.report)} ({', '.join(counts)})")
    lines += [f"index: {shown_path(result.index)}",
              f"view: dropout-lab tensorboard {shown_path(result.out_dir)}"]
    return "\n".join(lines)


def earlier_exercises_note(which: str, out_dir) -> str:
    """The line for exercises started again without --out: where they ran before."""
    return (f"note: dropout-lab exercise {which} ran before with the same settings in "
            f"{shown_path(out_dir)}; "
            f"this run starts anew (to continue that one instead, run the same command with "
            f"--out {shown_path(out_dir)})")


def exercises_problem(result) -> Optional[str]:
    """The one line for stderr when runs did not complete (failed by an error, or stopped:
    killed, lost, interrupted; a diverged run is a result)."""
    failed = [f"exercise {o.number} ({o.failed} of {o.jobs})" for o in result.outcomes if o.failed]
    if not failed:
        return None
    return (f"runs did not complete in {', '.join(failed)}; the reports leave them out; run "
            f"the same command with --out {shown_path(result.out_dir)} to resume or retry them")


def exercises_exit_code(result) -> int:
    """1 when a run did not complete, else 0: a diverged run is a measured result, which the reports
    count (the reports are written either way)."""
    return exit_code(failed=exercises_problem(result) is not None)


# --- compare ----------------------------------------------------------------------------------

def split_overrides(arm: str) -> list:
    """One quoted argument of overrides ('a=1 b=[2,3]') as a list."""
    import shlex

    return shlex.split(arm)


def describe_compare(result) -> str:
    return (f"answer: {result.answer.text()}\n"
            f"report: {result.out_dir / 'report.md'} (decision.json beside it)")


def compare_problem(result) -> Optional[str]:
    """Runs that failed (an error, a lost job; not a diverged run, which is a result)."""
    if not result.failed:
        return None
    return (f"{plural(len(result.failed), 'run')} failed and left out ({', '.join(result.failed)}); "
            f"run the same command with --out {result.out_dir} to retry them")
