"""The sweep report: records, swept columns, mean ± std over seeds, Markdown/CSV, plots.

The sweep folders here are written by hand with the files a real job leaves (summary.json as
RunLog writes it, .hydra/overrides.yaml as Hydra writes it), so the expected numbers are known;
tests/sweep/test_run.py checks the report of real sweeps.
"""

import csv
import json
import statistics

import pytest
import yaml

from conftest import markdown_tables, run_cli
from dropout_lab import report

# (p, seed) -> final test accuracy of a 3-epoch run; train accuracy is test + 0.05.
ACCURACY = {("[0.2,0.5]", 0): 0.80, ("[0.2,0.5]", 1): 0.82, ("[0.2,0.5]", 2): 0.84,
            ("[0.5,0.2]", 0): 0.70, ("[0.5,0.2]", 1): 0.74, ("[0.5,0.2]", 2): 0.72}


def write_job(sweep_dir, num, overrides, status="completed", final_test=None, error=None):
    run_dir = sweep_dir / f"{num}_{','.join(sorted(overrides))}"
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    history = []
    if final_test is not None:
        for epoch in (1, 2, 3):
            test = final_test - 0.1 * (3 - epoch)
            history.append({"epoch": epoch, "train_loss": 0.5, "test_loss": 0.6,
                            "train_accuracy": test + 0.05, "test_accuracy": test,
                            "gap": 0.05, "epoch_seconds": 1.0})
    summary = {"status": status, "error": error, "run_dir": str(run_dir), "config": {},
               "final": history[-1] if history else {},
               "best": {"test_accuracy": final_test, "epoch": 3} if history else {},
               "epochs_done": len(history),
               "timings": {"earlier_seconds": 3.5, "train_seconds": 3.0, "wall_seconds": 3.5},
               "history": history}
    (run_dir / "summary.json").write_text(json.dumps(summary))
    return run_dir


@pytest.fixture
def sweep_dir(tmp_path):
    sweep_dir = tmp_path / "sweep"
    for num, ((p, seed), accuracy) in enumerate(ACCURACY.items()):
        write_job(sweep_dir, num, [f"model.dropout.p={p}", f"seed={seed}", "trainer.epochs=3"],
                  final_test=accuracy)
    write_job(sweep_dir, 6, ["model.dropout.p=[1.5,0.2]", "seed=0", "trainer.epochs=3"],
              status="failed", error="model.dropout.p has to be between 0 and 1, but got 1.5")
    return sweep_dir


def test_load_runs_reads_every_job_in_order(sweep_dir):
    runs = report.load_runs(sweep_dir)
    assert [run.num for run in runs] == list(range(7))
    assert runs[1].params == {"model.dropout.p": "[0.2,0.5]", "seed": "1", "trainer.epochs": "3"}
    assert runs[1].test_accuracy == 0.82 and runs[1].train_accuracy == pytest.approx(0.87)
    assert runs[6].status == "failed" and runs[6].test_accuracy is None
    assert report.swept_keys(runs) == ["model.dropout.p", "seed"]


def test_aggregate_over_seeds_gives_mean_and_sample_std(sweep_dir):
    rows = report.aggregate_over_seeds(report.load_runs(sweep_dir))
    assert [row["label"] for row in rows] == [
        "model.dropout.p=[0.2,0.5]", "model.dropout.p=[0.5,0.2]", "model.dropout.p=[1.5,0.2]"]
    first = rows[0]
    assert (first["runs"], first["completed"]) == (3, 3)
    mean, std = first["test_accuracy"]
    assert mean == pytest.approx(0.82) and std == pytest.approx(statistics.stdev([0.80, 0.82, 0.84]))
    assert rows[1]["test_accuracy"][0] == pytest.approx(0.72)
    assert rows[2]["completed"] == 0 and rows[2]["test_accuracy"] == (None, None)


