"""Declared questions and their four answers.

A question compares setting A with setting B on one metric, paired by seed: Δ = A − B over the
seeds both ran (a seed lost in either setting drops out of that question only). It is declared
before any run, with a practical margin δ, and ends as one of

- "A better" / "B better": the two-sided paired t-test of Δ = 0 rejects (the sign of Δ, and
  the metric's direction, name the better one);
- "equivalent": both one-sided tests of |Δ| ≥ δ reject (TOST: the difference is within ±δ),
  taking precedence over "better" (a difference inside the margin is, by declaration, too
  small to matter);
- "undecided": neither, at the seeds run; with the estimate, its 95% CI and about how many
  seeds a decision would take if the observed Δ and spread held.

Multiplicity: the questions of one exercise (or one ``compare``) are one family. Holm's
step-down runs over the family's superiority tests, and separately over its equivalence tests
(each at the same adjusted level Holm assigns), so the family-wise rate of any wrong "better"
is at most α and that of any wrong "equivalent" at most α. With repeated looks the step-down
uses, at each Holm level α/j, the nominal levels of the group-sequential design
(sequential.py) at that level (Maurer & Bretz 2013: Holm in group-sequential trials). A
question stops at its first decision; the tests in tests/inference/test_decide.py simulate the error
rates through ``answer_arrays``.

The t statistics are computed in a vectorised form (scipy's t distribution), so that the
simulations run many families at once; tests check them against statsmodels' ``ttost_paired``
and scipy's ``ttest_rel``, and the one-look step-down against statsmodels' ``multipletests``.
"""

import math
from dataclasses import dataclass
from typing import Hashable, List, Mapping, Optional, Sequence, Tuple

import numpy as np
from scipy import stats

from dropout_lab.inference.sequential import MIN_SEEDS, Design

A_BETTER, B_BETTER, EQUIVALENT, UNDECIDED = "A better", "B better", "equivalent", "undecided"
ANSWERS = (A_BETTER, B_BETTER, EQUIVALENT, UNDECIDED)
HIGHER, LOWER, EQUAL, OPEN = 0, 1, 2, 3  # answer codes in terms of Δ = A − B
POWER = 0.8  # the chance of a decision behind "seeds a decision would take"
MARGIN = 0.005  # default practical margin: half a point of accuracy
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Question:
    """A − B on ``metric``, declared before the runs. ``a_overrides``/``b_overrides``: the
    overrides that make each setting (its sweep values), for adding seeds to it."""

    name: str
    a: str
    b: str
    metric: str = "steady test accuracy"
    margin: float = MARGIN
    higher_is_better: bool = True
    a_overrides: Tuple[str, ...] = ()
    b_overrides: Tuple[str, ...] = ()

    def text(self) -> str:
        return (f"{self.name}: {self.a} (A) against {self.b} (B) on {self.metric}, "
                f"margin ±{self.margin:g}")


@dataclass(frozen=True)
class Look:
    seeds: int  # paired seeds used
    delta: float
    p_superiority: float
    p_equivalence: float
    answer: str


@dataclass(frozen=True)
class Answer:
    question: Question
    answer: str  # one of ANSWERS
    seeds: int  # paired seeds at the deciding look, or at the last look reached
    delta: Optional[float] = None
    ci: Optional[Tuple[float, float]] = None
    looks: Tuple[Look, ...] = ()
    seeds_needed: Optional[int] = None  # undecided: seeds for an 80% chance of a decision
    why: str = ""  # why no test yet, where there is none

    @property
    def decided(self) -> bool:
        return self.answer != UNDECIDED

    def text(self, digits: int = 4) -> str:
        """'A better (dropout 0.5 higher): Δ = +0.0123, 95% CI ..., 10 seeds'."""
        q = self.question
        if self.why:  # no test yet
            observed = "" if self.delta is None else f"; Δ = {self.delta:+.{digits}f}"
            return f"{UNDECIDED} ({self.why}{observed})"
        numbers = (f"Δ = {self.delta:+.{digits}f}" + (
            f", 95% CI {self.ci[0]:+.{digits}f} to {self.ci[1]:+.{digits}f}" if self.ci else "")
            + f", {self.seeds} paired seeds")
        if self.answer == EQUIVALENT:
            return f"equivalent within ±{q.margin:g} ({numbers})"
        if self.answer in (A_BETTER, B_BETTER):
            winner = q.a if self.answer == A_BETTER else q.b
            return f"{self.answer}: {winner} ({numbers})"
        more = ("" if self.seeds_needed is None else
                f"; a decision would take about {self.seeds_needed} seeds" if self.seeds_needed
                <= 1000 else "; a decision would take over 1,000 seeds")
        return f"undecided at {self.seeds} seeds ({numbers}{more})"

    def as_json(self) -> dict:
        return {"question": self.question.name, "a": self.question.a, "b": self.question.b,
                "metric": self.question.metric, "margin": self.question.margin,
                "answer": self.answer, "seeds": self.seeds, "delta": self.delta,
                "ci": list(self.ci) if self.ci else None, "seeds_needed": self.seeds_needed,
                "why": self.why, "looks": [vars(look) for look in self.looks]}


