#!/usr/bin/env python
"""Benchmark: one training epoch of dropout-lab against two baselines, in this one process.

(a) One epoch plus the test evaluation, as the training core runs it (the two functions
    ``train()`` calls per epoch: ``train_epoch`` and ``evaluate_split``), against only the matrix
    multiplications that epoch needs, the same shapes through ``torch.mm``: per training batch
    the forward products and the backward products for the weight gradients and the input
    gradients (none for the image input, which needs no gradient), then the test set's
    forward products. Target: <= 1.3.
(b) The same epoch against a textbook-style loop (d2l's ``train_epoch_ch3`` +
    ``evaluate_accuracy``): torchvision's ``FashionMNIST`` with ``ToTensor``, ``DataLoader``
    with worker processes (d2l uses 4), the same model and optimiser. Target: >= 5x faster.
(c) The floor of eager PyTorch for the same epoch, against the same matrix products: the
    epoch written out by hand, without autograd, modules or an optimiser object: ReLU and
    dropout as one mask, SGD fused into the weight-gradient products (``W.addmm_(g.T, x,
    alpha=-lr)``). No code of this project can beat it without fused kernels; it shows how
    much of the gap to 1.3 is the framework's and how much the work's (default SGD, kinds
    custom or none only).
(d) With ``--compile``: the epoch of (a) with the model through ``torch.compile``.
(e) With ``--precision bf16``: the epoch with ``trainer.precision=bf16`` (autocast) against the
    same matrix products in bf16 and against the fp32 epoch of (a), in the same rounds.

``--device cuda`` runs (a), (d) and (e) on the GPU (data, model and products there; the clock
waits for the GPU's queued work before each reading); (b) and (c) are the CPU's.

Rounds interleave the contenders, so a neighbour's load hits each alike; the medians are
compared. Extra arguments are config overrides (default: the default config). On a machine
shared with other jobs, ``trainer.num_threads=1 --clock cpu`` gives steadier figures for (a):
process CPU time of one thread is not stretched by waiting for a core.

    .venv/bin/python scripts/bench_train.py [--rounds 5] [--textbook-rounds 3] [--workers 4]
                                            [--clock wall|cpu] [--skip-textbook] [--floor] [--compile]
                                            [--precision bf16] [--device cpu|cuda] [OVERRIDES...]
"""

import argparse
import os
import statistics
import tempfile
import threading
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

from dropout_lab.hydra_runner import compose, typed_config
from dropout_lab.config import PRECISIONS
from dropout_lab.data import FILES, batches, find_source, load_fashion_mnist, read_verified
from dropout_lab.errors import ConfigError
from dropout_lab.model import N_CLASSES, N_INPUTS, build_model
from dropout_lab.device import PRECISION_DTYPES, check_precision, resolve_device
from dropout_lab.optim import build_optimizer
from dropout_lab.train import evaluate_split, train_epoch


def batch_sizes(n: int, batch_size: int) -> list:
    """The sizes of the mini-batches one pass over n examples makes (the last one smaller)."""
    return [min(batch_size, n - start) for start in range(0, n, batch_size)]


def matmul_epoch_seconds(layer_sizes: list, train_batches: list, test_batches: list,
                         clock=time.perf_counter, dtype=torch.float32, device="cpu") -> float:
    """Seconds for just the epoch's matrix products through ``torch.mm``, in autograd's layouts.

    Linear layer y = x W^T (W: out x in). Forward: mm(x, W^T). Backward: weight gradient
    mm(g^T, x) (out x in), input gradient mm(g, W) (B x in), for every layer but the first.
    Under bf16 autocast all of them run in bf16 (``dtype``).
    """
    weights = [torch.randn(n_out, n_in, dtype=dtype, device=device)
               for n_in, n_out in zip(layer_sizes, layer_sizes[1:])]
    activations = {b: [torch.randn(b, n, dtype=dtype, device=device) for n in layer_sizes]
                   for b in set(train_batches) | set(test_batches)}
    started = clock()
    for b in train_batches:
        acts = activations[b]
        for i, weight in enumerate(weights):
            torch.mm(acts[i], weight.t())  # forward
        for i, weight in enumerate(weights):
            torch.mm(acts[i + 1].t(), acts[i])  # weight gradient; acts[i + 1] stands for g
            if i > 0:
                torch.mm(acts[i + 1], weight)  # input gradient
    for b in test_batches:
        acts = activations[b]
        for i, weight in enumerate(weights):
            torch.mm(acts[i], weight.t())
    return clock() - started


