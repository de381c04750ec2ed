"""The region graph drawn on a face: edges coloured by component relation, motion arrows.

The graph is anything with FaceGraph's attributes (``edges`` [E,2] local node pairs,
``component`` [N], ``component_names``, ``template`` [N,2], ``node_ids`` [N]). Without a face
image the graph is drawn at its canonical template positions (y down, inter-ocular distance 1).
"""

from __future__ import annotations

import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from geomer.errors import GeomerError, check_shape

EDGE_CMAP = "plasma"


def face_points_for(graph) -> tuple[np.ndarray, np.ndarray]:
    """The bundled astronaut photo and the graph's node positions on it.

    Uses ``landmarks.render.photo_face()`` (dlib landmarks of scikit-image's astronaut photo).

    Shapes:
        returns image [H, W, 3] uint8 RGB, points [N, 2] float32 pixels (x, y).
    """
    from landmarks.render import photo_face

    image, points68 = photo_face()
    return image, np.asarray(points68, dtype=np.float32)[np.asarray(graph.node_ids)]


def _positions(graph, image, points) -> tuple[np.ndarray, float]:
    """Node positions to draw at and the pixels per canonical unit (1 without an image)."""
    template = np.asarray(graph.template, dtype=np.float64)
    if points is None:
        if image is not None:
            raise GeomerError("a face image needs the graph's node positions on it (points [N,2])")
        return template, 1.0
    points = np.asarray(points, dtype=np.float64)
    check_shape(points, template.shape, "points", hint=f" for a graph of {len(template)} nodes")
    # RMS spread ratio = the scale of the similarity between the template and the face
    spread = np.sqrt(((points - points.mean(0)) ** 2).sum() / ((template - template.mean(0)) ** 2).sum())
    return points, float(spread)


def _new_face_axes(image, positions: np.ndarray, title: str | None, width: float = 6.0):
    figure = Figure(figsize=(width, width), layout="constrained")
    ax = figure.subplots()
    if image is not None:
        # the face spans a few hundred photo pixels enlarged to the figure: smooth, not blocky
        ax.imshow(image, cmap="gray" if np.ndim(image) == 2 else None, interpolation="lanczos")
        low, high = positions.min(0), positions.max(0)
        margin = 0.25 * (high - low).max()
        ax.set_xlim(max(low[0] - margin, 0), min(high[0] + margin, image.shape[1]))
        ax.set_ylim(min(high[1] + margin, image.shape[0]), max(low[1] - margin, 0))
    else:
        ax.invert_yaxis()  # canonical frame: y down, like an image
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)
    return figure, ax


def plot_graph_on_face(
    graph,
    relation: np.ndarray,
    *,
    image: np.ndarray | None = None,
    points: np.ndarray | None = None,
    title: str | None = None,
    self_relations: bool = False,
) -> Figure:
    """The region graph on a face, each edge coloured by the relation between its endpoints'
    components: (R[a,b] + R[b,a]) / 2 (relations are directed, edges are not).

    Edges inside one component would show the diagonal R[a,a], which models scale differently
    from cross-component relations; they are drawn in light grey unless ``self_relations``.

    Shapes:
        relation: [K, K]; image: [H, W(, 3)] (optional); points: [N, 2] pixel positions of the
        graph's nodes on ``image`` (required with an image).
    """
    relation = np.asarray(relation, dtype=np.float64)
    k = len(graph.component_names)
    check_shape(relation, (k, k), "relation matrix", hint=f" for a graph with {k} components")
    positions, _ = _positions(graph, image, points)
    edges = np.asarray(graph.edges, dtype=np.int64)
    component = np.asarray(graph.component, dtype=np.int64)
    symmetric = (relation + relation.T) / 2
    a, b = component[edges[:, 0]], component[edges[:, 1]]
    weight = symmetric[a, b]
    coloured = (a != b) | self_relations

    figure, ax = _new_face_axes(image, positions, title)
    segments = positions[edges]  # [E, 2 ends, 2]
    if np.any(~coloured):
        ax.add_collection(LineCollection(segments[~coloured], colors="lightgrey", linewidths=0.8, zorder=1))
    if np.any(coloured):
        values = weight[coloured]
        lines = LineCollection(segments[coloured], cmap=EDGE_CMAP, norm=Normalize(values.min(), values.max()),
                               linewidths=1.0 + 2.5 * (values - values.min()) / max(np.ptp(values), 1e-12), zorder=2)
        lines.set_array(values)
        ax.add_collection(lines)
        figure.colorbar(lines, ax=ax, shrink=0.6, location="bottom", label="relation weight between components")
    if image is None:
        ax.autoscale_view()
    _draw_component_legend(ax, graph, positions)
    return figure


def _draw_component_legend(ax, graph, positions: np.ndarray) -> None:
    component = np.asarray(graph.component)
    ax.scatter(positions[:, 0], positions[:, 1], s=12, c=[f"C{c % 10}" for c in component],
               edgecolors="white", linewidths=0.4, zorder=3)
    handles = [Line2D([], [], marker="o", linestyle="", color=f"C{k % 10}", label=name)
               for k, name in enumerate(graph.component_names)]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, title="component")


def plot_component_motion(
    graph,
    displacement: np.ndarray,
    *,
    image: np.ndarray | None = None,
    points: np.ndarray | None = None,
    title: str | None = None,
    exaggerate: float | None = None,
) -> Figure:
    """Per-component motion arrows on the face: the mean apex displacement of each component's
    nodes, drawn from the component's centroid.

    Micro-movements are a few hundredths of the inter-ocular distance, so arrows are magnified:
    by ``exaggerate``, or (None) so that the longest is a quarter of the inter-ocular distance;
    the factor is written in the title.

    Shapes:
        displacement: [N, 2] per node, canonical units (inter-ocular distance 1), e.g. the mean of
        ``ClipFeatures.apex_displacement`` over a class.
    """
    displacement = np.asarray(displacement, dtype=np.float64)
    n = len(np.asarray(graph.component))
    check_shape(displacement, (n, 2), "displacement", hint=f" for a graph of {n} nodes")
    positions, pixels_per_unit = _positions(graph, image, points)
    component = np.asarray(graph.component, dtype=np.int64)
    k = len(graph.component_names)
    centres = np.stack([positions[component == c].mean(0) for c in range(k)])
    motion = np.stack([displacement[component == c].mean(0) for c in range(k)])  # canonical units
    longest = float(np.linalg.norm(motion, axis=1).max())
    if exaggerate is None:
        exaggerate = 0.25 / longest if longest > 0 else 1.0
    arrows = motion * exaggerate * pixels_per_unit

    heading = f"{title + ' — ' if title else ''}component motion ×{exaggerate:.3g}"
    figure, ax = _new_face_axes(image, positions, heading)
    # the graph faintly, so the face's shape reads without a photo
    ax.add_collection(LineCollection(positions[np.asarray(graph.edges, dtype=np.int64)], colors="lightgrey",
                                     linewidths=0.6, zorder=1))
    ax.quiver(centres[:, 0], centres[:, 1], arrows[:, 0], arrows[:, 1], color=[f"C{c % 10}" for c in range(k)],
              angles="xy", scale_units="xy", scale=1, width=0.006, zorder=4)
    _draw_component_legend(ax, graph, positions)
    if image is None:
        ends = np.concatenate([positions, centres + arrows])
        low, high = ends.min(0), ends.max(0)
        margin = 0.1 * (high - low).max()
        ax.set_xlim(low[0] - margin, high[0] + margin)
        ax.set_ylim(high[1] + margin, low[1] - margin)
    return figure
