"""Figures, as the sweep report (report.py) and the exercise reports draw them: matplotlib
without a display (Agg), imported only when a figure is made. Save with ``disk.save_figure``."""

from typing import List, Sequence, Tuple


def new_figure(ncols: int = 1, width: float = 6.0, height: float = 4.2) -> Tuple[object, List]:
    """A figure with ``ncols`` panels side by side, each ``width`` × ``height`` inches:
    (figure, [axes, ...])."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, ncols, figsize=(width * ncols, height), layout="constrained",
                                squeeze=False)
    return figure, list(axes[0])


def std_band(axes, xs: Sequence[float], means: Sequence[float], stds: Sequence[float],
             **style) -> None:
    """Shade mean ± std around a curve (``style``: fill_between's color, alpha, ...)."""
    axes.fill_between(xs, [m - s for m, s in zip(means, stds)],
                      [m + s for m, s in zip(means, stds)], **style)
