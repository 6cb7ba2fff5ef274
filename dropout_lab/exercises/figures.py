"""Plot helpers of the exercise reports (figures are made with ``dropout_lab.plots``): points of
estimates with their spread over seeds, log axes with a tick per setting, and the finishing
touches and saving every exercise figure shares."""

from pathlib import Path
from typing import Sequence

from dropout_lab.disk import save_figure
from dropout_lab.exercises.stats import Estimate


def errorbar(axes, xs: Sequence[float], estimates: Sequence[Estimate], label: str,
             **style) -> None:
    """Means with ± std bars (``style`` overrides the round markers and caps); settings without
    a completed run are left out."""
    points = [(x, est.mean, est.std or 0.0) for x, est in zip(xs, estimates) if est.mean is not None]
    if points:
        axes.errorbar([p[0] for p in points], [p[1] for p in points], yerr=[p[2] for p in points],
                      label=label, **{"marker": "o", "capsize": 3, **style})


def log_x_ticks(axes, xs: Sequence[float]) -> None:
    """A log x axis with one labelled tick per value of ``xs`` and no minor ticks (no 3×10⁰
    labels between them)."""
    axes.set_xscale("log")
    axes.minorticks_off()
    axes.set_xticks(xs, [str(x) for x in xs])


def save_panels(figure, axes: Sequence, path: Path, *, legend: bool = True,
                legend_size=None, grid_axis: str = "both") -> str:
    """A light grid on every panel and, with ``legend``, a legend on each; saves the PNG and
    returns its file name (what the report links)."""
    for panel in axes:
        panel.grid(alpha=0.3, axis=grid_axis)
        if legend:
            panel.legend(fontsize=legend_size)
    return save_figure(figure, path).name
