"""dropout_lab/device.py, the CUDA path checked on the CPU: where tensors are created, what a
checkpoint's random state holds, the run's device against the host's GPUs and the data's, the
local launcher's GPUs, autocast's device type. No GPU is needed: where a test has to see CUDA,
``torch.cuda`` is patched to look present (tests/end_to_end/test_cuda.py runs the real thing)."""

import ast
import os
import subprocess
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from conftest import REPO, TINY
from dropout_lab import device as device_module
from dropout_lab.data import FashionMNIST, Split, load_fashion_mnist
from dropout_lab.device import (autocast, check_precision, describe_device, resolve_device,
                                rng_state, run_device, set_rng_state, visible_gpus)
from dropout_lab.errors import ConfigError
from dropout_lab.hydra_runner import compose, typed_config
from dropout_lab.checkpoint import read_checkpoint
from dropout_lab.train import train

CPU = torch.device("cpu")

# torch functions that create a tensor (or generator) from nothing: on the CPU unless told.
FACTORIES = {"zeros", "ones", "empty", "full", "rand", "randn", "randint", "randperm", "arange",
             "linspace", "logspace", "tensor", "as_tensor", "eye", "empty_strided", "normal",
             "scalar_tensor", "from_numpy", "frombuffer", "Generator"}
# Created on the CPU on purpose: (file, the call's source).
CPU_ON_PURPOSE = {
    # decoded from the .gz files, then moved to the run's device in load_fashion_mnist
    ("dropout_lab/data.py", "torch.from_numpy(data.copy())"),
    ("dropout_lab/data.py", "torch.from_numpy(kept)"),
    ("dropout_lab/data.py", "torch.from_numpy(held_out)"),
    # the shuffle: its generator lives on the CPU, so the batch order is the same on every device
    ("dropout_lab/data.py", "torch.randperm(n, generator=generator)"),
    ("dropout_lab/train.py", "torch.Generator()"),
    # a worker's warm-up: imports the optimiser, computes nothing
    ("dropout_lab/sweep/workers.py", "torch.zeros(1, requires_grad=True)"),
}


def tiny_config(*overrides):
    return typed_config(compose([*TINY, *overrides]))


def created_tensors():
    """(file, call source, names a device) for each torch factory call in dropout_lab/."""
    for path in sorted((REPO / "dropout_lab").rglob("*.py")):
        source = path.read_text()
        for node in ast.walk(ast.parse(source)):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch"
                    and node.func.attr in FACTORIES):
                yield (str(path.relative_to(REPO)), ast.get_source_segment(source, node),
                       any(keyword.arg == "device" for keyword in node.keywords))


def test_every_tensor_created_in_the_library_names_its_device():
    """A tensor made without device= lands on the CPU: on a GPU run it would meet the model's
    CUDA tensors and fail. ``*_like`` calls follow their input and are not listed."""
    calls = list(created_tensors())
    assert len(calls) > len(CPU_ON_PURPOSE)  # the scan finds calls at all
    unnamed = {(path, call) for path, call, named in calls if not named}
    assert unnamed - CPU_ON_PURPOSE == set(), "name the device (or add a reason here)"
    assert CPU_ON_PURPOSE - unnamed == set(), "stale entries: remove them"


@pytest.fixture
def cuda_that_must_not_be_touched(monkeypatch):
    """torch.cuda looks present (two GPUs), and any use of its random state fails the test
    (torch.manual_seed's seeding of CUDA is queued until CUDA starts: it creates no context)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)

    def refuse(name):
        def touched(*_args, **_kwargs):
            raise AssertionError(f"a CPU run called torch.cuda.{name}")
        return touched  # one function per name: torch._dynamo refuses one object for two

    for name in ("get_rng_state", "get_rng_state_all", "set_rng_state", "set_rng_state_all",
                 "init"):
        monkeypatch.setattr(torch.cuda, name, refuse(name))


@pytest.mark.slow
def test_a_cpu_runs_checkpoint_never_touches_cuda(cuda_that_must_not_be_touched, tmp_path):
    """On a GPU host a CPU run (sweep workers, trainer.device=cpu) asked for every GPU's RNG
    state at its first checkpoint: a CUDA context, ~0.5 GB, per process. Trained, then resumed."""
    train(tiny_config("trainer.epochs=1"), tmp_path)
    assert set(read_checkpoint(tmp_path).rng) == {"torch", "shuffle"}
    assert train(tiny_config(), tmp_path, resume=True).status == "completed"


def test_a_gpu_runs_state_is_its_own_gpus_and_goes_to_the_resuming_gpu(monkeypatch):
    """Saved from cuda:1, restored into cuda:0 (a host with fewer GPUs): one generator, no index
    into a list of every GPU's (an IndexError before)."""
    saved, restored = torch.ByteTensor([1, 2, 3]), []
    monkeypatch.setattr(torch.cuda, "get_rng_state",
                        lambda device: saved if device == torch.device("cuda", 1) else None)
    monkeypatch.setattr(torch.cuda, "set_rng_state",
                        lambda state, device: restored.append((state, device)))
    generator = torch.Generator()
    state = rng_state(torch.device("cuda", 1), generator)
    assert state["cuda"] is saved
    set_rng_state(state, torch.device("cuda", 0), generator)
    assert restored == [(saved, torch.device("cuda", 0))]
    set_rng_state(state, CPU, generator)  # resumed on the CPU: CUDA untouched
    assert len(restored) == 1


def test_cuda_index_beyond_the_hosts_gpus_is_a_config_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    assert resolve_device("cuda:0") == resolve_device("cuda") == resolve_device("auto") \
        == torch.device("cuda", 0)
    with pytest.raises(ConfigError, match=r"trainer.device=cuda:3 but this host has 1 CUDA "
                                          r"device \(cuda:0 to cuda:0\)"):
        resolve_device("cuda:3")


