"""`dropout-lab runs` and `dropout-lab diff` on real sweeps (real processes, real summaries): the
table, a sweep with failed jobs, one line per setting (--by-setting), and `runs` over hundreds
of runs: instant, and without importing torch."""

import csv
import io
import json
import shutil
import statistics
import subprocess
import sys

import pytest

from conftest import REPO, TINY, run_cli
from dropout_lab.run_folder import read_summary


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    sweep_dir = tmp_path_factory.mktemp("runs") / "sweep"
    run_cli("sweep", "--sweep-dir", sweep_dir, "optim.weight_decay=0,1e-3", *TINY, check=True)
    return sweep_dir


def jobs(sweep_dir):
    return sorted(p for p in sweep_dir.iterdir() if p.is_dir())


def one_error_line(result, expected: str):
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.strip().splitlines() == [f"error: {expected}"]


@pytest.mark.slow
def test_runs_lists_each_job_with_its_swept_setting_and_metrics(sweep_dir):
    result = run_cli("runs", sweep_dir, check=True)
    lines = result.stdout.splitlines()
    assert lines[0] == f"2 runs under {sweep_dir} (2 completed)"
    assert lines[1] == "same in all: epochs=2 subset=1000 test_subset=500 device=cpu"
    assert lines[2].split() == ["run", "status", "wd", "steady", "test", "acc", "best", "gap",
                                "epochs", "done", "time"]  # epochs trained, not the setting
    for line, job in zip(lines[3:], jobs(sweep_dir)):
        summary = read_summary(job)
        cells = line.split()
        assert cells[:3] == [job.name, "completed", "0" if "wd=0" in job.name else "1e-3"]
        assert cells[3:8] == [f"{summary['steady']['test_accuracy']:.4f}",
                              f"{summary['final']['test_accuracy']:.4f}",
                              f"{summary['best']['test_accuracy']:.4f}",
                              f"{summary['final']['gap']:+.4f}", "2"]
    assert len(lines) == 5


@pytest.mark.slow
def test_runs_sorts_filters_and_writes_csv(sweep_dir):
    rows = list(csv.DictReader(io.StringIO(
        run_cli("runs", sweep_dir, "--csv", "--sort", "test_acc", check=True).stdout)))
    finals = {job.name: read_summary(job)["final"]["test_accuracy"] for job in jobs(sweep_dir)}
    assert [row["run"] for row in rows] == sorted(finals, key=finals.get, reverse=True)
    assert {row["run"]: float(row["test_acc"]) for row in rows} == finals  # full precision
    assert sorted(float(row["optim.weight_decay"]) for row in rows) == [0.0, 1e-3]
    assert {row["ran_on"].split(",")[0] for row in rows} == {"cpu"}

    by_wd = run_cli("runs", sweep_dir, "--sort", "wd", check=True).stdout.splitlines()[3:]
    assert [line.split()[2] for line in by_wd] == ["0", "1e-3"]
    none = run_cli("runs", sweep_dir, "--status", "failed", check=True)
    assert none.stdout.splitlines()[0] == f"0 runs under {sweep_dir}"
    single = run_cli("runs", jobs(sweep_dir)[1], check=True).stdout.splitlines()  # wd=1e-3
    assert single[0] == f"1 run under {jobs(sweep_dir)[1]} (1 completed)"
    assert single[1] == "same in all: wd=1e-3 epochs=2 subset=1000 test_subset=500 device=cpu"


@pytest.mark.slow
def test_diff_shows_the_differing_keys_and_the_metrics_side_by_side(sweep_dir):
    first, second = jobs(sweep_dir)
    lines = run_cli("diff", first, second, check=True).stdout.splitlines()
    assert lines[:2] == [f"A: {first}", f"B: {second}"]
    config_rows = lines[lines.index("") + 1:lines.index("", 3)]
    assert [row.split() for row in config_rows] == [["config", "A", "B"],
                                                     ["optim.weight_decay", "0.0", "0.001"]]
    a, b = read_summary(first), read_summary(second)
    (steady,) = [line for line in lines if line.startswith("test acc (steady)")]
    change = b["steady"]["test_accuracy"] - a["steady"]["test_accuracy"]
    assert steady.split()[3:] == [f"{a['steady']['test_accuracy']:.4f}",
                                  f"{b['steady']['test_accuracy']:.4f}", f"{change:+.4f}"]
    assert any(line.split()[:3] == ["status", "completed", "completed"] for line in lines)
    ran_on = f"cpu, torch {a['device']['torch']}"  # the device actually used (trainer.device=cpu)
    assert any(line.split() == ["ran", "on", *ran_on.split(), *ran_on.split()] for line in lines)


