"""Where a run computes and in what precision: the device (checked against this host), the
native-bf16 check, autocast, the random state of the run's own generators, and what a run's
summary records about the hardware and software it ran on.

Every path that builds a model (training, resuming, MC dropout) goes through these, so a run
is evaluated the way it was trained."""

import glob
import os
import sys
from contextlib import nullcontext, suppress
from pathlib import Path
from typing import Optional

import torch

from dropout_lab.errors import ConfigError

# The dtype of the matrix products in each trainer.precision.
PRECISION_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def resolve_device(name: str) -> torch.device:
    """trainer.device as the torch device the run uses, with its index for CUDA (so the run's
    generator and bf16 check are its own GPU's). ConfigError for a GPU this host lacks."""
    if name == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        return torch.device("cuda", torch.cuda.current_device())
    device = torch.device(name)
    if device.type != "cuda":
        return device
    if not torch.cuda.is_available():
        reason = unusable_gpu_reason() or "torch finds no CUDA device on this host"
        raise ConfigError(f"trainer.device={name} but CUDA is not available ({reason}); "
                          f"use trainer.device=cpu")
    count = torch.cuda.device_count()
    index = torch.cuda.current_device() if device.index is None else device.index
    if index >= count:
        raise ConfigError(f"trainer.device={name} but this host has {count} CUDA device"
                          f"{'' if count == 1 else 's'} (cuda:0 to cuda:{count - 1}); use "
                          f"trainer.device=auto or one of those")
    return torch.device("cuda", index)


def check_data_device(data, device: torch.device) -> None:
    """ConfigError unless the ``data`` (a FashionMNIST) a caller passes to train() sits on the
    run's ``device``: a GPU run given CPU data would fail inside its first step."""
    if data is not None and data.train.images.device != device:
        raise ConfigError(f"train() was given data on {data.train.images.device}, but the run "
                          f"trains on {device}: load it with load_fashion_mnist(cfg.data, "
                          f"device) for that device, or set trainer.device to match")


def unusable_gpu_reason() -> Optional[str]:
    """Why torch cannot use the NVIDIA GPU this host has, or None (no GPU, or a usable one).

    torch.cuda.is_available() is False with at most a warning when the driver is too old for
    the wheel, the wheel is CPU-only, or CUDA_VISIBLE_DEVICES hides every GPU: a run on
    trainer.device=auto would then train on the CPU without a word."""
    if torch.cuda.is_available() or not glob.glob("/dev/nvidia[0-9]*"):
        return None
    if torch.version.cuda is None:
        return f"this torch ({torch.__version__}) is built without CUDA"
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return "CUDA_VISIBLE_DEVICES hides every GPU"
    return (f"torch {torch.__version__} (CUDA {torch.version.cuda}) cannot use it: is the "
            f"driver older than CUDA {torch.version.cuda} needs? see nvidia-smi")


def describe_device(device: torch.device) -> dict:
    """What a run's summary records: the device actually used, the GPU's name, the versions
    of torch and of the CUDA and cuDNN it uses (None on the CPU)."""
    on_gpu = device.type == "cuda"
    return {"name": str(device),
            "gpu": torch.cuda.get_device_name(device) if on_gpu else None,
            "torch": torch.__version__,
            "cuda": torch.version.cuda,  # of this torch build (None: CPU-only)
            "cudnn": torch.backends.cudnn.version() if on_gpu else None,
            "unused_gpu": None if on_gpu else unusable_gpu_reason()}


