"""Shared helpers and runs: the CLI in-process (``invoke``) and in a real subprocess (``run_cli``,
``start_cli``), tiny budgets, TensorBoard readers, a skip that fails in CI, and the two small real
training runs several modules read (session fixtures, trained once per session).

No test module imports another: what two modules share lives here.
"""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# A budget small enough for the suite: a data subset, 2 epochs, one thread, no progress bar, on
# the CPU (the suite's figures and timings assume it; tests/end_to_end/test_cuda.py is the GPU's).
TINY = [
    "data.subset=1000",
    "data.test_subset=500",
    "trainer.epochs=2",
    "trainer.progress=false",
    "trainer.num_threads=1",
    "trainer.device=cpu",
]

# The reference run of the reliability tests: epochs long enough (10,000 images, ~0.25 s each on
# one core) that a signal sent after epoch 2 lands while epochs 3-5 are still to run; Adam, so
# that the optimiser has state to restore.
EPOCHS = 5
BUDGET = ["data.subset=10000", "data.test_subset=1000", f"trainer.epochs={EPOCHS}",
          "trainer.progress=false", "trainer.num_threads=1", "optim=adam", "trainer.device=cpu"]


# --- the CLI ------------------------------------------------------------------------------------

def invoke(*args, env=None):
    """``dropout-lab ARGS`` in this process (typer's CliRunner on ``dropout_lab.cli.app``): the
    result has ``exit_code``, ``stdout``, ``stderr`` (separate) and ``exception`` (a SystemExit
    for an ordinary exit; anything else escaped the command). ``env`` entries set to None are
    removed for the call; HYDRA_FULL_ERROR is removed unless given."""
    import logging

    from typer.testing import CliRunner

    from dropout_lab.cli import app

    env = {"HYDRA_FULL_ERROR": None, **(env or {})}
    # A command that gets as far as Hydra's run configures the root logger, with a handler on
    # the runner's stdout (closed after the call) and one on the run's log file: put it back.
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        return CliRunner().invoke(app, [str(arg) for arg in args], env=env,
                                  prog_name="dropout-lab")
    finally:
        for handler in root.handlers[:]:
            if handler not in handlers:
                root.removeHandler(handler)
                handler.close()
        for handler in handlers:
            if handler not in root.handlers:
                root.addHandler(handler)
        root.setLevel(level)


def cli_env(env=None) -> dict:
    """The environment for a CLI subprocess: ours without HYDRA_FULL_ERROR, plus ``env``."""
    return {**{k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}, **(env or {})}


def run_cli(*args, env=None, cwd=None, timeout=600, check=False) -> subprocess.CompletedProcess:
    """``dropout-lab ARGS`` in a real subprocess; returns the completed process (text output)."""
    result = subprocess.run(
        [sys.executable, "-m", "dropout_lab", *map(str, args)],
        capture_output=True, text=True, env=cli_env(env), cwd=cwd or REPO, timeout=timeout,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"dropout-lab {' '.join(map(str, args))} exited {result.returncode}:\n"
                             f"{result.stdout}\n{result.stderr}")
    return result


def start_cli(*args, **popen_args) -> subprocess.Popen:
    """``dropout-lab ARGS`` started in a real subprocess (pipes for stdout and stderr)."""
    return subprocess.Popen([sys.executable, "-m", "dropout_lab", *map(str, args)], cwd=REPO,
                            env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **popen_args)


