"""What a person reads: no library warnings or tracebacks in normal runs, live bars on a
terminal, a few plain lines when the output goes to a file or a pipe (subprocess pipes here)."""

import io
import json
import os
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, run_cli
from dropout_lab.progress import Progress, describe_jobs, duration

# TINY (conftest) with the progress display left on: the thing under test.
BUDGET = ["data.subset=1000", "data.test_subset=500", "trainer.epochs=2", "trainer.num_threads=1"]
EPOCH_LINE = re.compile(r"^epoch (\d+)/(\d+): train loss ([\d.]+), train acc ([\d.]+), "
                        r"(?:val acc (?P<val>[\d.]+), )?test acc (?P<test>[\d.]+) \([\d.]+ s\)$",
                        re.M)
JOBS_LINE = re.compile(r"^sweep: (\d+)/(\d+) jobs ended( \(.*\))?, .* elapsed$")
NOISE = re.compile(r"Warning|warnings\.warn|leaked|Traceback")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


# --- the Progress object ----------------------------------------------------------------------

def test_lines_where_no_terminal():
    out = io.StringIO()
    progress = Progress(10, unit="batch", stream=out)
    progress.update(3)
    progress.set_postfix(loss="0.5")
    assert out.getvalue() == ""  # no bar fragments
    progress.tell("epoch 1/2: ...")
    progress.tell("heartbeat", every=30)  # a line just went out: too soon
    progress.close()
    assert out.getvalue() == "epoch 1/2: ...\n" and progress.n == 3


def test_heartbeat_counts_from_the_start():
    out = io.StringIO()
    progress = Progress(unit="job", stream=out)
    progress.tell("still running", every=30)
    assert out.getvalue() == ""
    progress.last_line -= 31  # as if 31 s had passed
    progress.tell("still running", every=30)
    assert out.getvalue() == "still running\n"


def test_bar_on_a_terminal_and_no_lines():
    out = Terminal()
    progress = Progress(10, unit="batch", stream=out)
    progress.update(5)
    progress.tell("sweep: 1/2 ...")
    progress.set_count(7)
    progress.close()
    assert "\r" in out.getvalue() and "7/10" in out.getvalue()
    assert "sweep: 1/2" not in out.getvalue()


def test_a_note_stays_above_the_bar():
    """note(): on a terminal a line written above the bar (the bar redrawn below it), and kept
    when a bar that does not stay (leave=False) is cleared; elsewhere a plain line."""
    out = Terminal()
    progress = Progress(10, unit="batch", stream=out, leave=False)
    progress.update(5)
    progress.note("epoch 1/2: kept")
    progress.update(5)
    progress.close()
    screen = out.getvalue()
    assert "epoch 1/2: kept\n" in screen and screen.index("epoch 1/2") < screen.rindex("5/10")  # redrawn below
    plain = io.StringIO()
    Progress(10, unit="batch", stream=plain).note("epoch 1/2: kept")
    assert plain.getvalue() == "epoch 1/2: kept\n"


def test_a_bar_started_earlier_shows_elapsed_time_and_no_rate():
    """A sweep's bar counts from the launch, not from when it is first drawn; a rate over a
    few jobs that ended together (4 jobs in 1 s after 12 s of start-up) would mislead."""
    out = Terminal()
    progress = Progress(4, unit="job", desc="sweep", stream=out, started=time.time() - 75)
    progress.set_count(4)
    progress.close()
    last = out.getvalue().split("\r")[-1]
    assert "4/4 jobs [01:15 elapsed]" in last, last
    assert "/s" not in out.getvalue() and "<" not in out.getvalue()


def test_plain_wording():
    assert describe_jobs(5, 12, {"failed": 1, "diverged": 0}, 130) == \
        "sweep: 5/12 jobs ended (1 failed), 2 min elapsed"
    assert describe_jobs(1, None, {}, 4) == "sweep: 1 job ended, 4 s elapsed"
    assert [duration(s) for s in (0.4, 59, 61, 3600 + 300)] == ["0 s", "59 s", "1 min", "1 h 5 min"]


# --- the commands, redirected -------------------------------------------------------------------

