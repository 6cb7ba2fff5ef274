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
from scipy import stats

from dropout_lab.exercises.stats import contrast, difference, estimate, estimate_by_seed
from dropout_lab.exercises.types import NO_COMPLETED_RUN
from dropout_lab.run_folder import RunRecord

SECTIONS = ("## Answer", "## Setup", "## Results", "## Observations (descriptive)")
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
    conclusion = report.split("## Observations (descriptive)", 1)[1].strip()
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
def test_quick_reports_give_every_declared_question_one_of_four_answers(quick_all):
    for folder in sorted(quick_all.glob("exercise_*")):
        results = json.loads((folder / "results.json").read_text())
        report = (folder / "report.md").read_text()
        for question in results["questions"]:
            assert question["answer"] in ("A better", "B better", "equivalent", "undecided")
            assert f"**{question['question']}**" in report
        assert "significantly" not in report and "Statistical tests" not in report
        assert "(no verdict)" not in report


@pytest.mark.slow
def test_until_decided_adds_seeds_only_to_the_open_questions_settings(tmp_path):
    """Exercise 2 --quick, looks at 5 and 7 seeds: the first round runs the grid, the second
    the two settings of its open questions; the rerun trains nothing."""
    out = tmp_path / "out"
    args = ("exercise", "2", "--quick", "--until-decided", "--max-seeds", "7", "--out", out)
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr[-2000:]
    runs = out / "exercise_2" / "runs"
    rounds = sorted(path.name for path in runs.iterdir() if path.is_dir())
    results = json.loads((out / "exercise_2" / "results.json").read_text())
    assert rounds[0] == "seeds_0-4" and len(list((runs / "seeds_0-4").glob("*/summary.json"))) == 10
    if any(q["answer"] == "undecided" for q in results["questions"]):  # a second round ran
        assert rounds[1:] == ["seeds_5-6_kind=custom", "seeds_5-6_kind=none"]
    assert "a group-sequential design with looks at 5, 7 seeds" in results["design"]
    report = (out / "exercise_2" / "report.md").read_text()
    assert f"--until-decided --max-seeds 7 --out {out}" in report
    stamps = sorted(path.stat().st_mtime_ns for path in runs.glob("*/*/summary.json"))
    assert run_cli(*args).returncode == 0
    assert sorted(path.stat().st_mtime_ns for path in runs.glob("*/*/summary.json")) == stamps


def test_until_decided_refuses_seeds_set_otherwise():
    from dropout_lab.errors import ConfigError
    from dropout_lab.exercises.runner import sequential_design, until_decided_seeds

    assert until_decided_seeds(True, None) == 30 and until_decided_seeds(False, None) is None
    with pytest.raises(ConfigError, match="--max-seeds goes with --until-decided"):
        until_decided_seeds(False, 12)
    assert sequential_design(None, None, []) is None
    assert sequential_design(20, None, []).looks == (5, 10, 20)
    for seeds, overrides in ((3, []), (None, ["seed=0,1"])):
        with pytest.raises(ConfigError, match="--until-decided chooses the seeds"):
            sequential_design(20, seeds, overrides)


@pytest.mark.slow
def test_quick_runs_are_normal_runs_of_a_sweep(quick_all):
    runs = sorted((quick_all / "exercise_6" / "runs").glob("*/summary.json"))
    assert len(runs) == 8  # quick: weight decay {0, 1e-4} x dropout off/on x seeds {0, 1}
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
    return RunRecord(Path("/nonexistent") / f"{seed}_{kind}_{p}", "completed", config=config,
                     history=history, final=dict(history[-1]), steady={"test_accuracy": test},
                     best={"test_accuracy": test, "epoch": 1},
                     timings={"train_seconds": 3 * seconds}, epochs_done=3)


def with_steady(run, test_accuracy):
    """The run with another steady test accuracy."""
    return dataclasses.replace(run, steady={**run.steady, "test_accuracy": test_accuracy})


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