@pytest.mark.slow
def test_diff_names_threads_as_changing_the_last_digits_and_paths_as_changing_nothing(sweep_dir,
                                                                                     tmp_path):
    first = jobs(sweep_dir)[0]
    other = tmp_path / "other"
    shutil.copytree(first, other)
    summary = read_summary(other)
    summary["config"]["trainer"]["num_threads"] = 2
    summary["config"]["data"]["dir"] = "/elsewhere"
    (other / "summary.json").write_text(json.dumps(summary))
    lines = run_cli("diff", first, other, check=True).stdout.splitlines()
    assert "config: the same settings" in lines
    assert "also differ (change only the last digits): trainer.num_threads 1 vs 2" in lines
    data_dir = read_summary(first)["config"]["data"]["dir"]  # null: the installed copy
    assert f"also differ (cannot change results): data.dir {data_dir or 'null'} vs /elsewhere" in lines


@pytest.fixture(scope="module")
def failing_sweep(tmp_path_factory):
    """Two seeds of a good setting, and two jobs that fail on their config (one hidden layer,
    the default two dropout probabilities): no config in their summaries."""
    sweep_dir = tmp_path_factory.mktemp("failing") / "sweep"
    result = run_cli("sweep", "--sweep-dir", sweep_dir, "model.hidden=[128],[256,256]", "seed=0,1",
                     *TINY)
    assert result.returncode == 1, result.stderr
    return sweep_dir


@pytest.mark.slow
def test_runs_without_a_config_are_described_by_their_overrides_and_error(failing_sweep):
    lines = run_cli("runs", failing_sweep, check=True).stdout.splitlines()
    assert lines[0] == f"4 runs under {failing_sweep} (2 failed, 2 completed)"
    # the one swept key: not the ~30 keys a run without a config lacks
    assert lines[2].split() == ["run", "status", "seed", "steady", "test", "acc", "best", "gap",
                                "epochs", "done", "time"]
    rows = [line.split() for line in lines[3:7]]
    failed = [row for row in rows if row[1] == "failed"]
    assert len(failed) == 2 and all(set(row[2:]) == {"-"} for row in failed)
    errors = lines[lines.index("errors:") + 1:]
    assert len(errors) == 2
    for line, row in zip(errors, failed):
        assert line.startswith(f"  {row[0]} [model.hidden=[128] seed=")  # its overrides
        assert "trainer.num_threads" not in line  # what cannot change results left out
        assert "model.dropout.p has 2 values but model.hidden has 1 layer" in line
    only = run_cli("runs", failing_sweep, "--status", "failed", check=True).stdout.splitlines()
    assert only[0] == f"2 runs under {failing_sweep} (2 failed)" and len(only) == 2 + 2 + 4
    rows = list(csv.DictReader(io.StringIO(run_cli("runs", failing_sweep, "--csv", check=True).stdout)))
    assert ["model.dropout.p has 2 values" in row["error"] for row in rows].count(True) == 2


@pytest.mark.slow
def test_by_setting_folds_the_seeds_into_mean_and_std(failing_sweep, sweep_dir):
    lines = run_cli("runs", failing_sweep, "--by-setting", check=True).stdout.splitlines()
    assert lines[0] == f"4 runs under {failing_sweep} (2 failed, 2 completed), 1 setting"
    assert lines[2].split() == ["seeds", "steady", "test", "acc", "best", "gap"]
    good = [read_summary(job) for job in jobs(failing_sweep) if read_summary(job).get("config")]
    steady = [summary["steady"]["test_accuracy"] for summary in good]
    cells = lines[3].split()
    assert cells[:4] == ["2/2", f"{statistics.fmean(steady):.4f}", "±",
                         f"{statistics.stdev(steady):.4f}"]  # sample std (n - 1)
    assert lines[lines.index("errors:") - 2:lines.index("errors:")] == [lines[3], ""]

    by_steady = run_cli("runs", sweep_dir, "--by-setting", "--sort", "steady", check=True)
    rows = by_steady.stdout.splitlines()[3:]
    finals = {read_summary(job)["config"]["optim"]["weight_decay"]:
              read_summary(job)["steady"]["test_accuracy"] for job in jobs(sweep_dir)}
    best_first = sorted(finals, key=finals.get, reverse=True)
    assert [row.split()[0] for row in rows] == ["0" if wd == 0 else "1e-3" for wd in best_first]
    assert all(row.split()[1] == "1/1" for row in rows)  # one seed each: the mean, no ±
    table = list(csv.DictReader(io.StringIO(
        run_cli("runs", sweep_dir, "--by-setting", "--csv", check=True).stdout)))
    assert [row["optim.weight_decay"] for row in table] == ["0.0", "0.001"]
    assert {float(row["steady_mean"]) for row in table} == set(finals.values())
    assert {row["steady_std"] for row in table} == {""}


