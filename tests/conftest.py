"""Shared helpers: run the real CLI in a subprocess, tiny budgets, read TensorBoard files."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# A budget small enough for the suite: a data subset, 2 epochs, one thread, no progress bar.
TINY = [
    "data.subset=1000",
    "data.test_subset=500",
    "trainer.epochs=2",
    "trainer.progress=false",
    "trainer.num_threads=1",
]


def run_cli(*args, env=None, cwd=None, timeout=600, check=False) -> subprocess.CompletedProcess:
    """``dropout-lab ARGS`` in a real subprocess; returns the completed process (text output)."""
    full_env = {**os.environ, **(env or {})}
    full_env.pop("HYDRA_FULL_ERROR", None) if env is None or "HYDRA_FULL_ERROR" not in env else None
    result = subprocess.run(
        [sys.executable, "-m", "dropout_lab", *map(str, args)],
        capture_output=True, text=True, env=full_env, cwd=cwd or REPO, timeout=timeout,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"dropout-lab {' '.join(map(str, args))} exited {result.returncode}:\n"
                             f"{result.stdout}\n{result.stderr}")
    return result


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


@pytest.fixture
def run_dir(tmp_path) -> Path:
    return tmp_path / "run"
