#!/usr/bin/env python
"""Do bf16 and fp32 runs reach the same test accuracy? A TOST equivalence test over seeds.

Each seed trains the config twice, ``trainer.precision=fp32`` and ``bf16`` (a pair: the same
seed, so the same initial weights and shuffle order). The metric is the steady test accuracy,
the mean of the last 3 epochs (summary.json's ``steady`` when the run records it): at lr 0.5
the last epoch alone jumps by more than the margin. Per pair, delta = bf16 - fp32.

TOST (two one-sided tests, paired t-tests): bf16 is equivalent to fp32 within +-margin when
both H0: mean delta <= -margin and H0: mean delta >= +margin are rejected at alpha = 0.05,
i.e. when the 90% CI of the mean delta lies inside (-margin, +margin). The default margin,
0.005 (half a percentage point), is half the seed-to-seed sd of the steady test accuracy at the
default setting (0.011 over 20 seeds, fp32): a precision effect below it is smaller than what
changing the seed does. The script prints that sd, to check the margin against it.

    .venv/bin/python scripts/bf16_equivalence.py [--seeds 20] [--minutes 12] [--margin 0.005]
                                                 [OVERRIDES...]

Pairs are trained seed by seed until --seeds pairs are done or the next pair would end past
--minutes (at least 2 pairs). Runs go to a temporary folder, without TensorBoard files or
checkpoints (logging.* does not change what a run computes).
"""

import argparse
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from scipy import stats

from dropout_lab.hydra_runner import compose, typed_config
from dropout_lab.data import load_fashion_mnist
from dropout_lab.run_folder import STEADY_EPOCHS, read_run
from dropout_lab.device import check_precision, resolve_device
from dropout_lab.train import train

PAIR = ("fp32", "bf16")  # the precisions of a pair, in training order
ALPHA = 0.05
QUIET = ["trainer.progress=false", "logging.tensorboard=false", "logging.checkpoint=false"]


def train_pair(overrides: list, seed: int, out_dir: Path, data) -> dict:
    """One seed in both precisions: {"seed", precision: steady test accuracy,
    "epoch_seconds": {precision: [seconds per epoch]}}."""
    pair = {"seed": seed, "epoch_seconds": {}}
    for precision in PAIR:
        cfg = typed_config(compose([*QUIET, *overrides, f"seed={seed}",
                                    f"trainer.precision={precision}"]))
        result = train(cfg, out_dir / f"seed{seed}_{precision}", data=data)
        if result.status != "completed":
            raise SystemExit(f"seed {seed}, {precision}: run {result.status} ({result.error})")
        pair[precision] = read_run(result.run_dir).steady_test_accuracy
        pair["epoch_seconds"][precision] = [row["epoch_seconds"] for row in result.history]
    return pair


def train_pairs(overrides: list, max_pairs: int, minutes: float, out_dir: Path) -> list:
    """Pairs for seeds 0, 1, ... while the next one fits in ``minutes`` (at least 2 pairs)."""
    cfg = typed_config(compose([*QUIET, *overrides]))
    device = resolve_device(cfg.trainer.device)
    check_precision("bf16", device)  # one line now, not after the first fp32 run
    data = load_fashion_mnist(cfg.data, device)  # once for every run
    started, pairs = time.monotonic(), []
    for seed in range(max_pairs):
        elapsed = time.monotonic() - started
        if len(pairs) >= 2 and elapsed * (len(pairs) + 1) / len(pairs) > minutes * 60:
            break
        pairs.append(train_pair(overrides, seed, out_dir, data))
        print(f"  seed {seed}: fp32 {pairs[-1]['fp32']:.4f}  bf16 {pairs[-1]['bf16']:.4f}  "
              f"({time.monotonic() - started:.0f} s)", flush=True)
    return pairs


def tost(fp32: list, bf16: list, margin: float, alpha: float = ALPHA) -> dict:
    """Paired TOST of bf16 against fp32 within +-margin: mean delta, its (1 - 2 alpha) CI, the
    two one-sided p-values and whether both are below alpha."""
    deltas = [b - f for f, b in zip(fp32, bf16)]
    n = len(deltas)
    mean, sd = statistics.fmean(deltas), statistics.stdev(deltas)
    half_width = float(stats.t.ppf(1 - alpha, n - 1)) * sd / math.sqrt(n)
    # H1 mean delta > -margin: bf16 + margin against fp32; H1 mean delta < +margin: bf16 - margin.
    p_lower = stats.ttest_rel([b + margin for b in bf16], fp32, alternative="greater").pvalue
    p_upper = stats.ttest_rel([b - margin for b in bf16], fp32, alternative="less").pvalue
    return {"n": n, "margin": margin, "alpha": alpha, "mean_delta": mean, "sd_delta": sd,
            "ci": (mean - half_width, mean + half_width), "p_lower": float(p_lower),
            "p_upper": float(p_upper), "equivalent": bool(max(p_lower, p_upper) < alpha)}


def report(pairs: list, result: dict) -> str:
    fp32, bf16 = [p["fp32"] for p in pairs], [p["bf16"] for p in pairs]
    margin, confidence = result["margin"], 1 - 2 * result["alpha"]
    epoch = {precision: statistics.median(s for p in pairs for s in p["epoch_seconds"][precision])
             for precision in PAIR}
    verdict = (f"equivalent within +-{margin} at alpha = {result['alpha']} (the "
               f"{confidence:.0%} CI lies inside the margin)" if result["equivalent"] else
               f"NOT shown equivalent within +-{margin} at alpha = {result['alpha']}")
    return "\n".join([
        f"steady test accuracy (mean of the last {STEADY_EPOCHS} epochs), {result['n']} paired "
        f"seeds ({pairs[0]['seed']}-{pairs[-1]['seed']})",
        f"  fp32: mean {statistics.fmean(fp32):.4f}, seed-to-seed sd {statistics.stdev(fp32):.4f}",
        f"  bf16: mean {statistics.fmean(bf16):.4f}, seed-to-seed sd {statistics.stdev(bf16):.4f}",
        f"  delta (bf16 - fp32): mean {result['mean_delta']:+.4f}, sd {result['sd_delta']:.4f}, "
        f"{confidence:.0%} CI [{result['ci'][0]:+.4f}, {result['ci'][1]:+.4f}]",
        f"  TOST, margin +-{margin}: p(delta <= -{margin}) = {result['p_lower']:.2g}, "
        f"p(delta >= +{margin}) = {result['p_upper']:.2g}",
        f"  verdict: {verdict}",
        f"  epoch seconds, median over all epochs: fp32 {epoch['fp32']:.2f}, bf16 "
        f"{epoch['bf16']:.2f} ({epoch['fp32'] / epoch['bf16']:.2f}x)",
    ])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=20, help="at most this many pairs")
    parser.add_argument("--minutes", type=float, default=12.0,
                        help="start no pair that would end past this")
    parser.add_argument("--margin", type=float, default=0.005)
    parser.add_argument("overrides", nargs="*", help="config overrides for every run")
    args = parser.parse_args(argv)
    if args.seeds < 2:
        parser.error("--seeds has to be at least 2 (a paired t-test needs two pairs)")
    print(f"torch {torch.__version__}; overrides: "
          f"{' '.join(args.overrides) or '(default config)'}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bf16-equivalence-") as out_dir:
        pairs = train_pairs(args.overrides, args.seeds, args.minutes, Path(out_dir))
    result = tost([p["fp32"] for p in pairs], [p["bf16"] for p in pairs], args.margin)
    print(report(pairs, result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
