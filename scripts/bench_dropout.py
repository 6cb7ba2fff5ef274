#!/usr/bin/env python
"""Benchmark: the from-scratch inverted dropout layer against ``torch.nn.Dropout``.

For activations of 256x256 and 4096x4096 it times forward + backward of each layer in this one
process (rounds interleave the two layers, so a neighbour's load hits both alike) and counts
the bytes autograd saves for backward (``torch.autograd.graph.saved_tensors_hooks``, input not
counted). It prints the figures and the ratios custom / built-in.

    .venv/bin/python scripts/bench_dropout.py [--p 0.5] [--rounds 7] [--threads N] [--device cpu]
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


def step_seconds(layer: nn.Module, x: torch.Tensor, grad: torch.Tensor, repeats: int) -> float:
    """Mean seconds of one forward + backward over ``repeats`` steps."""
    sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--p", type=float, default=0.5)
    parser.add_argument("--rounds", type=int, default=7, help="timings per layer (median kept)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--device", default="cpu")
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


if __name__ == "__main__":
    main()