def answers(exercise, runs, tmp_path, measurements=None):
    """{question name: its Answer} as the runner finds them (one look at the seeds run)."""
    from dropout_lab.exercises.runner import evaluate

    if measurements is None:
        found = evaluate(exercise, runs, tmp_path, quick=False)[1]
    else:  # measurements made up: skip the exercise's measure step
        found = evaluate(dataclasses.replace(exercise, measure=None), runs, tmp_path, False)[1]
        values = {q.name: exercise.values(q, runs, measurements) for q in exercise.questions}
        from dropout_lab.exercises.questions import answer_exercise
        found = answer_exercise(exercise.questions, values)
    return {answer.question.name: answer for answer in found}


def swap_runs(textbook, swapped):
    return (seeds_around(textbook, p=(0.2, 0.5)) + seeds_around(swapped, p=(0.5, 0.2))
            + seeds_around(0.84, kind="none", p=(0.0, 0.0)))


def swap_answer(tmp_path, textbook, swapped):
    return answers(ex1_probabilities.EXERCISE, swap_runs(textbook, swapped), tmp_path)[
        "the textbook swap"]


def test_exercise_1_swap_answer_follows_the_data(tmp_path):
    assert swap_answer(tmp_path, 0.86, 0.85).answer == "A better"
    assert swap_answer(tmp_path, 0.85, 0.86).answer == "B better"
    # 0.0005 apart, per-seed differences with std ~0.0014: equivalent within ±0.005.
    tie = swap_answer(tmp_path, 0.8505, 0.850)
    assert tie.answer == "equivalent" and "equivalent within ±0.005" in tie.text()
    # 0.003 apart with a spread of 0.01: undecided, with the interval and the seeds it would take.
    noisy = swap_runs(0.853, 0.850)
    for i, shift in enumerate((0.01, -0.01, 0.012, -0.008, 0.0)):
        noisy[i] = with_steady(noisy[i], noisy[i].test_accuracy + shift)
    open_one = answers(ex1_probabilities.EXERCISE, noisy, tmp_path)["the textbook swap"]
    assert open_one.answer == "undecided" and open_one.seeds_needed > 5
    assert "undecided at 5 seeds" in open_one.text() and "95% CI" in open_one.text()


def test_exercise_1_pairs_runs_by_seed(tmp_path):
    """0.006 apart: the seed effect shared by both settings widens Welch's interval of the
    same runs more than twofold; the paired question cancels it and decides."""
    swap = swap_answer(tmp_path, 0.856, 0.850)
    assert swap.answer == "A better" and swap.seeds == 5
    runs = seeds_around(0.856, p=(0.2, 0.5)), seeds_around(0.850, p=(0.5, 0.2))
    welch = difference(estimate(r.test_accuracy for r in runs[0]),
                       estimate(r.test_accuracy for r in runs[1]))
    assert welch.method.startswith("Welch")
    assert welch.ci[1] - welch.ci[0] > 2 * (swap.ci[1] - swap.ci[0])


def test_exercise_1_without_completed_runs_concludes_nothing(tmp_path):
    failed = dataclasses.replace(fake_run(0, 0.85), status="failed")
    for runs in ([], [failed]):
        findings = ex1_probabilities.analyze(runs, {}, tmp_path)
        assert findings.conclusion == [NO_COMPLETED_RUN] and not findings.tables


def test_exercise_1_declares_no_best_versus_others(tmp_path):
    """Verdicts only from the declared questions: no "best" picked from the results."""
    text = " ".join(ex1_probabilities.analyze(swap_runs(0.86, 0.85), {}, tmp_path).conclusion)
    assert "significant" not in text and "tie" not in text
    assert [q.name for q in ex1_probabilities.QUESTIONS] == [
        "the textbook swap", "the textbook swap, gap", "the textbook dropout against none"]


def weight_decay_answer(tmp_path, neither, dropout, decay, both):
    runs = (seeds_around(neither, kind="none", p=(0.0, 0.0)) + seeds_around(dropout)
            + seeds_around(decay, kind="none", p=(0.0, 0.0), wd=1e-4) + seeds_around(both, wd=1e-4))
    return answers(ex6_weight_decay.EXERCISE, runs, tmp_path)[ex6_weight_decay.ADDITIVE].answer


