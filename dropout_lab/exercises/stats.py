"""Comparisons of settings over seeds: t-tests, 95% CIs, Holm's correction and detectable effects.

The conventions, stated once:

- An ``Estimate`` is one metric of one setting over its runs (mean ± sample std), optionally
  keyed by seed.
- A comparison is a contrast Δ = Σ weight·mean over settings: a ``difference`` (A − B), an
  interaction such as (A − B) − (C − D) (``contrast``), or the mean per-run ``change`` of a
  metric (e.g. epoch 50 minus epoch 10 of the same runs). Each gets a two-sided p-value and a
  95% CI of Δ from a t-test (scipy.stats):
    * paired by seed (``ttest_rel`` / a one-sample test of the per-seed contrast) when every
      setting involved is keyed by the same set of seeds: runs with the same seed share the batch
      order and, where the layer sizes match, the initial weights, so their difference cancels
      that noise.
      A paired test stays valid when the pairing buys nothing; it only has fewer df.
    * Welch's t-test (``ttest_ind(equal_var=False)``; Welch-Satterthwaite df for contrasts of
      more than two settings) otherwise: unequal spreads across settings are allowed.
- The comparisons of one exercise form a ``Family``; ``Family.adjust`` applies Holm's
  correction, and a comparison is *significant* when its Holm-adjusted p < ALPHA (a comparison
  outside a family is a family of one). The CI is for the comparison alone (not adjusted).
- Every tested comparison states its minimum detectable effect: the smallest true |Δ| that its
  test finds with POWER (80%) at level ALPHA/m, m the family size. ALPHA/m is the level of
  Holm's first step, and Holm rejects whenever p < ALPHA/m, so the 80% is a guarantee for the
  verdict the report prints, whatever the other comparisons do (at the unadjusted ALPHA it would
  be an overstatement in every family with m > 1). It uses the observed SD (pooled over the
  settings, or of the per-seed contrast when paired) as if it were the true one: with 3 seeds
  (2 df) the 95% CI of the true SD runs from about 0.5× to 6× the observed one, so the
  detectable effect is a rough guide, not a measurement.
"""

import math
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import cached_property, lru_cache
from typing import (Dict, Hashable, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple,
                    Union)

import numpy as np
from scipy import optimize, stats
from scipy.stats import qmc

from dropout_lab.inference.describe import mean_std

ALPHA = 0.05  # two-sided level of every verdict (after Holm's correction)
POWER = 0.8  # the power at which the detectable effect is stated
CONFIDENCE = 0.95  # of every CI (per comparison, not adjusted)

SAME_SEED = "same seed: same batch order, and same initial weights where the layer sizes match"

SIGNIFICANCE_RULE = (
    "Each comparison is a t-test over seeds, paired by seed when every setting involved ran the "
    f"same seeds ({SAME_SEED}), Welch's otherwise; its 95% CI is for that comparison alone. "
    "The p-values of one exercise are adjusted together with Holm's method, and a comparison "
    "is significant when its adjusted p < 0.05. Where it is not, the report states the "
    "smallest difference the comparison could have detected with 80% power (at the level "
    "0.05/m for m comparisons, from the observed spread over seeds, itself uncertain)."
)


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
    """A contrast Δ of setting means with its test. Fields are None where not computable:
    ``delta`` without a completed run in some setting; the test without 2 seeds per setting
    (or 2 shared seeds) or without spread. ``method`` says which test and why, or why none.
    ``adjusted_p`` is Holm-adjusted within a family of ``family_size`` tested comparisons
    (equal to ``p_value`` for a comparison on its own)."""

    delta: Optional[float]
    se: Optional[float] = None
    df: Optional[float] = None
    p_value: Optional[float] = None
    ci: Optional[Tuple[float, float]] = None
    method: str = ""
    design: Optional[Design] = None
    adjusted_p: Optional[float] = None
    family_size: int = 1

    @property
    def known(self) -> bool:
        """Whether there is a test (and so a verdict)."""
        return self.p_value is not None

    @property
    def significant(self) -> bool:
        return self.known and self.adjusted_p < ALPHA

    @cached_property
    def detectable(self) -> Optional[float]:
        """Smallest true |Δ| found with 80% power at level ALPHA / family_size (module doc)."""
        return None if self.design is None else self.design.detectable(ALPHA / self.family_size)

    def text(self, digits: int = 4) -> str:
        """Table cell: '+0.0123 (95% CI +0.0040 to +0.0206, p = 0.012)', or why no test."""
        if self.delta is None:
            return f"n/a ({self.method})"
        if not self.known:
            return f"{self.delta:+.{digits}f} (no verdict: {self.method})"
        holm = "" if self.family_size == 1 else f", Holm over {self.family_size}"
        return f"{self.delta:+.{digits}f} ({self._ci_text(digits)}, {self._p_text()}{holm})"

    def in_words(self, name_a: str, name_b: str, higher_is_better: Optional[bool] = True,
                 digits: int = 4) -> str:
        """The verdict on Δ = A − B for a student: which is higher and how sure, or that no
        difference was detectable and how large one would have had to be."""
        if not self.known:
            return f"no verdict ({self.method})"
        numbers = f"Δ = {self.delta:+.{digits}f}, {self._ci_text(digits)}, {self._p_text()}"
        if self.significant:
            direction = "higher" if self.delta > 0 else "lower"
            winner = name_a if (self.delta > 0) == higher_is_better else name_b
            so = "" if higher_is_better is None else f", so {winner} is better"
            return f"{name_a} is significantly {direction}{so} ({numbers}{self._holm_text()})"
        return (f"no significant difference: {numbers}"
                f"{self._holm_text()}; with "
                f"{self.design.sample} this comparison could detect |Δ| ≥ "
                f"{self.detectable:.{digits}f} with {POWER:.0%} power")

    def _ci_text(self, digits: int) -> str:
        low, high = self.ci
        return f"{CONFIDENCE:.0%} CI {low:+.{digits}f} to {high:+.{digits}f}"

    def _p_text(self) -> str:
        if self.family_size == 1:
            return f"p {p_relation(self.p_value)}"
        return f"adjusted p {p_relation(self.adjusted_p)}"

    def _holm_text(self) -> str:
        if self.family_size == 1:
            return ""
        verdict = "significant" if self.significant else "not significant"
        return f", {verdict} after Holm's correction for {self.family_size} comparisons"


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
                      (float(ci[0]), float(ci[1])), method, design, float(p_value))


