"""Progress for a person, in the form its destination suits.

On a terminal a tqdm bar redraws itself in place. Anywhere else (a file, a pipe, a Slurm log,
CI, ``| tee``) every redraw stays in the output as a carriage-return fragment: hundreds of
them per run. So there progress is plain lines at the moments that matter, which the caller
names: an epoch ended, a job ended. One object serves both destinations; the caller makes
both calls and each is a no-op where it does not fit:

    progress = Progress(total=steps, unit="batch")
    progress.update(1)                      # bar: advances;  lines: nothing
    progress.set_postfix(loss="0.412")      # bar: shown;     lines: nothing
    progress.tell("sweep: 3/8 jobs ...")    # bar: nothing;   lines: written
    progress.note("epoch 3/10: ...")        # bar: a line above it, kept;  lines: written
    progress.close()

No torch import: the sweep's process uses it to count jobs.
"""

import sys
import time
from typing import Dict, Optional, TextIO

# The longest a line-by-line log stays silent while a sweep runs and no job ends.
QUIET_SECONDS = 30.0


def is_live(stream: TextIO) -> bool:
    """Whether a bar can redraw itself on ``stream``: a terminal, or a Jupyter kernel (where
    tqdm.auto draws a widget instead)."""
    if "ipykernel" in sys.modules:
        return True
    try:
        return stream.isatty()
    except (AttributeError, ValueError, OSError):  # no isatty, or closed
        return False


class Progress:
    """A count towards ``total`` (None: unknown): a live bar on a terminal, lines elsewhere."""

    def __init__(self, total: Optional[int] = None, *, unit: str, desc: Optional[str] = None,
                 initial: int = 0, leave: bool = True, stream: Optional[TextIO] = None,
                 started: Optional[float] = None):
        """``started`` (a time.time()): count the elapsed time from then, and show no rate (a
        count of few, long items, such as a sweep's jobs, that began before the bar did)."""
        self.stream = stream or sys.stderr
        self.live = is_live(self.stream)
        self.n = initial
        self.last_line = time.monotonic()  # `every` counts from the start, not from a line
        self.bar = None
        if self.live:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, unit=unit, desc=desc, leave=leave,
                            dynamic_ncols=True, file=self.stream,
                            bar_format=None if started is None else elapsed_format(unit, total))
            if started is not None:
                self.bar.start_t = started
                self.bar.refresh()

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.bar is not None:
            self.bar.update(n)

    def set_count(self, n: int) -> None:
        """Set the count and redraw (the elapsed time moves even when the count does not)."""
        self.n = n
        if self.bar is not None:
            self.bar.n = n
            self.bar.refresh()

    def set_postfix(self, **fields) -> None:
        if self.bar is not None:
            self.bar.set_postfix(**fields)

    def tell(self, line: str, every: float = 0.0) -> None:
        """Write ``line`` where no bar is drawn; with ``every``, only if no line went out in
        the last ``every`` seconds (a heartbeat that repeats an unchanged status)."""
        if self.live or time.monotonic() - self.last_line < every:
            return
        self.last_line = time.monotonic()
        print(line, file=self.stream, flush=True)

    def note(self, line: str) -> None:
        """A line that stays: above the bar on a terminal, a plain line elsewhere."""
        self.last_line = time.monotonic()
        if self.bar is not None:
            self.bar.write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def elapsed_format(unit: str, total: Optional[int]) -> str:
    """A tqdm bar format with the count and the elapsed time, no rate and no estimate."""
    if total is None:
        return f"{{desc}}: {{n_fmt}} {unit}s [{{elapsed}} elapsed]"
    return f"{{l_bar}}{{bar}}| {{n_fmt}}/{{total_fmt}} {unit}s [{{elapsed}} elapsed]"


# --- the plain lines --------------------------------------------------------------------------

def describe_epoch(metrics: dict, epochs: int) -> str:
    """``epoch 3/10: train loss 0.4102, train acc 0.852, test acc 0.846 (0.9 s)``, with
    ``val acc 0.851`` before the test accuracy when the run holds out a validation split."""
    val = f"val acc {metrics['val_accuracy']:.3f}, " if "val_accuracy" in metrics else ""
    return (f"epoch {metrics['epoch']}/{epochs}: train loss {metrics['train_loss']:.4f}, "
            f"train acc {metrics['train_accuracy']:.3f}, {val}test acc "
            f"{metrics['test_accuracy']:.3f} ({metrics['epoch_seconds']:.1f} s)")


def describe_jobs(ended: int, total: Optional[int], not_completed: Dict[str, int],
                  seconds: float) -> str:
    """``sweep: 5/12 jobs ended (1 failed), 2 min elapsed``; a search has no total."""
    count = f"{ended}/{total} jobs" if total else f"{ended} job{'' if ended == 1 else 's'}"
    bad = ", ".join(f"{number} {status}" for status, number in not_completed.items() if number)
    return f"sweep: {count} ended{f' ({bad})' if bad else ''}, {duration(seconds)} elapsed"


def duration(seconds: float) -> str:
    """A wall time the way a person says it: 40 s, 12 min, 2 h 5 min."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"
