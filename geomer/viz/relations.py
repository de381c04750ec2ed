"""Component-relation heatmaps: one matrix, and side-by-side panels of several models."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from geomer.errors import GeomerError

RELATION_CMAP = "viridis"


def _check_matrix(matrix: np.ndarray, component_names: Sequence[str], what: str) -> np.ndarray:
    matrix = np.asarray(matrix, dtype=np.float32)
    k = len(component_names)
    if matrix.shape != (k, k):
        raise GeomerError(f"{what}: relation matrix of shape {list(matrix.shape)} for {k} component names")
    return matrix


def _draw_heatmap(
    ax: Axes,
    matrix: np.ndarray,
    component_names: Sequence[str],
    *,
    title: str | None,
    vmin: float | None,
    vmax: float | None,
    annotate: bool,
    show_row_labels: bool = True,
):
    image = ax.imshow(matrix, cmap=RELATION_CMAP, vmin=vmin, vmax=vmax, interpolation="nearest")
    k = len(component_names)
    ax.set_xticks(range(k), labels=list(component_names), rotation=45, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(k), labels=list(component_names) if show_row_labels else [])
    ax.set_xlabel("to component")
    if show_row_labels:
        ax.set_ylabel("from component")
    if title:
        ax.set_title(title)
    if annotate and np.all(np.isfinite(matrix)):
        low, high = image.get_clim()
        middle = (low + high) / 2
        for i in range(k):
            for j in range(k):
                ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=6,
                        color="black" if matrix[i, j] > middle else "white")
    return image


def plot_relation_matrix(
    matrix: np.ndarray,
    component_names: Sequence[str],
    *,
    title: str | None = None,
    vmin: float | None = None,
    vmax: float | None = None,
    annotate: bool = True,
) -> Figure:
    """Heatmap of one relation matrix, rows and columns labelled with the component names.

    Shapes:
        matrix: [K, K] (row i: how component i relates to each component j).
    """
    matrix = _check_matrix(matrix, component_names, title or "relation heatmap")
    figure = Figure(figsize=(1.0 + 0.6 * len(component_names), 0.8 + 0.6 * len(component_names)), layout="constrained")
    ax = figure.subplots()
    image = _draw_heatmap(ax, matrix, component_names, title=title, vmin=vmin, vmax=vmax, annotate=annotate)
    figure.colorbar(image, ax=ax, label="relation weight", shrink=0.8)
    return figure


def plot_relation_panel(
    models: Mapping[str, np.ndarray | Mapping[str, np.ndarray]],
    component_names: Sequence[str],
    *,
    ground_truth: Mapping[str, np.ndarray] | np.ndarray | None = None,
    title: str | None = None,
    annotate: bool = False,
) -> Figure:
    """Side-by-side relation heatmaps: one column per model (plus "ground truth", last, when
    given), one row per class.

    ``models`` maps a column label to a [K,K] matrix or to a mapping class name → [K,K]; rows are
    the union of class names in order of appearance (a cell a model lacks stays empty). Each
    column has its own colour scale (models and the ground truth scale relations differently;
    the comparison is about pattern, see ``geomer.relations``).
    """
    columns: dict[str, dict[str, np.ndarray]] = {}
    for name, value in models.items():
        columns[name] = dict(value) if isinstance(value, Mapping) else {"": value}
    if ground_truth is not None:
        columns["ground truth"] = dict(ground_truth) if isinstance(ground_truth, Mapping) else {"": ground_truth}
    if not columns:
        raise GeomerError("no relation matrices to plot")
    classes = list(dict.fromkeys(c for column in columns.values() for c in column))
    for name, column in columns.items():
        for c, matrix in column.items():
            column[c] = _check_matrix(matrix, component_names, f"{name} {c}".strip())

    k = len(component_names)
    cell = 0.45 * k + 0.6
    figure = Figure(figsize=(cell * len(columns) + 1.0, cell * len(classes) + 1.0), layout="constrained")
    axes = figure.subplots(len(classes), len(columns), squeeze=False)
    for col, (name, column) in enumerate(columns.items()):
        values = np.concatenate([m.ravel() for m in column.values()])
        low, high = float(np.nanmin(values)), float(np.nanmax(values))
        image = None
        for row, class_name in enumerate(classes):
            ax = axes[row, col]
            if class_name not in column:
                ax.set_axis_off()
                ax.set_title(f"{name}\n{class_name}: n/a" if row == 0 else f"{class_name}: n/a", fontsize=8)
                continue
            heading = name if row == 0 else ""
            if class_name:
                heading = f"{heading}\n{class_name}" if heading else class_name
            image = _draw_heatmap(ax, column[class_name], component_names, title=heading, vmin=low, vmax=high,
                                  annotate=annotate, show_row_labels=col == 0)
            if row != len(classes) - 1:
                ax.set_xticks(range(k), labels=[])
                ax.set_xlabel("")
        if image is not None:
            figure.colorbar(image, ax=axes[:, col].tolist(), location="bottom", shrink=0.8, aspect=15)
    if title:
        figure.suptitle(title)
    return figure
