"""The exercises' descriptive statistics (dropout_lab/exercises/stats.py): the intervals and tests
equal scipy's own results (and a hand-computed value); the power calculations equal exact
integrals and simulations. Tolerances: 3 binomial standard deviations of a rate over the
replications. The decisions on declared questions: tests/inference/test_decide.py."""

import math

import numpy as np
import pytest
from scipy import integrate, optimize, stats

from dropout_lab.exercises.stats import (
    ALPHA, Design, Estimate, change, contrast, difference, estimate, estimate_by_seed,
    seeds_needed)

REPLICATIONS = 2000


def binomial_tolerance(rate: float, replications: int = REPLICATIONS) -> float:
    return 3 * math.sqrt(rate * (1 - rate) / replications)


# --- the tests against scipy and by hand ----------------------------------------------------------

A_VALUES, B_VALUES = [0.852, 0.861, 0.848], [0.845, 0.839, 0.851, 0.842]


def test_welch_difference_is_scipys_welch_test():
    diff = difference(estimate(A_VALUES), estimate(B_VALUES))
    reference = stats.ttest_ind(A_VALUES, B_VALUES, equal_var=False)
    assert diff.delta == pytest.approx(np.mean(A_VALUES) - np.mean(B_VALUES))
    assert diff.p_value == pytest.approx(reference.pvalue, rel=1e-12)
    assert diff.df == pytest.approx(reference.df, rel=1e-12)
    assert diff.ci == pytest.approx(tuple(reference.confidence_interval(0.95)), rel=1e-12)
    assert diff.method.startswith("Welch's t-test, 3 vs 4 seeds")


def test_the_old_two_se_rule_is_p_012_with_3_plus_3_seeds():
    """|Δ| = 2·SE with equal spreads: t = 2 on 4 df. The t CDF on 4 df has a closed form,
    F(t) = 1/2 + (3/8)·x·(1 − t²/(12(1 + t²/4))), x = t/√(1 + t²/4); at t = 2 the two-sided
    p is 1 − 5√2/8 ≈ 0.116, and the CI half-width is t(0.975, 4) = 2.776445 (tables) times
    SE."""
    a = np.array([0.80, 0.81, 0.82])
    se = 0.01 * math.sqrt(2 / 3)
    diff = difference(estimate(a), estimate(a - 2 * se))
    assert diff.p_value == pytest.approx(1 - 5 * math.sqrt(2) / 8, abs=1e-9)
    assert diff.df == pytest.approx(4.0)
    assert diff.ci == pytest.approx((2 * se - 2.776445 * se, 2 * se + 2.776445 * se), abs=1e-7)


def test_two_se_with_unequal_spreads_has_under_3_df():
    """SDs 0.01 and 0.005 (variance ratio r = 1/4): Welch df = 2(1 + r)²/(1 + r²) = 50/17."""
    a, b = np.array([0.80, 0.81, 0.82]), np.array([0.795, 0.80, 0.805])
    se = math.sqrt((0.01 ** 2 + 0.005 ** 2) / 3)
    diff = difference(estimate(a), estimate(b - b.mean() + a.mean() - 2 * se))
    assert diff.df == pytest.approx(50 / 17)
    assert 0.10 < diff.p_value < 0.20


def test_same_seeds_are_paired_with_scipys_paired_test():
    a = estimate_by_seed({0: 0.852, 1: 0.861, 2: 0.848})
    b = estimate_by_seed({2: 0.842, 0: 0.845, 1: 0.851})  # order does not matter, seeds do
    diff = difference(a, b)
    reference = stats.ttest_rel([0.852, 0.861, 0.848], [0.845, 0.851, 0.842])
    assert diff.p_value == pytest.approx(reference.pvalue, rel=1e-12)
    assert diff.ci == pytest.approx(tuple(reference.confidence_interval(0.95)), rel=1e-12)
    assert diff.method.startswith("paired t-test over 3 seeds (same seed:")
    assert diff.design.paired and diff.design.sizes == (3,)


def test_pairing_needs_the_same_seeds_on_both_sides():
    a = estimate_by_seed({0: 0.852, 1: 0.861, 2: 0.848})
    partial = estimate_by_seed({0: 0.845, 1: 0.851, 3: 0.842})
    assert "paired t-test over 2 seeds" in difference(a, partial).method  # the common seeds
    assert "not keyed by seed" in difference(a, estimate([0.845, 0.851, 0.842])).method
    assert "by choice" in difference(a, a, paired=False).method
    failed = estimate_by_seed({0: 0.845, 1: None, 2: 0.842})  # a failed run leaves its seed out
    assert failed.seeds == (0, 2) and "paired t-test over 2 seeds" in difference(a, failed).method
    lonely = estimate_by_seed({0: 0.845, 7: 0.85})
    assert "fewer than 2 seeds in common" in difference(a, lonely).method


def test_bad_seed_keys_raise():
    with pytest.raises(ValueError, match="one distinct seed per value"):
        Estimate((0.1, 0.2), seeds=(0, 0))