def cpu_has_native_bf16() -> bool:
    """AVX512_BF16 or AMX on this CPU: what oneDNN's bf16 matrix products run on.

    ``torch.backends.cpu.get_cpu_capability()`` says only "AVX512", with or without bf16, so
    ask torch's own CPUID query; /proc/cpuinfo where this torch lacks it."""
    queries = [getattr(torch.cpu, name, None)
               for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    if all(queries):
        return any(query() for query in queries)
    with suppress(OSError):
        flags = set(Path("/proc/cpuinfo").read_text().split())
        return bool(flags & {"avx512_bf16", "amx_bf16"})
    return False


def check_precision(precision: str, device: torch.device) -> None:
    """Refuse bf16 on a device without native bf16 (ConfigError); ``device``: the run's.

    Refused rather than run in fp32 with a notice: the run's config, summary and hparams
    would say bf16 for fp32 numbers, and a sweep over trainer.precision would compare fp32
    with itself. Emulated bf16 would give bf16 numbers but run slower than fp32, which defeats
    the only reason to choose it."""
    if precision != "bf16":
        return
    if device.type == "cuda":
        # is_bf16_supported() asks the current device; the run's may be another one.
        major, _minor = torch.cuda.get_device_capability(device)
        if major < 8:  # bf16 tensor cores: Ampere (8.0) and later
            raise ConfigError(f"trainer.precision=bf16 but {torch.cuda.get_device_name(device)} "
                              f"({device}) has no native bf16; use trainer.precision=fp32")
    elif device.type == "cpu" and not cpu_has_native_bf16():
        raise ConfigError(f"trainer.precision=bf16 needs a CPU with native bf16 (AVX512_BF16 or "
                          f"AMX), which this one ({torch.backends.cpu.get_cpu_capability()}) "
                          f"lacks; use trainer.precision=fp32")


def autocast(precision: str, device: torch.device):
    """The context of the forward pass and the loss: bf16 autocast on the run's device type, or
    nothing at all for fp32 (so fp32 runs are bit for bit the runs before trainer.precision).

    Enter it per step, never around ``optimizer.step()``: autocast caches the bf16 copy of
    each weight until the context exits, so an update inside it would be read stale."""
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(device.type, dtype=PRECISION_DTYPES[precision])


def rng_state(device: torch.device, generator: torch.Generator) -> dict:
    """The random state a checkpoint holds: torch's CPU generator (initial weights, CPU masks),
    the shuffle's, and on a GPU run that GPU's generator only. A CPU run never touches CUDA
    (asking would create a CUDA context, half a gigabyte per process)."""
    state = {"torch": torch.get_rng_state(), "shuffle": generator.get_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device, generator: torch.Generator) -> None:
    """Put back ``rng_state``'s generators, the GPU's into the run's device whatever its index
    was before. A checkpoint from another device type leaves that device's generator seeded
    by trainer.seed: the resumed run is then statistically the same, not bit for bit."""
    torch.set_rng_state(state["torch"])
    generator.set_state(state["shuffle"])
    cuda = state.get("cuda")
    if device.type == "cuda" and isinstance(cuda, torch.Tensor):
        torch.cuda.set_rng_state(cuda, device)


def run_device(trainer) -> torch.device:
    """The device of a run with ``trainer`` (TrainerConfig), its precision checked; on
    trainer.device=auto with a GPU torch cannot use, one line on stderr says so."""
    device = resolve_device(trainer.device)
    check_precision(trainer.precision, device)
    reason = unusable_gpu_reason() if trainer.device == "auto" else None
    if reason:
        print(f"note: trainer.device=auto trains on the CPU: this host has an NVIDIA GPU, but "
              f"{reason}", file=sys.stderr)
    return device


def visible_gpus() -> tuple:
    """The indices of the GPUs this process may use, for the local launcher to hand to its jobs
    (submitit's default, gpus_per_node null or 0, sets CUDA_VISIBLE_DEVICES="" and hides all).

    CUDA_VISIBLE_DEVICES as given (a list ends at a negative entry, as in CUDA), else every GPU
    torch counts. ConfigError for GPUs named by UUID, which submitit cannot pass on."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is None:
        return tuple(range(torch.cuda.device_count()))
    indices = []
    for entry in (entry.strip() for entry in listed.split(",") if entry.strip()):
        if entry.startswith("-"):
            break
        if not entry.isdigit():
            raise ConfigError(f"CUDA_VISIBLE_DEVICES={listed} names GPUs by UUID, which the local "
                              f"launcher cannot pass to its jobs: list them by index, or set "
                              f"hydra.launcher.gpus_per_node")
        indices.append(int(entry))
    return tuple(indices)
