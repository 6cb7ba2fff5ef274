"""Mean ± spread over seeds, and the one rule the exercises use to call a difference real.

The rule, stated in every report: a difference (or any contrast of setting means, such as an
interaction) is significant when |Δ| > 2·SE, where SE combines the standard errors of the means
involved, SE² = Σ c_i² s_i²/n_i (s_i the sample std over seeds, c_i the contrast weights).
With fewer than 2 seeds in a setting there is no SE, and the report gives no verdict. With 3
seeds per setting the rule is a Welch t-test at roughly the 10% level: a screen, not a proof,
which is why the reports name the seeds and show the spread next to every verdict.
"""

import math
from dataclasses import dataclass
from typing import Iterable, Optional, Sequence, Tuple

from dropout_lab.report import mean_std

SIGNIFICANCE_RULE = (
    "A difference counts as significant when |Δ| > 2·SE, SE = √(Σ s²/n) over the settings "
    "involved (s: sample std over seeds, n: seeds); otherwise the report says \"not "
    "significant\" and names no winner. With fewer than 2 seeds per setting there is no verdict."
)


@dataclass(frozen=True)
class Estimate:
    """A metric of one setting over its seeds."""

    values: Tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> Optional[float]:
        return mean_std(self.values)[0]

    @property
    def std(self) -> Optional[float]:
        return mean_std(self.values)[1]

    @property
    def se(self) -> Optional[float]:
        return None if self.std is None else self.std / math.sqrt(self.n)

    def text(self, digits: int = 4) -> str:
        """'0.8512 ± 0.0040' (mean ± sample std), 'n/a' without values."""
        if self.mean is None:
            return "n/a"
        if self.std is None:
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {self.std:.{digits}f}"


def estimate(values: Iterable[Optional[float]]) -> Estimate:
    return Estimate(tuple(v for v in values if v is not None and math.isfinite(v)))


@dataclass(frozen=True)
class Contrast:
    """Σ c_i · mean_i over some settings, with its standard error (None: not computable)."""

    delta: Optional[float]
    se: Optional[float]

    @property
    def significant(self) -> bool:
        return self.delta is not None and self.se is not None and abs(self.delta) > 2 * self.se

    @property
    def known(self) -> bool:
        return self.delta is not None and self.se is not None

    def text(self, digits: int = 4) -> str:
        """'+0.0123 (2·SE 0.0081, significant)', or why there is no verdict."""
        if self.delta is None:
            return "n/a (a setting has no completed run)"
        if self.se is None:
            return f"{self.delta:+.{digits}f} (no verdict: fewer than 2 seeds)"
        verdict = "significant" if self.significant else "not significant"
        return f"{self.delta:+.{digits}f} (2·SE {2 * self.se:.{digits}f}, {verdict})"


def contrast(terms: Sequence[Tuple[float, Estimate]]) -> Contrast:
    """Σ weight · mean over (weight, estimate) terms; SE² = Σ weight² · se²."""
    if any(est.mean is None for _, est in terms):
        return Contrast(None, None)
    delta = sum(weight * est.mean for weight, est in terms)
    if any(est.se is None for _, est in terms):
        return Contrast(delta, None)
    return Contrast(delta, math.sqrt(sum((weight * est.se) ** 2 for weight, est in terms)))


def difference(a: Estimate, b: Estimate) -> Contrast:
    """mean(a) - mean(b) with its standard error."""
    return contrast([(1.0, a), (-1.0, b)])


def verdict(name_a: str, a: Estimate, name_b: str, b: Estimate, metric: str = "test accuracy",
            higher_is_better: Optional[bool] = True) -> str:
    """One sentence: which of a and b is better on ``metric``, or that the data cannot tell.
    ``higher_is_better=None`` (e.g. the gap) states the direction without naming a winner."""
    diff = difference(a, b)
    numbers = f"{name_a} {a.text()} vs {name_b} {b.text()}, Δ = {diff.text()}"
    if not diff.known:
        return f"{metric}: {numbers}; no verdict."
    if not diff.significant:
        return f"{metric}: {numbers}: the difference is within the spread over seeds."
    direction = "higher" if diff.delta > 0 else "lower"
    sentence = f"{metric}: {numbers}: {name_a} is significantly {direction}"
    if higher_is_better is None:
        return sentence + "."
    winner = name_a if (diff.delta > 0) == higher_is_better else name_b
    return f"{sentence}, so {winner} is better."


def change(deltas: Iterable[Optional[float]]) -> Contrast:
    """The mean of per-run changes (e.g. a run's final gap minus its gap at epoch 10), with
    its SE: a paired comparison, each run against itself."""
    return contrast([(1.0, estimate(deltas))])
