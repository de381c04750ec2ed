"""Component-relation heatmaps: one matrix, and a grid of relations (rows) by class (columns)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from geomer.errors import GeomerError

RELATION_CMAP = "viridis"
DIAGONAL_COLOUR = "#d9d9d9"
BASELINE_LABEL = "input-only baseline"
MOTION_LABEL = "motion_relations (ground truth)"
GROUND_TRUTH_LABEL = "ground truth (relevance)"


def _colour_range(values: np.ndarray) -> tuple[float, float, float | None]:
    """The colour scale (low, high) of ``values`` [n] and, for values that are constant up to
    float noise (:func:`geomer.relations.is_constant`, e.g. ststnet's uniform 1/K relations),
    their common value (else None).

    A constant set has no ranking to show; its own range would be float noise (a colour bar of
    "1e-6 + 1.4285e-1"), so it gets a fixed scale that includes 0 and 1, the range of row-
    normalised relations: one colour, and a colour bar in plain numbers.
    """
    from geomer.relations import is_constant

    finite = values[np.isfinite(values)]
    if not finite.size:
        return 0.0, 1.0, None
    low, high = float(finite.min()), float(finite.max())
    if is_constant(finite):
        value = float(finite.mean())
        return min(0.0, value), max(1.0, value), value
    return low, high, None


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
    low, high, constant = _colour_range(matrix.reshape(-1))
    if constant is not None:  # uniform relations: the fixed scale, one colour, not float noise
        matrix = np.full_like(matrix, constant)
        vmin, vmax = (low if vmin is None else vmin), (high if vmax is None else vmax)
    figure = Figure(figsize=(1.0 + 0.6 * len(component_names), 0.8 + 0.6 * len(component_names)), layout="constrained")
    ax = figure.subplots()
    image = _draw_heatmap(ax, matrix, component_names, title=title, vmin=vmin, vmax=vmax, annotate=annotate)
    label = "relation weight" if constant is None else f"relation weight (uniform: {constant:.3g})"
    figure.colorbar(image, ax=ax, label=label, shrink=0.8)
    return figure


def _draw_off_diagonal(ax: Axes, matrix: np.ndarray, component_names: Sequence[str], *, vmin: float, vmax: float,
                       annotate: bool, show_row_labels: bool, show_column_labels: bool):
    """A heatmap of the off-diagonal entries on [vmin, vmax]; the diagonal is greyed out and its
    values are written in grey italics (they live on another scale)."""
    k = len(component_names)
    off = np.ma.masked_where(np.eye(k, dtype=bool), matrix)
    cmap = matplotlib.colormaps[RELATION_CMAP].with_extremes(bad=DIAGONAL_COLOUR)
    image = ax.imshow(off, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_xticks(range(k), labels=list(component_names) if show_column_labels else [], rotation=45, ha="right",
                  rotation_mode="anchor", fontsize=7)
    ax.set_yticks(range(k), labels=list(component_names) if show_row_labels else [], fontsize=7)
    if annotate and np.all(np.isfinite(matrix)):
        middle = (vmin + vmax) / 2
        for i in range(k):
            for j in range(k):
                if i == j:
                    ax.text(j, i, f"{matrix[i, i]:.2f}", ha="center", va="center", fontsize=5, color="dimgray",
                            fontstyle="italic")
                else:
                    ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=5,
                            color="black" if matrix[i, j] > middle else "white")
    return image


def plot_relation_panel(
    models: Mapping[str, np.ndarray | Mapping[str, np.ndarray]],
    component_names: Sequence[str],
    *,
    ground_truth: Mapping[str, np.ndarray] | np.ndarray | None = None,
    baseline: Mapping[str, np.ndarray] | np.ndarray | None = None,
    motion_relations: Mapping[str, np.ndarray] | np.ndarray | None = None,
    title: str | None = None,
    annotate: bool = True,
) -> Figure:
    """Relation matrices as a grid: one row per relation, one column per class. Rows in the
    README's order: each entry of ``models`` (intrinsic, occlusion, …), then, when given, the
    input-only ``baseline``, the ground truth's ``motion_relations`` and its relevance
    ``ground_truth``.

    ``models`` maps a row label (a model, "dere-grl occlusion", …) to a [K,K] matrix or to a
    mapping class name → [K,K]; columns are the union of class names in order of appearance (a
    cell a row lacks stays empty). The diagonal (a component with itself) is greyed out with its
    value written in grey: it is on another scale and would take the colour range. The
    off-diagonal entries of each row share one colour scale, with a colour bar at the row's end
    (models, the baseline and the ground truth scale relations differently; the comparison is
    about pattern, see ``geomer.relations``). A row whose off-diagonal entries are all equal up
    to float noise (uniform relations) has no ranking to show: it is drawn in one colour on a fixed
    scale that includes 0 and 1, its colour bar naming the value. ``annotate`` writes every value.
    """
    rows: dict[str, dict[str, np.ndarray]] = {}
    for name, value in models.items():
        rows[name] = dict(value) if isinstance(value, Mapping) else {"": value}
    for name, value in ((BASELINE_LABEL, baseline), (MOTION_LABEL, motion_relations), (GROUND_TRUTH_LABEL, ground_truth)):
        if value is not None:
            rows[name] = dict(value) if isinstance(value, Mapping) else {"": value}
    if not rows:
        raise GeomerError("no relation matrices to plot")
    classes = list(dict.fromkeys(c for row in rows.values() for c in row))
    for name, row in rows.items():
        for c, matrix in row.items():
            row[c] = _check_matrix(matrix, component_names, f"{name} {c}".strip())

    k = len(component_names)
    cell = 0.32 * k + 0.5
    figure = Figure(figsize=(cell * len(classes) + 1.8, cell * len(rows) + 0.9), layout="constrained")
    axes = figure.subplots(len(rows), len(classes), squeeze=False)
    off = ~np.eye(k, dtype=bool)
    uniform: list[str] = []
    for r, (name, row) in enumerate(rows.items()):
        values = np.concatenate([m[off] for m in row.values()]) if row else np.zeros(1)
        low, high, constant = _colour_range(values)
        if constant is not None:  # one colour (and one text colour) for noise-level differences
            row = {c: np.where(off, constant, m) for c, m in row.items()}
            uniform.append(name)
        image = None
        for col, class_name in enumerate(classes):
            ax = axes[r, col]
            heading = f"{class_name}" if r == 0 and class_name else ""
            if class_name not in row:
                ax.set_axis_off()
                ax.set_title(f"{heading}\n(n/a)" if heading else "n/a", fontsize=8)
                continue
            image = _draw_off_diagonal(ax, row[class_name], component_names, vmin=low, vmax=high, annotate=annotate,
                                       show_row_labels=col == 0, show_column_labels=r == len(rows) - 1)
            if heading:
                ax.set_title(heading, fontsize=9)
            if col == 0:
                ax.set_ylabel(name, fontsize=9, fontweight="bold")
        if image is not None:
            label = "off-diagonal" if constant is None else f"off-diagonal (uniform: {constant:.3g})"
            figure.colorbar(image, ax=axes[r, :].tolist(), location="right", shrink=0.9, aspect=12, label=label)
    figure.suptitle((title + "\n" if title else "") + "diagonal (grey, own scale) apart; each row's colours span its "
                    "off-diagonal range" + ("; a uniform row (no ranking) on 0–1" if uniform else ""), fontsize=9)
    return figure
