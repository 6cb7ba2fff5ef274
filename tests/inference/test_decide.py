"""The decisions on declared questions (dropout_lab/inference: decide.py, sequential.py): TOST
and Holm equal statsmodels' own, the boundaries spend the planned level, and simulations of whole
families with repeated looks check the error rates the reports state. Tolerances: 3 binomial
standard deviations of a rate over the replications."""

import math

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.weightstats import ttost_paired

from dropout_lab.exercises.stats import seeds_needed
from dropout_lab.inference.decide import (
    A_BETTER, B_BETTER, EQUAL, HIGHER, LOWER, UNDECIDED, Question, answer_arrays,
    answer_questions, fisher_counts, paired_tests)
from dropout_lab.inference.sequential import Design as LookDesign
from dropout_lab.inference.sequential import look_schedule, spent


def binomial_tolerance(rate: float, replications: int) -> float:
    return 3 * math.sqrt(rate * (1 - rate) / replications)


# --- the decisions on declared questions (dropout_lab/inference) ---------------------------------
#
# Simulations of whole families with repeated looks, through the public answer_arrays: per-seed
# differences A − B drawn normal with sd SD_DIFF (about √2 × the 0.006 spread of one setting's
# steady accuracy over seeds, the exercises' typical figure, rounded up); margin δ = 0.005.
# Tolerance of a simulated rate: 3 binomial standard deviations at its replications.


MARGIN, SD_DIFF, FAMILIES = 0.005, 0.014, 4000
SEQUENTIAL = LookDesign(look_schedule(30))  # looks at 5, 10, 20, 30 seeds


def simulate(true_delta: float, questions: int, seed: int, design=SEQUENTIAL,
             families: int = FAMILIES, margin: float = MARGIN) -> dict:
    rng = np.random.default_rng(seed)
    differences = rng.normal(true_delta, SD_DIFF, (families, questions, design.looks[-1]))
    result = answer_arrays(differences, [margin] * questions, design)
    result["seeds"] = np.where(result["look"] >= 0,
                               np.array(design.looks)[result["look"]], design.looks[-1])
    return result


def test_tost_equals_statsmodels_ttost_paired():
    a = np.array([0.851, 0.847, 0.856, 0.849, 0.853, 0.850])
    b = np.array([0.848, 0.849, 0.851, 0.846, 0.852, 0.846])
    _, _, _, p_sup, p_eq = paired_tests((a - b)[None], np.array(MARGIN))
    assert p_eq[0] == pytest.approx(ttost_paired(a, b, -MARGIN, MARGIN)[0], rel=1e-9)
    assert p_sup[0] == pytest.approx(stats.ttest_rel(a, b).pvalue, rel=1e-9)


def test_one_look_step_down_is_statsmodels_holm():
    rng = np.random.default_rng(5)
    differences = rng.normal(0.004, 0.006, (12, 4, 6))  # some rejected, some not
    result = answer_arrays(differences, [1e-12] * 4, LookDesign((6,)))  # no equivalence
    decided = result["code"] != 3
    assert 0 < decided.sum() < decided.size  # both kinds of outcome are checked
    for family, code in zip(result["p_sup"][0], decided):  # (statsmodels: ~0.1 s per call)
        assert np.array_equal(multipletests(family, 0.05, "holm")[0], code)


def test_the_boundaries_spend_the_planned_level():
    """Z-processes (Brownian motion at the looks' seeds) cross the two-sided boundaries with
    total probability α, and by each look with the spending function's α(t)."""
    from dropout_lab.inference.sequential import z_boundaries

    looks = SEQUENTIAL.looks
    bounds = np.array(z_boundaries(looks, 0.05, True))
    steps = np.diff(looks, prepend=0)
    rng = np.random.default_rng(6)
    sums = np.cumsum(rng.normal(0, 1, (200_000, len(looks))) * np.sqrt(steps), axis=1)
    crossed = np.maximum.accumulate(np.abs(sums / np.sqrt(looks)) >= bounds, axis=1).mean(0)
    expected = spent(np.array(looks) / looks[-1], 0.05)
    assert crossed == pytest.approx(expected, abs=3 * math.sqrt(0.05 * 0.95 / 200_000))


