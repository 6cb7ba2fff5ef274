"""The one error family of dropout-lab.

Library code raises these; only the CLI turns them into a one-line message and an exit code.
Anything else that escapes is a bug and is allowed to crash loudly.
"""


class DropoutLabError(Exception):
    """Base of every error a user can cause and fix. ``exit_code`` is what the CLI returns."""

    exit_code = 1


class ConfigError(DropoutLabError, ValueError):
    """A configuration value is wrong (usage error: exit code 2)."""

    exit_code = 2


class DataError(DropoutLabError):
    """The dataset is missing, truncated or corrupt."""


class RunError(DropoutLabError):
    """A run directory cannot be written, read or resumed."""


def one_line(error: BaseException) -> str:
    """The first line of an error's message, for summaries and the CLI."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__
