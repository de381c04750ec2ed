"""The one writer of a training run's figures (``geomer train``, ``evaluate``, ``plot`` and the
library all go through :func:`write_run_figures`).

Into ``figures/`` of the run (or another folder): ``relations.png`` (all classes),
``relations-<class>.png``, ``graph-<class>.png`` (the region graph on a face, edges coloured by the
class's relations), ``confusion.png`` (pooled over folds) and ``training-curves.png`` (when the run
has per-fold histories). Adding a figure: draw it with a function of ``geomer.viz`` and save it
here under a name added to the list above.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from geomer.errors import GeomerError

RELATIONS = "relations.png"
CONFUSION = "confusion.png"
TRAINING_CURVES = "training-curves.png"


def file_stem(name: str) -> str:
    """A class name made safe for a file name ("Happiness/positive" → "happiness-positive")."""
    return re.sub(r"[^a-z0-9_.]+", "-", name.lower()).strip("-") or "class"


def fold_count(run) -> tuple[int, int]:
    """(finished, all) folds of ``run``, each seed's counted apart: a run's predictions hold the
    finished folds only and ``run.unfinished`` names the others."""
    finished = run.predictions[["seed", "fold"]].drop_duplicates().shape[0] if len(run.predictions) else 0
    return finished, finished + len(run.unfinished)


def fold_note(run) -> str:
    """The title suffix ' (k of n folds)' for a run with unfinished folds (its figures show the
    finished ones and must say so, not only the terminal), else ''."""
    return " ({} of {} folds)".format(*fold_count(run)) if run.unfinished else ""


def write_run_figures(
    run, out: str | Path | None = None, *, face: str = "photo", per_class: bool = True
) -> list[Path]:
    """Write the figures of ``run`` (a :class:`geomer.rundir.Run`); returns the paths written.

    ``out``: the folder (default: the run's ``figures/``); ``face``: draw the graphs on the
    bundled photo ("photo") or at the canonical template positions ("template"); ``per_class``
    False: the summary figures (relations, confusion, training curves), as ``geomer train``
    draws them, and the per-class ones only where ``out`` already holds some (an earlier
    ``geomer plot``'s, perhaps of fewer folds: kept current, not left stale; drawn with ``face``,
    whatever the earlier plot used).
    """
    from geomer.rundir import RunDir
    from geomer.viz import (
        face_points_for,
        plot_confusion_matrix,
        plot_graph_on_face,
        plot_relation_matrix,
        plot_relation_panel,
        plot_training_curves,
        save_figure,
    )

    out = Path(out) if out is not None else RunDir(run.path).figures_dir
    per_class = per_class or any(out.glob("relations-*.png")) or any(out.glob("graph-*.png"))
    folds = fold_note(run)
    # Every figure is read and drawn before the first is saved: a bad file (a damaged history, a
    # graph of other components) leaves the folder as it was, not half rewritten.
    figures: list[tuple[object, str]] = []
    by_class = {
        name: matrix for name, matrix in zip(run.classes, run.class_relations) if np.all(np.isfinite(matrix))
    }
    if by_class:
        from geomer.relations import load_run_relations, synthetic_ground_truth

        def finite(matrices) -> dict:
            return {name: m for name, m in zip(run.classes, matrices) if np.all(np.isfinite(m))}

        kinds = load_run_relations(run.path, run.classes, run.num_components)
        rows = {f"{run.model} intrinsic": by_class}
        if "occlusion" in kinds:
            rows[f"{run.model} occlusion"] = finite(kinds["occlusion"])
        baseline = finite(kinds["input-only baseline"]) if "input-only baseline" in kinds else None
        truth = synthetic_ground_truth(run)
        motion = truth.motion_relations if truth is not None else None
        figures.append((plot_relation_panel(rows, run.component_names, baseline=baseline,
                                            motion_relations=dict(zip(truth.classes, motion)) if motion is not None else None,
                                            ground_truth=dict(zip(truth.classes, truth.relations)) if truth else None,
                                            title=f"{run.model}: relations by class{folds}"), RELATIONS))
    graph = run.face_graph()
    image, points = face_points_for(graph) if face == "photo" and per_class else (None, None)
    for name, matrix in by_class.items() if per_class else ():
        title = f"{run.model}: {name}{folds}"
        figures.append((plot_relation_matrix(matrix, run.component_names, title=title),
                        f"relations-{file_stem(name)}.png"))
        figures.append((plot_graph_on_face(graph, matrix, image=image, points=points, title=title),
                        f"graph-{file_stem(name)}.png"))
    if len(run.predictions):
        seeds = run.predictions["seed"].nunique()
        pooled = "{} of {} folds".format(*fold_count(run)) if run.unfinished else "folds"
        note = f" (pooled over {pooled}, {seeds} seeds summed)" if seeds > 1 else f" (pooled over {pooled})"
        figures.append((plot_confusion_matrix(run.confusion(), run.classes, title=f"{run.model}: confusion{note}"),
                        CONFUSION))
    if run.history_files:
        figures.append((plot_training_curves(run.history_files, title=f"{run.model}: training{folds}"),
                        TRAINING_CURVES))

    blocked = next((out / name for _, name in figures if (out / name).is_dir()), None)
    if blocked is not None:  # found before the first figure is saved, not after most of them
        import matplotlib.pyplot as plt

        for figure, _ in figures:
            plt.close(figure)
        raise GeomerError(f"{blocked}: is a directory, cannot write a file there")
    for figure, name in figures:
        save_figure(figure, out / name)
    return [out / name for _, name in figures]
