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
    "plot_component_motion",
    "plot_confusion_matrix",
    "plot_graph_on_face",
    "plot_relation_matrix",
    "plot_relation_panel",
    "plot_training_curves",
    "save_figure",
]


def save_figure(figure, path) -> None:
    """Save ``figure`` atomically (:func:`geomer.atomic.atomic_path`)."""
    from pathlib import Path

    from geomer.atomic import atomic_path

    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    if fmt not in figure.canvas.get_supported_filetypes():
        from geomer.errors import GeomerError

        raise GeomerError(f"{path}: cannot write a figure as {fmt!r} (use png, pdf or svg)")
    with atomic_path(path) as temporary:
        # the format comes from the real name (the temp name's suffix is not a format)
        figure.savefig(temporary, format=fmt, dpi=120, bbox_inches="tight")
