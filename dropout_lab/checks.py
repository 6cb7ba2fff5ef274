"""Validators for values that enter from configs or function arguments (no torch import)."""

import math

from dropout_lab.errors import ConfigError


def check_probability(p: object, name: str = "dropout probability") -> float:
    """Return ``p`` as a float in [0, 1], or raise ``ConfigError`` (a ``ValueError``) naming it."""
    if isinstance(p, bool) or not isinstance(p, (int, float)):
        raise ConfigError(f"{name} has to be a number between 0 and 1, but got {p!r}")
    if not (math.isfinite(p) and 0.0 <= p <= 1.0):
        raise ConfigError(f"{name} has to be between 0 and 1, but got {p}")
    return float(p)


def check_positive(value: object, name: str, integer: bool = False) -> None:
    """Raise ``ConfigError`` unless ``value`` is a finite number > 0 (an int when ``integer``)."""
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        kind = "a whole number" if integer else "a number"
        raise ConfigError(f"{name} has to be {kind} > 0, but got {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{name} has to be > 0, but got {value}")


def check_at_least_zero(value: object, name: str) -> None:
    """Raise ``ConfigError`` unless ``value`` is a finite number >= 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} has to be a number >= 0, but got {value!r}")
    if not (math.isfinite(value) and value >= 0):
        raise ConfigError(f"{name} has to be >= 0, but got {value}")


def check_choice(value: object, name: str, choices) -> str:
    """Raise ``ConfigError`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ConfigError(f"unknown {name} {value!r}; choose one of: {', '.join(choices)}")
    return value


def check_variance_matched(p: float, whose: str = "got") -> None:
    """Raise ``ConfigError`` unless variance-matched three-valued noise exists at ``p``: its
    variance p/(1-p) is at most 1 (P(0) + P(2) = p/(1-p) <= 1), so p <= 0.5. ``whose``: the
    message's words before p (the config's ``hidden layer 2 has``)."""
    if p > 0.5:
        raise ConfigError(
            f"variance-matched three-valued noise needs p <= 0.5 (its variance p/(1-p) is at most "
            f"1, at p = 0.5), but {whose} p = {p}; use model.dropout.three_valued=uniform or a "
            f"smaller p")