class OurEpoch:
    """One epoch as ``train()`` runs it: ``train_epoch`` (shuffled, dropout on), ``evaluate_split``."""

    def __init__(self, cfg, data, compiled: bool = False):
        torch.manual_seed(cfg.seed)
        self.cfg, self.data = cfg, data
        self.model = build_model(cfg.model).to(data.train.images.device)
        self.optimizer = build_optimizer(cfg.optim, self.model.parameters())
        if compiled:  # the same epoch with the model through torch.compile (inductor)
            self.model = torch.compile(self.model)
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.never_interrupted = threading.Event()

    def seconds(self, clock=time.perf_counter) -> float:
        trainer = self.cfg.trainer
        started = clock()
        train_epoch(self.model, self.optimizer, self.data.train, trainer.batch_size,
                    self.generator, None, self.never_interrupted, trainer.precision)
        evaluate_split(self.model, self.data.test, trainer.eval_batch_size,
                       precision=trainer.precision)
        return clock() - started


class FloorEpoch:
    """The epoch written out by hand (see (c) in the module docstring); the same data, shuffle,
    batches, init, dropout probabilities and SGD step as ``OurEpoch``, no autograd."""

    def __init__(self, cfg, data):
        layers = cfg.model.dropout.per_layer(len(cfg.model.hidden))  # (kind, p) per hidden layer
        if {kind for kind, _ in layers} - {"custom", "none"} or cfg.optim.name != "sgd" \
                or cfg.optim.momentum or cfg.optim.weight_decay or cfg.trainer.precision != "fp32":
            raise SystemExit("--floor: only dropout kinds custom/none with plain SGD in fp32")
        self.p = [p if kind == "custom" else 0.0 for kind, p in layers]
        torch.manual_seed(cfg.seed)
        linears = [m for m in build_model(cfg.model).modules() if isinstance(m, torch.nn.Linear)]
        self.weights = [m.weight.detach().clone() for m in linears]
        self.biases = [m.bias.detach().clone() for m in linears]
        self.cfg, self.data = cfg, data
        self.generator = torch.Generator().manual_seed(cfg.seed)

    def step(self, x, y, lr):
        acts, masks = [x], []
        for weight, bias, p in zip(self.weights, self.biases, self.p):
            h = torch.addmm(bias, acts[-1], weight.t())
            mask = (h > 0).float()  # ReLU and dropout as one multiplier
            if p:
                mask.mul_(torch.rand_like(h).ge_(p)).mul_(1.0 / (1.0 - p))
            masks.append(mask)
            acts.append(h.mul_(mask))
        logits = torch.addmm(self.biases[-1], acts[-1], self.weights[-1].t())
        log_p = F.log_softmax(logits, dim=1)
        loss = F.nll_loss(log_p, y, reduction="sum")
        correct = (logits.argmax(dim=1) == y).sum()
        grad = log_p.exp_()  # d(mean loss)/d logits = (softmax - onehot) / B
        grad[torch.arange(len(y)), y] -= 1.0
        grad.div_(len(y))
        for i in reversed(range(len(self.weights))):
            grad_input = torch.mm(grad, self.weights[i]).mul_(masks[i - 1]) if i else None
            self.weights[i].addmm_(grad.t(), acts[i], alpha=-lr)  # SGD in the GEMM
            self.biases[i].add_(grad.sum(dim=0), alpha=-lr)
            grad = grad_input
        return loss, correct

    def seconds(self, clock=time.perf_counter) -> float:
        started = clock()
        loss_sum, correct = torch.zeros(()), torch.zeros((), dtype=torch.long)
        for images, labels in batches(self.data.train, self.cfg.trainer.batch_size,
                                      self.generator):
            loss, hits = self.step(images, labels, self.cfg.optim.lr)
            loss_sum += loss
            correct += hits
        loss_sum.item(), correct.item()
        with torch.no_grad():
            for images, labels in batches(self.data.test, self.cfg.trainer.eval_batch_size):
                h = images
                for weight, bias in zip(self.weights[:-1], self.biases[:-1]):
                    h = torch.addmm(bias, h, weight.t()).relu_()
                logits = torch.addmm(self.biases[-1], h, self.weights[-1].t())
                F.cross_entropy(logits, labels, reduction="sum").item()
                (logits.argmax(dim=1) == labels).sum().item()
        return clock() - started


# --- the textbook-style loop ---------------------------------------------------------------

def torchvision_root(cfg, root: Path) -> Path:
    """A torchvision root with the raw idx files, decompressed from our verified sources."""
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    source = find_source(cfg.data)
    for name in FILES:
        (raw / name.removesuffix(".gz")).write_bytes(read_verified(source / name))
    return root


