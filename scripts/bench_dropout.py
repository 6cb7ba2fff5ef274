#!/usr/bin/env python
"""Benchmark: the from-scratch inverted dropout layer against ``torch.nn.Dropout``.

For activations of 256x256 and 4096x4096 it times forward + backward of each layer in this one
process (rounds interleave the two layers, so a neighbour's load hits both alike) and counts
the bytes autograd saves for backward (``torch.autograd.graph.saved_tensors_hooks``, input not
counted). It prints the figures and the ratios custom / built-in.

    .venv/bin/python scripts/bench_dropout.py [--p 0.5] [--rounds 7] [--threads N] [--device cpu]

``--variants`` also times the ways of drawing and applying a mask that the custom layer was
chosen from, one op each on 4096x4096 (why it draws uniform noise and uses float-only kernels).
"""

import argparse
import statistics
import time

import torch
from torch import nn

from dropout_lab.dropout import InvertedDropout

SHAPES = [(256, 256), (4096, 4096)]


def saved_bytes(layer: nn.Module, x: torch.Tensor) -> int:
    """Bytes of the tensors autograd keeps for the backward pass of ``layer(x)``, x excluded."""
    sizes = []

    def pack(tensor):
        if tensor is not x:
            sizes.append(tensor.numel() * tensor.element_size())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        layer(x)
    return sum(sizes)


def synchronizer(x: torch.Tensor):
    """Waits for the queued work of ``x``'s device: CUDA runs asynchronously, so a clock read
    without it times the kernel launches, not the work."""
    return (lambda: torch.cuda.synchronize(x.device)) if x.is_cuda else (lambda: None)


def step_seconds(layer: nn.Module, x: torch.Tensor, grad: torch.Tensor, repeats: int) -> float:
    """Mean seconds of one forward + backward over ``repeats`` steps."""
    sync = synchronizer(x)
    sync()
    started = time.perf_counter()
    for _ in range(repeats):
        x.grad = None
        layer(x).backward(grad)
    sync()
    return (time.perf_counter() - started) / repeats


def bench_shape(shape, p: float, rounds: int, device: str) -> dict:
    layers = {"custom": InvertedDropout(p), "builtin": nn.Dropout(p)}
    x = torch.randn(shape, device=device, requires_grad=True)
    grad = torch.randn(shape, device=device)
    repeats = max(1, int(2e7 // x.numel()))  # about 20M elements per timing, either shape
    times = {name: [] for name in layers}
    for name, layer in layers.items():
        step_seconds(layer, x, grad, repeats)  # warm-up: allocator, threads, kernels
    for _ in range(rounds):
        for name, layer in layers.items():
            times[name].append(step_seconds(layer, x, grad, repeats))
    result = {"shape": shape, "repeats": repeats}
    for name, layer in layers.items():
        result[name] = {"ms": 1e3 * statistics.median(times[name]),
                        "saved_bytes_per_element": saved_bytes(layer, x) / x.numel()}
    return result


def variant_timings(p: float, rounds: int, device: str) -> None:
    """Milliseconds per op (median) of the alternatives for drawing and applying a mask."""
    x = torch.randn(4096, 4096, device=device)
    keep = torch.rand_like(x) >= p
    scale = 1.0 / (1.0 - p)
    variants = {
        "draw: torch.rand_like(x) >= p (bool)": lambda: torch.rand_like(x) >= p,
        "draw: empty_like(x).bernoulli_(1-p) (float, nn.Dropout on CPU)":
            lambda: torch.empty_like(x).bernoulli_(1 - p),
        "draw: empty_like(x, bool).bernoulli_(1-p)":
            lambda: torch.empty_like(x, dtype=torch.bool).bernoulli_(1 - p),
        "apply: torch.where(keep, x * scale, 0)": lambda: torch.where(keep, x * scale, 0.0),
        "apply: x * keep * scale (bool-float kernel)": lambda: x * keep * scale,
        "apply: x.mul(scale).masked_fill_(~keep, 0)": lambda: x.mul(scale).masked_fill_(~keep, 0.0),
        "apply: keep.to(x.dtype).mul_(scale).mul_(x) (float-only)":
            lambda: keep.to(x.dtype).mul_(scale).mul_(x),
        "custom forward: noise.ge_(p).mul_(scale).mul_(x) + bool mask":
            lambda: (lambda noise: (noise >= p, noise.ge_(p).mul_(scale).mul_(x)))(torch.rand_like(x)),
    }
    print(f"\nvariants on 4096x4096 ({torch.get_num_threads()} threads), median ms of {rounds}:")
    sync = synchronizer(x)
    for name, op in variants.items():
        op()
        times = []
        for _ in range(rounds):
            sync()
            started = time.perf_counter()
            op()
            sync()
            times.append(time.perf_counter() - started)
        print(f"  {1e3 * statistics.median(times):8.1f}  {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--p", type=float, default=0.5)
    parser.add_argument("--rounds", type=int, default=7, help="timings per layer (median kept)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--variants", action="store_true", help="also time the mask variants")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, device {args.device}, {torch.get_num_threads()} threads, "
          f"p={args.p}, median of {args.rounds} rounds")
    print(f"{'shape':>10} | {'custom ms':>9} {'builtin ms':>10} {'time ratio':>10} | "
          f"{'custom B/el':>11} {'builtin B/el':>12} {'memory ratio':>12}")
    for shape in SHAPES:
        r = bench_shape(shape, args.p, args.rounds, args.device)
        custom, builtin = r["custom"], r["builtin"]
        print(f"{'x'.join(map(str, shape)):>10} | {custom['ms']:9.3f} {builtin['ms']:10.3f} "
              f"{custom['ms'] / builtin['ms']:10.2f} | "
              f"{custom['saved_bytes_per_element']:11.2f} {builtin['saved_bytes_per_element']:12.2f} "
              f"{custom['saved_bytes_per_element'] / builtin['saved_bytes_per_element']:12.2f}")
    if args.variants:
        variant_timings(args.p, args.rounds, args.device)


if __name__ == "__main__":
    main()
