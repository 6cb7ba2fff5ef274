"""scripts/bf16_equivalence.py: the TOST against scipy-free arithmetic, and one tiny end-to-end
run (the verdict of a 2-epoch run on 1000 images means nothing; only that it works)."""

import math
import statistics
import sys

import pytest
from scipy import stats

from conftest import REPO, TINY
from dropout_lab.device import cpu_has_native_bf16

sys.path.insert(0, str(REPO / "scripts"))
from bf16_equivalence import main, tost  # noqa: E402

FP32 = [0.850, 0.846, 0.853, 0.848, 0.851]


def one_sided_p(deltas, shift, upper: bool) -> float:
    """P-value of H0 mean(delta) <= -margin (shift = +margin) or >= +margin (shift = -margin)."""
    n = len(deltas)
    t = (statistics.fmean(deltas) + shift) / (statistics.stdev(deltas) / math.sqrt(n))
    return stats.t.cdf(t, n - 1) if upper else stats.t.sf(t, n - 1)


@pytest.mark.parametrize("deltas, equivalent", [
    ([0.001, -0.002, 0.000, 0.003, -0.001], True),  # mean +0.0002, CI well inside +-0.005
    ([0.006, 0.004, 0.007, 0.005, 0.008], False),  # mean +0.006: outside the margin
    ([0.010, -0.012, 0.009, -0.011, 0.004], False),  # mean 0 but too noisy to bound it
])
def test_tost_is_two_one_sided_paired_t_tests(deltas, equivalent):
    bf16 = [f + d for f, d in zip(FP32, deltas)]
    result = tost(FP32, bf16, margin=0.005)
    assert result["n"] == 5 and result["mean_delta"] == pytest.approx(statistics.fmean(deltas))
    assert result["p_lower"] == pytest.approx(one_sided_p(deltas, 0.005, upper=False), rel=1e-6)
    assert result["p_upper"] == pytest.approx(one_sided_p(deltas, -0.005, upper=True), rel=1e-6)
    assert result["equivalent"] is equivalent
    # TOST at alpha is the (1 - 2 alpha) CI lying inside the margin.
    low, high = result["ci"]
    assert (-0.005 < low and high < 0.005) == equivalent


@pytest.mark.skipif(not cpu_has_native_bf16(), reason="no native bf16 on this CPU")
def test_script_runs_end_to_end_on_a_tiny_budget(capsys):
    assert main(["--seeds", "2", *TINY, "trainer.device=cpu"]) == 0
    out = capsys.readouterr().out
    assert "2 paired seeds (0-1)" in out and "TOST, margin +-0.005" in out
    assert "verdict: " in out and "90% CI" in out
