"""Training curves from the per-fold ``history.csv`` files of a run (columns epoch, loss, acc, …)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from geomer.errors import GeomerError
from geomer.rundir import read_history


def plot_training_curves(
    histories: Mapping[str, pd.DataFrame] | Sequence[str | Path], *, title: str | None = None
) -> Figure:
    """One axis per metric column (every numeric column except ``epoch``, e.g. loss and acc):
    a thin line per history (fold × seed) and their mean over histories, bold.

    ``histories``: mapping label → DataFrame, or paths of history.csv files (labelled by their
    ``seed-<s>/<fold>`` folders).
    """
    if not isinstance(histories, Mapping):
        paths = [Path(p) for p in histories]
        histories = {f"{p.parent.parent.name}/{p.parent.name}": read_history(p) for p in paths}
    if not histories:
        raise GeomerError("no training histories to plot")
    for label, frame in histories.items():
        if "epoch" not in frame.columns:
            raise GeomerError(f"history {label}: missing column epoch")
    metrics = [
        column
        for column in dict.fromkeys(c for frame in histories.values() for c in frame.columns)
        if column != "epoch" and all(pd.api.types.is_numeric_dtype(f[column]) for f in histories.values() if column in f)
    ]
    if not metrics:
        raise GeomerError("training histories have no metric column besides epoch")

    figure = Figure(figsize=(4.0 * len(metrics), 3.2), layout="constrained")
    axes = np.atleast_1d(figure.subplots(1, len(metrics)))
    for ax, metric in zip(axes, metrics):
        frames = [f[["epoch", metric]].dropna() for f in histories.values() if metric in f]
        for frame in frames:
            ax.plot(frame["epoch"], frame[metric], color="tab:blue", alpha=0.25, linewidth=0.8)
        mean = pd.concat(frames).groupby("epoch")[metric].mean()
        ax.plot(mean.index, mean.to_numpy(), color="tab:blue", linewidth=2.0, label=f"mean of {len(frames)}")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        ax.set_ylabel(metric)
        ax.set_title(metric)
        ax.legend(loc="best", fontsize=8)
    if title:
        figure.suptitle(title)
    return figure
