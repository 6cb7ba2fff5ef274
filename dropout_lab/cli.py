"""The ``dropout-lab`` command line. Thin: each command declares its options and hands off to
one library function. torch and Hydra are imported inside the command bodies, so ``--help``
answers at once."""

import os
import sys
from contextlib import contextmanager
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
)


@app.callback()
def _group() -> None:
    """Dropout experiments on the Fashion-MNIST MLP (784-256-256-10, ReLU).

    Start with `dropout-lab train`; see `dropout-lab COMMAND --help` for each command.
    """


VERBOSE = typer.Option(False, "--verbose", "-v", help="Show the full traceback on errors.")


@contextmanager
def reported_errors(verbose: bool):
    """Turn the library's errors into one line on stderr and a non-zero exit."""
    from dropout_lab.errors import DropoutLabError

    try:
        yield
    except DropoutLabError as error:
        if verbose or os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(error.exit_code) from None


@app.command(epilog=help_keys(), context_settings={"ignore_unknown_options": True})
def train(
    overrides: Optional[List[str]] = typer.Argument(None, help=OVERRIDES_HELP, show_default=False),
    print_config: bool = typer.Option(False, "--print-config", help="Print the composed config and exit."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue the run in RUN_DIR from its last checkpoint."),
    verbose: bool = VERBOSE,
):
    """Train the MLP once and log it to TensorBoard (a Hydra run)."""
    from dropout_lab import app as lab

    overrides = overrides or []
    with reported_errors(verbose):
        if print_config:
            typer.echo(lab.print_config(overrides), nl=False)
            return
        result = lab.train_command(overrides, resume)
    typer.echo(lab.describe_result(result))
    raise typer.Exit(lab.exit_code(result))


def main() -> None:
    app()
