"""Interrupted and failing runs, with real processes: killed and resumed training, refused
resumes (of conftest's reference run, checked in-process), unwritable folders, a full disk, and
the dataset cache under concurrent and corrupt use.
"""

import hashlib
import os
import pickle
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import (BUDGET, EPOCHS, REPO, assert_same_tensors, can_mount_tmpfs, cli_env,
                      invoke, logged_tags, one_error_line, read_events, read_hparams, results,
                      run_cli, skip_or_fail_in_ci, start_cli, wait_for_epoch)
from dropout_lab.config import DataConfig
from dropout_lab.data import _checksum, cache_path, load_raw, read_cache
from dropout_lab.run_folder import read_summary
from dropout_lab.checkpoint import read_checkpoint
from dropout_lab.run_log import EPOCH_TAGS

# Every test here starts real processes or trains (the reference run is conftest's BUDGET run).
pytestmark = pytest.mark.slow

SMALL = ["data.subset=1000", "data.test_subset=500", "trainer.progress=false",
         "trainer.num_threads=1"]


def snapshot(folder: Path) -> dict:
    """Every file under ``folder`` with the hash of its bytes."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def temp_files(folder: Path) -> list:
    return sorted(p.name for p in folder.rglob("*.tmp"))


# --- killed and resumed --------------------------------------------------------------------------

def test_second_process_is_refused_and_ctrl_c_stops_at_a_checkpoint(tmp_path):
    run_dir = tmp_path / "run"
    # Many epochs: it has to outlast the second process below; Ctrl-C ends it.
    process = start_cli("train", *BUDGET, "trainer.epochs=1000", f"hydra.run.dir={run_dir}")
    wait_for_epoch(process, run_dir, 2)
    hydra_files = snapshot(run_dir / ".hydra")
    second = run_cli("train", "--resume", run_dir)  # while the first one trains there
    assert process.poll() is None, "the first run ended before the second one started"
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)

    assert second.returncode == 1
    assert "is in use by another dropout-lab process" in one_error_line(second.stderr)
    assert snapshot(run_dir / ".hydra") == hydra_files  # refused before Hydra wrote there
    assert process.returncode == 130 and "Traceback" not in stderr
    assert stdout.startswith("interrupted: ") and "stopped by SIGINT" in stdout
    assert stdout.splitlines()[-1] == f"resume: dropout-lab train --resume {run_dir}"
    stopped = read_summary(run_dir)
    assert stopped["status"] == "interrupted" and 2 <= stopped["epochs_done"] < 1000
    assert read_checkpoint(run_dir).epoch == stopped["epochs_done"]
    # Resuming from here is the SIGTERM case below: the same handler, the same checkpoint.


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGKILL, -signal.SIGKILL)])
def test_killed_run_resumes_to_exactly_the_same_metrics_and_weights(reference_run, tmp_path, sig,
                                                                     code):
    run_dir = tmp_path / "run"
    process = start_cli("train", *BUDGET, f"hydra.run.dir={run_dir}")
    wait_for_epoch(process, run_dir, 2)
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == code, stderr
    assert "Traceback" not in stderr
    stopped = read_summary(run_dir)
    # SIGKILL leaves no chance to write anything: the summary still says running.
    assert stopped["status"] == ("running" if sig == signal.SIGKILL else "interrupted")
    assert 2 <= stopped["epochs_done"] < EPOCHS
    assert read_checkpoint(run_dir).epoch >= stopped["epochs_done"]
    assert temp_files(run_dir) == []
    if sig == signal.SIGKILL:  # also what a kill between an epoch's events and its checkpoint
        add_orphan_epoch(run_dir, read_checkpoint(run_dir).epoch + 1)  # would leave

    resumed = run_cli("train", "--resume", run_dir, check=True)
    assert resumed.stdout.startswith("completed:")
    summary, reference = read_summary(run_dir), read_summary(reference_run)
    assert summary["status"] == "completed" and summary["epochs_done"] == EPOCHS
    assert results(summary["history"]) == results(reference["history"])  # exactly equal
    mine, theirs = read_checkpoint(run_dir), read_checkpoint(reference_run)
    for part in ("model", "optimizer"):
        assert_same_tensors(getattr(mine, part), getattr(theirs, part))
    assert torch.equal(mine.rng["torch"], theirs.rng["torch"])

    events, reference_events = read_events(run_dir), read_events(reference_run)
    for tag in logged_tags(reference):  # every epoch once, in order, after the resume
        assert [point.step for point in events.Scalars(tag)] == list(range(1, EPOCHS + 1)), tag
    for tag in ("loss/train", "loss/test", "accuracy/train", "accuracy/test", "accuracy/gap"):
        assert ([p.value for p in events.Scalars(tag)]
                == [p.value for p in reference_events.Scalars(tag)])
    assert [p.step for p in events.Scalars("best/accuracy_test")] == [EPOCHS]
    assert read_hparams(events)["status"] == "completed"  # not the interrupted attempt's


# A run with a learning-rate schedule (warm-up, then cosine, stepped every step), momentum and
# a validation split: interrupted after epoch 2, it has to pick up the schedule where it was.
SCHEDULED = ["data.subset=10000", "data.test_subset=1000", "data.validation=1000",
             f"trainer.epochs={EPOCHS}", "trainer.progress=false", "trainer.num_threads=1",
             "optim.lr=0.1", "optim.momentum=0.9", "optim.schedule.name=cosine",
             "optim.schedule.warmup_epochs=1.5"]


def test_interrupted_scheduled_run_resumes_to_exactly_the_same_schedule_and_weights(tmp_path):
    left_alone, run_dir = tmp_path / "alone", tmp_path / "run"
    run_cli("train", *SCHEDULED, f"hydra.run.dir={left_alone}", check=True)
    process = start_cli("train", *SCHEDULED, f"hydra.run.dir={run_dir}")
    wait_for_epoch(process, run_dir, 2)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 143, stderr
    assert 2 <= read_summary(run_dir)["epochs_done"] < EPOCHS

    run_cli("train", "--resume", run_dir, check=True)
    summary, reference = read_summary(run_dir), read_summary(left_alone)
    assert summary["status"] == "completed" and summary["epochs_done"] == EPOCHS
    assert results(summary["history"]) == results(reference["history"])  # lr and val_* too
    assert len({row["lr"] for row in summary["history"]}) == EPOCHS  # the rate did change
    mine, theirs = read_checkpoint(run_dir), read_checkpoint(left_alone)
    for part in ("model", "optimizer", "scheduler"):
        assert_same_tensors(getattr(mine, part), getattr(theirs, part))
    events = read_events(run_dir)
    assert [p.value for p in events.Scalars("optim/lr")] == \
        [p.value for p in read_events(left_alone).Scalars("optim/lr")]


def add_orphan_epoch(run_dir: Path, epoch: int):
    """Events for an epoch past the last checkpoint (bogus values), as a killed run leaves them
    when it dies after logging the epoch and before saving it; the resume redoes that epoch."""
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(run_dir))
    for tag in EPOCH_TAGS.values():
        writer.add_scalar(tag, 999.0, epoch)
    writer.close()


# --- resumes that are refused --------------------------------------------------------------------

def test_resume_with_other_hidden_sizes_is_refused_before_touching_the_run(reference_copy):
    before = snapshot(reference_copy)
    result = invoke("train", "--resume", reference_copy, "model.hidden=[64,64]")
    assert result.exit_code == 2
    line = one_error_line(result.stderr)
    assert "model.hidden=[64, 64]" in line and "[256, 256]" in line
    assert snapshot(reference_copy) == before  # not even .hydra/ was rewritten


class RunsCode:
    """A pickle payload: unpickling it calls os.system (were it allowed to)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_checkpoint_that_would_run_code_is_refused_not_executed(reference_copy, tmp_path):
    marker = tmp_path / "code-ran"
    checkpoint = torch.load(reference_copy / "checkpoint.pt", weights_only=True)
    checkpoint["model"] = RunsCode(marker)
    torch.save(checkpoint, reference_copy / "checkpoint.pt")
    with pytest.raises(pickle.UnpicklingError):  # sanity: weights_only refuses it in-process too
        torch.load(reference_copy / "checkpoint.pt", weights_only=True)
    assert not marker.exists()

    # In this process: a payload that ran would touch the marker here just as in a subprocess.
    result = invoke("train", "--resume", reference_copy)
    assert result.exit_code == 1
    assert "checkpoint.pt cannot be read" in one_error_line(result.stderr)
    assert not marker.exists()


