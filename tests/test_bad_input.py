"""Bad input, table-driven: the real CLI in subprocesses. Every mistake exits non-zero (2 for
usage and config errors) with one line on stderr that names it, and no traceback unless asked.

The cases all fail before training, so the cost is the processes' start-up; they run two at a
time (the CI machine's cores) in one module fixture, and each case is its own test.
"""

import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import List

import pytest

from conftest import TINY, run_cli
from dropout_lab.cli import app
from dropout_lab.data import DEBIAN_DIR, FILES

HAS_SWEEP = any(command.name == "sweep" or getattr(command.callback, "__name__", "") == "sweep"
                for command in app.registered_commands)


@dataclass
class Case:
    name: str
    args: List[str]  # "{tmp}" stands for the test's scratch folder
    exit_code: int
    words: List[str]  # each has to appear in the error line


def train(*overrides) -> List[str]:
    """``train`` with a tiny budget and a scratch run folder, in case a mistake got through."""
    return ["train", *TINY, *overrides, "hydra.run.dir={tmp}/run"]


CASES = [
    Case("unknown key", train("model.hiden=[64]"), 2, ["hiden"]),
    Case("unknown top-level key", train("nosuchkey=1"), 2, ["nosuchkey"]),
    Case("appended unknown key", train("+foo=1"), 2, ["foo"]),
    Case("string for an int", train("trainer.epochs=abc"), 2, ["trainer.epochs", "abc"]),
    Case("string for a list", train("model.hidden=abc"), 2, ["model.hidden"]),
    Case("float seed", train("seed=1.5"), 2, ["seed", "1.5"]),
    Case("p = -0.1", train("model.dropout.p=-0.1"), 2, ["model.dropout.p", "-0.1"]),
    Case("p = 1.5", train("model.dropout.p=1.5"), 2, ["model.dropout.p", "1.5"]),
    Case("p = nan", train("model.dropout.p=nan"), 2, ["model.dropout.p", "nan"]),
    Case("p = abc", train("model.dropout.p=abc"), 2, ["model.dropout.p", "abc"]),
    Case("one p of a list bad", train("model.dropout.p=[0.2,2.0]"), 2, ["layer 2", "2.0"]),
    Case("p list too long", train("model.dropout.p=[0.1,0.2,0.3]"), 2,
         ["model.dropout.p", "3 values", "2 layers"]),
    Case("kind list too short", train("model.dropout.kind=[custom]"), 2,
         ["model.dropout.kind", "1 values"]),
    Case("no hidden layer", train("model.hidden=[]"), 2, ["model.hidden"]),
    Case("zero epochs", train("trainer.epochs=0"), 2, ["trainer.epochs", "0"]),
    Case("negative epochs", train("trainer.epochs=-3"), 2, ["trainer.epochs", "-3"]),
    Case("zero batch size", train("trainer.batch_size=0"), 2, ["trainer.batch_size"]),
    Case("negative batch size", train("trainer.batch_size=-5"), 2, ["trainer.batch_size", "-5"]),
    Case("zero learning rate", train("optim.lr=0"), 2, ["optim.lr"]),
    Case("negative learning rate", train("optim.lr=-0.1"), 2, ["optim.lr", "-0.1"]),
    Case("unknown dropout kind", train("model.dropout.kind=magic"), 2, ["magic", "custom"]),
    Case("unknown optimizer", train("optim=rmsprop"), 2, ["rmsprop", "sgd"]),
    Case("override syntax error", train("model.dropout.p=[0.1,"), 2, ["[0.1,"]),
    Case("missing data folder", train("data.dir={tmp}/nowhere"), 1,
         ["data folder", "nowhere", "does not exist"]),
    Case("truncated .gz", train("data.dir={tmp}/data", "data.cache_dir={tmp}/cache"), 1,
         ["train-images-idx3-ubyte.gz", "corrupt or truncated"]),
    Case("resume a folder that is not a run", ["train", "--resume", "{tmp}"], 2,
         ["not a dropout-lab run"]),
    Case("resume a folder that does not exist", ["train", "--resume", "{tmp}/nowhere"], 2,
         ["nowhere", "not a dropout-lab run"]),
]
if HAS_SWEEP:
    CASES += [
        Case("unknown launcher", ["sweep", "--launcher", "nosuch", "--sweep-dir", "{tmp}/sweep",
                                  *TINY, "seed=0,1"], 2, ["launcher", "nosuch"]),
        Case("sweep override syntax error", ["sweep", "--sweep-dir", "{tmp}/sweep", *TINY,
                                             "seed=range(3"], 2, ["range(3"]),
    ]
# A few cases again, asking for the traceback: a config, a data and a resume error.
TRACEBACK_CASES = [("p = 1.5", "-v"), ("missing data folder", "-v"),
                   ("resume a folder that is not a run", "-v"), ("p = 1.5", "HYDRA_FULL_ERROR=1")]


def scratch_folder(root: Path, case: Case, how: str) -> Path:
    """The case's own folder; the truncated-.gz case gets a copy of the data, cut short."""
    folder = root / f"{case.name}{how}".replace(" ", "_").replace(".", "").replace("=", "")
    folder.mkdir()
    if case.name == "truncated .gz":
        (folder / "data").mkdir()
        for name in FILES:
            shutil.copy(DEBIAN_DIR / name, folder / "data" / name)
        images = folder / "data" / "train-images-idx3-ubyte.gz"
        images.write_bytes(images.read_bytes()[:100_000])
    return folder


def run_case(folder: Path, case: Case, how: str = ""):
    """The case's command in ``folder`` (also its cwd: no outputs/ in the repo); ``how`` asks
    for the traceback with -v or HYDRA_FULL_ERROR=1."""
    args = [arg.replace("{tmp}", str(folder)) for arg in case.args]
    verbose = ["-v"] if how == "-v" else []
    env = {"HYDRA_FULL_ERROR": "1"} if how == "HYDRA_FULL_ERROR=1" else None
    return run_cli(args[0], *verbose, *args[1:], cwd=folder, env=env)


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    """Every case's result, keyed by (name, how); run two at a time."""
    if not DEBIAN_DIR.is_dir():
        pytest.skip(f"the truncated-.gz case copies {DEBIAN_DIR}")
    root = tmp_path_factory.mktemp("bad-input")
    runs = [(case, "") for case in CASES]
    runs += [(next(c for c in CASES if c.name == name), how) for name, how in TRACEBACK_CASES]
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {(case.name, how): pool.submit(run_case, scratch_folder(root, case, how),
                                                 case, how)
                   for case, how in runs}
    return {key: future.result() for key, future in futures.items()}


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_input_is_one_clear_line(outcomes, case):
    result = outcomes[case.name, ""]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    for word in case.words:
        assert word in lines[0], (word, lines[0])
    assert result.returncode == case.exit_code, result.stderr


@pytest.mark.parametrize("name, how", TRACEBACK_CASES)
def test_traceback_on_request(outcomes, name, how):
    result = outcomes[name, how]
    assert result.returncode != 0
    assert "Traceback (most recent call last)" in result.stderr
    assert "Error" in result.stderr.strip().splitlines()[-1]  # ends with the exception
