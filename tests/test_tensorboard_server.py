"""`dropout-lab tensorboard`: a real TensorBoard on a loopback port over a finished sweep,
read through its HTTP data API (the one TensorBoard's own web page uses). A missing folder is in
tests/test_bad_input.py's table."""

import json
import select
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import pytest

from conftest import REPO, run_cli

SMALL = ["data.subset=500", "data.test_subset=500", "trainer.epochs=2",
         "trainer.progress=false", "trainer.num_threads=1"]


def get_json(url: str, data: bytes = None):
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def wait_for(fetch, done, timeout=60.0):
    """Poll ``fetch()`` until ``done(value)``: TensorBoard reads event files in the background."""
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if done(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


@pytest.mark.slow
def test_tensorboard_serves_every_run_of_a_sweep(tmp_path):
    sweep_dir = tmp_path / "sweep"
    run_cli("sweep", "--sweep-dir", sweep_dir, "seed=0,1", *SMALL, check=True)
    jobs = sorted(p.name for p in sweep_dir.iterdir() if p.is_dir() and not p.name.startswith("."))

    server = subprocess.Popen([sys.executable, "-m", "dropout_lab", "tensorboard", str(sweep_dir)],
                              cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([server.stdout], [], [], 60)
        assert ready, "no URL printed within 60 s"
        url = server.stdout.readline().split()[-1]
        assert url.startswith("http://127.0.0.1:") and url.endswith("/")

        runs = wait_for(lambda: get_json(url + "data/runs"), lambda runs: len(runs) == len(jobs) + 1)
        # one run per job (none missing, none empty or doubled), and "." for the sweep's
        # experiment declaration (its hparams config, no scalars)
        assert sorted(runs) == [".", *jobs]
        tags = wait_for(lambda: get_json(url + "data/plugin/scalars/tags"),
                        lambda tags: all("accuracy/test" in tags.get(run, {}) for run in jobs))
        for run in jobs:
            assert {"accuracy/train", "accuracy/test", "accuracy/gap"} <= set(tags[run])
            query = urllib.parse.urlencode({"run": run, "tag": "accuracy/test"})
            points = get_json(url + "data/plugin/scalars/scalars?" + query)  # [[time, step, value]]
            history = json.loads((sweep_dir / run / "summary.json").read_text())["history"]
            assert [step for _, step, _ in points] == [row["epoch"] for row in history]
            # event files hold float32: equal to the summary's float64 within its rounding
            assert [value for _, _, value in points] == pytest.approx(
                [row["test_accuracy"] for row in history], rel=1e-6)

        # The HParams table: one row (session group) per job, with its config and status.
        request = {"experimentName": "", "startIndex": 0, "sliceSize": 100, "colParams": [],
                   "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE",
                                       "STATUS_RUNNING"]}
        groups = get_json(url + "data/plugin/hparams/session_groups",
                          data=json.dumps(request).encode())["sessionGroups"]
        assert sorted(group["name"] for group in groups) == jobs
        assert sorted(group["hparams"]["seed"] for group in groups) == [0, 1]
        assert all(group["hparams"]["status"] == "completed" for group in groups)
    finally:
        server.terminate()
        server.wait(timeout=30)
