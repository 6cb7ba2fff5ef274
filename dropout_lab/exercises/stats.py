"""Descriptive comparisons of settings over seeds for the exercises' tables: Δ with its 95% CI
from a t interval, and the power of a t-test (for the seeds a fixed design would need).

The verdicts are not made here: they come from each exercise's declared questions
(inference/decide.py). The conventions:

- An ``Estimate`` is one metric of one setting over its runs (mean ± sample std), optionally
  keyed by seed.
- A comparison is a contrast Δ = Σ weight·mean over settings: a ``difference`` (A − B), an
  interaction such as (A − B) − (C − D) (``contrast``), or the mean per-run ``change`` of a
  metric (e.g. epoch 50 minus epoch 10 of the same runs), with a 95% CI (scipy.stats):
    * paired by seed over the seeds every setting involved ran (at least 2): runs with the same
      seed share the batch order and, where the layer sizes match, the initial weights, so
      their difference cancels that noise; a seed lost in one setting drops out, no other;
    * Welch's interval otherwise (Welch-Satterthwaite df for contrasts of more than two).
"""

import math
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import (Dict, Hashable, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple,
                    Union)

import numpy as np
from scipy import optimize, stats
from scipy.stats import qmc

from dropout_lab.inference.describe import mean_std

ALPHA = 0.05  # two-sided level of a test in the power calculations
POWER = 0.8  # the default power of ``seeds_needed``
CONFIDENCE = 0.95  # of every CI (per comparison, not adjusted)

SAME_SEED = "same seed: same batch order, and same initial weights where the layer sizes match"

# --- one setting over its seeds ----------------------------------------------------------------

@dataclass(frozen=True)
class Estimate:
    """A metric of one setting over its runs; ``seeds[i]`` is the seed of ``values[i]``
    (None: runs not keyed by seed, which are never paired)."""

    values: Tuple[float, ...]
    seeds: Optional[Tuple[Hashable, ...]] = None

    def __post_init__(self):
        if self.seeds is not None and (len(self.seeds) != len(self.values)
                                       or len(set(self.seeds)) != len(self.seeds)):
            raise ValueError(f"one distinct seed per value expected, got seeds {self.seeds} "
                             f"for {len(self.values)} values")

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> Optional[float]:
        return mean_std(self.values)[0]

    @property
    def std(self) -> Optional[float]:
        """Sample standard deviation over the runs (n - 1); None for fewer than 2 runs."""
        return mean_std(self.values)[1]

    @property
    def se(self) -> Optional[float]:
        return None if self.std is None else self.std / math.sqrt(self.n)

    def by_seed(self) -> Dict[Hashable, float]:
        return dict(zip(self.seeds or (), self.values))

    def text(self, digits: int = 4) -> str:
        """'0.8512 ± 0.0040' (mean ± sample std), 'n/a' without values."""
        if self.mean is None:
            return "n/a"
        if self.std is None:
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {self.std:.{digits}f}"


def _usable(value: Optional[float]) -> bool:
    return value is not None and math.isfinite(value)


def estimate(values: Iterable[Optional[float]]) -> Estimate:
    """An Estimate of the finite values (None and nan/inf, i.e. failed runs, are left out)."""
    return Estimate(tuple(float(v) for v in values if _usable(v)))


def estimate_by_seed(values: Mapping[Hashable, Optional[float]]) -> Estimate:
    """An Estimate keyed by seed ({seed: value}), so that comparisons can pair the runs."""
    kept = {seed: float(v) for seed, v in values.items() if _usable(v)}
    return Estimate(tuple(kept.values()), tuple(kept))


# --- power and the detectable effect -----------------------------------------------------------

QMC_POINTS_LOG2 = 14  # 16,384 quasi-random draws of the sample variances: power to ~1e-4


@dataclass(frozen=True)
class Design:
    """What the power of a comparison depends on, besides the true Δ.

    paired: a one-sample t-test of per-seed (or per-run) values, ``sizes == (n,)``; otherwise
    Welch's test of Σ weight·mean over independent settings with ``sizes[i]`` runs each.
    ``sd``: the SD of one run (pooled over the settings; equal true SDs assumed) or of one
    per-seed value when paired. ``sample``: the sample in words, e.g. '3 seeds per setting'.
    """

    paired: bool
    sizes: Tuple[int, ...]
    weights: Tuple[float, ...]
    sd: float
    sample: str = ""

    def power(self, delta: float, alpha: float = ALPHA) -> float:
        """Probability that the test finds a true contrast ``delta`` at two-sided ``alpha``."""
        shift = abs(delta) / (self.sd * self._se_unit)
        if self.paired:
            return _t_power(shift, self.sizes[0] - 1, alpha)
        thresholds = _welch_thresholds(self.sizes, self.weights, alpha)
        return _welch_power(shift, thresholds)

    def detectable(self, alpha: float = ALPHA, power: float = POWER) -> float:
        """The smallest true |Δ| found with ``power`` at two-sided level ``alpha``."""
        if self.paired:
            df = self.sizes[0] - 1
            shift = _solve_increasing(lambda s: _t_power(s, df, alpha), power)
        else:
            thresholds = _welch_thresholds(self.sizes, self.weights, alpha)
            shift = _solve_increasing(lambda s: _welch_power(s, thresholds), power)
        return shift * self.sd * self._se_unit

    @property
    def _se_unit(self) -> float:
        """SE of the contrast in units of ``sd``: √(Σ weight²/n), or 1/√n when paired."""
        if self.paired:
            return 1.0 / math.sqrt(self.sizes[0])
        return math.sqrt(sum(w * w / n for w, n in zip(self.weights, self.sizes)))