def test_cuda_without_cuda_is_a_config_error():
    if torch.cuda.is_available():
        pytest.skip("this host has CUDA")
    with pytest.raises(ConfigError, match="trainer.device=cuda:0 but CUDA is not available"):
        resolve_device("cuda:0")
    assert resolve_device("auto") == CPU


def test_auto_on_a_host_whose_gpu_torch_cannot_use_says_so_in_one_line(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(device_module.glob, "glob", lambda pattern: ["/dev/nvidia0"])
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert run_device(tiny_config("trainer.device=auto").trainer) == CPU
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["note: trainer.device=auto trains on the CPU: this host has an NVIDIA GPU, "
                     "but CUDA_VISIBLE_DEVICES hides every GPU"]
    assert describe_device(CPU)["unused_gpu"] == "CUDA_VISIBLE_DEVICES hides every GPU"
    run_device(tiny_config("trainer.device=cpu").trainer)  # asked for: nothing to say
    assert capsys.readouterr().err == ""


def test_bf16_is_checked_on_the_runs_gpu_not_the_current_one(monkeypatch):
    """cuda:1 a pre-Ampere GPU, the current device (0) an Ampere one."""
    capability = {0: (8, 0), 1: (7, 0)}
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device: capability[device.index])
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device: f"GPU {device.index}")
    check_precision("bf16", torch.device("cuda", 0))
    with pytest.raises(ConfigError, match=r"GPU 1 \(cuda:1\) has no native bf16"):
        check_precision("bf16", torch.device("cuda", 1))


def test_autocast_gets_the_runs_device_type(monkeypatch):
    """The autocast of a step is the run's device's, whatever device is current; fp32 none."""
    seen = []
    real = torch.autocast

    def spy(device_type, *args, **kwargs):
        seen.append(device_type)
        return real("cpu", *args, **kwargs)

    monkeypatch.setattr(torch, "autocast", spy)
    autocast("bf16", torch.device("cuda", 1))
    autocast("bf16", CPU)
    autocast("fp32", torch.device("cuda", 1))
    assert seen == ["cuda", "cpu"]


def test_train_refuses_data_on_another_device(tmp_path):
    """The data a caller passes must sit where the model trains (a GPU run given CPU data
    failed inside the first step: "Expected all tensors to be on the same device")."""
    cfg = tiny_config()
    data = load_fashion_mnist(cfg.data, CPU)
    elsewhere = FashionMNIST(*(Split(split.images.to("meta"), split.labels.to("meta"))
                               for split in (data.train, data.test)))
    with pytest.raises(ConfigError, match="train\\(\\) was given data on meta, but the run "
                                          "trains on cpu"):
        train(cfg, tmp_path, data=elsewhere)
    assert not (tmp_path / "summary.json").exists()  # refused before anything was written


@pytest.mark.parametrize("listed, gpus", [("0,2", (0, 2)), ("", ()), ("1,-1,2", (1,)),
                                          (None, (0, 1))])
def test_visible_gpus_are_this_process_gpus(monkeypatch, listed, gpus):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    if listed is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", listed)
    assert visible_gpus() == gpus


def test_gpus_named_by_uuid_are_a_config_error(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-8a2f0c1e")
    with pytest.raises(ConfigError, match="names GPUs by UUID"):
        visible_gpus()


@pytest.mark.slow
@pytest.mark.parametrize("listed", ["0,2", None])
def test_the_local_launchers_jobs_see_the_gpus_of_the_sweep(monkeypatch, tmp_path, listed):
    """A real submitit job of configs/hydra/launcher/local.yaml reports its CUDA_VISIBLE_DEVICES:
    the sweep's own (submitit's default, gpus_per_node null, set it to "": no GPU, CPU training
    without a word). No GPU here: torch is made to count two."""
    from dropout_lab.sweep.local import LocalLauncher

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    if listed is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", listed)
    params = OmegaConf.to_container(OmegaConf.load(REPO / "configs/hydra/launcher/local.yaml"))
    params = {key: value for key, value in params.items() if key != "_target_"}
    params.update(submitit_folder=str(tmp_path / "%j"), name="gpus")
    job = LocalLauncher(**params).executor().submit(os.getenv, "CUDA_VISIBLE_DEVICES")
    assert job.result() == (listed or "0,1")


def test_the_local_launcher_config_leaves_gpus_to_the_sweep():
    config = OmegaConf.load(Path(REPO, "configs/hydra/launcher/local.yaml"))
    assert config.gpus_per_node is None  # null: passed on (dropout_lab/sweep/local.py)


@pytest.mark.slow
def test_the_gpu_check_says_in_one_line_what_it_lacks(tmp_path):
    """scripts/gpu_check.sh on a machine without its bundle: exit 2 and one line (on a GPU
    machine with the bundle it runs the cuda tests; without a GPU it ends with exit 3)."""
    result = subprocess.run(["bash", str(REPO / "scripts" / "gpu_check.sh")], capture_output=True,
                            text=True, timeout=60, env={**os.environ, "OUT": "",
                                                        "GPU_BUNDLE": str(tmp_path / "none")})
    assert result.returncode == 2
    assert result.stdout.splitlines() == [
        f"gpu_check: no {tmp_path / 'none'}/ here: build it with scripts/gpu_bundle.sh and "
        f"carry it along"]


def test_the_gpu_bundle_is_not_committed():
    assert "/gpu_bundle/" in (REPO / ".gitignore").read_text().splitlines()
