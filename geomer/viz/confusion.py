"""Confusion matrices: counts beside the row-normalised (per true class recall) view."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from geomer.errors import check_shape


def plot_confusion_matrix(confusion: np.ndarray, class_names: Sequence[str], *, title: str | None = None) -> Figure:
    """Two heatmaps: counts, and rows normalised to sum to 1 (the diagonal is per-class recall).

    Shapes:
        confusion: [C, C] counts, rows true class, columns predicted class.
    """
    confusion = np.asarray(confusion)
    c = len(class_names)
    check_shape(confusion, (c, c), "confusion matrix", hint=f" for {c} class names")
    totals = confusion.sum(axis=1, keepdims=True)
    normalised = np.divide(confusion, totals, out=np.zeros(confusion.shape, dtype=np.float64), where=totals > 0)

    figure = Figure(figsize=(2.0 + 2.2 * c, 1.2 + 0.8 * c), layout="constrained")
    axes = figure.subplots(1, 2)
    panels = ((axes[0], confusion, "counts", "{:d}", None), (axes[1], normalised, "row-normalised", "{:.2f}", 1.0))
    for ax, values, heading, fmt, vmax in panels:
        image = ax.imshow(values, cmap="Blues", vmin=0, vmax=vmax, interpolation="nearest")
        ax.set_xticks(range(c), labels=list(class_names), rotation=45, ha="right", rotation_mode="anchor")
        ax.set_yticks(range(c), labels=list(class_names))
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(heading)
        middle = (image.get_clim()[0] + image.get_clim()[1]) / 2
        for i in range(c):
            for j in range(c):
                value = int(values[i, j]) if fmt == "{:d}" else float(values[i, j])
                ax.text(j, i, fmt.format(value), ha="center", va="center", fontsize=8,
                        color="white" if values[i, j] > middle else "black")
        figure.colorbar(image, ax=ax, shrink=0.8)
    if title:
        figure.suptitle(title)
    return figure