def test_exercise_6_interaction_answer_follows_the_data(tmp_path):
    assert weight_decay_answer(tmp_path, 0.84, 0.85, 0.85, 0.86) == "equivalent"  # additive
    assert weight_decay_answer(tmp_path, 0.84, 0.85, 0.85, 0.875) == "A better"  # more than
    assert weight_decay_answer(tmp_path, 0.84, 0.85, 0.85, 0.84) == "B better"  # cancelling


def test_exercise_5_growth_answer_follows_the_data(tmp_path):
    def growth(small_gain, large_gain):
        runs = []
        for hidden, gain in (((256, 256), small_gain), ((2048, 2048), large_gain)):
            runs += seeds_around(0.85, hidden=hidden, kind="none", p=(0.0, 0.0))
            runs += seeds_around(0.85 + gain, hidden=hidden)
        return answers(ex5_width.EXERCISE, runs, tmp_path)[ex5_width.GROWTH].answer

    assert growth(0.0, 0.02) == "A better"
    assert growth(0.02, 0.0) == "B better"
    assert growth(0.01, 0.011) == "equivalent"


def test_exercise_8_answer_follows_the_data(tmp_path):
    def three_valued(bernoulli, three):
        runs = (seeds_around(bernoulli, p=0.4) + seeds_around(three, kind="three_valued", p=0.4)
                + seeds_around(0.84, kind="none", p=(0.0, 0.0)))
        return answers(ex8_three_valued.EXERCISE, runs, tmp_path)

    question = "three-valued against Bernoulli at p 0.4"
    assert three_valued(0.85, 0.86)[question].answer == "A better"
    assert three_valued(0.86, 0.85)[question].answer == "B better"
    found = three_valued(0.85, 0.8505)
    assert found[question].answer == "equivalent"
    assert found["three-valued against Gaussian at p 0.4"].answer == "undecided"  # not run


# --- the edges -----------------------------------------------------------------------------------

def test_exercise_4_with_one_seed_gives_no_verdict_and_counts_nothing_as_below(tmp_path):
    """--quick trains one network: no question can be tested, and nothing says "below"."""
    from dropout_lab.exercises import ex4_test_time

    network = {"seed": 0, "test_images": 500,
               "deterministic": {"accuracy": 0.80, "auroc": 0.80, "seconds": 0.01,
                                 "entropy_right": 0.3, "entropy_wrong": 0.9},
               "mc": {str(k): {"accuracies": [0.81], "seconds": [0.01 * k], "auroc": 0.82,
                               "predictive_entropy_right": 0.3,
                               "predictive_entropy_wrong": 0.9,
                               "mutual_information_right": 0.01,
                               "mutual_information_wrong": 0.05} for k in (1, 2)},
               "entropy_histogram": {"bins": [0.0, 1.0, 2.0], "right": [3, 1], "wrong": [1, 3]}}
    measurements = {"ks": [1, 2], "repeats": 8, "runs": [network]}
    found = answers(ex4_test_time.EXERCISE, [fake_run(0, 0.80)], tmp_path, measurements)
    assert {a.answer for a in found.values()} == {"undecided"}
    assert all("1 paired seed: a test needs 2" in a.text() for a in found.values())
    text = " ".join(ex4_test_time.analyze([fake_run(0, 0.80)], measurements, tmp_path).conclusion)
    assert "below" not in text and "significant" not in text and "at least" not in text


@pytest.mark.slow
def test_exercise_4_measures_a_bf16_network_in_bf16(tmp_path):
    """Exercise 4 evaluates each network in its run's precision, as `evaluate` does: the
    deterministic pass of a bf16 run gives the bf16 probabilities (which differ from fp32's)."""
    from conftest import TINY
    from dropout_lab.device import cpu_has_native_bf16
    from dropout_lab.exercises.ex4_test_time import measure_runs
    from dropout_lab.hydra_runner import compose, typed_config
    from dropout_lab.mc_dropout import entropy, mc_metrics, mc_statistics
    from dropout_lab.run_folder import read_run
    from dropout_lab.train import train
    from dropout_lab.trained_model import run_config, test_split, trained_model

    if not cpu_has_native_bf16():
        pytest.skip("no native bf16 on this CPU")
    train(typed_config(compose([*TINY, "trainer.precision=bf16"])), tmp_path)
    run = read_run(tmp_path)
    model, split = trained_model(run), test_split(run)
    model.eval()
    batch_size = run_config(run).trainer.eval_batch_size
    right_entropy = {}
    for precision in ("bf16", "fp32"):
        probabilities = mc_statistics(model, split, 1, batch_size, precision)["probabilities"]
        metrics = mc_metrics(probabilities, entropy(probabilities), split.labels)
        right_entropy[precision] = metrics["predictive_entropy_right"]
    assert right_entropy["bf16"] != right_entropy["fp32"]  # the test can tell them apart
    measured = measure_runs([run], ks=(1,))["runs"][0]["deterministic"]
    assert measured["entropy_right"] == right_entropy["bf16"]