# --- the vectorised core -------------------------------------------------------------------

def paired_tests(differences: np.ndarray, margins: np.ndarray):
    """Per row of per-seed differences (NaN: missing seed): (n, mean, sd, p of the two-sided
    t-test of Δ = 0, p of TOST against ±margin). Zero spread: the limits of the tests (a
    nonzero mean rejects Δ = 0, a mean inside the margin is equivalent)."""
    finite = np.isfinite(differences)
    n = finite.sum(axis=-1)
    safe_n = np.maximum(n, 1)
    total = np.where(finite, differences, 0.0).sum(axis=-1)
    mean = total / safe_n
    squares = np.where(finite, (differences - mean[..., None]) ** 2, 0.0).sum(axis=-1)
    sd = np.sqrt(squares / np.maximum(n - 1, 1))
    se = sd / np.sqrt(safe_n)
    df = np.maximum(n - 1, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        p_sup = np.where(se > 0, 2 * stats.t.sf(np.abs(mean) / se, df), (mean == 0) * 1.0)
        p_low = np.where(se > 0, stats.t.sf((mean + margins) / se, df), 1.0 * (mean <= -margins))
        p_high = np.where(se > 0, stats.t.cdf((mean - margins) / se, df), 1.0 * (mean >= margins))
    p_eq = np.maximum(p_low, p_high)
    tested = n >= MIN_SEEDS
    return n, mean, sd, np.where(tested, p_sup, np.nan), np.where(tested, p_eq, np.nan)


def answer_arrays(differences: np.ndarray, margins: Sequence[float], design: Design,
                  reached: Optional[np.ndarray] = None) -> dict:
    """The family's answers for many families at once.

    ``differences``: (families, questions, seeds) per-seed A − B in seed order, NaN where a
    run is missing; ``reached``: (families, questions) seeds run so far (default all), so a
    look at n seeds happens only where n seeds have run. Returns ``code`` (HIGHER, LOWER,
    EQUAL, OPEN) and ``look`` (index of the deciding look, -1 if none), shape (families,
    questions), and per look ``n``, ``mean``, ``sd``, ``p_sup``, ``p_eq`` (looks, families,
    questions).
    """
    differences = np.asarray(differences, dtype=float)
    families, m, seeds = differences.shape
    margins = np.broadcast_to(np.asarray(margins, dtype=float), (m,))
    reached = np.full((families, m), seeds) if reached is None else np.asarray(reached)
    # nominal[j, k]: the level of look k at Holm level alpha / j (j = 1..m; row 0 unused)
    sup_levels = np.stack([np.zeros(len(design.looks))] + [
        design.nominal(design.alpha / j, two_sided=True) for j in range(1, m + 1)])
    eq_levels = np.stack([np.zeros(len(design.looks))] + [
        design.nominal(design.alpha / j, two_sided=False) for j in range(1, m + 1)])
    code = np.full((families, m), OPEN)
    look = np.full((families, m), -1)
    sup_rejected = np.zeros((families, m), bool)
    eq_rejected = np.zeros((families, m), bool)
    per_look = {key: [] for key in ("n", "mean", "sd", "p_sup", "p_eq")}
    for k, n_k in enumerate(design.looks):
        n, mean, sd, p_sup, p_eq = paired_tests(differences[..., :n_k], margins)
        for key, value in zip(per_look, (n, mean, sd, p_sup, p_eq)):
            per_look[key].append(value)
        active = (code == OPEN) & (reached >= n_k) & (n >= MIN_SEEDS)
        _holm_step_down(p_sup, active, sup_rejected, sup_levels[:, k])
        _holm_step_down(p_eq, active, eq_rejected, eq_levels[:, k])
        new_code = np.where(eq_rejected, EQUAL, np.where(mean > 0, HIGHER, LOWER))
        decided_now = active & (sup_rejected | eq_rejected)
        code = np.where(decided_now, new_code, code)
        look = np.where(decided_now, k, look)
    return {"code": code, "look": look, "reached": reached,
            **{key: np.stack(v) for key, v in per_look.items()}}


def _holm_step_down(p: np.ndarray, active: np.ndarray, rejected: np.ndarray,
                    levels: np.ndarray) -> None:
    """Holm's step-down at one look, in place on ``rejected`` (families, questions): while some
    active hypothesis has p at or below the level for j = (not yet rejected) hypotheses,
    reject it; ``levels[j]`` is the nominal level at overall level alpha / j."""
    m = p.shape[1]
    for _ in range(m):
        remaining = m - rejected.sum(axis=1)  # (families,)
        threshold = levels[np.maximum(remaining, 1)]
        new = active & ~rejected & (p <= threshold[:, None]) & (remaining[:, None] > 0)
        if not new.any():
            return
        rejected |= new


# --- one family on real data ----------------------------------------------------------------

def seed_table(questions: Sequence[Question],
               values: Mapping[str, Tuple[Mapping[Hashable, float], Mapping[Hashable, float]]]
               ) -> Tuple[np.ndarray, np.ndarray]:
    """Per-seed differences (1, questions, seeds) over the union of seeds in seed order, NaN
    where either side lacks a finite value, and the seeds each question has run (1, questions).
    ``values[name] = ({seed: A's value}, {seed: B's value})``."""
    all_seeds = sorted({s for a, b in values.values() for s in (*a, *b)}, key=_seed_order)
    position = {seed: i for i, seed in enumerate(all_seeds)}
    table = np.full((1, len(questions), max(len(all_seeds), 1)), np.nan)
    reached = np.zeros((1, len(questions)), int)
    for i, question in enumerate(questions):
        a, b = values.get(question.name, ({}, {}))
        ran = [position[s] for s in set(a) & set(b)]
        reached[0, i] = max(ran) + 1 if ran else 0
        for seed in set(a) & set(b):
            if a[seed] is not None and b[seed] is not None:
                table[0, i, position[seed]] = float(a[seed]) - float(b[seed])
    return table, reached


def _seed_order(seed):
    return (0, seed, "") if isinstance(seed, (int, float)) else (1, 0, str(seed))


def answer_questions(questions: Sequence[Question], values, design: Design) -> List[Answer]:
    """The declared family's answers from ``{name: ({seed: A}, {seed: B})}`` (see seed_table)."""
    if not questions:
        return []
    table, reached = seed_table(questions, values)
    result = answer_arrays(table, [q.margin for q in questions], design, reached)
    return [_answer(q, i, result, design) for i, q in enumerate(questions)]


def _answer(question: Question, i: int, result: dict, design: Design) -> Answer:
    looks = []
    for k, n_k in enumerate(design.looks):
        n = int(result["n"][k, 0, i])
        if n < MIN_SEEDS or result["reached"][0, i] < n_k:
            break
        code = result["code"][0, i] if result["look"][0, i] == k else OPEN
        looks.append(Look(n, float(result["mean"][k, 0, i]), float(result["p_sup"][k, 0, i]),
                          float(result["p_eq"][k, 0, i]), _words(question, code)))
        if code != OPEN:
            break
    n_last = int(result["n"][-1, 0, i])
    if not looks:
        delta = float(result["mean"][-1, 0, i]) if n_last else None
        why = ("no seed has a value in both settings" if not n_last else
               f"{n_last} paired seed{'s' if n_last > 1 else ''}: a test needs "
               f"{max(MIN_SEEDS, design.looks[0])}")
        return Answer(question, UNDECIDED, n_last, delta, why=why)
    k = len(looks) - 1
    n, mean, sd = looks[-1].seeds, looks[-1].delta, float(result["sd"][k, 0, i])
    half = stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1) * sd / math.sqrt(n)
    answer = looks[-1].answer
    needed = None if answer != UNDECIDED else seeds_for_decision(
        mean, sd, question.margin, design.alpha / len(result["code"][0]))
    return Answer(question, answer, n, mean, (mean - half, mean + half), tuple(looks), needed)


def _words(question: Question, code: int) -> str:
    if code == EQUAL:
        return EQUIVALENT
    if code == OPEN:
        return UNDECIDED
    return A_BETTER if (code == HIGHER) == question.higher_is_better else B_BETTER


def seeds_for_decision(delta: float, sd: float, margin: float, alpha: float,
                       power: float = POWER) -> Optional[int]:
    """Paired seeds for a ``power`` chance of a decision if the observed Δ and SD held: the
    interval must clear 0 (better) or fit inside ±margin (equivalent), whichever is nearer,
    i.e. detect max(|Δ|, margin − |Δ|) (normal approximation, one look at level alpha)."""
    target = max(abs(delta), margin - abs(delta))
    if sd == 0:
        return None
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    return max(MIN_SEEDS, math.ceil((z * sd / target) ** 2))


def fisher_counts(events_a: int, total_a: int, events_b: int, total_b: int) -> float:
    """Two-sided p of Fisher's exact test: are events (e.g. collapsed runs) as frequent in A's
    runs as in B's?"""
    table = [[events_a, total_a - events_a], [events_b, total_b - events_b]]
    return float(stats.fisher_exact(table).pvalue)