# --- unwritable folders and a full disk ----------------------------------------------------------

TMPFS_WORKS = can_mount_tmpfs()


@pytest.fixture
def tmpfs():
    """These tests mount a tmpfs of their own: root and unshare -m (CI has both)."""
    if not TMPFS_WORKS:
        skip_or_fail_in_ci("mounting a tmpfs needs root and unshare -m")


def run_on_tmpfs(mount: Path, options: str, copy_to: Path, *args) -> subprocess.CompletedProcess:
    """``dropout-lab ARGS`` with a tmpfs (``options``) at ``mount``, in a private mount namespace;
    afterwards the tmpfs' contents are copied to ``copy_to`` (the mount ends with the process)."""
    return in_tmpfs(mount, options, f"{cli_command(*args)}; code=$?; cp -a {mount} {copy_to}; exit $code")


def cli_command(*args) -> str:
    return " ".join(map(str, [sys.executable, "-m", "dropout_lab", *args]))


def in_tmpfs(mount: Path, options: str, script: str) -> subprocess.CompletedProcess:
    """The shell ``script`` with a tmpfs (``options``) at ``mount``, in a private mount namespace."""
    mount.mkdir(parents=True, exist_ok=True)
    script = f"mount -t tmpfs -o {options} tmpfs {mount} || exit 99; {script}"
    return subprocess.run(["unshare", "-m", "sh", "-c", script], cwd=REPO, env=cli_env(),
                          capture_output=True, text=True, timeout=600)