@pytest.mark.slow
def test_a_validation_split_gets_its_column_and_diff_row(tiny_cli_run, sweep_dir):
    # The tiny run holds out data.validation=500; the sweep's runs hold out none.
    _, run_dir = tiny_cli_run
    lines = run_cli("runs", run_dir, check=True).stdout.splitlines()
    header, row = lines[-2].split(), lines[-1].split()
    steady = read_summary(run_dir)["steady"]
    assert header[header.index("steady"):header.index("steady") + 2] == ["steady", "val"]
    assert row[header.index("val")] == f"{steady['val_accuracy']:.4f}"
    diff = run_cli("diff", run_dir, jobs(sweep_dir)[0], check=True).stdout.splitlines()
    (val,) = [line for line in diff if line.startswith("val acc (steady)")]
    assert val.split()[3:] == [f"{steady['val_accuracy']:.4f}", "-"]
    alike = run_cli("diff", *jobs(sweep_dir), check=True).stdout
    assert "val acc" not in alike  # neither run has one


@pytest.mark.slow
def test_bad_paths_and_options_are_one_line_and_exit_2(sweep_dir, tmp_path):
    one_error_line(run_cli("runs", tmp_path / "nowhere"),
                   f"{tmp_path / 'nowhere'} is not a directory; give a run, sweep, exercise "
                   f"or outputs folder")
    one_error_line(run_cli("runs", tmp_path),
                   f"{tmp_path} holds no dropout-lab runs (no summary.json at or below it)")
    one_error_line(run_cli("runs", sweep_dir, "--status", "done"),
                   "--status has to be one of running, completed, diverged, failed, interrupted, stopped, "
                   "unreadable, unknown, not 'done'")
    one_error_line(run_cli("runs", sweep_dir, "--sort", "speed"),
                   "--sort has to be one of run, status, steady, val, test_acc, best, gap, "
                   "epochs_done, time, wd, not 'speed'")
    one_error_line(run_cli("runs", sweep_dir, "--by-setting", "--sort", "run"),
                   "--sort has to be one of steady, val, test_acc, best, gap, wd, not 'run'")
    one_error_line(run_cli("diff", jobs(sweep_dir)[0], tmp_path / "nowhere"),
                   f"{tmp_path / 'nowhere'} is not a dropout-lab run (it does not exist)")
    one_error_line(run_cli("diff", tmp_path, jobs(sweep_dir)[0]),
                   f"{tmp_path} is not a dropout-lab run (it has no summary.json)")


RUNS_IN_PROCESS = """
import json, sys
from typer.testing import CliRunner
from dropout_lab.cli import app
result = CliRunner().invoke(app, ["runs", sys.argv[1], "--sort", "test_acc"])
print(json.dumps({"code": result.exit_code,
                  "lines": len(result.output.splitlines()),
                  "imported": sorted(m for m in ("torch", "tensorboard", "hydra", "matplotlib")
                                     if m in sys.modules)}))
"""


@pytest.mark.slow
def test_status_filter_takes_every_status_a_row_can_show(sweep_dir, tmp_path):
    """A cut summary.json is listed as unreadable; --status unreadable finds it (and only it)."""
    copy = tmp_path / "copy"
    shutil.copytree(sweep_dir, copy)
    cut = jobs(copy)[0] / "summary.json"
    cut.write_text(cut.read_text()[:40])
    only = run_cli("runs", copy, "--status", "unreadable", check=True).stdout.splitlines()
    assert only[0] == f"1 run under {copy} (1 unreadable)"
    assert jobs(copy)[0].name in "\n".join(only[1:]) and jobs(copy)[1].name not in "\n".join(only)
    assert run_cli("runs", copy, "--status", "unknown", check=True).stdout.startswith("0 runs")


@pytest.mark.slow
def test_runs_lists_hundreds_of_runs_and_imports_no_torch(sweep_dir, tmp_path):
    """300 copies of a real job folder's summary (each with its own seed) under one folder. What
    keeps `runs` fast is that it reads summaries only: no torch, TensorBoard, Hydra or matplotlib
    (no timed assertion: these machines are too noisy for one)."""
    job = jobs(sweep_dir)[0]
    summary = read_summary(job)
    for seed in range(300):
        folder = tmp_path / "many" / f"{seed:03d}_seed={seed}"
        folder.mkdir(parents=True)
        (folder / "summary.json").write_text(json.dumps(
            {**summary, "config": {**summary["config"], "seed": seed}}))
    result = subprocess.run([sys.executable, "-c", RUNS_IN_PROCESS, str(tmp_path / "many")],
                            capture_output=True, text=True, cwd=REPO, timeout=120, check=True)
    report = json.loads(result.stdout)
    assert report["code"] == 0 and report["lines"] == 2 + 1 + 300  # title, same in all, header
    assert report["imported"] == []  # no torch, TensorBoard, Hydra or matplotlib