def textbook_loaders(cfg, root: Path, workers: int):
    from torch.utils.data import DataLoader, Subset
    from torchvision import datasets, transforms

    to_tensor = transforms.ToTensor()
    train_set = datasets.FashionMNIST(str(root), train=True, transform=to_tensor, download=False)
    test_set = datasets.FashionMNIST(str(root), train=False, transform=to_tensor, download=False)
    if cfg.data.subset:  # the same images ours trains on
        train_set = Subset(train_set, range(cfg.data.subset))
    if cfg.data.test_subset:
        test_set = Subset(test_set, range(cfg.data.test_subset))
    batch_size = cfg.trainer.batch_size
    # d2l's 4 workers are more than this machine's cores: intended, so no warning about it.
    warnings.filterwarnings("ignore", "This DataLoader will create")
    return (DataLoader(train_set, batch_size, shuffle=True, num_workers=workers),
            DataLoader(test_set, batch_size, shuffle=False, num_workers=workers))


def textbook_epoch_seconds(model, optimizer, train_iter, test_iter) -> float:
    """d2l's train_epoch_ch3 (loss per example, mean for backward) + evaluate_accuracy."""
    started = time.perf_counter()
    model.train()
    loss_sum, correct, count = 0.0, 0.0, 0
    for images, labels in train_iter:
        logits = model(images)
        loss = F.cross_entropy(logits, labels, reduction="none")
        optimizer.zero_grad()
        loss.mean().backward()
        optimizer.step()
        loss_sum += float(loss.detach().sum())
        correct += float((logits.argmax(dim=1) == labels).sum())
        count += labels.numel()
    model.eval()
    test_correct, test_count = 0.0, 0
    with torch.no_grad():
        for images, labels in test_iter:
            test_correct += float((model(images).argmax(dim=1) == labels).sum())
            test_count += labels.numel()
    return time.perf_counter() - started


# --- report --------------------------------------------------------------------------------

def print_times(name: str, times: list) -> float:
    median = statistics.median(times)
    print(f"  {name:<58} median {median:7.3f} s  [{' '.join(f'{t:.3f}' for t in times)}]")
    return median


def synchronised(clock, device: torch.device):
    """``clock`` read after the device's queued work has finished (CUDA runs asynchronously:
    unsynchronised, a reading times the launches, not the work)."""
    if device.type != "cuda":
        return clock

    def read():
        torch.cuda.synchronize(device)
        return clock()
    return read


def verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--textbook-rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=4, help="textbook DataLoader workers")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="for (a): wall time, or this process's CPU time (use with 1 thread)")
    parser.add_argument("--skip-textbook", action="store_true")
    parser.add_argument("--floor", action="store_true",
                        help="also (c): the epoch by hand, without autograd (eager's floor)")
    parser.add_argument("--compile", action="store_true",
                        help="also the epoch with the model through torch.compile (needs a C++ "
                             "compiler; the warm-up compiles, 5-20 s)")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32",
                        help="also (e): the epoch in this trainer.precision against its matrix "
                             "products in that dtype and against the epoch of (a)")
    parser.add_argument("--device", default="cpu",
                        help="trainer.device of (a), (d) and (e): cpu, cuda or cuda:N")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()

    device_override = f"trainer.device={args.device}"
    cfg = typed_config(compose([device_override, *args.overrides]))
    try:
        device = resolve_device(args.device)
    except ConfigError as error:
        raise SystemExit(f"--device: {error}") from None
    if device.type == "cuda" and (args.floor or not args.skip_textbook):
        raise SystemExit("--device cuda: add --skip-textbook, leave out --floor (CPU baselines)")
    low = None  # (e): the config in --precision, when it differs from (a)'s
    if args.precision != cfg.trainer.precision:
        low = typed_config(compose([device_override, *args.overrides,
                                    f"trainer.precision={args.precision}"]))
        try:
            check_precision(args.precision, device)
        except ConfigError as error:
            raise SystemExit(f"--precision: {error}") from None
    if cfg.trainer.num_threads:
        torch.set_num_threads(cfg.trainer.num_threads)
    clock = synchronised(time.process_time if args.clock == "cpu" else time.perf_counter, device)
    data = load_fashion_mnist(cfg.data, device)
    layer_sizes = [N_INPUTS, *cfg.model.hidden, N_CLASSES]
    train_batches = batch_sizes(len(data.train), cfg.trainer.batch_size)
    test_batches = batch_sizes(len(data.test), cfg.trainer.eval_batch_size)
    where = f"{torch.cuda.get_device_name(device)}, CUDA {torch.version.cuda}" \
        if device.type == "cuda" else f"{os.cpu_count()} CPUs, {torch.get_num_threads()} threads"
    print(f"torch {torch.__version__}, {where}, "
          f"{args.clock} clock; MLP {'-'.join(map(str, layer_sizes))}, dropout "
          f"{cfg.model.dropout.kind} p={cfg.model.dropout.p}, batch {cfg.trainer.batch_size}, "
          f"{len(data.train)} train / {len(data.test)} test images")

    ours = OurEpoch(cfg, data)

    def matmul_seconds(precision):
        def seconds(clock=time.perf_counter):
            return matmul_epoch_seconds(layer_sizes, train_batches, test_batches, clock,
                                        PRECISION_DTYPES[precision], device)
        return seconds

    contenders = {"ours": ours.seconds, "matmul": matmul_seconds(cfg.trainer.precision)}
    if args.floor:
        contenders["floor"] = FloorEpoch(cfg, data).seconds
    if args.compile:
        contenders["compiled"] = OurEpoch(cfg, data, compiled=True).seconds
    if low:
        contenders["low"] = OurEpoch(low, data).seconds
        contenders["low_matmul"] = matmul_seconds(args.precision)
    for measure in contenders.values():  # warm-up
        measure()
    times = {name: [] for name in contenders}
    for _ in range(args.rounds):  # interleaved: a neighbour's load hits each alike
        for name, measure in contenders.items():
            times[name].append(measure(clock))
    print(f"(a) one epoch + test evaluation against its matrix products alone "
          f"({cfg.trainer.precision})")
    ours_median = print_times("dropout-lab epoch (train_epoch + evaluate_split)", times["ours"])
    matmul_median = print_times("torch.mm only, same shapes (fwd, bwd weight + input grads)",
                                times["matmul"])
    ratio = ours_median / matmul_median
    print(f"  ratio {ratio:.2f} (target <= 1.3: {verdict(ratio <= 1.3)})")
    if args.floor:
        print("(c) the floor of eager PyTorch, same rounds: the epoch by hand (no autograd, "
              "fused ReLU+dropout mask, SGD in the GEMM)")
        floor_median = print_times("hand-written epoch", times["floor"])
        print(f"  ratio {floor_median / matmul_median:.2f} to the products; dropout-lab's epoch "
              f"is {ours_median / floor_median:.2f}x this floor")
    if args.compile:
        print("(d) the same epoch with the model through torch.compile, same rounds")
        compiled_median = print_times("torch.compile'd model (train_epoch + evaluate_split)",
                                      times["compiled"])
        print(f"  ratio {compiled_median / matmul_median:.2f} to the products; "
              f"{compiled_median / ours_median:.2f}x the eager epoch")
    if low:
        print(f"(e) the epoch with trainer.precision={args.precision}, same rounds")
        low_median = print_times(f"dropout-lab epoch, {args.precision} autocast", times["low"])
        low_matmul_median = print_times(f"torch.mm only, same shapes, {args.precision}",
                                        times["low_matmul"])
        print(f"  ratio {low_median / low_matmul_median:.2f} to its products; "
              f"{ours_median / low_median:.2f}x faster than the {cfg.trainer.precision} epoch "
              f"(its products: {matmul_median / low_matmul_median:.2f}x faster)")
    if args.skip_textbook:
        return

    with tempfile.TemporaryDirectory(prefix="bench-train-") as scratch:
        train_iter, test_iter = textbook_loaders(cfg, torchvision_root(cfg, Path(scratch)),
                                                 args.workers)
        torch.manual_seed(cfg.seed)
        model = build_model(cfg.model)
        optimizer = build_optimizer(cfg.optim, model.parameters())
        textbook_times, ours_times = [], []
        for _ in range(args.textbook_rounds):
            textbook_times.append(textbook_epoch_seconds(model, optimizer, train_iter, test_iter))
            ours_times.append(ours.seconds())
    print(f"(b) one epoch + test evaluation against a textbook loop (torchvision ToTensor, "
          f"DataLoader with {args.workers} workers; wall clock)")
    textbook_median = print_times("textbook loop", textbook_times)
    ours_median = print_times("dropout-lab epoch", ours_times)
    speedup = textbook_median / ours_median
    print(f"  ours is {speedup:.1f}x faster (target >= 5x: {verdict(speedup >= 5)})")


if __name__ == "__main__":
    main()