def test_read_only_run_folder_is_one_line(tmpfs, tmp_path):
    result = run_on_tmpfs(tmp_path / "ro", "ro,size=1m", tmp_path / "after", "train", *SMALL,
                          f"hydra.run.dir={tmp_path / 'ro' / 'run'}")
    assert result.returncode == 1
    assert "Read-only file system" in one_error_line(result.stderr)


def test_disk_full_during_training_keeps_the_last_whole_checkpoint(tmpfs, tmp_path):
    # 1.5 MB holds one checkpoint (0.95 MB) and the small files, not a second one beside it:
    # the atomic write of epoch 2's checkpoint runs out of space.
    run_dir = tmp_path / "disk" / "run"
    result = run_on_tmpfs(tmp_path / "disk", "size=1500k", tmp_path / "after", "train", *SMALL,
                          "trainer.epochs=3", f"hydra.run.dir={run_dir}")
    assert result.returncode == 1
    assert "checkpoint.pt: No space left on device" in one_error_line(result.stderr)
    kept = tmp_path / "after" / "run"
    assert read_checkpoint(kept).epoch == 1  # the previous checkpoint, whole
    summary = read_summary(kept)
    assert summary["status"] == "failed" and "No space left" in summary["error"]
    assert summary["epochs_done"] == 2  # epoch 2 finished; only its checkpoint was not saved
    assert temp_files(kept) == []
    # On a disk with room (the copy), the run goes on from its last checkpoint.
    run_cli("train", "--resume", kept, check=True)
    assert read_summary(kept)["status"] == "completed"
    assert [row["epoch"] for row in read_summary(kept)["history"]] == [1, 2, 3]


def test_sweep_on_a_full_disk_stops_jobs_and_the_same_command_resumes_them(tmpfs, tmp_path):
    """Three jobs on a 2.5 MB filesystem (room for about two checkpoints): the first completes,
    the others run out of space while writing a checkpoint (the one before stays whole) and are
    recorded as stopped, not failed. With room made (the filesystem grown), the same command
    resumes them from their checkpoints, to the numbers of the same run left alone."""
    disk, after, again = tmp_path / "disk", tmp_path / "after", tmp_path / "again"
    sweep = cli_command("sweep", "--sweep-dir", disk / "sweep", *SMALL, "trainer.epochs=3", "seed=0,1,2")
    result = in_tmpfs(disk, "size=2500k", (
        f"{sweep} > {tmp_path}/first.out 2> {tmp_path}/first.err; echo $? > {tmp_path}/first.code; "
        f"cp -a {disk} {after}; mount -o remount,size=50m {disk} && {sweep}; code=$?; "
        f"cp -a {disk} {again}; exit $code"))
    first_err = (tmp_path / "first.err").read_text()
    assert (tmp_path / "first.code").read_text().strip() == "1", first_err
    assert "Traceback" not in first_err
    statuses = [read_summary(job)["status"] for job in sorted((after / "sweep").glob("00*"))]
    assert statuses[0] == "completed" and "stopped" in statuses and "failed" not in statuses
    stopped = read_summary(next((after / "sweep").glob("001_*")))
    assert stopped["status"] == "stopped"
    assert stopped["error"].startswith("ran out of disk space (cannot write ")
    assert "No space left on device" in stopped["error"]
    kept = read_checkpoint(next((after / "sweep").glob("001_*"))).history
    assert len(kept) >= 1

    assert result.returncode == 0, result.stderr
    assert "sweep: 3 of 3 jobs completed" in result.stdout
    assert "completed before, skipped" in result.stdout + result.stderr
    resumed = read_summary(next((again / "sweep").glob("001_*")))
    assert resumed["status"] == "completed"
    assert resumed["history"][:len(kept)] == kept  # resumed from its checkpoint, not redone
    alone = tmp_path / "alone"
    run_cli("train", *SMALL, "trainer.epochs=3", "seed=1", f"hydra.run.dir={alone}", check=True)
    assert results(resumed["history"]) == results(read_summary(alone)["history"])


