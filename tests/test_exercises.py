"""The exercises: `dropout-lab exercise all --quick` end to end (real runs, real files), the
variance check of exercise 3 against theory, and conclusions that follow the data."""

import dataclasses
import json
import re
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import markdown_tables, read_events, run_cli
from dropout_lab.exercises import ex1_probabilities, ex3_variance, ex5_width, ex6_weight_decay, ex8_three_valued
from dropout_lab.exercises.stats import Estimate, contrast, difference, estimate, seeds_to_detect
from dropout_lab.exercises.types import NO_COMPLETED_RUN

SECTIONS = ("## Question", "## Setup", "## Results", "## Conclusion")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# --- end to end: one quick invocation of all eight, checked from several sides ---------------

@pytest.fixture(scope="module")
def quick_all(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("exercises") / "out"
    result = run_cli("exercise", "all", "--quick", "--out", out, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"index: {out / 'index.md'}" in result.stdout
    return out


@pytest.mark.slow
@pytest.mark.parametrize("number", range(1, 9))
def test_quick_exercise_writes_its_report(quick_all, number):
    folder = quick_all / f"exercise_{number}"
    report = (folder / "report.md").read_text()
    positions = [report.index(section) for section in SECTIONS]
    assert positions == sorted(positions)
    conclusion = report.split("## Conclusion", 1)[1].strip()
    assert conclusion.startswith("- ") and len(conclusion) > 40
    plots = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", report)
    assert plots, "every exercise has at least one plot"
    for name in plots:
        assert (folder / name).read_bytes()[:8] == PNG_MAGIC
    results = json.loads((folder / "results.json").read_text())
    assert results["exercise"] == number and results["completed"] == results["jobs"] > 0
    assert results["conclusion"] == [line[2:] for line in conclusion.splitlines() if line.startswith("- ")]


@pytest.mark.slow
def test_quick_reports_render(quick_all):
    """Every report of the run (the index, each exercise's, each exercise's sweep report) is
    valid GitHub-flavoured Markdown: each table parsed as one, every row as wide as its header
    (header cells such as 'max |z|' used to split into two)."""
    reports = sorted(quick_all.rglob("*.md"))
    assert len(reports) >= 1 + 8 + 8, reports  # index, 8 reports, 8 sweep reports
    tables = {path.relative_to(quick_all): markdown_tables(path.read_text()) for path in reports}
    assert all(tables.values()), [path for path, found in tables.items() if not found]


@pytest.mark.slow
def test_quick_runs_are_normal_runs_of_a_sweep(quick_all):
    runs = sorted((quick_all / "exercise_6" / "runs").glob("*/summary.json"))
    assert len(runs) == 8  # quick: weight decay {0, 1e-3} x dropout off/on x seeds {0, 1}
    assert (quick_all / "exercise_6" / "runs" / "report.md").is_file()  # the sweep's own report
    events = read_events(runs[0].parent)
    assert len(events.Scalars("accuracy/test")) == 2


@pytest.mark.slow
def test_quick_index_links_all_eight(quick_all):
    index = (quick_all / "index.md").read_text()
    for number in range(1, 9):
        assert f"(exercise_{number}/report.md)" in index


@pytest.mark.slow
def test_quick_variance_check_agrees_with_theory(quick_all):
    """Exercise 3's Monte Carlo variance on the trained network's activations agrees with
    p/(1-p)·h² within its stated tolerance (6 standard errors per unit, derived from the number
    of draws in ex3_variance's docstring), even with the quick budget's 400 draws."""
    measurements = json.loads((quick_all / "exercise_3" / "measurements.json").read_text())
    checks = measurements["checks"]
    assert {c["layer"] for c in checks} == {1, 2} and {c["p"] for c in checks} == {0.2, 0.5}
    for check in checks:
        assert check["passed"] and check["max_abs_z"] <= check["z_limit"] == 6.0
        assert check["max_abs_relative_error"] <= check["max_relative_tolerance"]
        # The whole layer pooled: within 6 of its own (much smaller) standard errors too.
        assert abs(check["layer_relative_error"]) <= 6 * check["layer_relative_se"]


@pytest.mark.slow
def test_quick_activation_stats_reach_tensorboard(quick_all):
    run = next(p.parent for p in (quick_all / "exercise_3" / "runs").glob("*kind=custom*/summary.json"))
    events = read_events(run)
    for tag in ("activations/layer1_var_before_noise", "activations/layer2_var_after_noise",
                "activations/layer2_mean_square_before_noise"):
        assert len(events.Scalars(tag)) == 2


def test_unknown_exercise_is_a_usage_error():
    result = run_cli("exercise", "9")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "1 to 8" in result.stderr
    assert "Traceback" not in result.stderr


# --- exercise 3's check, on synthetic activations -------------------------------------------

def activations(seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    h = torch.rand(64, 32, generator=generator) * 3.0  # (B, units), like ReLU outputs
    h[:, :4] = 0.0  # dead units: variance 0 under both, left out of the check
    return h


@pytest.mark.parametrize("p", [0.2, 0.5, 0.8])
def test_variance_check_passes_for_inverted_dropout(p):
    from dropout_lab.dropout import InvertedDropout

    torch.manual_seed(1)
    check = ex3_variance.check_layer(InvertedDropout(p), activations(), p, draws=300)
    assert check["passed"], check["max_abs_z"]
    assert check["checked_units"] == 28


def test_variance_check_fails_for_noise_with_another_variance():
    """The check can fail: Bernoulli dropout without the 1/(1-p) scaling has variance
    p(1-p)·h², not p/(1-p)·h², and is caught (at p = 0.5 by a factor of 4)."""
    from dropout_lab.dropout import UnscaledDropout

    torch.manual_seed(1)
    check = ex3_variance.check_layer(UnscaledDropout(0.5), activations(), 0.5, draws=300)
    assert not check["passed"] and check["max_abs_z"] > 100


# --- conclusions follow the data ----------------------------------------------------------------

def fake_run(seed, test, gap=0.05, hidden=(256, 256), kind="custom", p=(0.2, 0.5), wd=0.0,
             three_valued="uniform", seconds=1.0):
    """A completed run record as report.load_runs gives it, with made-up metrics: three epochs
    at the same values, so the steady, final and best test accuracy are all ``test``."""
    config = {"seed": seed, "data": {"subset": None, "test_subset": None},
              "model": {"hidden": list(hidden), "dropout": {"kind": kind, "p": list(p) if
                        isinstance(p, tuple) else p, "three_valued": three_valued}},
              "optim": {"name": "sgd", "lr": 0.5, "weight_decay": wd},
              "trainer": {"epochs": 3, "batch_size": 256}}
    row = {"test_accuracy": test, "train_eval_accuracy": test + gap, "gap": gap,
           "train_accuracy": test + gap - 0.03, "gap_dropout_on": gap - 0.03}
    history = [{"epoch": epoch, **row} for epoch in (1, 2, 3)]
    return {"job": f"{seed}_{kind}_{p}", "num": seed, "status": "completed", "config": config,
            **row, "history": history, "epochs": 3, "train_seconds": 3 * seconds,
            "run_dir": Path("/nonexistent")}


# Runs with the same seed share their batch order, so their accuracies move together: a seed
# effect shared by every setting (std ~0.003) plus a run's own noise (std 0.001). A paired
# comparison cancels the first; Welch's test does not.
SEED_EFFECT = (-0.003, 0.0, 0.004, 0.001, -0.002)
RUN_NOISE = 0.001


def seeds_around(center, **setting):
    """Five seeds of one setting: center + the seed's shared effect + the run's own noise
    (deterministic per setting and center)."""
    rng = np.random.default_rng(zlib.crc32(repr((center, sorted(setting.items()))).encode()))
    noise = rng.normal(0.0, RUN_NOISE, len(SEED_EFFECT))
    return [fake_run(seed, center + shared + own, **setting)
            for seed, (shared, own) in enumerate(zip(SEED_EFFECT, noise))]


def swap_findings(tmp_path, textbook, swapped):
    runs = (seeds_around(textbook, p=(0.2, 0.5)) + seeds_around(swapped, p=(0.5, 0.2))
            + seeds_around(0.84, kind="none", p=(0.0, 0.0)))
    return ex1_probabilities.analyze(runs, {}, tmp_path)


def swap_conclusion(tmp_path, textbook, swapped):
    return swap_findings(tmp_path, textbook, swapped).conclusion[0]


def test_exercise_1_swap_verdict_follows_the_data(tmp_path):
    assert "(0.2, 0.5) is significantly higher, so (0.2, 0.5) is better" in swap_conclusion(tmp_path, 0.86, 0.85)
    assert "(0.2, 0.5) is significantly lower, so (0.5, 0.2) is better" in swap_conclusion(tmp_path, 0.85, 0.86)
    # 0.0005 apart, per-seed differences with std ~0.0014: no winner, and the detectable effect.
    tie = swap_conclusion(tmp_path, 0.8505, 0.850)
    assert "no significant difference" in tie and "could detect |Δ| ≥" in tie
    assert "2·SE" not in tie


def test_exercise_1_pairs_runs_by_seed(tmp_path):
    """0.003 apart: hidden by the seed effect shared by both settings (Welch's test of the
    same runs does not find it), found by the paired test, which the exercise uses."""
    findings = swap_findings(tmp_path, 0.853, 0.850)
    swap = findings.comparisons["test acc: (0.2, 0.5) − (0.5, 0.2)"]
    assert swap.method.startswith("paired t-test over 5 seeds") and swap.significant
    runs = seeds_around(0.853, p=(0.2, 0.5)), seeds_around(0.850, p=(0.5, 0.2))
    welch = difference(estimate(r["test_accuracy"] for r in runs[0]),
                       estimate(r["test_accuracy"] for r in runs[1]))
    assert welch.method.startswith("Welch") and not welch.significant
    # Holm over the tested comparisons: the swap and best vs none (the fake gaps have no spread).
    assert swap.family_size == 2


def test_exercise_1_without_completed_runs_concludes_nothing(tmp_path):
    failed = dict(fake_run(0, 0.85), status="failed")
    for runs in ([], [failed]):
        findings = ex1_probabilities.analyze(runs, {}, tmp_path)
        assert findings.conclusion == [NO_COMPLETED_RUN] and not findings.tables


def weight_decay_verdict(tmp_path, neither, dropout, decay, both):
    runs = (seeds_around(neither, kind="none", p=(0.0, 0.0)) + seeds_around(dropout)
            + seeds_around(decay, kind="none", p=(0.0, 0.0), wd=1e-3) + seeds_around(both, wd=1e-3))
    return ex6_weight_decay.analyze(runs, {}, tmp_path).conclusion[0]


def test_exercise_6_combination_verdict_follows_the_data(tmp_path):
    assert ": additive" in weight_decay_verdict(tmp_path, 0.84, 0.85, 0.85, 0.86)
    assert ": diminishing" in weight_decay_verdict(tmp_path, 0.84, 0.85, 0.85, 0.853)
    assert ": cancelling" in weight_decay_verdict(tmp_path, 0.84, 0.85, 0.85, 0.84)
    assert ": more than additive" in weight_decay_verdict(tmp_path, 0.84, 0.85, 0.85, 0.875)


def width_verdicts(tmp_path, small_gain, large_gain):
    runs = []
    for hidden, gain in (((256, 256), small_gain), ((2048, 2048), large_gain)):
        runs += seeds_around(0.85, hidden=hidden, kind="none", p=(0.0, 0.0))
        runs += seeds_around(0.85 + gain, hidden=hidden)
    return ex5_width.analyze(runs, {}, tmp_path).conclusion[0]


def test_exercise_5_growth_verdict_follows_the_data(tmp_path):
    assert "dropout adds more test accuracy at the larger width" in width_verdicts(tmp_path, 0.0, 0.02)
    assert "adds less test accuracy" in width_verdicts(tmp_path, 0.02, 0.0)
    assert "does not change significantly" in width_verdicts(tmp_path, 0.01, 0.011)


def three_valued_answer(tmp_path, bernoulli, three):
    runs = (seeds_around(bernoulli, p=0.4) + seeds_around(three, kind="three_valued", p=0.4)
            + seeds_around(0.84, kind="none", p=(0.0, 0.0)))
    return ex8_three_valued.analyze(runs, {}, tmp_path).conclusion[0]


def test_exercise_8_answer_follows_the_data(tmp_path):
    assert three_valued_answer(tmp_path, 0.85, 0.86).startswith("Can three-valued noise work better? Yes")
    assert "Not here" in three_valued_answer(tmp_path, 0.86, 0.85)
    assert "Not measurably" in three_valued_answer(tmp_path, 0.85, 0.8505)


# --- the report's statistics ----------------------------------------------------------------------

def test_report_states_test_adjusted_p_and_detectable_effect(tmp_path):
    """Every report explains significance once (writing.SIGNIFICANCE) and tabulates the family:
    the test and why, the Holm-adjusted p, the CI, the detectable effect, seeds needed."""
    from dropout_lab.exercises.writing import METRIC, SIGNIFICANCE, report_markdown, results_json

    findings = swap_findings(tmp_path, 0.851, 0.850)
    runs = (seeds_around(0.851, p=(0.2, 0.5)) + seeds_around(0.850, p=(0.5, 0.2)))
    context = {"runs": runs, "overrides": [], "user_overrides": [], "quick": False,
               "sweep_dir": tmp_path / "runs", "seconds": 1.0}
    text = report_markdown(ex1_probabilities.EXERCISE, findings, context)
    assert SIGNIFICANCE in text and METRIC in text and "2·SE" not in text
    row = next(line for line in text.splitlines()
               if line.startswith("| test acc: (0.2, 0.5) − (0.5, 0.2)"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    swap = findings.comparisons["test acc: (0.2, 0.5) − (0.5, 0.2)"]
    assert cells[3].startswith("paired t-test") and cells[6] == "2" and cells[7] == "no"
    assert float(cells[8]) == pytest.approx(swap.detectable, abs=1e-4)
    needed = seeds_to_detect(swap)
    assert 5 < needed <= 1000 and cells[9] == f"{needed} paired seeds"
    # That many seeds would indeed give the observed Δ 80% power at Holm's first level.
    design = dataclasses.replace(swap.design, sizes=(needed,))
    assert design.power(swap.delta, 0.05 / 2) >= 0.8 > dataclasses.replace(
        swap.design, sizes=(needed - 1,)).power(swap.delta, 0.05 / 2)
    saved = results_json(ex1_probabilities.EXERCISE, findings, context)["comparisons"]
    assert saved["test acc: (0.2, 0.5) − (0.5, 0.2)"]["adjusted_p"] == swap.adjusted_p


def test_seeds_option_replaces_the_exercises_seeds():
    from dropout_lab.errors import ConfigError
    from dropout_lab.exercises.runner import seed_overrides

    assert seed_overrides(None, ["seed=0,1"]) == []
    assert seed_overrides(7, ["optim.lr=0.1"]) == ["seed=range(7)"]
    with pytest.raises(ConfigError, match="--seeds and a seed= override"):
        seed_overrides(7, ["seed=0,1"])


def test_seeds_option_reaches_the_sweep(tmp_path):
    """seed=range(2), what --seeds 2 adds, replaces the YAML's seeds: the jobs carry 0 and 1 only."""
    from dropout_lab.sweep.run import run_sweep

    result = run_sweep(["experiment=exercise_4", "seed=range(2)"], sweep_dir=tmp_path / "s",
                       dry_run=True)
    seeds_planned = sorted(o for job in result.jobs for o in job if o.startswith("seed="))
    assert seeds_planned == ["seed=0", "seed=1"]


def test_contrast_combines_standard_errors():
    a, b = estimate([1.0, 2.0, 3.0]), estimate([2.0, 2.0, 2.0, 2.0])
    diff = difference(a, b)
    assert diff.delta == 0.0 and diff.se == pytest.approx(1.0 / 3 ** 0.5)
    # An interaction: four settings, SE² the sum of the four SE².
    four = contrast([(1.0, a), (-1.0, a), (-1.0, a), (1.0, a)])
    assert four.delta == 0.0 and four.se == pytest.approx(2.0 / 3 ** 0.5)


def test_one_seed_gives_no_verdict():
    assert not difference(Estimate((0.9,)), Estimate((0.1,))).known
    assert not difference(Estimate((0.9,)), Estimate((0.1,))).significant


def test_bad_override_stops_before_any_run(tmp_path):
    result = run_cli("exercise", "1", "--quick", "model.bogus=1", "--out", tmp_path / "out")
    assert result.returncode == 2 and "model.bogus" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out" / "exercise_1" / "runs").exists()


@pytest.mark.slow
def test_diverged_runs_are_results_not_failures(tmp_path):
    # lr 1e9 makes every run of exercise 2 diverge: the report is written, the command says
    # how many diverged and exits 0 (divergence is what the exercise measures, not an error).
    out = tmp_path / "out"
    result = run_cli("exercise", "2", "--quick", "optim.lr=1e9", "--out", out)
    assert result.returncode == 0, result.stderr
    assert re.search(r"exercise 2: .*\(4 jobs, 4 diverged, \d+ s\)", result.stdout)
    assert "error" not in result.stderr and "Traceback" not in result.stderr
    assert "diverged" in (out / "exercise_2" / "report.md").read_text()
    # Run again: a diverged run is a result, not retrained (it would diverge the same way).
    summaries = sorted((out / "exercise_2" / "runs").glob("*/summary.json"))
    written = [path.stat().st_mtime_ns for path in summaries]
    again = run_cli("exercise", "2", "--quick", "optim.lr=1e9", "--out", out)
    assert again.returncode == 0, again.stderr
    assert re.search(r"exercise 2: .*\(4 jobs, 4 diverged, \d+ s\)", again.stdout)
    assert len(summaries) == 4 and [path.stat().st_mtime_ns for path in summaries] == written


def test_only_failed_runs_make_the_exit_code_non_zero():
    from dropout_lab.exercises.runner import ExerciseOutcome, ExercisesResult
    from dropout_lab.messages import exercises_exit_code as exit_code, exercises_problem as problem

    def result(diverged, failed):
        outcome = ExerciseOutcome(2, Path("report.md"), 6, diverged, failed, 1.0)
        return ExercisesResult(Path("out"), Path("out/index.md"), [outcome])

    assert exit_code(result(diverged=1, failed=0)) == 0 and problem(result(1, 0)) is None
    assert exit_code(result(diverged=0, failed=1)) == 1
    assert problem(result(0, 1)).startswith("runs failed in exercise 2 (1 of 6)")


def test_runs_of_other_invocations_are_left_out():
    """--out of a full run reused with --quick: the folder holds both; each analysis sees its own."""
    from dropout_lab.exercises.runner import runs_of_jobs

    full = {"overrides": ["seed=0", "experiment=exercise_4"], "status": "completed"}
    quick = {"overrides": ["seed=0", "experiment=exercise_4", "data.subset=1000",
                           "trainer.num_threads=1"], "status": "completed"}
    jobs = [["seed=0", "experiment=exercise_4", "data.subset=1000", "trainer.progress=False"]]
    assert runs_of_jobs([full, quick], jobs) == [quick]


@pytest.mark.parametrize("enabled", [False, True])
def test_activation_stats_only_when_asked(tmp_path, enabled):
    from dropout_lab.hydra_runner import compose, typed_config
    from dropout_lab.train import train

    cfg = typed_config(compose(["data.subset=300", "data.test_subset=100", "trainer.epochs=1",
                                "trainer.progress=false", "trainer.num_threads=1",
                                "logging.checkpoint=false", "logging.tensorboard=false",
                                "model.dropout.kind=[none,custom]",
                                f"logging.activation_stats={str(enabled).lower()}"]))
    row = train(cfg, tmp_path / "run").history[-1]
    keys = {key for key in row if key.startswith("layer")}
    if not enabled:
        assert not keys
        return
    assert keys == {f"layer{k}_{stat}" for k in (1, 2) for stat in ex3_variance.LAYER_STATS}
    # Layer 1 has no noise: the same numbers before and after it. Layer 2 (p = 0.5) adds variance.
    assert row["layer1_var_after_noise"] == pytest.approx(row["layer1_var_before_noise"])
    assert row["layer2_var_after_noise"] > row["layer2_var_before_noise"]


def test_a_collapse_is_a_fall_below_the_runs_own_best_so_far():
    from dropout_lab.exercises.ex2_epochs import collapse

    def history(*accuracies):
        return [{"epoch": n + 1, "test_accuracy": a} for n, a in enumerate(accuracies)]

    # A low start is not a collapse, nor is lr 0.5's ordinary dip (0.15 here, below 0.2).
    assert collapse(history(0.30, 0.80, 0.85, 0.70, 0.86)) == ""
    assert collapse(history(0.80, 0.88, 0.39, 0.75)) == (
        "fell from 0.880 to 0.390 in epoch 3, 0.750 at the end")
    # The deepest fall is the one named, below the best reached before it.
    assert "to 0.300 in epoch 5" in collapse(history(0.8, 0.5, 0.85, 0.6, 0.3, 0.8))
