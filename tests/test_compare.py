"""``dropout-lab compare``: two settings over paired seeds, a group-sequential decision,
report.md and decision.json; resume, and a design that cannot change after a look."""

import json
from pathlib import Path

import pytest

from dropout_lab.compare import ComparePlan, check_plan, run_compare, seed_values
from dropout_lab.errors import ConfigError
from dropout_lab.run_folder import RunRecord
from tests.conftest import run_cli

TINY = ("data.subset=500", "data.test_subset=500", "trainer.epochs=1", "trainer.batch_size=50", "trainer.num_threads=1",
        "trainer.progress=false")


def plan(a=("model.dropout.kind=none",), b=("optim.lr=0.1",), common=(), margin=0.005):
    return ComparePlan(tuple(a), tuple(b), tuple(common), margin, 10, (5, 10))


@pytest.mark.parametrize("arms, words", [
    ((("optim.lr=0.1,0.5",), ("optim.lr=0.1",)), "is a sweep"),
    ((("seed=3",), ("optim.lr=0.1",)), "leave seed= out"),
    ((("optim.lr=0.1",), ("optim.lr=0.1",)), "the same overrides"),
])
def test_arms_that_are_not_one_setting_each_are_refused(arms, words):
    with pytest.raises(ConfigError, match=words):
        check_plan(plan(*arms))


def test_a_changed_design_is_refused_before_any_run(tmp_path):
    (tmp_path / "decision.json").write_text(json.dumps({"plan": plan().as_json()}))
    with pytest.raises(ConfigError, match="another design"):
        run_compare(["model.dropout.kind=none"], ["optim.lr=0.1"], margin=0.01, max_seeds=10,
                    out=tmp_path)


def test_a_lost_run_is_nan_for_its_own_seed_only():
    """A diverged run, and a run that failed before writing its config, drop their seeds."""
    def run(seed, status, value=0.85, config=True):
        return RunRecord(Path(f"{seed}_seed={seed}"), status, overrides=[f"seed={seed}"],
                         steady={"test_accuracy": value}, config={"seed": seed} if config else {})

    runs = [run(0, "completed"), run(1, "diverged"), run(2, "failed", config=False)]
    values = seed_values(runs)
    assert values[0] == 0.85 and set(values) == {0, 1, 2}
    assert values[1] != values[1] and values[2] != values[2]  # NaN


@pytest.mark.slow
def test_compare_decides_a_large_difference_and_resumes_without_training(tmp_path):
    """lr 0.5 against lr 1e-6 (untrained: near chance): "A better" at the one look of
    --max-seeds 3; the rerun trains nothing and gives the same decision."""
    out = tmp_path / "cmp"
    args = ("compare", "optim.lr=0.5", "optim.lr=1e-6", *TINY, "--max-seeds", "3",
            "--out", out)
    first = run_cli(*args)
    assert first.returncode == 0, first.stderr
    decision = json.loads((out / "decision.json").read_text())
    assert decision["answer"] == "A better"
    assert decision["seeds"] == 3 and decision["delta"] > 0.2
    assert decision["design"]["looks"] == [3]
    report = (out / "report.md").read_text()
    assert report.startswith("# Compare: A against B\n\n**Answer: A better.**")
    assert "| 3 |" in report and f"--out {out}" in report
    summaries = sorted(out.glob("runs/*/*/summary.json"))
    assert len(summaries) == 6
    stamps = [path.stat().st_mtime for path in summaries]
    again = run_cli(*args)
    assert again.returncode == 0, again.stderr
    assert "answer: A better" in again.stdout
    assert [path.stat().st_mtime for path in summaries] == stamps  # nothing trained again
    changed = run_cli(*args[:-4], "--max-seeds", "4", "--out", out)
    assert changed.returncode == 2 and "another design" in changed.stderr
