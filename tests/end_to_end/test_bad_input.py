"""Bad input, table-driven: every mistake a user can make on the command line exits non-zero
(2 for usage and config errors, a folder argument that is not what the command reads included;
1 for a run that failed: data, disk) with one line on stderr that names it and, where it can,
the fix, no traceback unless asked (then the same exit code), and nothing written where it was
refused early.

Each case runs once in this process (typer's CliRunner on the real ``app``: the same parsing,
library calls, wording and exit code as the console script, without a process start-up), and
one case per error family runs again end to end in a real subprocess (marked slow).
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Optional

import pytest

from conftest import TINY, invoke, one_error_line, run_cli


@dataclass
class Case:
    name: str
    args: List[str]  # "{tmp}" in any string below stands for the case's scratch folder
    exit_code: int
    words: List[str] = field(default_factory=list)  # each has to appear in the error line
    line: Optional[str] = None  # the whole error line, where it is fixed
    untouched: Optional[str] = None  # a path the command must not create
    setup: Optional[Callable[[Path], None]] = None  # prepares the scratch folder


def train(*overrides) -> List[str]:
    """``train`` with a tiny budget and a scratch run folder, in case a mistake got through."""
    return ["train", *TINY, *overrides, "hydra.run.dir={tmp}/run"]


def config_case(name: str, override: str, words: List[str]) -> Case:
    """A bad override of ``train``: exit 2, refused before the run folder is made."""
    return Case(name, train(override), 2, words, untouched="{tmp}/run")


def sweep(*args) -> List[str]:
    return ["sweep", "--sweep-dir", "{tmp}/sweep", *TINY, *args]


def sweep_case(name: str, args: List[str], words: List[str]) -> Case:
    """A bad sweep: exit 2, refused before the sweep folder is made."""
    return Case(name, sweep(*args), 2, words, untouched="{tmp}/sweep")


def a_regular_file(folder: Path):
    (folder / "file").write_text("not a folder")


CASES = [
    # --- train: keys and types the schema refuses ------------------------------------------
    config_case("unknown key", "model.hiden=[64]", ["model.hiden", "did you mean model.hidden?"]),
    config_case("misspelt group", "model.dropot.p=0.3",
                ["unknown config key model.dropot.p", "did you mean model.dropout.p?"]),
    config_case("key without its group", "epochs=3", ["did you mean trainer.epochs?"]),
    config_case("unknown key, nothing near", "model.dropout.foo=1",
                ["model.dropout.foo", "dropout-lab train --help"]),
    config_case("unknown nested key", "model.dropout.foo=1", ["model.dropout.foo"]),
    config_case("unknown top-level key", "nosuchkey=1", ["nosuchkey"]),
    config_case("appended unknown key", "+foo=1", ["foo"]),
    config_case("appended unknown nested key", "+model.foo=1", ["model.foo"]),  # "+" appends
    config_case("string for an int", "trainer.epochs=abc", ["trainer.epochs", "abc"]),
    config_case("float for an int", "trainer.epochs=1.5", ["trainer.epochs", "1.5"]),
    config_case("float seed", "seed=1.5", ["seed", "1.5"]),
    config_case("string for a float", "optim.lr=fast", ["optim.lr", "fast"]),
    config_case("string for a list", "model.hidden=abc", ["model.hidden"]),
    config_case("one number for a list", "model.hidden=256", ["model.hidden=[256]"]),
    config_case("None for null", "data.subset=None", ["data.subset=null"]),
    config_case("override syntax error", "model.dropout.p=[0.1,", ["[0.1,"]),
    # --- train: values out of range --------------------------------------------------------
    config_case("p = -0.1", "model.dropout.p=-0.1", ["model.dropout.p", "-0.1"]),
    config_case("p = 1.5", "model.dropout.p=1.5", ["model.dropout.p", "1.5"]),
    config_case("p = nan", "model.dropout.p=nan", ["model.dropout.p", "nan"]),
    config_case("p = abc", "model.dropout.p=abc", ["model.dropout.p", "abc"]),
    config_case("one p of a list bad", "model.dropout.p=[0.2,1.5]",
                ["model.dropout.p", "hidden layer 2", "1.5"]),
    config_case("p list too long", "model.dropout.p=[0.1,0.2,0.3]",
                ["model.dropout.p", "3 values", "2 layers"]),
    config_case("kind list too short", "model.dropout.kind=[custom]",
                ["model.dropout.kind", "1 values"]),
    config_case("kind list too long", "model.dropout.kind=[custom,none,none]",
                ["model.dropout.kind", "3 values"]),
    config_case("unknown dropout kind", "model.dropout.kind=magic",
                ["model.dropout.kind", "magic", "custom"]),
    config_case("unknown kind in a list", "model.dropout.kind=[custom,magic]",
                ["model.dropout.kind", "magic"]),
    config_case("unknown optimizer", "optim=rmsprop", ["optim/rmsprop", "sgd"]),
    config_case("no hidden layer", "model.hidden=[]", ["model.hidden"]),
    config_case("zero-width layer", "model.hidden=[256,0]", ["model.hidden", "0"]),
    config_case("zero epochs", "trainer.epochs=0", ["trainer.epochs", "0"]),
    config_case("negative epochs", "trainer.epochs=-3", ["trainer.epochs", "-3"]),
    config_case("zero batch size", "trainer.batch_size=0", ["trainer.batch_size", "0"]),
    config_case("negative batch size", "trainer.batch_size=-5", ["trainer.batch_size", "-5"]),
    config_case("zero learning rate", "optim.lr=0", ["optim.lr", "0"]),
    config_case("negative learning rate", "optim.lr=-0.5", ["optim.lr", "-0.5"]),
    # --- train: the learning-rate schedule and the validation split ------------------------
    config_case("unknown schedule", "optim.schedule.name=linear",
                ["optim.schedule.name", "linear", "cosine"]),
    config_case("negative warm-up", "optim.schedule.warmup_epochs=-1",
                ["optim.schedule.warmup_epochs", "-1"]),
    config_case("zero step size", "optim.schedule.step_size=0", ["optim.schedule.step_size", "0"]),
    config_case("float step size", "optim.schedule.step_size=1.5",
                ["optim.schedule.step_size", "1.5"]),
    config_case("zero gamma", "optim.schedule.gamma=0", ["optim.schedule.gamma", "0"]),
    config_case("gamma above 1", "optim.schedule.gamma=2", ["optim.schedule.gamma", "2"]),
    config_case("pct_start = 1", "optim.schedule.pct_start=1", ["optim.schedule.pct_start", "1"]),
    config_case("negative max_lr", "optim.schedule.max_lr=-1", ["optim.schedule.max_lr", "-1"]),
    config_case("negative min_lr", "optim.schedule.min_lr=-0.1", ["optim.schedule.min_lr", "-0.1"]),
    config_case("unknown schedule key", "optim.schedule.foo=1", ["optim.schedule.foo"]),
    config_case("warm-up as long as training", "optim.schedule.warmup_epochs=2",
                ["warmup_epochs (2", "trainer.epochs (2)"]),
    Case("warm-up with onecycle",
         train("optim.schedule.name=onecycle", "optim.schedule.warmup_epochs=1"), 2,
         ["warmup_epochs", "onecycle", "pct_start"], untouched="{tmp}/run"),
    Case("cosine min_lr above lr", train("optim.schedule.name=cosine", "optim.schedule.min_lr=1"),
         2, ["min_lr (1", "optim.lr (0.5)"], untouched="{tmp}/run"),
    config_case("negative validation size", "data.validation=-1", ["data.validation", "-1"]),
    config_case("validation of all training images", "data.validation=60000",
                ["data.validation", "60000", "59999"]),
    config_case("float validation size", "data.validation=1.5", ["data.validation", "1.5"]),
    config_case("bool validation size", "data.validation=true", ["data.validation", "True"]),
    # --- train: the data and the run folder ------------------------------------------------
    # An empty cache folder: a cache decoded earlier would serve the run without the source.
    Case("missing data folder", train("data.dir={tmp}/nowhere", "data.cache_dir={tmp}/cache"), 1,
         ["data folder {tmp}/nowhere does not exist; ", "data.dir"]),
    Case("run folder under a regular file", ["train", *TINY, "hydra.run.dir={tmp}/file/run"], 1,
         line="error: cannot write into {tmp}/file/run: Not a directory", setup=a_regular_file),
    Case("resume a folder that is not a run", ["train", "--resume", "{tmp}"], 2,
         ["--resume {tmp}", "not a dropout-lab run"]),
    Case("resume a folder that does not exist", ["train", "--resume", "{tmp}/nowhere"], 2,
         ["nowhere", "not a dropout-lab run"]),
    # --- sweep ---------------------------------------------------------------------------------
    sweep_case("unknown launcher", ["--launcher", "mpi", "seed=0,1"], ["unknown launcher 'mpi'"]),
    sweep_case("sweep of an unknown key", ["model.dropot.p=0.1,0.2"],
               ["model.dropot.p", "did you mean model.dropout.p?"]),
    sweep_case("sweep trailing comma", ["seed=0,1,"], ["bad config"]),
    sweep_case("sweep override syntax error", ["seed=range(3"], ["range(3"]),
    sweep_case("zero jobs", ["--jobs", "0", "seed=0,1"], ["--jobs", "0"]),
    # --- evaluate, tensorboard, report, exercise -----------------------------------------------
    Case("evaluate a folder that is not a run", ["evaluate", "{tmp}", "--mc-samples", "3"], 2,
         line="error: {tmp} is not a dropout-lab run (no summary.json); give a run folder"),
    Case("evaluate a missing folder", ["evaluate", "{tmp}/nowhere"], 2,
         line="error: {tmp}/nowhere is not a dropout-lab run (not a directory); give a run folder"),
    Case("evaluate with K = 0", ["evaluate", "{tmp}", "--mc-samples", "0"], 2,
         line="error: --mc-samples has to be > 0, but got 0"),
    Case("tensorboard on a missing folder", ["tensorboard", "{tmp}/nowhere"], 2,
         line="error: {tmp}/nowhere is not a directory; give a run or sweep folder"),
    Case("report on a folder without jobs", ["report", "{tmp}"], 2,
         line="error: {tmp} has no job folders with a summary.json to report on"),
    Case("report on a missing folder", ["report", "{tmp}/nowhere"], 2,
         line="error: {tmp}/nowhere is not a directory; give a sweep folder"),
    Case("runs on a missing folder", ["runs", "{tmp}/nowhere"], 2, ["{tmp}/nowhere"]),
    Case("diff of a missing folder", ["diff", "{tmp}/nowhere", "{tmp}"], 2, ["{tmp}/nowhere"]),
    Case("unknown exercise", ["exercise", "9"], 2, ["1 to 8", "'9'"]),
    Case("two exercises as two arguments", ["exercise", "2", "7", "--out", "{tmp}/out"], 2,
         ["'7' is not an override", "exercise 2,7"], untouched="{tmp}/out/exercise_2"),
    Case("exercise with a bad override",
         ["exercise", "1", "--quick", "model.bogus=1", "--out", "{tmp}/out"], 2, ["model.bogus"],
         untouched="{tmp}/out/exercise_1/runs"),
]
BY_NAME = {case.name: case for case in CASES}

# Asking for the traceback: a config, a data and a resume error, with -v or HYDRA_FULL_ERROR=1.
TRACEBACK_CASES = [("p = 1.5", "-v"), ("missing data folder", "-v"),
                   ("resume a folder that is not a run", "-v"), ("report on a missing folder", "-v"),
                   ("p = 1.5", "HYDRA_FULL_ERROR=1")]

# End to end, in a real process: one case per error family (the console script's exit path).
END_TO_END = ["p = 1.5", "missing data folder", "run folder under a regular file",
              "unknown launcher"]


def fill(text: str, folder: Path) -> str:
    return text.replace("{tmp}", str(folder))


def prepared(case: Case, tmp_path: Path) -> List[str]:
    """The case's arguments for its scratch folder, set up."""
    if case.setup:
        case.setup(tmp_path)
    return [fill(arg, tmp_path) for arg in case.args]


