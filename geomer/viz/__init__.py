"""Figures for geomer (matplotlib). Every function returns a :class:`matplotlib.figure.Figure`.

Figures are built with the object-oriented API (``Figure()``, no pyplot state), so they render
with the Agg canvas anywhere — tests, servers, the CLI — and are saved with ``fig.savefig``;
in a notebook, ``display(fig)`` shows one.
"""

from __future__ import annotations

from geomer.viz.confusion import plot_confusion_matrix
from geomer.viz.curves import plot_training_curves
from geomer.viz.face import face_points_for, plot_component_motion, plot_graph_on_face
from geomer.viz.relations import plot_relation_matrix, plot_relation_panel

__all__ = [
    "face_points_for",
    "figure_format",
    "plot_component_motion",
    "plot_confusion_matrix",
    "plot_graph_on_face",
    "plot_relation_matrix",
    "plot_relation_panel",
    "plot_training_curves",
    "save_figure",
]


def figure_format(path) -> str:
    """The figure format that ``path``'s extension names (png, pdf, svg, …); a one-line GeomerError
    for a name without one (so a file such as ``notes`` is never overwritten with a figure) or with
    one matplotlib cannot write."""
    from pathlib import Path

    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from geomer.errors import GeomerError

    fmt = Path(path).suffix.lstrip(".").lower()
    if fmt not in FigureCanvasAgg.get_supported_filetypes():
        what = f"as {fmt!r}" if fmt else "without an extension"
        raise GeomerError(f"{path}: cannot write a figure {what} (use .png, .pdf or .svg)")
    return fmt


def save_figure(figure, path) -> None:
    """Save ``figure`` atomically (:func:`geomer.atomic.atomic_path`) in the format its name's
    extension names (:func:`figure_format`)."""
    from pathlib import Path

    from geomer.atomic import atomic_path

    path = Path(path)
    fmt = figure_format(path)
    with atomic_path(path) as temporary:
        # the format comes from the real name (the temp name's suffix is not a format)
        figure.savefig(temporary, format=fmt, dpi=120, bbox_inches="tight")