def test_disk_full_before_training_is_one_line(tmpfs, tmp_path):
    result = run_on_tmpfs(tmp_path / "disk", "size=16k", tmp_path / "after", "train", *SMALL,
                          f"hydra.run.dir={tmp_path / 'disk' / 'run'}")
    assert result.returncode == 1
    assert "No space left on device" in one_error_line(result.stderr)


def limit_file_size(limit: int):
    def apply():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # Python ignores it too; be explicit
    return apply


@pytest.mark.skipif(TMPFS_WORKS, reason="the tmpfs test above runs out of space for real")
def test_file_size_limit_while_saving_keeps_the_last_whole_checkpoint(tmp_path):
    """The same fault without privileges: RLIMIT_FSIZE makes writes past 512 KB fail (EFBIG)."""
    run_dir = tmp_path / "run"
    run_cli("train", *SMALL, "trainer.epochs=1", f"hydra.run.dir={run_dir}", check=True)
    before = read_checkpoint(run_dir)
    process = start_cli("train", "--resume", run_dir, "trainer.epochs=2",
                        preexec_fn=limit_file_size(512 * 1024))
    _, stderr = process.communicate(timeout=600)
    assert process.returncode == 1, stderr
    line = stderr.strip()
    assert line.startswith("error: cannot write ") and "checkpoint.pt: File too large" in line
    assert "\n" not in line and "Traceback" not in stderr
    after = read_checkpoint(run_dir)
    assert after.epoch == 1
    assert_same_tensors(after.model, before.model)
    assert read_summary(run_dir)["status"] == "failed"
    assert temp_files(run_dir) == []
    # Once the space is back, the run goes on from its last checkpoint.
    run_cli("train", "--resume", run_dir, "trainer.epochs=2", check=True)
    assert read_summary(run_dir)["epochs_done"] == 2


# --- the dataset cache ---------------------------------------------------------------------------

LOAD_AND_HASH = """
import sys, time
from pathlib import Path
from dropout_lab.config import DataConfig
from dropout_lab.data import _checksum, load_raw
ready, go = Path(sys.argv[2]), Path(sys.argv[3])
ready.touch()
while not go.exists():  # start loading together with the other processes
    time.sleep(0.01)
print(_checksum(load_raw(DataConfig(cache_dir=sys.argv[1]))))
"""


def test_parallel_first_loads_make_exactly_one_valid_cache(tmp_path):
    cache_dir, sync = tmp_path / "cache", tmp_path / "sync"
    sync.mkdir()
    go = sync / "go"
    processes = [subprocess.Popen([sys.executable, "-c", LOAD_AND_HASH, str(cache_dir),
                                   str(sync / f"ready{i}"), str(go)],
                                  cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) for i in range(4)]
    deadline = time.monotonic() + 120
    while len(list(sync.glob("ready*"))) < 4 and time.monotonic() < deadline:
        time.sleep(0.02)
    go.touch()
    outputs = [process.communicate(timeout=600) for process in processes]
    assert [process.returncode for process in processes] == [0] * 4, outputs
    checksums = {stdout.strip() for stdout, _ in outputs}
    assert len(checksums) == 1  # every process got the same data
    config = DataConfig(cache_dir=str(cache_dir))
    assert [p.name for p in cache_dir.iterdir()] == [cache_path(config).name]  # no temp files
    tensors = read_cache(cache_path(config))  # whole and valid, and what they all got
    assert tensors is not None
    assert checksums == {_checksum(tensors)}
    assert tensors["train_images"].shape == (60000, 28, 28)


@pytest.fixture(scope="module")
def built_cache(tmp_path_factory) -> Path:
    cache_dir = tmp_path_factory.mktemp("cache")
    load_raw(DataConfig(cache_dir=str(cache_dir)))
    return cache_path(DataConfig(cache_dir=str(cache_dir)))


def truncate(path: Path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def flip_a_pixel_byte(path: Path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside the image data, far from the zip headers
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [truncate, flip_a_pixel_byte])
def test_corrupt_cache_is_detected_and_rebuilt(built_cache, tmp_path, damage):
    good = read_cache(built_cache)
    config = DataConfig(cache_dir=str(tmp_path))
    shutil.copy(built_cache, cache_path(config))
    damage(cache_path(config))
    assert read_cache(cache_path(config)) is None  # detected
    tensors = load_raw(config)  # rebuilt from the verified .gz files
    assert all(torch.equal(tensors[key], good[key]) for key in good)
    assert read_cache(cache_path(config)) is not None
    assert [p.name for p in tmp_path.iterdir()] == [cache_path(config).name]