def _t_power(shift: float, df: float, alpha: float) -> float:
    """Power of a t-test with ``df`` df whose statistic is noncentral t with noncentrality
    ``shift`` (exact for the paired and one-sample tests). Both tails via ``sf`` with ±shift:
    scipy's nct.cdf returns nan far in the lower tail."""
    critical = stats.t.ppf(1 - alpha / 2, df)
    return float(stats.nct.sf(critical, df, shift) + stats.nct.sf(critical, df, -shift))


@lru_cache(maxsize=64)  # 128 KiB each
def _welch_thresholds(sizes: Tuple[int, ...], weights: Tuple[float, ...],
                      alpha: float) -> np.ndarray:
    """Welch's rejection threshold for the estimated contrast, in units of its true SE, at
    quasi-random draws of the sample variances (equal true SDs). Shape (draws,).

    Why not the noncentral t: Welch's df is itself random (it depends on the sample variances),
    and with 3 seeds per side it is often near 2, not the pooled 4; the noncentral t at 4 df
    overstates Welch's power (~70% where it claims 80%). Given the sample variances, the
    estimated Δ is normal, so the power is an average of normal tail probabilities over the
    chi-square distributed variances: integrated here by scrambled Sobol points (fixed seed,
    so the result is deterministic and smooth in Δ for the root finder).
    """
    dfs = np.array([n - 1 for n in sizes], dtype=float)  # (k,)
    variance_ratios = _chi2_draws(tuple(dfs)) / dfs  # (draws, k): s_i² / σ²
    terms = np.square(weights) * variance_ratios / np.array(sizes, dtype=float)  # (draws, k)
    se_ratio = np.sqrt(terms.sum(axis=1) / np.sum(np.square(weights) / np.array(sizes)))
    welch_df = terms.sum(axis=1) ** 2 / (terms ** 2 / dfs).sum(axis=1)  # Satterthwaite
    return stats.t.ppf(1 - alpha / 2, welch_df) * se_ratio


@lru_cache(maxsize=32)
def _chi2_draws(dfs: Tuple[float, ...]) -> np.ndarray:
    """Quasi-random chi-square draws, one column per df. Shape (2**QMC_POINTS_LOG2, k)."""
    sobol = qmc.Sobol(len(dfs), scramble=True, rng=np.random.default_rng(20240611))
    uniforms = np.clip(sobol.random_base2(QMC_POINTS_LOG2), 1e-12, 1 - 1e-12)
    return stats.chi2.ppf(uniforms, np.array(dfs))


def _welch_power(shift: float, thresholds: np.ndarray) -> float:
    """P(|Z + shift| > threshold), Z standard normal, averaged over the variance draws."""
    return float(np.mean(stats.norm.sf(thresholds - shift) + stats.norm.sf(thresholds + shift)))


def _solve_increasing(power_at, target: float) -> float:
    """The shift ≥ 0 where the increasing ``power_at`` reaches ``target`` (brentq)."""
    high = 1.0
    while power_at(high) < target:
        high *= 2
    return optimize.brentq(lambda shift: power_at(shift) - target, 0.0, high, xtol=1e-10)


def seeds_needed(delta: float, sd: float, paired: bool = False, power: float = POWER,
                 alpha: float = ALPHA, comparisons: int = 1) -> int:
    """Seeds per setting (or paired seeds) for a two-setting comparison to find a true |Δ| =
    ``delta`` with ``power``, at level alpha/comparisons (Holm's worst case); ``sd`` is the
    SD of one run (Welch) or of one per-seed difference (paired)."""
    if not (delta > 0 and sd > 0):
        raise ValueError(f"delta and sd must be positive, got delta={delta}, sd={sd}")

    def enough(n: int) -> bool:
        sizes, weights = ((n,), (1.0,)) if paired else ((n, n), (1.0, -1.0))
        return Design(paired, sizes, weights, sd).power(delta, alpha / comparisons) >= power

    low, high = 1, 2  # enough(low) is False by convention: a test needs 2 seeds
    while not enough(high):
        low, high = high, high * 2
    while high - low > 1:  # the power grows with n: bisect between low (too few) and high
        middle = (low + high) // 2
        low, high = (low, middle) if enough(middle) else (middle, high)
    return high