def test_a_diverged_run_drops_only_its_own_seed(tmp_path):
    runs = swap_runs(0.853, 0.850)
    runs[1] = dataclasses.replace(runs[1], status="diverged")  # seed 1 of (0.2, 0.5)
    swap = answers(ex1_probabilities.EXERCISE, runs, tmp_path)["the textbook swap"]
    assert swap.seeds == 4  # paired over the 4 common seeds
    kept = [0, 2, 3, 4]
    a = [runs[i].test_accuracy for i in kept]
    b = [runs[5 + i].test_accuracy for i in kept]
    assert swap.looks[0].p_superiority == pytest.approx(stats.ttest_rel(a, b).pvalue, rel=1e-9)
    table = difference(*(estimate_by_seed({r.config["seed"]: r.test_accuracy
                                           for r in group if r.status == "completed"})
                         for group in (runs[:5], runs[5:10])))
    assert table.method.startswith("paired t-test over 4 seeds")


def test_ulp_equal_values_are_equivalent_not_better(tmp_path):
    """Per-seed differences of 1-2 ulp: far inside any margin, so "equivalent", never a
    "better" with Δ = +0.0000."""
    runs = swap_runs(0.85, 0.85)
    for i in range(5):
        runs[i] = with_steady(runs[i], np.nextafter(runs[5 + i].test_accuracy, 1.0))
        runs[5 + i] = with_steady(runs[5 + i], runs[5 + i].test_accuracy)
    swap = answers(ex1_probabilities.EXERCISE, runs, tmp_path)["the textbook swap"]
    assert swap.answer == "equivalent"


def test_exercise_2_without_the_eval_train_subset(tmp_path):
    """trainer.eval_train_subset=0: no clean train accuracy, so no gap; the analysis still
    runs (it raised TypeError on the missing gap) and the gap question has no test."""
    from dropout_lab.exercises import ex2_epochs

    runs = seeds_around(0.85, kind="none", p=(0.0, 0.0)) + seeds_around(0.86)
    for run in runs:  # the runs then log neither metric
        for row in [run.final, *run.history]:
            del row["train_eval_accuracy"], row["gap"]
    findings = ex2_epochs.analyze(runs, {}, tmp_path)
    assert findings.tables and findings.conclusion
    found = answers(ex2_epochs.EXERCISE, runs, tmp_path)
    assert found["dropout at the end of long training"].answer == "A better"
    assert found["dropout at the end of long training, gap"].answer == "undecided"


def test_report_opens_with_the_answer_and_states_the_runs_that_ran(tmp_path):
    """The answer first, then how it was found; the setup's own line names the runs that ran
    (3 seeds here, whatever the YAML's 6); the rerun line resumes (--out)."""
    from dropout_lab.exercises.writing import report_markdown, results_json

    runs = [run for run in swap_runs(0.86, 0.85) if run.config["seed"] < 3]
    found = list(answers(ex1_probabilities.EXERCISE, runs, tmp_path).values())
    context = {"runs": runs, "overrides": ["seed=range(3)"], "user_overrides": ["seed=range(3)"],
               "quick": False, "sweep_dir": tmp_path / "exercise_1" / "runs", "seconds": 1.0,
               "out_dir": tmp_path, "answers": found, "design": None}
    findings = ex1_probabilities.analyze(runs, {}, tmp_path)
    text = report_markdown(ex1_probabilities.EXERCISE, findings, context)
    assert text.index("## Answer") < text.index("## Questions") < text.index("## Setup")
    assert "- **the textbook swap** ((0.2, 0.5) vs (0.5, 0.2), steady test accuracy): A better" in text
    assert "this invocation changed the seeds or the budget, as the next line says" in text
    assert "This invocation: 9 runs ran, 9 completed, seeds [0, 1, 2]" in text
    assert f"--out {tmp_path}" in text and "hidden layers [256, 256]." in text
    assert "significant" not in text.split("## Setup")[1]
    saved = results_json(ex1_probabilities.EXERCISE, findings, context)["questions"]
    assert [q["answer"] for q in saved] == [a.answer for a in found]


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