def job_dir(sweep_dir: Path, num: int, timeout: float = 120) -> Path:
    """The folder of job ``num`` (``NNN_...``), once Hydra has made it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = list(Path(sweep_dir).glob(f"{num:03d}_*"))
        if found:
            return found[0]
        time.sleep(0.05)
    raise AssertionError(f"no folder for job {num} in {sweep_dir} after {timeout:.0f} s")


def wait_for_epoch(process: subprocess.Popen, run_dir: Path, epoch: int, timeout: float = 300):
    """Poll summary.json (written right after each epoch's checkpoint) until ``epoch`` is done."""
    from dropout_lab.errors import RunError
    from dropout_lab.run_folder import read_summary

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"training ended early:\n{process.communicate()[1]}"
        try:
            if read_summary(run_dir)["epochs_done"] >= epoch:
                return
        except RunError:  # not written yet
            pass
        time.sleep(0.02)
    process.kill()
    raise AssertionError(f"epoch {epoch} not done within {timeout} s")


def one_error_line(stderr: str) -> str:
    """The one ``error: ...`` line a failed command prints; fails on anything else (a traceback,
    a second line, nothing)."""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert "Traceback" not in stderr
    return lines[0]


# --- run folders --------------------------------------------------------------------------------

def results(history: list) -> list:
    """A history without the wall times, which differ from run to run."""
    return [{k: v for k, v in row.items() if k != "epoch_seconds"} for row in history]


def logged_tags(summary: dict) -> list:
    """The EPOCH_TAGS of the metrics a run's history holds (val_*: only with data.validation)."""
    from dropout_lab.run_log import EPOCH_TAGS

    return [tag for key, tag in EPOCH_TAGS.items() if key in summary["history"][0]]


def read_events(run_dir: Path):
    """A loaded EventAccumulator over the run folder's event files."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "tensors": 0})
    accumulator.Reload()
    return accumulator


def read_hparams(accumulator) -> dict:
    """The hparams (name -> value) a run logged for TensorBoard's HParams plugin."""
    from tensorboard.plugins.hparams import metadata, plugin_data_pb2

    content = accumulator.PluginTagToContent(metadata.PLUGIN_NAME)[metadata.SESSION_START_INFO_TAG]
    info = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
    return {name: getattr(value, value.WhichOneof("kind")) for name, value in info.hparams.items()}


def assert_same_tensors(mine, theirs):
    """Nested dicts/lists of tensors and plain values (checkpoint contents), equal bit for bit."""
    import torch

    if isinstance(mine, torch.Tensor):
        assert torch.equal(mine, theirs)
    elif isinstance(mine, dict):
        assert mine.keys() == theirs.keys()
        for key in mine:
            assert_same_tensors(mine[key], theirs[key])
    elif isinstance(mine, (list, tuple)):
        assert len(mine) == len(theirs)
        for a, b in zip(mine, theirs):
            assert_same_tensors(a, b)
    else:
        assert mine == theirs


# --- capabilities -------------------------------------------------------------------------------

def skip_or_fail_in_ci(reason: str):
    """Skip the test, saying why; in CI (CI=true), where every capability the suite needs is
    provided, fail instead: a skipped case there would pass unnoticed."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"required in CI, but: {reason}")
    pytest.skip(reason)


def can_mount_tmpfs() -> bool:
    """Root with CAP_SYS_ADMIN in a private mount namespace (so nothing leaks out of the test)."""
    if not shutil.which("unshare") or os.geteuid() != 0:
        return False
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
                           capture_output=True)
    return probe.returncode == 0


# --- the shared real runs -----------------------------------------------------------------------

@pytest.fixture(scope="session")
def tiny_cli_run(tmp_path_factory):
    """One tiny `dropout-lab train` (TINY, dropout p = [0.3, 0.4], a validation split so that
    every epoch tag is logged) in a real subprocess, into a run folder of our choosing:
    (completed process, run folder). Read it, never write into it (copy it first, as
    ``tiny_cli_run_copy`` does)."""
    run_dir = tmp_path_factory.mktemp("tiny-cli") / "run"
    result = run_cli("train", *TINY, "model.dropout.p=[0.3,0.4]", "data.validation=500",
                     f"hydra.run.dir={run_dir}", check=True)
    return result, run_dir


@pytest.fixture
def tiny_cli_run_copy(tiny_cli_run, tmp_path) -> Path:
    """A private copy of the tiny run, free to write into."""
    return Path(shutil.copytree(tiny_cli_run[1], tmp_path / "tiny-run"))


@pytest.fixture(scope="session")
def reference_run(tmp_path_factory) -> Path:
    """The reliability tests' reference: BUDGET (seed 0), trained to the end in one real process,
    never interrupted. Read it, never write into it (copy it first, as ``reference_copy`` does)."""
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    run_cli("train", *BUDGET, f"hydra.run.dir={run_dir}", check=True)
    return run_dir


@pytest.fixture
def reference_copy(reference_run, tmp_path) -> Path:
    """A private copy of the completed reference run, to tamper with."""
    return Path(shutil.copytree(reference_run, tmp_path / "run"))


# --- Markdown -----------------------------------------------------------------------------------

def markdown_tables(text: str) -> list:
    """Each GitHub-flavoured Markdown table of ``text`` as its rows' cell counts, header first,
    read by a real parser (markdown-it-py's GFM tables); fails when a table line ('| ...') is
    not part of a parsed table (a broken table renders as paragraphs of pipes) or when a row's
    cell count differs from the header's (GFM would drop or pad cells without a word)."""
    import re

    from markdown_it import MarkdownIt

    lines = text.splitlines()
    tokens = MarkdownIt("commonmark").enable("table").parse(text)
    tables, in_tables = [], set()
    for token in tokens:
        if token.type == "table_open":
            start, end = token.map
            rows = [lines[i] for i in range(start, end) if i != start + 1]  # not the ---|--- line
            counts = [len(re.split(r"(?<!\\)\|", row.strip().strip("|"))) for row in rows]
            assert len(set(counts)) == 1, (counts, rows)
            in_tables.update(range(start, end))
            tables.append(counts)
    headers = [t for t in tokens if t.type == "th_open"]
    assert sum(counts[0] for counts in tables) == len(headers)  # the parser saw every header cell
    stray = [line for i, line in enumerate(lines) if line.startswith("|") and i not in in_tables]
    assert not stray, f"table lines outside any table: {stray}"
    return tables