def test_write_report_tables_and_plot(sweep_dir):
    paths = report.write_report(sweep_dir)
    with open(paths["csv"], newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 7
    assert list(rows[0])[4:9] == ["steady test acc", "final test acc", "best test acc",
                                  "train acc (eval)", "gap"]
    assert [float(r["final test acc"]) for r in rows[:6]] == sorted(ACCURACY.values(), reverse=True)
    # No steady block in these summaries: the mean of the last 3 epochs, from the history.
    assert [float(r["steady test acc"]) for r in rows[:6]] == pytest.approx(
        [a - 0.1 for a in sorted(ACCURACY.values(), reverse=True)])
    assert rows[0]["model.dropout.p"] == "[0.2,0.5]" and rows[0]["seed"] == "2"
    assert rows[-1]["status"] == "failed" and "1.5" in rows[-1]["error"]

    markdown = paths["markdown"].read_text()
    assert "## Mean ± std over seeds" in markdown
    assert f"0.8200 ± {statistics.stdev([0.80, 0.82, 0.84]):.4f}" in markdown
    assert "All jobs: `trainer.epochs=3`" in markdown
    assert "failed: model.dropout.p has to be between 0 and 1" in markdown

    import matplotlib.image

    image = matplotlib.image.imread(paths["plot"])  # a real PNG, decodable
    assert image.shape[0] > 100 and image.shape[1] > 100


def test_report_sorts_by_the_steady_test_accuracy(tmp_path):
    """A run whose last epoch is best but whose steady accuracy is not comes second, in the
    job table and in the mean over seeds."""
    sweep_dir = tmp_path / "sweep"
    lucky = write_job(sweep_dir, 0, ["optim.lr=0.5", "seed=0"], final_test=0.85)
    steady = write_job(sweep_dir, 1, ["optim.lr=0.1", "seed=0"], final_test=0.84)
    for run_dir, value in ((lucky, 0.70), (steady, 0.83)):
        set_steady(run_dir, test_accuracy=value)
    runs = report.load_runs(sweep_dir)
    assert [run.steady_test_accuracy for run in runs] == [0.70, 0.83]
    assert [run.num for run in report.sorted_runs(runs)] == [1, 0]
    rows = report.aggregate_over_seeds(runs)
    assert [row["label"] for row in rows] == ["optim.lr=0.1", "optim.lr=0.5"]
    markdown = report.write_report(sweep_dir)["markdown"].read_text()
    assert "Sorted by the steady test accuracy" in markdown and "clean measure" in markdown


def set_steady(run_dir, **steady):
    summary = json.loads((run_dir / "summary.json").read_text())
    summary["steady"] = {**steady, "epochs": 3}
    (run_dir / "summary.json").write_text(json.dumps(summary))


def test_search_report_leads_with_the_validation_accuracy_it_tuned(tmp_path):
    """A search on validation (data.validation): sorted by the steady validation accuracy, the
    objective; Optuna's best named as such, with its job's test accuracy beside it."""
    sweep_dir = tmp_path / "sweep"
    for num, (lr, val, test) in enumerate([("0.1", 0.88, 0.87), ("0.3", 0.90, 0.86)]):
        run_dir = write_job(sweep_dir, num, [f"optim.lr={lr}"], final_test=test)
        set_steady(run_dir, val_accuracy=val, test_accuracy=test)
    (sweep_dir / "optimization_results.yaml").write_text(yaml.safe_dump(
        {"name": "optuna", "best_params": {"optim.lr": 0.3}, "best_value": 0.90}))
    paths = report.write_report(sweep_dir)
    with open(paths["csv"], newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0])[3:5] == ["steady val acc", "steady test acc"]
    assert [row["optim.lr"] for row in rows] == ["0.3", "0.1"]  # by validation, not by test
    markdown = paths["markdown"].read_text()
    assert "Optuna's best: steady val acc 0.9000 (its steady test acc 0.8600, job #1) with " \
           "`optim.lr=0.3`." in markdown
    assert "Sorted by the steady validation accuracy" in markdown


def test_search_report_without_validation_names_the_steady_test_accuracy(sweep_dir):
    set_steady(sweep_dir / "0_model.dropout.p=[0.2,0.5],seed=0,trainer.epochs=3",
               test_accuracy=0.91)
    (sweep_dir / "optimization_results.yaml").write_text(yaml.safe_dump(
        {"best_params": {"seed": 0}, "best_value": 0.91}))
    paths = report.write_report(sweep_dir)
    markdown = paths["markdown"].read_text()
    assert "Optuna's best: steady test acc 0.9100 (job #0) with `seed=0`." in markdown
    assert "val acc" not in markdown and "val acc" not in paths["csv"].read_text()


def test_report_command(sweep_dir, tmp_path):
    result = run_cli("report", sweep_dir)
    assert result.returncode == 0, result.stderr
    assert f"markdown: {sweep_dir / 'report.md'}" in result.stdout
    assert (sweep_dir / "report.csv").is_file()

    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_cli("report", empty)
    assert result.returncode == 2  # a folder that is not a sweep: a usage error
    assert result.stderr.strip().splitlines() == [
        f"error: {empty} has no job folders with a summary.json to report on"]


def test_report_renders_as_markdown_without_absolute_paths(sweep_dir):
    """Every table a GFM parser reads with the header's column count in every row (a '|' in a
    value, here a failed job's p list, stays inside its cell); no path of this machine."""
    write_job(sweep_dir, 7, ["model.dropout.p=a|b", "seed=0", "trainer.epochs=3"], final_test=0.5)
    markdown = report.write_report(sweep_dir)["markdown"].read_text()
    tables = markdown_tables(markdown)
    assert [len(rows) for rows in tables] == [1 + 8, 1 + 4]  # jobs; settings over seeds
    assert [rows[0] for rows in tables] == [11, 8]
    assert str(sweep_dir.parent) not in markdown
    assert markdown.startswith("# Sweep report: sweep\n")


def test_report_says_when_the_steady_mean_reaches_epoch_1(sweep_dir, tmp_path):
    """3-epoch runs with the default window of 3: their steady mean is every epoch's."""
    assert "Note: 6 of 7 runs trained no more epochs than trainer.steady_epochs" in \
        report.write_report(sweep_dir)["markdown"].read_text()
    longer = tmp_path / "longer"
    for num in (0, 1):
        run_dir = write_job(longer, num, [f"seed={num}"], final_test=0.8)
        summary = json.loads((run_dir / "summary.json").read_text())
        summary["config"] = {"trainer": {"steady_epochs": 2}}
        (run_dir / "summary.json").write_text(json.dumps(summary))
    assert "Note:" not in report.write_report(longer)["markdown"].read_text()
