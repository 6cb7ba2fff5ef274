"""The ``dropout-lab`` command line. Thin: each command declares its options and hands off to
one library function. torch and Hydra are imported inside the command bodies, so ``--help``
answers at once."""

import os
import sys
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import List, Optional

import typer

from dropout_lab.config import help_keys

OVERRIDES_HELP = "Hydra overrides, e.g. model.dropout.p=[0.5,0.2] optim.weight_decay=1e-4"

app = typer.Typer(
    name="dropout-lab",
    help="Dropout experiments on the Fashion-MNIST MLP (784-256-256-10, ReLU).",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},  # commands inherit it
)


@app.callback()
def _group() -> None:
    """Dropout experiments on the Fashion-MNIST MLP (784-256-256-10, ReLU).

    Start with `dropout-lab train`; see `dropout-lab COMMAND --help` for each command.
    """


VERBOSE = typer.Option(False, "--verbose", "-v", help="Show the full traceback on errors.")


@contextmanager
def reported_errors(verbose: bool):
    """Turn the library's errors into one line on stderr and their exit code (2: usage or
    config, 1: a failed run); ``-v`` or HYDRA_FULL_ERROR=1 print the traceback instead, with
    the same exit code."""
    from dropout_lab.errors import DropoutLabError

    try:
        yield
    except DropoutLabError as error:
        refused(error, f"error: {error}", error.exit_code, verbose)
    except KeyboardInterrupt as error:  # Ctrl-C outside the training loop (which saves and returns)
        refused(error, "error: interrupted", 130, verbose)


def refused(error: BaseException, line: str, code: int, verbose: bool) -> None:
    if verbose or os.environ.get("HYDRA_FULL_ERROR") == "1":
        import traceback

        traceback.print_exception(error, file=sys.stderr)
    else:
        typer.echo(line, err=True)
    raise typer.Exit(code) from None