def _shared_seeds(estimates: Sequence[Estimate]) -> Optional[List[Hashable]]:
    """The common seeds when every estimate is keyed by the same set of ≥ 2 seeds, else None.
    A partial overlap (a failed run) is not paired: Welch's test then uses every run."""
    if any(est.seeds is None for est in estimates):
        return None
    seed_sets = {frozenset(est.seeds) for est in estimates}
    if len(seed_sets) != 1 or len(estimates[0].seeds) < 2:
        return None
    return list(estimates[0].seeds)


def _why_unpaired(estimates: Sequence[Estimate], paired: Optional[bool]) -> str:
    if paired is False:
        return "unpaired by choice"
    if any(est.seeds is None for est in estimates):
        return "unpaired: runs not keyed by seed"
    return "unpaired: the settings ran different seeds"


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


# --- the family of an exercise -----------------------------------------------------------------

def holm(p_values) -> np.ndarray:
    """Holm-adjusted p-values along the last axis (vectorised over leading axes).

    Sorted ascending, p_(i) (i = 1..m) becomes max_{j ≤ i} (m − j + 1)·p_(j), capped at 1:
    rejecting where the adjusted p < α is Holm's step-down test, which keeps the probability
    of any false "significant" in the family ≤ α whatever the dependence between the tests.
    """
    p_values = np.asarray(p_values, dtype=float)
    m = p_values.shape[-1]
    order = np.argsort(p_values, axis=-1, kind="stable")
    scaled = np.take_along_axis(p_values, order, axis=-1) * np.arange(m, 0, -1)  # (m−i+1)·p_(i)
    stepped = np.minimum(np.maximum.accumulate(scaled, axis=-1), 1.0)
    adjusted = np.empty_like(stepped)
    np.put_along_axis(adjusted, order, stepped, axis=-1)
    return adjusted


class Family:
    """The comparisons one exercise reports, corrected together for multiplicity.

    Add every comparison the report gives a verdict on, then use the ones ``adjust`` returns:
    their ``significant``, text and detectable effect account for the family's size.
    Comparisons without a test are kept but not counted.
    """

    def __init__(self):
        self._comparisons: Dict[str, Comparison] = {}

    def add(self, name: str, comparison: Comparison) -> Comparison:
        if name in self._comparisons:
            raise ValueError(f"comparison {name!r} is already in the family")
        self._comparisons[name] = comparison
        return comparison

    def __len__(self) -> int:
        return len(self._comparisons)

    def adjust(self) -> Dict[str, Comparison]:
        """{name: comparison with Holm-adjusted p and the family size}, in the order added."""
        tested = [name for name, c in self._comparisons.items() if c.known]
        adjusted = dict(zip(tested, holm([self._comparisons[n].p_value for n in tested])))
        return {name: replace(c, adjusted_p=float(adjusted[name]), family_size=len(tested))
                if name in adjusted else c for name, c in self._comparisons.items()}


def verdict(name_a: str, a: Estimate, name_b: str, b: Estimate, metric: str = "test accuracy",
            higher_is_better: Optional[bool] = True,
            comparison: Optional[Comparison] = None) -> str:
    """One sentence on ``metric``: both settings (mean ± std) and the verdict on A − B.
    ``comparison``: A − B as adjusted by the exercise's Family (default: ``difference(a, b)``
    on its own, a family of one). ``higher_is_better=None`` (e.g. the gap) states the
    direction without naming a winner."""
    comparison = difference(a, b) if comparison is None else comparison
    return (f"{metric}: {name_a} {a.text()} vs {name_b} {b.text()}: "
            f"{comparison.in_words(name_a, name_b, higher_is_better)}.")


def seeds_to_detect(comparison: Comparison, delta: Optional[float] = None,
                    limit: int = 1000) -> Optional[int]:
    """Seeds per setting (or paired seeds) with which ``comparison``'s design finds a true |Δ| =
    ``delta`` (default: the observed |Δ|) with POWER at level ALPHA / family_size, from its
    observed SD; None without a test, ``limit + 1`` when more than ``limit`` would be needed."""
    design = comparison.design
    delta = abs(comparison.delta if delta is None else delta) if comparison.delta is not None else 0.0
    if design is None or not delta > 0:
        return None
    alpha = ALPHA / comparison.family_size

    def enough(n: int) -> bool:
        sizes = (n,) if design.paired else (n,) * len(design.sizes)
        return replace(design, sizes=sizes).power(delta, alpha) >= POWER

    if not enough(limit):
        return limit + 1
    low, high = 1, limit  # a test needs 2 seeds, so enough(1) is False by convention
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if enough(middle) else (middle, high)
    return high