@pytest.mark.parametrize("validation", [
    pytest.param([], id="plain"),
    pytest.param(["data.validation=500"], id="val", marks=pytest.mark.slow),
])
def test_redirected_train_writes_a_line_per_epoch(tmp_path, validation):
    run_dir = tmp_path / "run"
    result = run_cli("train", *BUDGET, *validation, f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    assert "\r" not in output
    first, *rest = result.stderr.splitlines()
    assert first == f"starting {run_dir} (loading torch and the data)"  # before the seconds of it
    epoch_lines = [EPOCH_LINE.match(line) for line in rest]
    assert all(epoch_lines) and [int(m[1]) for m in epoch_lines] == [1, 2], result.stderr
    assert len(result.stdout.splitlines()) == 4  # completed..., note: (2 epochs), run:, view:
    history = json.loads((run_dir / "summary.json").read_text())["history"]
    for match, epoch in zip(epoch_lines, history):  # the figures a bar would show, all there
        assert float(match[3]) == pytest.approx(epoch["train_loss"], abs=1e-4)
        assert float(match[4]) == pytest.approx(epoch["train_accuracy"], abs=1e-3)
        assert float(match["test"]) == pytest.approx(epoch["test_accuracy"], abs=1e-3)
        if validation:
            assert float(match["val"]) == pytest.approx(epoch["val_accuracy"], abs=1e-3)
        else:
            assert match["val"] is None and "val_accuracy" not in epoch


@pytest.mark.slow
def test_redirected_sweep_writes_a_line_per_ended_job(tmp_path):
    started = time.monotonic()
    result = run_cli("sweep", "seed=0,1", *BUDGET, "--jobs", "2", "--sweep-dir", tmp_path / "sweep")
    assert result.returncode == 0, result.stderr
    assert "\r" not in result.stdout + result.stderr
    lines = result.stderr.splitlines()
    counts = [int(JOBS_LINE.match(line)[1]) for line in lines]  # no other line on stderr
    heartbeats = (time.monotonic() - started) // 30
    assert counts[-1] == 2 and len(counts) <= 2 + heartbeats, result.stderr
    assert counts == sorted(counts)


@pytest.mark.slow
def test_exercises_end_without_warnings_or_leftovers(tmp_path):
    """Two exercises, two joblib sweeps in one process: loky's resource tracker used to warn of
    'leaked folder objects' here, because the exit skipped joblib's exit handlers."""
    command = [sys.executable, "-m", "dropout_lab", "exercise", "3,4", "--quick", "--jobs", "2",
               "--out", str(tmp_path / "out")]
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    with subprocess.Popen(command, cwd=REPO, env=env, text=True, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE) as process:
        # until the resource tracker, which shares stderr, has exited too
        stdout, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr
    assert not NOISE.search(stdout + stderr), stderr
    assert "\r" not in stderr
    # joblib names its folders after the process that made them (other users' runs may be here)
    assert not list(Path("/dev/shm").glob(f"joblib_memmapping_folder_{process.pid}_*"))


# --- a terminal ----------------------------------------------------------------------------------

def run_in_terminal(*args, timeout: float = 300) -> str:
    """``dropout-lab ARGS`` with stdout and stderr on a pseudo-terminal (100 columns): what a
    person at a terminal sees, carriage returns included."""
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    process = subprocess.Popen([sys.executable, "-m", "dropout_lab", *map(str, args)],
                               stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, cwd=REPO)
    os.close(slave)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while select.select([master], [], [], max(0.0, deadline - time.monotonic()))[0]:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every writer has closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        process.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        process.kill()
        os.close(master)
    return b"".join(chunks).decode(errors="replace")


def screen_lines(output: str) -> list:
    """The lines a terminal keeps of ``output``: each line's text after its last carriage
    return, with tqdm's clearing of the bar (ESC[A, ESC[K) applied."""
    lines = []
    for line in output.replace("\r\n", "\n").split("\n"):
        kept = re.sub(r"\x1b\[[0-9]*[AK]", "", line.split("\r")[-1])
        if kept.strip():
            lines.append(kept)
    return lines


def test_train_on_a_terminal_keeps_a_line_per_epoch(tmp_path):
    """A live bar while it trains; a first line before torch and the data load; each epoch's
    line written above the bar, so it stays on screen after the bar is cleared."""
    run_dir = tmp_path / "run"
    output = run_in_terminal("train", *BUDGET, f"hydra.run.dir={run_dir}")
    assert "completed:" in output, output
    assert "\r" in output and re.search(r"\d+/8 \[", output), output  # 2 epochs of 4 batches
    screen = screen_lines(output)
    assert screen[0] == f"starting {run_dir} (loading torch and the data)", screen
    epochs = [EPOCH_LINE.match(line) for line in screen[1:3]]
    assert all(epochs) and [int(m[1]) for m in epochs] == [1, 2], screen
    assert screen[3].startswith("completed:") and screen[-1] == f"view: dropout-lab tensorboard {run_dir}"
    assert not NOISE.search(output)


# --- the closing lines ---------------------------------------------------------------------------

def closing(status, epochs: int, run_dir: Path, **fields) -> list:
    from dropout_lab.messages import describe_run
    from dropout_lab.train import RunResult

    history = [{"epoch": e, "train_loss": 0.5, "train_accuracy": 0.8, "test_accuracy": 0.8}
               for e in range(1, epochs + 1)]
    return describe_run(RunResult(status, run_dir, history, **fields)).splitlines()


def test_closing_lines_name_the_next_command(tmp_path, monkeypatch):
    """view: the venv's dropout-lab; a stopped run: its --resume; a resume of a complete run:
    not 'completed' as if it trained; paths relative to the working directory under it."""
    monkeypatch.chdir(tmp_path)
    run_dir = tmp_path / "outputs" / "run"
    done = closing("completed", 5, run_dir)
    assert done[0].startswith("completed: ") and len(done) == 3
    assert done[1:] == ["run: outputs/run", "view: dropout-lab tensorboard outputs/run"]
    stopped = closing("interrupted", 5, run_dir, error="stopped by SIGINT after epoch 5")
    assert stopped[-1] == "resume: dropout-lab train --resume outputs/run"
    again = closing("completed", 5, run_dir, trained=False)
    assert again[0].startswith("already complete, nothing trained: ")
    assert again[-1] == "to train longer: dropout-lab train --resume outputs/run trainer.epochs=N"
    elsewhere = closing("completed", 5, Path("/elsewhere/run"))
    assert elsewhere[1] == "run: /elsewhere/run"


@pytest.mark.parametrize("epochs, window, noted", [(2, 3, True), (3, 3, True), (4, 3, False),
                                                   (3, 2, False)])
def test_a_steady_window_reaching_epoch_1_is_noted_once(tmp_path, epochs, window, noted):
    lines = closing("completed", epochs, tmp_path, steady_epochs=window)
    notes = [line for line in lines if line.startswith("note: ")]
    assert notes == ([f"note: {epochs} epochs <= trainer.steady_epochs={window}: the steady mean "
                      f"includes epoch 1; train longer or lower trainer.steady_epochs to compare "
                      f"where runs end"] if noted else [])


def test_a_sweep_of_short_runs_says_so_once(tmp_path):
    from dropout_lab.messages import describe_sweep
    from dropout_lab.run_folder import RunRecord
    from dropout_lab.sweep.run import SweepResult

    def run(epochs: int) -> RunRecord:
        return RunRecord(tmp_path, "completed", epochs_done=epochs,
                         config={"trainer": {"steady_epochs": 3}})

    short = describe_sweep(SweepResult(tmp_path, [run(2), run(2), run(5)], [], [])).splitlines()
    assert short[1] == ("note: 2 of 3 runs trained no more epochs than trainer.steady_epochs: "
                        "the steady mean the report ranks by includes epoch 1")
    long = describe_sweep(SweepResult(tmp_path, [run(5)], [], [])).splitlines()
    assert not any(line.startswith("note:") for line in long)


@pytest.mark.slow
def test_sweep_on_a_terminal_counts_from_the_launch(tmp_path):
    """The jobs' bar on a terminal: the count and the time since the launch (the format
    Progress gives a bar with a start time), no rate (it used to read '2/2 [00:01<00:00,
    1.9job/s]' for a sweep of many seconds)."""
    output = run_in_terminal("sweep", "seed=0,1", *BUDGET, "--jobs", "2",
                             "--sweep-dir", tmp_path / "sweep")
    assert "sweep: 2 of 2 jobs completed" in output, output
    assert re.search(r"sweep: 100%\|.*\| 2/2 jobs \[\d\d:\d\d elapsed\]", output), output
    assert "job/s" not in output and "s/job" not in output