def check_refusal(case: Case, folder: Path, exit_code: int, stdout: str, stderr: str):
    line = one_error_line(stderr)  # one line, "error: ...", no traceback
    for word in case.words:
        assert fill(word, folder) in line, (word, line)
    if case.line:
        assert line == fill(case.line, folder)
    assert len(line.replace(str(folder), "{tmp}")) < 300, line  # a line a user reads, not a dump
    assert stdout == ""
    assert exit_code == case.exit_code, stderr
    if case.untouched:
        assert not Path(fill(case.untouched, folder)).exists()  # refused before writing


def test_the_table_has_no_duplicate_names():
    assert len(BY_NAME) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_input_is_one_clear_line(case, tmp_path):
    result = invoke(*prepared(case, tmp_path))
    assert isinstance(result.exception, SystemExit), result.exception  # nothing else escaped
    check_refusal(case, tmp_path, result.exit_code, result.stdout, result.stderr)


@pytest.mark.parametrize("name, how", TRACEBACK_CASES)
def test_the_traceback_on_request_keeps_the_exit_code(tmp_path, name, how):
    """With -v or HYDRA_FULL_ERROR=1 the traceback replaces the line; the exit code is the
    same (a config error stays 2)."""
    case = BY_NAME[name]
    command, *rest = prepared(case, tmp_path)
    verbose = ["-v"] if how == "-v" else []
    env = {"HYDRA_FULL_ERROR": "1"} if how == "HYDRA_FULL_ERROR=1" else None
    result = invoke(command, *verbose, *rest, env=env)
    assert isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == case.exit_code
    assert "Traceback (most recent call last)" in result.stderr and "error: " not in result.stderr