# --- comparisons -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Comparison:
    """A contrast Δ of setting means, described: its estimate and 95% CI (for tables; the
    verdicts come from the declared questions, inference/decide.py). Fields are None where not
    computable: ``delta`` without a completed run in some setting; the CI without 2 seeds per
    setting (or 2 shared seeds) or without spread. ``method`` says which t interval and why,
    or why none."""

    delta: Optional[float]
    se: Optional[float] = None
    df: Optional[float] = None
    p_value: Optional[float] = None
    ci: Optional[Tuple[float, float]] = None
    method: str = ""
    design: Optional[Design] = None

    @property
    def known(self) -> bool:
        """Whether there is an interval."""
        return self.ci is not None

    def text(self, digits: int = 4) -> str:
        """Table cell: '+0.0123 (95% CI +0.0040 to +0.0206)', or why no interval."""
        if self.delta is None:
            return f"n/a ({self.method})"
        if not self.known:
            return f"{self.delta:+.{digits}f} (no interval: {self.method})"
        low, high = self.ci
        return (f"{self.delta:+.{digits}f} ({CONFIDENCE:.0%} CI {low:+.{digits}f} to "
                f"{high:+.{digits}f})")


def format_p(p: float) -> str:
    """'< 0.001', '0.031', '0.62'."""
    if p < 0.001:
        return "< 0.001"
    return f"{p:.2f}" if p >= 0.1 else f"{p:.2g}"


def p_relation(p: float) -> str:
    """'= 0.031' or '< 0.001': what follows 'p' in a sentence."""
    text = format_p(p)
    return text if text.startswith("<") else f"= {text}"


def _untested(delta: Optional[float], why: str) -> Comparison:
    return Comparison(delta, method=why)


def _tested(delta: float, se: float, df: float, p_value: float, ci: Tuple[float, float],
            method: str, design: Design) -> Comparison:
    return Comparison(float(delta), float(se), float(df), float(p_value),
                      (float(ci[0]), float(ci[1])), method, design)


def _shared_seeds(estimates: Sequence[Estimate]) -> Optional[List[Hashable]]:
    """The seeds every estimate has (in the first one's order) when there are ≥ 2, else None.
    A seed lost in one setting (a diverged run) drops out of the pairing, no other seed."""
    if any(est.seeds is None for est in estimates):
        return None
    common = set.intersection(*(set(est.seeds) for est in estimates))
    if len(common) < 2:
        return None
    return [seed for seed in estimates[0].seeds if seed in common]


def _why_unpaired(estimates: Sequence[Estimate], paired: Optional[bool]) -> str:
    if paired is False:
        return "unpaired by choice"
    if any(est.seeds is None for est in estimates):
        return "unpaired: runs not keyed by seed"
    return "unpaired: fewer than 2 seeds in common"


def _one_sample(values: Sequence[float], method: str, sample: str) -> Comparison:
    """t-test of mean(values) = 0: a paired comparison once ``values`` are per-seed contrasts."""
    values = np.asarray(values, dtype=float)
    delta, sd, n = float(values.mean()), float(values.std(ddof=1)), len(values)
    if sd == 0:
        return _untested(delta, "no spread over seeds, so no test")
    with identical_values_allowed():
        result = stats.ttest_1samp(values, 0.0)
    return _tested(delta, sd / math.sqrt(n), result.df, result.pvalue,
                   result.confidence_interval(CONFIDENCE), method,
                   Design(True, (n,), (1.0,), sd, sample))


