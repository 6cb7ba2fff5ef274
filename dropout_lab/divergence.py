"""When a training run has diverged: its loss became NaN or infinite, or grew past
``trainer.divergence_threshold`` (as Lightning's ``EarlyStopping(divergence_threshold=...)``).

A learning rate far too large does not always overflow: at ``optim.lr=1e6`` the mean training
loss reaches 4.6e14 and stays finite, with chance accuracy. Such a run is diverged, a result (the
same config and seed diverge again), not a model to rank among the others.

The loss watched is the mean over the last ``CHECK_STEPS`` steps (and over the epoch's last,
shorter window at its end), not a single batch: one noisy batch at a large learning rate is not
a divergence, and reading a value off the device every step would stall CUDA runs.
"""

import math
from typing import Optional

# Steps between checks. A check reads the loss off the device, which on a GPU waits for all
# queued work. A diverged run wastes at most this many steps; the epoch is reported either way.
CHECK_STEPS = 25


class LossWatch:
    """The running sum of an epoch's training loss, checked window by window."""

    def __init__(self, threshold: Optional[float]):
        self.threshold = threshold
        self.sum, self.count = 0.0, 0  # at the end of the last window

    def diverged(self, loss_sum: float, count: int) -> Optional[str]:
        """Why the run has diverged, given the epoch's loss sum and image count so far (one
        line, with the value that tripped it), or None."""
        window = (loss_sum - self.sum) / max(count - self.count, 1)
        self.sum, self.count = loss_sum, count
        if not math.isfinite(window):
            return "loss became NaN or infinite"
        if self.threshold is not None and window > self.threshold:
            return (f"training loss {window:.4g} exceeded trainer.divergence_threshold="
                    f"{self.threshold:g}")
        return None