@pytest.mark.slow
def test_a_rerun_without_out_names_the_earlier_folder(tmp_path):
    """Without --out an exercise starts anew in a new folder; when it ran before with the same
    settings, one note line says where, and how to continue that one instead (as `sweep` does).
    Other settings are another experiment: no note."""
    first = run_cli("exercise", "2", "--quick", cwd=tmp_path, check=True)
    assert first.stderr == ""
    (earlier,) = (tmp_path / "outputs" / "exercises").glob("*/*")
    shown = earlier.relative_to(tmp_path)
    again = run_cli("exercise", "2", "--quick", cwd=tmp_path, check=True)
    assert again.stderr.splitlines() == [
        f"note: dropout-lab exercise 2 ran before with the same settings in {shown}; this run "
        f"starts anew (to continue that one instead, run the same command with --out {shown})"]
    other = run_cli("exercise", "2", "--quick", "seed=3", cwd=tmp_path, check=True)
    assert other.stderr == ""


@pytest.mark.slow
def test_answers_under_a_sequential_design_resume_only_under_it(tmp_path):
    """--max-seeds fixes the looks and their alpha spending: resuming a folder with other looks
    (after seeing its answers) is refused before any run, as `compare` refuses; the same design
    resumes, training nothing again."""
    out = tmp_path / "out"
    design = ["exercise", "2", "--quick", "--until-decided", "--out", out]
    run_cli(*design, "--max-seeds", "10", check=True)
    summaries = sorted((out / "exercise_2" / "runs").glob("*/*/summary.json"))
    assert len(summaries) >= 10  # the first round: two settings, seeds 0-4
    written = [path.stat().st_mtime_ns for path in summaries]
    changed = run_cli(*design, "--max-seeds", "20")
    assert changed.returncode == 2
    assert changed.stderr.splitlines() == [
        f"error: {out / 'exercise_2'} holds answers under a group-sequential design with looks at "
        f"5, 10 seeds and Lan-DeMets O'Brien-Fleming alpha spending; changing --until-decided or "
        f"--max-seeds after a look voids their error rates: use a new --out"]
    assert run_cli("exercise", "2", "--quick", "--out", out).returncode == 2  # a fixed design
    run_cli(*design, "--max-seeds", "10", check=True)
    assert [path.stat().st_mtime_ns for path in summaries] == written


def test_only_failed_runs_make_the_exit_code_non_zero():
    from dropout_lab.exercises.runner import ExerciseOutcome, ExercisesResult
    from dropout_lab.messages import exercises_exit_code as exit_code, exercises_problem as problem

    def result(diverged, failed):
        outcome = ExerciseOutcome(2, Path("report.md"), 6, diverged, failed, 1.0)
        return ExercisesResult(Path("out"), Path("out/index.md"), [outcome])

    assert exit_code(result(diverged=1, failed=0)) == 0 and problem(result(1, 0)) is None
    assert exit_code(result(diverged=0, failed=1)) == 1
    assert problem(result(0, 1)).startswith("runs did not complete in exercise 2 (1 of 6)")


def test_runs_of_other_invocations_are_left_out():
    """--out of a full run reused with --quick: the folder holds both; each analysis sees its own."""
    from dropout_lab.exercises.runner import runs_of_jobs

    full = RunRecord(Path("full"), "completed", overrides=["seed=0", "experiment=exercise_4"])
    quick = RunRecord(Path("quick"), "completed", overrides=[
        "seed=0", "experiment=exercise_4", "data.subset=1000", "trainer.num_threads=1"])
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
