"""`dropout-lab tensorboard`: a real TensorBoard on a loopback port over real runs, read through
its HTTP data API (the one TensorBoard's own web page uses): a sweep's runs and scalars, then a
folder of two sweeps with disjoint swept keys and a single run, whose HParams view is computed
for the folder (hparams.folder_dashboard), the seeds of a setting one session group. A missing
folder is in tests/end_to_end/test_bad_input.py's table."""

import json
import select
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from contextlib import contextmanager

import pytest

from conftest import REPO, run_cli

SMALL = ["data.subset=500", "data.test_subset=200", "trainer.epochs=2",
         "trainer.progress=false", "trainer.num_threads=1"]
ALL_STATUSES = ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"]


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


@contextmanager
def served(folder):
    """The URL of `dropout-lab tensorboard FOLDER`, a real process, stopped afterwards."""
    server = subprocess.Popen([sys.executable, "-m", "dropout_lab", "tensorboard", str(folder)],
                              cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([server.stdout], [], [], 60)
        assert ready, "no URL printed within 60 s"
        url = server.stdout.readline().split()[-1]
        assert url.startswith("http://127.0.0.1:") and url.endswith("/")
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


def session_groups(url, sessions: int):
    """The HParams table's rows (session groups), once TensorBoard has read ``sessions`` runs."""
    request = json.dumps({"experimentName": "", "startIndex": 0, "sliceSize": 100,
                          "colParams": [], "allowedStatuses": ALL_STATUSES}).encode()
    return wait_for(
        lambda: get_json(url + "data/plugin/hparams/session_groups", data=request)["sessionGroups"],
        lambda groups: sum(len(group["sessions"]) for group in groups) == sessions
        and all(group["metricValues"] for group in groups))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Two sweeps with disjoint swept keys (weight decay x seed; learning rate x hidden sizes)
    and a single run, in one folder."""
    root = tmp_path_factory.mktemp("tensorboard") / "all"
    run_cli("sweep", "--jobs", "2", "--sweep-dir", root / "decay", "optim.weight_decay=0,1e-3",
            "seed=0,1", *SMALL, check=True)
    run_cli("sweep", "--jobs", "2", "--sweep-dir", root / "rates", "optim.lr=0.1,0.3",
            "model.hidden=[512,256],[256,128]", *SMALL, check=True)
    run_cli("train", *SMALL, "trainer.epochs=3", f"hydra.run.dir={root / 'single'}", check=True)
    return root


def jobs(sweep_dir):
    return sorted(p.name for p in sweep_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


@pytest.mark.slow
def test_tensorboard_serves_every_run_of_a_sweep_and_folds_its_seeds(folder):
    sweep_dir = folder / "decay"
    with served(sweep_dir) as url:
        runs = wait_for(lambda: get_json(url + "data/runs"),
                        lambda runs: len(runs) == len(jobs(sweep_dir)) + 1)
        # one run per job (none missing, none empty or doubled), and "." for the sweep's
        # own experiment declaration (what plain `tensorboard --logdir` shows)
        assert sorted(runs) == [".", *jobs(sweep_dir)]
        tags = wait_for(lambda: get_json(url + "data/plugin/scalars/tags"),
                        lambda tags: all("accuracy/test" in tags.get(run, {}) for run in jobs(sweep_dir)))
        for run in jobs(sweep_dir):
            assert {"accuracy/train", "accuracy/test", "accuracy/gap", "optim/lr"} <= set(tags[run])
            query = urllib.parse.urlencode({"run": run, "tag": "accuracy/test"})
            points = get_json(url + "data/plugin/scalars/scalars?" + query)  # [[time, step, value]]
            history = json.loads((sweep_dir / run / "summary.json").read_text())["history"]
            assert [step for _, step, _ in points] == [row["epoch"] for row in history]
            # event files hold float32: equal to the summary's float64 within its rounding
            assert [value for _, _, value in points] == pytest.approx(
                [row["test_accuracy"] for row in history], rel=1e-6)

        # The HParams table: one row (session group) per weight decay, its two seeds inside,
        # its metrics their mean.
        groups = session_groups(url, sessions=4)
        assert sorted(group["name"] for group in groups) == ["wd=0", "wd=1e-3"]
        for group in groups:
            assert group["hparams"]["seeds"] == "0,1" and group["hparams"]["status"] == "completed"
            assert len(group["sessions"]) == 2 and "seed" not in group["hparams"]
            summaries = [json.loads((sweep_dir / s["name"] / "summary.json").read_text())
                         for s in group["sessions"]]
            mean = sum(s["final"]["test_accuracy"] for s in summaries) / 2
            (final,) = [m["value"] for m in group["metricValues"] if m["name"]["tag"] == "accuracy/test"]
            assert final == pytest.approx(mean, rel=1e-6)


@pytest.mark.slow
def test_a_folder_of_sweeps_has_one_view_with_every_swept_key_and_all_its_values(folder):
    before = sorted(str(p) for p in folder.rglob("*"))
    with served(folder) as url:
        groups = session_groups(url, sessions=4 + 4 + 1)
        experiment = get_json(url + "data/plugin/hparams/experiment",
                              data=json.dumps({"experimentName": ""}).encode())
    infos = {info["name"]: info for info in experiment["hparamInfos"]}
    checked = {name for name, info in infos.items() if info.get("differs")}
    assert checked == {"optim.weight_decay", "optim.lr", "model.hidden", "trainer.epochs", "seeds"}
    for name, values in (("optim.weight_decay", [0.0, 1e-3]), ("optim.lr", [0.1, 0.3, 0.5]),
                         ("trainer.epochs", [2.0, 3.0])):  # every value used, as numbers
        assert infos[name]["type"] == "DATA_TYPE_FLOAT64"
        assert infos[name]["domainDiscrete"] == values
    assert infos["model.hidden"]["domainDiscrete"] == ["[256,128]", "[256,256]", "[512,256]"]
    assert not infos["data.subset"].get("differs") and not infos["model.dropout.p1"].get("differs")
    metrics = [metric["name"]["tag"] for metric in experiment["metricInfos"]]
    assert metrics[:3] == ["steady/accuracy_test", "best/accuracy_test", "accuracy/test"]
    assert "optim/lr" not in metrics

    rows = {group["name"]: sorted(s["name"] for s in group["sessions"]) for group in groups}
    decay = jobs(folder / "decay")
    assert rows["wd=0 lr=0.5 hidden=[256,256] epochs=2"] == [f"decay/{job}" for job in decay[:2]]
    assert rows["wd=1e-3 lr=0.5 hidden=[256,256] epochs=2"] == [f"decay/{job}" for job in decay[2:]]
    assert rows["wd=0 lr=0.5 hidden=[256,256] epochs=3"] == ["single"]
    assert len(rows) == 2 + 4 + 1
    assert sorted(str(p) for p in folder.rglob("*")) == before  # nothing written into the folder