def test_two_term_welch_contrast_is_the_welch_difference():
    """Checks the Welch-Satterthwaite code of ``contrast`` against scipy's Welch test."""
    a, b = estimate(A_VALUES), estimate(B_VALUES)
    general, direct = contrast([(1.0, a), (-1.0, b)]), difference(a, b)
    for field in ("delta", "se", "df", "p_value"):
        assert getattr(general, field) == pytest.approx(getattr(direct, field), rel=1e-10)
    assert general.ci == pytest.approx(direct.ci, rel=1e-10)


def test_interaction_contrast_welch_satterthwaite():
    """Four settings with s² = 1 and n = 3: SE² = 4/3, df = (4/3)² / (4·(1/3)²/2) = 8."""
    a = estimate([1.0, 2.0, 3.0])
    b = estimate([2.0, 3.0, 4.0])
    interaction = contrast([(1.0, b), (-1.0, a), (-1.0, a), (1.0, a)])
    assert interaction.delta == pytest.approx(1.0)
    assert interaction.se == pytest.approx(2 / math.sqrt(3))
    assert interaction.df == pytest.approx(8.0)
    assert interaction.p_value == pytest.approx(2 * stats.t.sf(1 / (2 / math.sqrt(3)), 8))


def test_paired_interaction_tests_the_per_seed_contrast():
    cells = [{0: 0.85, 1: 0.86, 2: 0.84}, {0: 0.84, 1: 0.842, 2: 0.835},
             {0: 0.83, 1: 0.845, 2: 0.826}, {0: 0.829, 1: 0.83, 2: 0.824}]
    weights = (1.0, -1.0, -1.0, 1.0)
    result = contrast([(w, estimate_by_seed(c)) for w, c in zip(weights, cells)])
    per_seed = [sum(w * c[s] for w, c in zip(weights, cells)) for s in (0, 1, 2)]
    reference = stats.ttest_1samp(per_seed, 0.0)
    assert result.p_value == pytest.approx(reference.pvalue, rel=1e-12)
    assert result.ci == pytest.approx(tuple(reference.confidence_interval(0.95)), rel=1e-12)
    assert "per-seed contrast over 3 seeds" in result.method


def test_change_is_a_one_sample_test_of_the_per_run_changes():
    changes = [0.012, 0.004, 0.009, None, float("nan")]  # failed runs left out
    result, reference = change(changes), stats.ttest_1samp([0.012, 0.004, 0.009], 0.0)
    assert result.p_value == pytest.approx(reference.pvalue, rel=1e-12)
    assert result.ci == pytest.approx(tuple(reference.confidence_interval(0.95)), rel=1e-12)
    assert result.method == "paired t-test over 3 runs (each run against itself)"


def test_no_test_without_two_seeds_or_without_spread():
    one_seed = difference(Estimate((0.9,)), Estimate((0.1, 0.2)))
    assert one_seed.delta == pytest.approx(0.75) and not one_seed.known
    assert "fewer than 2 seeds" in one_seed.text()
    assert difference(Estimate(()), Estimate((0.1, 0.2))).text().startswith("n/a")
    assert not difference(estimate([0.5, 0.5]), estimate([0.4, 0.4])).known
    assert not change([0.01]).known


# --- power: the detectable effect -----------------------------------------------------------------

def exact_welch_power(shift: float, n: int, alpha: float) -> float:
    """Welch's power for n + n runs with equal true SDs, by an independent route: with
    k = n − 1, the variance share U = s_a²/(s_a² + s_b²) ~ Beta(k/2, k/2) is independent of
    t ~ noncentral t(2k, shift), and Welch's df is k/(U² + (1 − U)²)."""
    k = n - 1

    def integrand(u):
        critical = stats.t.ppf(1 - alpha / 2, k / (u * u + (1 - u) ** 2))
        rejected = stats.nct.sf(critical, 2 * k, shift) + stats.nct.sf(critical, 2 * k, -shift)
        return stats.beta.pdf(u, k / 2, k / 2) * rejected

    return integrate.quad(integrand, 0, 1, limit=200)[0]


@pytest.mark.parametrize("n, alpha", [(3, 0.05), (3, 0.005), (5, 0.05)])
def test_welch_power_equals_the_exact_integral(n, alpha):
    design = Design(False, (n, n), (1.0, -1.0), 1.0)
    for shift in (1.5, 3.0, 5.0):
        delta = shift * math.sqrt(2 / n)
        assert design.power(delta, alpha) == pytest.approx(exact_welch_power(shift, n, alpha),
                                                           abs=1e-3)


def test_detectable_effect_has_the_stated_power():
    for design in (Design(False, (3, 3), (1.0, -1.0), 0.006), Design(True, (3,), (1.0,), 0.004),
                   Design(False, (3, 3, 3, 3), (1.0, -1.0, -1.0, 1.0), 0.006)):
        for alpha in (0.05, 0.05 / 14):
            assert design.power(design.detectable(alpha), alpha) == pytest.approx(0.8, abs=1e-6)