@contextmanager
def identical_values_allowed() -> Iterator[None]:
    """scipy warns of precision loss when a sample's values are (nearly) identical, e.g. every
    seed of a collapsed setting at chance, 0.1000; its variance is then 0 or tiny, as computed,
    and the test stays valid. The warning would reach the user's terminal, so it is dropped."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Precision loss occurred in moment calculation",
                                RuntimeWarning)
        yield


def _missing(estimates: Sequence[Estimate]) -> bool:
    return not estimates or any(est.n == 0 for est in estimates)


def difference(a: Estimate, b: Estimate, paired: Optional[bool] = None) -> Comparison:
    """Δ = mean(a) − mean(b): paired t-test when both are keyed by the same seeds (unless
    ``paired=False``), Welch's t-test otherwise."""
    if _missing((a, b)):
        return _untested(None, "a setting has no completed run")
    seeds = None if paired is False else _shared_seeds((a, b))
    if seeds is not None:
        by_a, by_b = a.by_seed(), b.by_seed()
        return _one_sample([by_a[s] - by_b[s] for s in seeds],
                           f"paired t-test over {len(seeds)} seeds ({SAME_SEED})",
                           f"{len(seeds)} paired seeds")
    delta = a.mean - b.mean
    if a.n < 2 or b.n < 2:
        return _untested(delta, "fewer than 2 seeds")
    se = math.sqrt(a.std ** 2 / a.n + b.std ** 2 / b.n)
    if se == 0:
        return _untested(delta, "no spread over seeds, so no test")
    with identical_values_allowed():
        result = stats.ttest_ind(a.values, b.values, equal_var=False)
    return _tested(delta, se, result.df, result.pvalue, result.confidence_interval(CONFIDENCE),
                   f"Welch's t-test, {a.n} vs {b.n} seeds ({_why_unpaired((a, b), paired)})",
                   _welch_design((a, b), (1.0, -1.0)))


def contrast(terms: Sequence[Tuple[float, Estimate]], paired: Optional[bool] = None) -> Comparison:
    """Δ = Σ weight · mean over (weight, estimate) terms, e.g. the interaction
    (A − B) − (C − D) as [(1, A), (-1, B), (-1, C), (1, D)]: a paired test of the per-seed
    contrast when every setting is keyed by the same seeds (unless ``paired=False``), else
    Welch's test with Welch-Satterthwaite df."""
    estimates = [est for _, est in terms]
    if _missing(estimates):
        return _untested(None, "a setting has no completed run")
    seeds = None if paired is False else _shared_seeds(estimates)
    if seeds is not None:
        tables = [(weight, est.by_seed()) for weight, est in terms]
        per_seed = [sum(weight * table[s] for weight, table in tables) for s in seeds]
        return _one_sample(per_seed, f"paired t-test of the per-seed contrast over "
                                     f"{len(seeds)} seeds ({SAME_SEED})",
                           f"{len(seeds)} paired seeds")
    delta = sum(weight * est.mean for weight, est in terms)
    if any(est.n < 2 for est in estimates):
        return _untested(delta, "fewer than 2 seeds")
    return _welch_contrast(terms, delta, _why_unpaired(estimates, paired))


def _welch_contrast(terms: Sequence[Tuple[float, Estimate]], delta: float, why: str) -> Comparison:
    """Welch's test of a contrast: SE² = Σ w²s²/n, Welch-Satterthwaite df."""
    variances = np.array([weight ** 2 * est.std ** 2 / est.n for weight, est in terms])  # (k,)
    dfs = np.array([est.n - 1 for _, est in terms], dtype=float)
    se = math.sqrt(variances.sum())
    if se == 0:
        return _untested(delta, "no spread over seeds, so no test")
    df = variances.sum() ** 2 / np.sum(variances ** 2 / dfs)
    p_value = 2 * stats.t.sf(abs(delta) / se, df)
    half_width = stats.t.ppf(0.5 + CONFIDENCE / 2, df) * se
    sizes = "/".join(str(est.n) for _, est in terms)
    method = (f"Welch's t-test of a contrast of {len(terms)} settings, {sizes} seeds "
              f"(Welch-Satterthwaite df {df:.1f}; {why})")
    return _tested(delta, se, df, p_value, (delta - half_width, delta + half_width), method,
                   _welch_design([est for _, est in terms], tuple(w for w, _ in terms)))


def _welch_design(estimates: Sequence[Estimate], weights: Tuple[float, ...]) -> Design:
    """Independent settings with their pooled SD, √(Σ (n_i − 1) s_i² / Σ (n_i − 1))."""
    sizes = tuple(est.n for est in estimates)
    pooled = math.sqrt(sum((est.n - 1) * est.std ** 2 for est in estimates)
                       / sum(n - 1 for n in sizes))
    sample = (f"{sizes[0]} seeds per setting" if len(set(sizes)) == 1
              else "/".join(map(str, sizes)) + " seeds per setting")
    return Design(False, sizes, weights, pooled, sample)


def change(deltas: Union[Estimate, Iterable[Optional[float]]]) -> Comparison:
    """The mean of per-run changes (e.g. each run's gap at epoch 50 minus at epoch 10): a
    one-sample t-test against 0, i.e. a paired test, each run against itself."""
    values = deltas if isinstance(deltas, Estimate) else estimate(deltas)
    if values.n == 0:
        return _untested(None, "no completed run")
    if values.n < 2:
        return _untested(values.mean, "fewer than 2 runs")
    return _one_sample(values.values, f"paired t-test over {values.n} runs (each run against "
                                      f"itself)", f"{values.n} runs")
