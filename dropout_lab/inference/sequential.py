"""The group-sequential design: looks fixed in advance, Lan-DeMets O'Brien-Fleming alpha
spending, and the nominal level each look tests at.

Seeds are added in rounds and the data are tested after each round (a *look*). Testing
repeatedly at the full level would inflate the error rate (at 6 and then 16 seeds, about 9%
instead of 5%), so each look spends only part of the level: the Lan-DeMets spending function
of O'Brien-Fleming type, α(t) = 2 − 2Φ(z_{1−α/2} / √t) at information fraction t (the look's
seeds over the last look's). It spends almost nothing early and nearly the whole α at the last
look, so a design that ends at its last look is nearly as powerful as a fixed one.

The boundaries are found on the z scale: with Z_k the standardised mean difference after n_k
seeds, corr(Z_i, Z_j) = √(n_i / n_j) (i ≤ j), and the boundary c_k solves
P(no earlier crossing, crossing at look k) = α(t_k) − α(t_{k−1}) (scipy's multivariate
normal distribution function). Each c_k becomes a nominal level (the tail probability beyond
c_k), and a look rejects when its t-test p-value, at that look's degrees of freedom, is at or
below the nominal level: the t quantile at each look's df, as is usual with small samples.

Why scipy, not a sequential-testing package: of the PyPI candidates, gsdesign (0.1.x) and
earlysign (0.2) are young single-author releases, and confseq/expectation give anytime-valid
confidence sequences, which allow unplanned looks but need markedly more seeds at the small
samples here (5 to 30 seeds). The computation is one spending function and a few calls of
scipy's multivariate normal; the simulations in tests/inference/test_decide.py check its error rates.
"""

from dataclasses import dataclass
from functools import lru_cache
from typing import Tuple

import numpy as np
from scipy import optimize, stats

ALPHA = 0.05  # family-wise level of each kind of wrong answer
SCHEDULE = (5, 10, 20, 30)  # seeds at each look; then every 10 more, up to --max-seeds
MIN_SEEDS = 2  # a t-test needs two seeds
SEQUENTIAL = "a group-sequential design"  # how Design.text() begins for one


def look_schedule(max_seeds: int, first: Tuple[int, ...] = SCHEDULE) -> Tuple[int, ...]:
    """The seeds at each look, up to ``max_seeds`` (always the last look): 5, 10, 20, 30,
    40, ...; a single look at ``max_seeds`` when it is below the first."""
    if max_seeds < MIN_SEEDS:
        raise ValueError(f"max_seeds has to be at least {MIN_SEEDS}, not {max_seeds}")
    looks = [n for n in first if n < max_seeds]
    step = first[-1] - first[-2] if len(first) > 1 else first[-1]
    while looks and looks[-1] + step < max_seeds and looks[-1] >= first[-1]:
        looks.append(looks[-1] + step)
    return (*looks, max_seeds)


def round_seeds(first: int, last: int) -> str:
    """The seed override of the round between two looks: seeds first to last - 1."""
    return f"seed=range({first},{last})" if last - first > 1 else f"seed={first}"


def spent(fraction: np.ndarray, alpha: float) -> np.ndarray:
    """Lan-DeMets O'Brien-Fleming spending: the level spent by information fraction t."""
    fraction = np.asarray(fraction, dtype=float)
    return 2 - 2 * stats.norm.cdf(stats.norm.ppf(1 - alpha / 2) / np.sqrt(fraction))


@lru_cache(maxsize=256)
def z_boundaries(looks: Tuple[int, ...], alpha: float, two_sided: bool) -> Tuple[float, ...]:
    """The boundary c_k of each look on the z scale (|Z| ≥ c_k two-sided, Z ≥ c_k one-sided)."""
    n = np.asarray(looks, dtype=float)
    increments = np.diff(spent(n / n[-1], alpha), prepend=0.0)
    correlation = np.sqrt(np.minimum.outer(n, n) / np.maximum.outer(n, n))
    bounds = []
    for k, increment in enumerate(increments):
        if k == 0:
            tail = increment / 2 if two_sided else increment
            bounds.append(float(stats.norm.isf(tail)))
            continue
        inside_before = _inside(correlation[:k, :k], bounds, two_sided)

        def excess(c: float) -> float:  # level spent at look k with boundary c, minus the target
            return inside_before - _inside(correlation[:k + 1, :k + 1], [*bounds, c],
                                           two_sided) - increment
        bounds.append(float(optimize.brentq(excess, 1.0, 8.0, xtol=1e-5)))
    return tuple(bounds)


def _inside(correlation: np.ndarray, bounds, two_sided: bool) -> float:
    """P(every Z_i inside its boundary) for standard normals with this correlation."""
    upper = np.asarray(bounds, dtype=float)
    if len(upper) == 1:
        return float(stats.norm.cdf(upper[0]) - (stats.norm.cdf(-upper[0]) if two_sided else 0))
    lower = -upper if two_sided else np.full_like(upper, -np.inf)
    return float(stats.multivariate_normal.cdf(  # fixed rng: the same boundaries every time
        upper, cov=correlation, lower_limit=lower, abseps=1e-7, releps=1e-6,
        maxpts=20_000 * len(upper), rng=np.random.default_rng(0)))


@dataclass(frozen=True)
class Design:
    """Looks at ``looks`` seeds (paired), family-wise level ``alpha`` per kind of wrong answer.
    A fixed design is one look."""

    looks: Tuple[int, ...]
    alpha: float = ALPHA

    @property
    def sequential(self) -> bool:
        return len(self.looks) > 1

    def nominal(self, level: float, two_sided: bool) -> np.ndarray:
        """Nominal p-value threshold of each look, for a test at overall ``level``:
        two-sided (superiority) or one-sided (each half of TOST). Shape (looks,)."""
        bounds = np.asarray(z_boundaries(self.looks, float(level), two_sided))
        return stats.norm.sf(bounds) * (2 if two_sided else 1)

    def text(self) -> str:
        if not self.sequential:
            return f"a fixed design: one look at {self.looks[0]} seeds"
        return (f"{SEQUENTIAL} with looks at {', '.join(map(str, self.looks))} "
                f"seeds and Lan-DeMets O'Brien-Fleming alpha spending")
