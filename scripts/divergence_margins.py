#!/usr/bin/env python
"""Measure: the largest windowed training loss of a real run, the value divergence.py compares
with trainer.divergence_threshold (the mean over each CHECK_STEPS-step window and each epoch's
last one). Trains one run with the threshold off (NaN/inf still ends it) and prints one JSON
line: status, the largest finite window, the largest epoch loss, the final test accuracy. What
the README's Reliability section gives for the default (1e5) was measured with it, one thread:

    .venv/bin/python scripts/divergence_margins.py default
    .venv/bin/python scripts/divergence_margins.py ex2_none_s3 model.dropout.kind=none \\
        trainer.epochs=50 seed=3
    .venv/bin/python scripts/divergence_margins.py lr1e6 optim.lr=1e6 data.subset=512 \\
        data.test_subset=512 trainer.epochs=1
"""

import json
import math
import sys
import tempfile
from pathlib import Path

from dropout_lab import divergence
from dropout_lab.hydra_runner import compose, typed_config
from dropout_lab.train import train


def main(name: str, overrides: list) -> None:
    windows = []
    judge = divergence.LossWatch.diverged

    def recorded(watch, loss_sum: float, count: int):
        windows.append((loss_sum - watch.sum) / max(count - watch.count, 1))
        return judge(watch, loss_sum, count)

    divergence.LossWatch.diverged = recorded  # the same windows, seen as they are judged
    cfg = typed_config(compose([*overrides, "trainer.divergence_threshold=null",
                                "trainer.num_threads=1", "trainer.progress=false"]))
    with tempfile.TemporaryDirectory() as folder:
        result = train(cfg, Path(folder) / name)
    finite = [window for window in windows if math.isfinite(window)]
    print(json.dumps({"run": name, "status": str(result.status), "error": result.error,
                      "max_window": max(finite, default=None),
                      "max_epoch_loss": max((row["train_loss"] for row in result.history), default=None),
                      "final_test_accuracy": result.final.get("test_accuracy")}))


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2:])