@pytest.mark.parametrize("command", ["", "train", "sweep", "report", "tensorboard", "runs", "diff",
                                     "evaluate", "exercise"])
def test_h_is_help(command):
    """-h is --help for every command (train's used to reach Hydra's override parser)."""
    short, long = invoke(*filter(None, [command, "-h"])), invoke(*filter(None, [command, "--help"]))
    assert short.exit_code == 0 and short.stdout == long.stdout
    assert short.stdout.startswith("Usage: dropout-lab")


def test_help_writes_values_as_hydra_reads_them():
    """Each `key=default` of train's --help is a valid override: copied, it composes."""
    from dropout_lab.hydra_runner import compose

    keys = invoke("train", "--help").stdout.split("Keys and defaults:")[1].split(".\n")[0]
    overrides = keys.split()
    assert "data.subset=null" in overrides and "model.hidden=[256,256]" in overrides
    assert "trainer.progress=true" in overrides
    compose(overrides)  # raises ConfigError on any that Hydra would read differently


@pytest.mark.slow
@pytest.mark.parametrize("name", END_TO_END)
def test_bad_input_end_to_end(name, tmp_path):
    case = BY_NAME[name]
    result = run_cli(*prepared(case, tmp_path), cwd=tmp_path)  # cwd: no outputs/ in the repo
    check_refusal(case, tmp_path, result.returncode, result.stdout, result.stderr)


@pytest.mark.slow
def test_traceback_end_to_end(tmp_path):
    command, *rest = prepared(BY_NAME["p = 1.5"], tmp_path)
    result = run_cli(command, "-v", *rest, cwd=tmp_path)
    assert result.returncode == 2  # a config error's code, with or without -v
    assert "Traceback (most recent call last)" in result.stderr
    assert "ConfigError" in result.stderr.strip().splitlines()[-1]  # ends with the exception
