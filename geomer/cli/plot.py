"""``geomer plot RUN_DIR [-o DIR]``: the figures of a training run.

Writes into RUN_DIR/figures (or DIR): ``relations.png`` (all classes), ``relations-<class>.png``,
``graph-<class>.png`` (the region graph on a face, edges coloured by the class's relations),
``confusion.png`` (counts and row-normalised) and ``training-curves.png`` (when the run has
history.csv files).
"""

from __future__ import annotations

import re

from geomer.cli._common import add_command


def register(subparsers) -> None:
    parser = add_command(subparsers, "plot", "draw a run's relation matrices, confusion matrix, graph on a face and training curves", _run)
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run directory written by 'geomer train'")
    parser.add_argument("-o", "--out", metavar="DIR", default=None, help="output folder (default: RUN_DIR/figures)")
    parser.add_argument(
        "--face",
        choices=("photo", "template"),
        default="photo",
        help="draw the graph on the bundled astronaut photo, or at the canonical template positions",
    )
    parser.add_argument("--quiet", action="store_true", help="do not list the files written")


def file_stem(name: str) -> str:
    """A class name made safe for a file name ("Happiness/positive" → "happiness-positive")."""
    return re.sub(r"[^a-z0-9_.]+", "-", name.lower()).strip("-") or "class"


def graph_for_run(run):
    """The FaceGraph a run used (partition and nodes from its config), checked against its components."""
    from geomer.errors import GeomerError
    from geomer.graph import FaceGraph

    partition, nodes = run.graph_settings
    graph = FaceGraph(partition=partition, nodes=nodes)
    if tuple(graph.component_names) != tuple(run.component_names):
        raise GeomerError(
            f"{run.path}/config.json: component names {', '.join(run.component_names)} do not match the "
            f"{graph.name} graph ({', '.join(graph.component_names)})"
        )
    return graph


def plot_run(run_dir, out=None, *, face: str = "photo") -> list:
    """Write the run's figures; returns the paths written."""
    from pathlib import Path

    import numpy as np

    from geomer.relations import load_run
    from geomer.viz import (
        face_points_for,
        plot_confusion_matrix,
        plot_graph_on_face,
        plot_relation_matrix,
        plot_relation_panel,
        plot_training_curves,
        save_figure,
    )

    run = load_run(run_dir)
    out = Path(out) if out is not None else Path(run_dir) / "figures"
    written: list[Path] = []

    def save(figure, name: str) -> None:
        save_figure(figure, out / name)
        written.append(out / name)

    present = [i for i, _ in enumerate(run.classes) if np.all(np.isfinite(run.class_relations[i]))]
    by_class = {run.classes[i]: run.class_relations[i] for i in present}
    save(plot_relation_panel({run.model: by_class}, run.component_names, title=f"{run.model}: relations by class"), "relations.png")
    graph = graph_for_run(run)
    image, points = face_points_for(graph) if face == "photo" else (None, None)
    for name, matrix in by_class.items():
        save(plot_relation_matrix(matrix, run.component_names, title=f"{run.model}: {name}"), f"relations-{file_stem(name)}.png")
        save(plot_graph_on_face(graph, matrix, image=image, points=points, title=f"{run.model}: {name}"), f"graph-{file_stem(name)}.png")
    if len(run.predictions):
        seeds = run.predictions["seed"].nunique()
        note = f" (pooled over folds, {seeds} seeds summed)" if seeds > 1 else " (pooled over folds)"
        save(plot_confusion_matrix(run.confusion(), run.classes, title=f"{run.model}: confusion{note}"), "confusion.png")
    if run.history_files:
        save(plot_training_curves(run.history_files, title=f"{run.model}: training"), "training-curves.png")
    return written


def _run(args) -> int:
    written = plot_run(args.run_dir, args.out, face=args.face)
    if not args.quiet:
        for path in written:
            print(path)
    return 0