@app.command(epilog=help_keys(), context_settings={"ignore_unknown_options": True})
def train(
    overrides: Optional[List[str]] = typer.Argument(None, help=OVERRIDES_HELP, show_default=False),
    print_config: bool = typer.Option(False, "--print-config", help="Print the composed config and exit."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue the run in RUN_DIR from its last checkpoint."),
    verbose: bool = VERBOSE,
):
    """Train the MLP once and log it to TensorBoard (a Hydra run)."""
    from dropout_lab import hydra_runner, messages

    overrides = overrides or []
    with reported_errors(verbose):
        if print_config:
            typer.echo(hydra_runner.print_config(overrides), nl=False)
            return
        result = hydra_runner.train_command(
            overrides, resume,
            announce=lambda run_dir: typer.echo(messages.run_starting(run_dir, resume), err=True))
    typer.echo(messages.describe_run(result))
    raise typer.Exit(messages.run_exit_code(result))


@app.command(epilog=help_keys(), context_settings={"ignore_unknown_options": True})
def sweep(
    overrides: Optional[List[str]] = typer.Argument(
        None, show_default=False,
        help="Hydra overrides with sweeps, e.g. model.dropout.p=[0.2,0.5],[0.5,0.2] seed=range(3), "
             "or a named sweep: experiment=swap_probs | experiment=search (Optuna)"),
    jobs: int = typer.Option(1, "--jobs", "-j", help="Jobs at once (more than 1: the joblib launcher)."),
    launcher: Optional[str] = typer.Option(
        None, "--launcher", help="basic (one after another), joblib (local processes), "
                                 "local (submitit processes, all jobs at once) or slurm "
                                 "(configs/hydra/launcher/slurm.yaml)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List the jobs' overrides and folders, run nothing."),
    sweep_dir: Optional[Path] = typer.Option(
        None, "--sweep-dir", help="Sweep directory; an existing one resumes its sweep."),
    retries: int = typer.Option(
        0, "--retries", help="Run a job whose process died (OOM killer, crash) again, from its "
                             "last checkpoint, up to N times (joblib and local launchers)."),
    verbose: bool = VERBOSE,
):
    """Run a Hydra multirun of training runs, then write the report (report.md, report.csv)."""
    from dropout_lab import messages
    from dropout_lab.sweep.plan import earlier_sweep
    from dropout_lab.sweep.run import run_sweep

    with reported_errors(verbose):
        earlier = None if sweep_dir else earlier_sweep(overrides or [])
        if earlier:
            typer.echo(messages.earlier_sweep_note(earlier), err=True)
        result = run_sweep(overrides or [], sweep_dir=sweep_dir, jobs=jobs, launcher=launcher,
                           dry_run=dry_run, retries=retries)
    typer.echo(messages.describe_sweep(result, dry_run))
    problem = messages.sweep_problem(result, dry_run)
    if problem:
        typer.echo(f"error: {problem}", err=True)
    raise typer.Exit(messages.sweep_exit_code(result, dry_run))


@app.command()
def report(
    sweep_dir: Path = typer.Argument(..., help="A sweep directory (outputs/sweeps/DATE/TIME_ID)."),
    verbose: bool = VERBOSE,
):
    """Write the sweep's comparison: report.md, report.csv and test_accuracy.png."""
    from dropout_lab import report as lab_report

    with reported_errors(verbose):
        paths = lab_report.write_report(sweep_dir)
    typer.echo("\n".join(f"{kind}: {path}" for kind, path in paths.items()))


@app.command()
def tensorboard(
    logdir: Path = typer.Argument(Path("outputs"), help="A run, sweep, exercise or outputs folder "
                                                         "(any number of sweeps: one HParams view)."),
    port: Optional[int] = typer.Option(None, "--port", help="Port on 127.0.0.1 (default: a free one)."),
    verbose: bool = VERBOSE,
):
    """Start TensorBoard on 127.0.0.1 over LOGDIR and print its URL; Ctrl-C stops it.

    Its HParams view is computed for LOGDIR: every setting swept anywhere under it checked,
    the seeds of each setting one row (their mean)."""
    from dropout_lab import tensorboard_server

    with reported_errors(verbose):
        tensorboard_server.serve(logdir, port, announce=lambda url: typer.echo(f"TensorBoard: {url}"))


@app.command()
def runs(
    directory: Path = typer.Argument(Path("outputs"), metavar="DIR",
                                     help="A run, sweep, exercise or outputs folder."),
    sort: Optional[str] = typer.Option(
        None, "--sort", help="Sort by a column: steady, test_acc, best, gap, epochs_done, time "
                             "(highest first), run, status or a shown setting (e.g. wd)."),
    status: Optional[str] = typer.Option(
        None, "--status", help="Only runs with this status: completed, diverged, failed, "
                               "stopped, interrupted, running, unreadable (a summary.json "
                               "that cannot be read) or unknown."),
    by_setting: bool = typer.Option(
        False, "--by-setting", help="One line per setting (its seeds together): mean ± std over "
                                    "the completed seeds, seeds completed/total."),
    as_csv: bool = typer.Option(False, "--csv", help="CSV (one column per setting) instead of the table."),
    verbose: bool = VERBOSE,
):
    """List the runs under DIR: status, the settings that differ, test accuracy (steady,
    final, best), gap, epochs done and time, then the failed runs' errors. Reads only their
    summary.json files."""
    from dropout_lab import runs_table

    with reported_errors(verbose):
        typer.echo(runs_table.runs_text(directory, sort=sort, status=status, as_csv=as_csv,
                                        folded=by_setting), nl=False)


@app.command()
def diff(
    run_a: Path = typer.Argument(..., metavar="RUN_A", help="A run folder."),
    run_b: Path = typer.Argument(..., metavar="RUN_B", help="Another run folder."),
    verbose: bool = VERBOSE,
):
    """Compare two runs: the config keys that differ, and their metrics side by side."""
    from dropout_lab import runs_table

    with reported_errors(verbose):
        typer.echo(runs_table.diff_text(run_a, run_b), nl=False)


@app.command()
def evaluate(
    run_dir: Path = typer.Argument(..., help="A training run's folder (summary.json, checkpoint.pt)."),
    mc_samples: int = typer.Option(20, "--mc-samples", "-k", help="Stochastic passes K per test image."),
    seed: int = typer.Option(0, "--seed", help="Seeds the dropout masks of the K passes."),
    verbose: bool = VERBOSE,
):
    """Monte Carlo dropout: evaluate a trained run with K passes, its dropout layers on.

    Prints accuracy of the deterministic pass and of the averaged prediction, predictive
    entropy and mutual information (BALD), and writes them to RUN_DIR/mc_eval.json and .md.
    """
    from dropout_lab import mc_dropout

    with reported_errors(verbose):
        result = mc_dropout.mc_evaluate(run_dir, mc_samples, seed)
    typer.echo(result.text + "\n\n" + "\n".join(f"{kind}: {path}" for kind, path in result.paths.items()))


@app.command(context_settings={"ignore_unknown_options": True})
def exercise(
    which: str = typer.Argument(..., help="The exercise: 1 to 8, a list like 1,3, or all."),
    overrides: Optional[List[str]] = typer.Argument(
        None, show_default=False, help="Hydra overrides for every run, e.g. trainer.device=cpu seed=0,1"),
    quick: bool = typer.Option(False, "--quick", help="A tiny budget (data subset, 2 epochs, one seed)."),
    jobs: int = typer.Option(1, "--jobs", "-j", help="Runs at once (more than 1: the joblib launcher)."),
    seeds: Optional[int] = typer.Option(
        None, "--seeds", min=2, help="Seeds per setting: seed=range(K) for every exercise, "
                                     "instead of each exercise's own (configs/experiment/)."),
    launcher: Optional[str] = typer.Option(
        None, "--launcher", help="basic (one after another), joblib (local processes), "
                                 "local (submitit processes, all jobs at once) or slurm "
                                 "(configs/hydra/launcher/slurm.yaml)."),
    out: Optional[Path] = typer.Option(
        None, "--out", help="Output folder (default outputs/exercises/DATE/TIME_ID); an existing "
                            "one resumes: completed runs are skipped."),
    until_decided: bool = typer.Option(
        False, "--until-decided", help="Seeds in rounds (looks at 5, 10, 20, 30, ...), added only "
                                       "to the settings of questions still undecided."),
    max_seeds: Optional[int] = typer.Option(
        None, "--max-seeds", min=2, help="With --until-decided: seeds per setting at most (default 30)."),
    verbose: bool = VERBOSE,
):
    """Answer the textbook's dropout exercises with experiments: sweep, measure, report.md each."""
    from dropout_lab import messages
    from dropout_lab.exercises.runner import earlier_out, run_exercises, until_decided_seeds

    with reported_errors(verbose):
        max_seeds = until_decided_seeds(until_decided, max_seeds)
        earlier = None if out else earlier_out(which, overrides or [], quick=quick, seeds=seeds,
                                               max_seeds=max_seeds)
        if earlier:
            typer.echo(messages.earlier_exercises_note(which, earlier), err=True)
        result = run_exercises(which, overrides or [], quick=quick, jobs=jobs, out=out,
                               seeds=seeds, launcher=launcher, max_seeds=max_seeds)
    typer.echo(messages.describe_exercises(result))
    problem = messages.exercises_problem(result)
    if problem:
        typer.echo(f"error: {problem}", err=True)
    raise typer.Exit(messages.exercises_exit_code(result))


@app.command(context_settings={"ignore_unknown_options": True})
def compare(
    a: str = typer.Argument(..., metavar="A", help="Setting A: its overrides in one quoted argument, e.g. 'model.dropout.p=[0.2,0.5]'."),
    b: str = typer.Argument(..., metavar="B", help="Setting B, the same way."),
    overrides: Optional[List[str]] = typer.Argument(
        None, metavar="OVERRIDES", show_default=False,
        help="Hydra overrides for both, e.g. trainer.epochs=5"),
    margin: float = typer.Option(0.005, "--margin", help="Practical margin δ of the metric: a difference within ±δ counts as equivalent."),
    max_seeds: int = typer.Option(30, "--max-seeds", help="Seeds per setting at most; looks at 5, 10, 20, 30, 40, ... up to it."),
    jobs: int = typer.Option(1, "--jobs", "-j", help="Runs at once (more than 1: the joblib launcher)."),
    launcher: Optional[str] = typer.Option(
        None, "--launcher", help="basic, joblib, local or slurm (as for sweep)."),
    out: Optional[Path] = typer.Option(
        None, "--out", help="Output folder (default outputs/compare/DATE/TIME_ID); an existing "
                            "one resumes the same comparison."),
    verbose: bool = VERBOSE,
):
    """Is setting A better than B, equivalent within ±margin, or undecided? Paired seeds in
    rounds, a group-sequential test; report.md and decision.json in --out."""
    from dropout_lab import messages
    from dropout_lab.compare import run_compare

    with reported_errors(verbose):
        result = run_compare(messages.split_overrides(a), messages.split_overrides(b),
                             overrides or [], margin=margin, max_seeds=max_seeds, jobs=jobs,
                             launcher=launcher, out=out)
    typer.echo(messages.describe_compare(result))
    problem = messages.compare_problem(result)
    if problem:
        typer.echo(f"error: {problem}", err=True)
    raise typer.Exit(messages.exit_code(failed=problem is not None))


def main() -> None:
    """The console script. A process that imported torch spends long in interpreter
    teardown after its last line (unloading torch's native libraries), so once a command has
    finished and closed its files, this runs the exit handlers, flushes the output and leaves
    without the teardown. Other exits (interrupted: 130, 143) go the normal way: worker
    processes may still be saving their checkpoints."""
    try:
        app()
    except SystemExit as finished:
        code = 0 if finished.code is None else finished.code
        if code in (0, 1, 2) and "torch" in sys.modules:
            import atexit

            # What libraries left to their exit handlers (quick): logging closes its handlers,
            # joblib unregisters each joblib call's temp folder from loky's resource tracker.
            # os._exit alone skips them, and the tracker, a process of its own, then warns of
            # "leaked folder objects" (two per joblib sweep; exercises import torch here).
            atexit._run_exitfuncs()  # what Py_Finalize calls; os._exit then skips the rest
            for stream in (sys.stdout, sys.stderr):
                with suppress(OSError):  # a reader that has gone (| head) loses nothing of ours
                    stream.flush()
            os._exit(code)
        raise
