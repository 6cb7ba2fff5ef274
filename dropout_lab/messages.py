"""What each command tells its user: the closing lines, the one error line for stderr, and the
exit code. The library returns results; only this module words them, and ``exit_code`` is the
one place that maps an outcome to a number:

    0    everything asked for completed (a diverged exercise run is a measured result)
    1    a run or job failed, diverged (train, sweep) or was lost
    2    usage or config error (a dry run that found bad configs)
    128+N  a run stopped by signal N (130: Ctrl-C, 143: SIGTERM)
"""

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

def describe_run(result) -> str:
    """The closing lines of a run: status, final metrics, where it is, how to look at it."""
    final, epochs = result.final, len(result.history)
    metrics = (f"train loss {final['train_loss']:.4f}, train acc {final['train_accuracy']:.4f}, "
               f"test acc {final['test_accuracy']:.4f}" if final else "no epoch finished")
    line = f"{result.status}: {metrics} after {plural(epochs, 'epoch')}"
    window = min(result.steady_epochs, epochs)
    if window > 1:
        line += f"; steady test acc {steady(result.history, 'test_accuracy', window):.4f}"
        if "val_accuracy" in result.history[-1]:  # data.validation holds out a split
            line += f", val acc {steady(result.history, 'val_accuracy', window):.4f}"
        line += f" (mean of the last {window})"
    if result.error:
        line += f" ({result.error})"
    return f"{line}\nrun: {result.run_dir}\nview: tensorboard --logdir {result.run_dir}"


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
            lines.append(f"  #{num}: {' '.join(job)}")
            if num in result.problems:
                lines.append(f"      bad config: {result.problems[num]}")
        return "\n".join(lines)
    done = sum(run["status"] == Status.COMPLETED for run in result.runs)
    before = " (all before this command: nothing to train)" if result.nothing_to_run else ""
    return (f"sweep: {done} of {len(result.runs)} jobs completed{before}\n"
            f"report: {result.sweep_dir / 'report.md'}\n"
            f"view: dropout-lab tensorboard {result.sweep_dir}")


def sweep_problem(result, dry_run: bool = False) -> Optional[str]:
    """The one line for stderr: the bad cells of a dry run, or the jobs that did not complete."""
    if dry_run and result.problems:
        return (f"{len(result.problems)} of {len(result.jobs)} jobs have a bad config: "
                + ", ".join(f"#{num}" for num in result.problems))
    if not dry_run and result.failed:
        named = [f"#{run['num']} {run['status']}" if run["num"] is not None else
                 f"{run['job']} {run['status']}" for run in result.runs if run["job"] in result.failed]
        resumable = {status.value for status in Status if status.resumable}
        resumes = any(run["status"] in resumable for run in result.runs if run["job"] in result.failed)
        resume = (f"; the stopped ones resume from their last checkpoint when you run the same "
                  f"command with --sweep-dir {result.sweep_dir}" if resumes else "")
        return (f"{len(result.failed)} of {len(result.runs)} jobs did not complete "
                f"({', '.join(named)}); see {result.sweep_dir / 'report.md'}{resume}")
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
                  *([f"{o.failed} failed"] if o.failed else []), f"{o.seconds:.0f} s"]
        lines.append(f"exercise {o.number}: {o.report} ({', '.join(counts)})")
    lines += [f"index: {result.index}", f"view: dropout-lab tensorboard {result.out_dir}"]
    return "\n".join(lines)


def exercises_problem(result) -> Optional[str]:
    """The one line for stderr when runs failed (errors or lost jobs, not divergence)."""
    failed = [f"exercise {o.number} ({o.failed} of {o.jobs})" for o in result.outcomes if o.failed]
    if not failed:
        return None
    return (f"runs failed in {', '.join(failed)}; the reports leave them out; run the same "
            f"command with --out {result.out_dir} to retry them")


def exercises_exit_code(result) -> int:
    """1 when a run failed, else 0: a diverged run is a measured result, which the reports
    count (the reports are written either way)."""
    return exit_code(failed=exercises_problem(result) is not None)