def test_null_family_wise_rate_of_a_wrong_better_stays_at_5_percent():
    """Three questions, no true difference, four looks: some "better" in ≤ 5% of families
    (tolerance 3 binomial SDs, 0.010 at 4,000 families)."""
    code = simulate(0.0, 3, seed=7)["code"]
    rate = ((code == HIGHER) | (code == LOWER)).any(axis=1).mean()
    assert rate <= 0.05 + binomial_tolerance(0.05, FAMILIES)


def test_sequential_t_test_level_measured_precisely():
    """One question, 40,000 families, no equivalence stops (margin 1e-12, so every family
    goes on to its last look unless it rejects): the level of the sequential t-test is 5% within
    the approximation of mapping the z-scale boundaries to t quantiles (measured 5.1%;
    tolerance 3 SDs, 0.0033, above 0.052)."""
    code = simulate(0.0, 1, seed=8, families=40_000, margin=1e-12)["code"]
    rate = ((code == HIGHER) | (code == LOWER)).mean()
    assert rate <= 0.052 + 3 * math.sqrt(0.05 * 0.95 / 40_000)


def test_wrong_equivalent_at_the_margin_stays_at_5_percent():
    """True Δ = δ (not equivalent) in three questions: some "equivalent" in ≤ 5% of families."""
    code = simulate(MARGIN, 3, seed=9)["code"]
    assert (code == EQUAL).any(axis=1).mean() <= 0.05 + binomial_tolerance(0.05, FAMILIES)


def test_true_difference_of_two_margins_is_found_with_fewer_seeds_than_a_fixed_design(capsys):
    """Δ = 2δ: the rate of a correct "A better" and the mean seeds to decide, against the seeds
    a fixed one-look design of the same power needs (paired t-test, noncentral t)."""
    result = simulate(2 * MARGIN, 1, seed=10)
    power = (result["code"] == HIGHER).mean()
    mean_seeds = result["seeds"].mean()
    fixed = seeds_needed(2 * MARGIN, SD_DIFF, paired=True, power=power)
    with capsys.disabled():
        print(f"\n2δ: correct {power:.3f}, mean seeds {mean_seeds:.1f}, fixed design {fixed}, "
              f"ratio {mean_seeds / fixed:.2f}")
    assert power >= 0.9
    assert (result["code"] == LOWER).mean() == 0
    assert mean_seeds < 0.85 * fixed


def test_no_true_difference_is_often_found_equivalent(capsys):
    result = simulate(0.0, 1, seed=11, design=LookDesign(look_schedule(30)))
    rate = (result["code"] == EQUAL).mean()
    with capsys.disabled():
        print(f"\nΔ = 0, sd {SD_DIFF}: equivalent {rate:.3f}, mean seeds {result['seeds'].mean():.1f}")
    assert rate >= 0.1  # at 30 seeds the 90% CI (±0.0044) only just fits inside ±0.005


def test_answers_name_the_better_setting_and_the_seeds_to_decide():
    questions = [Question("accuracy", "dropout", "none"),
                 Question("gap", "dropout", "none", metric="gap", higher_is_better=False),
                 Question("close", "x", "y")]
    seeds = range(6)
    values = {"accuracy": ({s: 0.86 + 0.001 * s for s in seeds}, {s: 0.85 + 0.0011 * s for s in seeds}),
              "gap": ({s: 0.03 + 0.001 * (s % 2) for s in seeds}, {s: 0.01 for s in seeds}),
              "close": ({s: 0.85 + 0.004 * (-1) ** s for s in seeds}, {s: 0.85 for s in seeds})}
    accuracy, gap, close = answer_questions(questions, values, LookDesign((6,)))
    assert accuracy.answer == A_BETTER and "A better: dropout" in accuracy.text()
    assert gap.answer == B_BETTER  # a larger gap is worse
    assert close.answer == UNDECIDED and close.seeds_needed > 6
    assert "undecided at 6 seeds" in close.text()


def test_fisher_counts_is_scipys_exact_test():
    assert fisher_counts(4, 4, 0, 4) == pytest.approx(stats.fisher_exact([[4, 0], [0, 4]]).pvalue)
    assert fisher_counts(1, 4, 0, 4) == pytest.approx(1.0)


def test_look_schedule():
    assert look_schedule(30) == (5, 10, 20, 30)
    assert look_schedule(50) == (5, 10, 20, 30, 40, 50)
    assert look_schedule(12) == (5, 10, 12)
    assert look_schedule(3) == (3,)
    with pytest.raises(ValueError):
        look_schedule(1)