def test_seeds_needed_issue_example():
    """SD 0.006 over seeds, Δ 0.004 (d = 2/3): ~36 seeds per setting at 80% power (issue 12)."""
    n = seeds_needed(0.004, 0.006)
    per_n = lambda k: Design(False, (k, k), (1.0, -1.0), 0.006).power(0.004)
    assert 36 <= n <= 38 and per_n(n) >= 0.8 > per_n(n - 1)
    paired = seeds_needed(0.004, 0.006, paired=True)

    def one_sample(k):  # the paired test's power: noncentral t, k − 1 df
        critical, shift = stats.t.ppf(0.975, k - 1), 0.004 / 0.006 * math.sqrt(k)
        return stats.nct.sf(critical, k - 1, shift) + stats.nct.sf(critical, k - 1, -shift)

    assert one_sample(paired) >= 0.8 > one_sample(paired - 1)
    assert seeds_needed(0.004, 0.006, comparisons=14) > n
    with pytest.raises(ValueError):
        seeds_needed(0.0, 0.006)


SAME_PATH_REPLICATIONS = 100  # replications also run through the module's own (slower) path


def assert_module_agrees(p_values, comparisons, replications: int = 50) -> None:
    """The vectorised p-values of the first replications equal the module's."""
    module_p = [c.p_value for _, c in zip(range(replications), comparisons)]
    assert module_p == pytest.approx(p_values[:replications], rel=1e-9)


def test_welch_detectable_effect_is_found_80_percent_of_the_time():
    """3 + 3 seeds, true SD 1, the planted Δ = the stated detectable effect at α = 0.05 (one
    comparison alone): found in 80% ± 3 binomial SDs (±0.027) of 2,000 replications. The
    noncentral t at the pooled 4 df would claim a smaller effect that Welch finds only ~70%
    of the time; the test checks that too."""
    rng = np.random.default_rng(7)
    delta = Design(False, (3, 3), (1.0, -1.0), 1.0).detectable()
    a, b = rng.normal(delta, 1.0, (REPLICATIONS, 3)), rng.normal(0.0, 1.0, (REPLICATIONS, 3))
    p_values = stats.ttest_ind(a, b, axis=1, equal_var=False).pvalue
    assert abs(np.mean(p_values < ALPHA) - 0.8) <= binomial_tolerance(0.8)
    assert_module_agrees(p_values, (difference(estimate(x), estimate(y)) for x, y in zip(a, b)))
    critical = stats.t.ppf(0.975, 4)  # the pooled test's df: 3 + 3 − 2
    pooled_delta = optimize.brentq(
        lambda d: stats.nct.sf(critical, 4, d / math.sqrt(2 / 3)) - 0.8, 0.1, 10.0)
    assert pooled_delta < delta
    shifted = stats.ttest_ind(a - delta + pooled_delta, b, axis=1, equal_var=False).pvalue
    assert np.mean(shifted < ALPHA) < 0.8 - binomial_tolerance(0.8)


def test_paired_detectable_effect_is_found_80_percent_of_the_time():
    """3 seeds; each seed shifts both settings alike (SD 2), run noise SD 1, so per-seed
    differences have SD √2. Planted Δ = the paired detectable effect: found in 80% ± 0.027."""
    rng = np.random.default_rng(11)
    delta = Design(True, (3,), (1.0,), math.sqrt(2)).detectable()
    seed_effect = rng.normal(0.0, 2.0, (REPLICATIONS, 3))
    a = seed_effect + rng.normal(delta, 1.0, (REPLICATIONS, 3))
    b = seed_effect + rng.normal(0.0, 1.0, (REPLICATIONS, 3))
    p_values = stats.ttest_rel(a, b, axis=1).pvalue
    assert abs(np.mean(p_values < ALPHA) - 0.8) <= binomial_tolerance(0.8)
    assert_module_agrees(p_values, (difference(estimate_by_seed(dict(enumerate(x))),
                                               estimate_by_seed(dict(enumerate(y))))
                                    for x, y in zip(a, b)))


def test_interaction_detectable_effect_is_found_80_percent_of_the_time():
    """2×2 design, 3 seeds per cell, SD 1: the planted interaction equal to the stated
    detectable effect of the Welch contrast is found in 80% ± 0.027 of the replications."""
    rng = np.random.default_rng(5)
    weights = np.array([1.0, -1.0, -1.0, 1.0])
    delta = Design(False, (3, 3, 3, 3), tuple(weights), 1.0).detectable()
    cells = rng.normal(0.0, 1.0, (REPLICATIONS, 4, 3))  # (replication, cell, seed)
    cells[:, 0] += delta  # only the first cell moves: the interaction is +delta
    terms = weights ** 2 * cells.var(axis=2, ddof=1) / 3  # (replication, cell): w²s²/n
    df = terms.sum(axis=1) ** 2 / (terms ** 2 / 2).sum(axis=1)  # Welch-Satterthwaite
    t_values = (cells.mean(axis=2) @ weights) / np.sqrt(terms.sum(axis=1))
    p_values = 2 * stats.t.sf(np.abs(t_values), df)
    assert abs(np.mean(p_values < ALPHA) - 0.8) <= binomial_tolerance(0.8)
    assert_module_agrees(p_values, (contrast([(w, estimate(c)) for w, c in zip(weights, cell)])
                                    for cell in cells))
