"""Every geomer.viz figure renders with the Agg canvas and carries the expected axes and labels."""

from __future__ import annotations

import io
import re

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from matplotlib.quiver import Quiver

from geomer.errors import GeomerError
from geomer.graph import FaceGraph
from geomer.viz import (
    plot_component_motion,
    plot_confusion_matrix,
    plot_graph_on_face,
    plot_relation_matrix,
    plot_relation_panel,
    plot_training_curves,
    save_figure,
)

GRAPH = FaceGraph("k7")
NAMES = list(GRAPH.component_names)


def _render(figure: Figure) -> None:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    assert buffer.getvalue()[:8] == b"\x89PNG\r\n\x1a\n"


def _ticks(labels) -> list[str]:
    return [label.get_text() for label in labels]


def _relation(seed: int = 0) -> np.ndarray:
    matrix = np.random.default_rng(seed).random((7, 7)).astype(np.float32)
    return matrix / matrix.sum(axis=1, keepdims=True)


def test_relation_matrix_labels_and_values():
    matrix = _relation()
    figure = plot_relation_matrix(matrix, NAMES, title="dere-grl: negative")
    _render(figure)
    heatmap = figure.axes[0]
    assert heatmap.get_title() == "dere-grl: negative"
    assert _ticks(heatmap.get_xticklabels()) == NAMES
    assert _ticks(heatmap.get_yticklabels()) == NAMES
    image = heatmap.get_images()[0]
    np.testing.assert_allclose(image.get_array(), matrix)
    assert len(figure.axes) == 2  # heatmap + colour bar
    assert f"{matrix[6, 0]:.2f}" in [t.get_text() for t in heatmap.texts]
    with pytest.raises(GeomerError, match="7 component names"):
        plot_relation_matrix(np.ones((5, 5)), NAMES)


def test_relation_panel_grid_rows_are_relations_columns_are_classes():
    models = {"dere-grl": {"negative": _relation(0), "positive": _relation(1)}, "mmt": {"negative": _relation(2)}}
    truth = {"negative": _relation(3), "positive": _relation(4)}
    baseline = {"negative": _relation(5) * 10, "positive": _relation(6) * 10}
    figure = plot_relation_panel(models, NAMES, ground_truth=truth, baseline=baseline, title="relations")
    _render(figure)
    heatmaps = [ax for ax in figure.axes if ax.get_images()]
    assert len(heatmaps) == 7  # 4 rows × 2 classes, mmt has no "positive" cell
    assert [ax.get_title() for ax in heatmaps[:2]] == ["negative", "positive"]
    row_labels = [ax.get_ylabel() for ax in heatmaps if ax.get_ylabel()]
    assert row_labels == ["dere-grl", "mmt", "input-only baseline", "ground truth (relevance)"]
    assert figure.get_suptitle().startswith("relations")
    # the diagonal is masked out of the colours; its values are written apart
    image = heatmaps[0].get_images()[0]
    assert np.ma.getmaskarray(image.get_array())[np.eye(7, dtype=bool)].all()
    matrix = models["dere-grl"]["negative"]
    texts = [t.get_text() for t in heatmaps[0].texts]
    assert f"{matrix[3, 3]:.2f}" in texts and f"{matrix[6, 0]:.2f}" in texts
    # each row's colour scale spans its own off-diagonal entries (the baseline's are 10× larger)
    off = ~np.eye(7, dtype=bool)
    low, high = image.get_clim()
    assert low == pytest.approx(min(matrix[off].min(), models["dere-grl"]["positive"][off].min()))
    baseline_image = heatmaps[4].get_images()[0]
    assert baseline_image.get_clim()[1] == pytest.approx(max(m[off].max() for m in baseline.values()))
    # component names label the left column's rows and the bottom row's columns
    bottom_left = heatmaps[5]
    assert _ticks(bottom_left.get_xticklabels()) == NAMES and _ticks(bottom_left.get_yticklabels()) == NAMES
    assert not any(_ticks(heatmaps[0].get_xticklabels()))


def test_graph_on_template_colours_cross_component_edges_by_relation():
    relation = _relation()
    figure = plot_graph_on_face(GRAPH, relation, title="negative")
    _render(figure)
    ax = figure.axes[0]
    assert ax.get_title() == "negative"
    collections = [c for c in ax.collections if isinstance(c, LineCollection)]
    assert sum(len(c.get_segments()) for c in collections) == GRAPH.num_edges
    coloured = next(c for c in collections if c.get_array() is not None)
    a, b = GRAPH.component[GRAPH.edges[:, 0]], GRAPH.component[GRAPH.edges[:, 1]]
    cross = a != b
    symmetric = (relation + relation.T) / 2
    np.testing.assert_allclose(coloured.get_array(), symmetric[a[cross], b[cross]], rtol=1e-6)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == NAMES
    assert ax.yaxis_inverted()  # canonical frame has y down


def test_graph_on_an_image_needs_points_and_uses_them():
    from skimage.data import astronaut

    image = astronaut()
    points = GRAPH.template * 80 + np.array([250.0, 180.0])
    figure = plot_graph_on_face(GRAPH, _relation(), image=image, points=points, self_relations=True)
    _render(figure)
    ax = figure.axes[0]
    assert len(ax.get_images()) == 1
    # the photo is enlarged several times: resampled smoothly, not as blocks of nearest pixels
    assert ax.get_images()[0].get_interpolation() == "lanczos"
    segments = np.concatenate([c.get_segments() for c in ax.collections if isinstance(c, LineCollection)])
    assert len(segments) == GRAPH.num_edges
    np.testing.assert_allclose(np.asarray(segments).reshape(-1, 2).min(0), points.min(0), atol=1e-6)
    with pytest.raises(GeomerError, match="points"):
        plot_graph_on_face(GRAPH, _relation(), image=image)
    with pytest.raises(GeomerError, match="7 components"):
        plot_graph_on_face(GRAPH, np.ones((3, 3)))


def test_component_motion_arrows_point_along_the_mean_displacement():
    displacement = np.zeros((GRAPH.num_nodes, 2), np.float32)
    mouth = GRAPH.component_names.index("mouth")
    displacement[GRAPH.component == mouth] = [0.0, -0.02]  # mouth corners up (canonical y down)
    figure = plot_component_motion(GRAPH, displacement, title="positive")
    _render(figure)
    ax = figure.axes[0]
    quiver = next(c for c in ax.collections if isinstance(c, Quiver))
    assert quiver.N == GRAPH.num_components
    np.testing.assert_allclose(quiver.U[mouth], 0.0, atol=1e-9)
    assert quiver.V[mouth] == pytest.approx(-0.25)  # magnified to a quarter of the eye distance
    assert np.count_nonzero(np.hypot(quiver.U, quiver.V)) == 1
    assert ax.get_title() == "positive — component motion ×12.5"
    with pytest.raises(GeomerError, match="68 nodes"):
        plot_component_motion(GRAPH, np.zeros((10, 2)))


def test_confusion_matrix_counts_and_rows():
    confusion = np.array([[3, 1, 0], [0, 4, 0], [2, 0, 2]])
    classes = ["negative", "positive", "surprise"]
    figure = plot_confusion_matrix(confusion, classes, title="confusion")
    _render(figure)
    counts, normalised = figure.axes[0], figure.axes[1]
    assert (counts.get_title(), normalised.get_title()) == ("counts", "row-normalised")
    assert _ticks(counts.get_xticklabels()) == classes and _ticks(normalised.get_yticklabels()) == classes
    assert counts.get_xlabel() == "predicted" and counts.get_ylabel() == "true"
    assert [t.get_text() for t in counts.texts][:3] == ["3", "1", "0"]
    assert [t.get_text() for t in normalised.texts][:3] == ["0.75", "0.25", "0.00"]
    np.testing.assert_allclose(normalised.get_images()[0].get_array().sum(axis=1), 1.0)


def test_training_curves_from_files(tmp_path):
    paths = []
    for fold, offset in (("fold-a", 0.0), ("fold-b", 0.2)):
        folder = tmp_path / "seed-0" / fold
        folder.mkdir(parents=True)
        pd.DataFrame({"epoch": [1, 2, 3], "loss": np.array([1.0, 0.6, 0.3]) + offset,
                      "acc": [0.4, 0.6, 0.9]}).to_csv(folder / "history.csv", index=False)
        paths.append(folder / "history.csv")
    figure = plot_training_curves(paths, title="training")
    _render(figure)
    loss, acc = figure.axes
    assert (loss.get_title(), acc.get_title()) == ("loss", "acc")
    assert loss.get_xlabel() == "epoch"
    assert len(loss.get_lines()) == 3  # two folds + their mean
    np.testing.assert_allclose(loss.get_lines()[-1].get_ydata(), [1.1, 0.7, 0.4])
    (tmp_path / "bad.csv").write_text("loss\n1.0\n")
    with pytest.raises(GeomerError, match="bad.csv: missing column epoch"):
        plot_training_curves([tmp_path / "bad.csv"])


def test_save_figure_is_atomic_and_checks_the_format(tmp_path):
    figure = plot_relation_matrix(_relation(), NAMES)
    save_figure(figure, tmp_path / "sub" / "r.pdf")
    assert (tmp_path / "sub" / "r.pdf").read_bytes()[:4] == b"%PDF"
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["r.pdf"]
    with pytest.raises(GeomerError, match="r.doc"):
        save_figure(figure, tmp_path / "r.doc")
    (tmp_path / "notes").write_text("mine")
    with pytest.raises(GeomerError, match="notes: cannot write a figure without an extension"):
        save_figure(figure, tmp_path / "notes")
    assert (tmp_path / "notes").read_text() == "mine"


def _capture_figures(monkeypatch) -> dict:
    """Record each figure ``geomer.viz.save_figure`` is given (by file name) instead of saving it."""
    import geomer.viz

    saved = {}

    def record(figure, path):
        saved[str(path).rsplit("/", 1)[-1]] = figure

    monkeypatch.setattr(geomer.viz, "save_figure", record)
    return saved


def _rows(figure: Figure) -> dict[str, list[np.ndarray]]:
    """Row label → the matrices its heatmaps show (masked diagonal filled with NaN)."""
    rows, label = {}, None
    for ax in figure.axes:
        if not ax.get_images():
            continue
        label = ax.get_ylabel() or label
        rows.setdefault(label, []).append(np.ma.filled(ax.get_images()[0].get_array().astype(float), np.nan))
    return rows


def _baseline_run(path, model: str, baseline: np.ndarray):
    from tests.geomer.relations.conftest import write_run

    run = write_run(path, model)
    np.save(run / "baseline_relations.npy", baseline)
    return run


def _assert_shows(matrices: list[np.ndarray], expected: np.ndarray) -> None:
    off = ~np.eye(expected.shape[-1], dtype=bool)
    assert len(matrices) == len(expected)
    for shown, matrix in zip(matrices, expected):
        np.testing.assert_allclose(shown[off], matrix[off], rtol=1e-6)


def test_a_runs_relations_figure_has_the_input_only_baseline_row(tmp_path, monkeypatch):
    from geomer.rundir import load_run
    from geomer.viz.run import RELATIONS, write_run_figures

    baseline = np.random.default_rng(7).random((3, 7, 7)).astype(np.float32)
    run = load_run(_baseline_run(tmp_path / "run", "dere-grl", baseline))
    saved = _capture_figures(monkeypatch)
    write_run_figures(run, tmp_path / "figures", per_class=False)
    rows = _rows(saved[RELATIONS])
    assert list(rows) == ["dere-grl intrinsic", "input-only baseline"]
    _assert_shows(rows["input-only baseline"], baseline)


def test_compare_draws_the_runs_shared_input_only_baseline(tmp_path, monkeypatch):
    from geomer.cli import main

    baseline = np.random.default_rng(7).random((3, 7, 7)).astype(np.float32)
    runs = [_baseline_run(tmp_path / name, name, baseline) for name in ("dere-grl", "mmt")]
    saved = _capture_figures(monkeypatch)
    assert main(["compare", *map(str, runs), "-o", str(tmp_path / "compare.png"),
                 "--permutations", "20"]) == 0
    rows = _rows(saved["compare.png"])
    assert list(rows)[-1] == "input-only baseline" and len(rows) == 3  # two runs, one shared baseline
    _assert_shows(rows["input-only baseline"], baseline)


def _synthetic_run(path, model: str, *, uniform: bool = False):
    """A hand-made run trained on a synthetic root: its config names the root, which holds a
    ground_truth.json with relevance and motion_relations; occlusion and baseline files beside
    relations.npy. ``uniform``: intrinsic relations 1/K with float32 noise, as ststnet's."""
    import json

    from geomer.rundir import load_run
    from tests.geomer.relations.conftest import write_ground_truth, write_run

    rng = np.random.default_rng(5)
    run = write_run(path / "run", model)
    root = path / "synth"
    root.mkdir()
    truth_file = write_ground_truth(root / "ground_truth.json")
    truth = json.loads(truth_file.read_text())
    motion = rng.random((3, 7, 7)).astype(np.float32)
    truth["motion_relations"] = {c: motion[i].tolist() for i, c in enumerate(truth["classes"])}
    truth_file.write_text(json.dumps(truth))
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "root": str(root)}))
    np.save(run / "occlusion_relations.npy", rng.random((3, 7, 7)).astype(np.float32))
    np.save(run / "baseline_relations.npy", rng.random((3, 7, 7)).astype(np.float32))
    if uniform:  # row-normalised uniform rows: 1/7 up to float32 rounding, as are their class means
        for fold in run.glob("seed-*/*/relations.npy"):
            np.save(fold, (np.full((6, 7, 7), 1 / 7) + 1e-9 * rng.random((6, 7, 7))).astype(np.float32))
        (run / "relations.npy").unlink()
        np.save(run / "relations.npy", load_run(run).class_relations)  # as pooling writes: the folds' means
    return run, motion


README_ROWS = ["dere-grl intrinsic", "dere-grl occlusion", "input-only baseline", "motion_relations (ground truth)",
               "ground truth (relevance)"]


def test_a_runs_relations_figure_has_every_row_in_the_readmes_order(tmp_path, monkeypatch):
    from geomer.rundir import load_run
    from geomer.viz.run import RELATIONS, write_run_figures

    run, motion = _synthetic_run(tmp_path, "dere-grl")
    saved = _capture_figures(monkeypatch)
    write_run_figures(load_run(run), tmp_path / "figures", per_class=False)
    rows = _rows(saved[RELATIONS])
    assert list(rows) == README_ROWS
    _assert_shows(rows["motion_relations (ground truth)"], motion)


def test_compare_rows_follow_the_readmes_order(tmp_path, monkeypatch):
    from geomer.cli import main

    run, _ = _synthetic_run(tmp_path, "dere-grl")
    saved = _capture_figures(monkeypatch)
    assert main(["compare", str(run), "-o", str(tmp_path / "compare.png"), "--ground-truth",
                 str(tmp_path / "synth"), "--permutations", "20"]) == 0
    assert list(_rows(saved["compare.png"])) == ["dere-grl", *README_ROWS[1:]]


def test_uniform_relations_are_one_colour_on_a_fixed_scale_and_say_so(tmp_path, monkeypatch, capsys):
    from geomer.cli._common import relation_agreement_line
    from geomer.rundir import load_run
    from geomer.viz.run import RELATIONS, write_run_figures

    run, _ = _synthetic_run(tmp_path, "ststnet", uniform=True)
    saved = _capture_figures(monkeypatch)
    write_run_figures(load_run(run), tmp_path / "figures")
    figure = saved[RELATIONS]
    _render(figure)
    heatmaps = [ax for ax in figure.axes if ax.get_images()]
    intrinsic = heatmaps[:3]  # the first row, one heatmap per class
    off = ~np.eye(7, dtype=bool)
    for ax in intrinsic:
        image = ax.get_images()[0]
        assert image.get_clim() == (0.0, 1.0)  # not the float noise's range
        shown = np.ma.filled(image.get_array().astype(float), np.nan)[off]
        assert np.ptp(shown) == 0  # one colour
        off_texts = [t for t in ax.texts if t.get_fontstyle() != "italic"]  # the diagonal's are grey italics
        assert len(off_texts) == 42 and {t.get_color() for t in off_texts} == {"white"}  # one text colour
    bar = next(ax for ax in figure.axes if "uniform: 0.143" in ax.get_ylabel())
    assert bar.yaxis.get_major_formatter().get_offset() == ""  # no "1e-6+1.4285e-1"
    single = saved["relations-negative.png"]
    _render(single)
    assert single.axes[0].get_images()[0].get_clim() == (0.0, 1.0)

    line = relation_agreement_line(load_run(run))
    assert not re.search(r"\bnan\b", line)
    assert "faithfulness (intrinsic vs occlusion relations, Spearman per class): negative n/a (uniform relations)" in line
    assert "intrinsic n/a (uniform relations), occlusion " in line

    from geomer.cli import main

    assert main(["compare", str(run), "-o", str(tmp_path / "c.png"), "--permutations", "20"]) == 0
    out = capsys.readouterr().out
    assert not re.search(r"\bnan\b", out.lower()) and "n/a: one side's off-diagonal relations are uniform" in out
    table = pd.read_csv(tmp_path / "c.csv")  # the file keeps its format: the undefined cells stay empty
    assert table.loc[table.model_b == "ststnet occlusion", "spearman"].isna().all()


def test_figures_of_a_run_with_missing_folds_say_how_many(tmp_path, monkeypatch):
    from geomer.rundir import load_run
    from geomer.viz.run import CONFUSION, RELATIONS, TRAINING_CURVES, write_run_figures
    from tests.geomer.relations.conftest import write_run

    run = write_run(tmp_path / "run")
    (run / "seed-0" / "fold-s2" / "predictions.csv").unlink()  # interrupted before this fold finished
    saved = _capture_figures(monkeypatch)
    write_run_figures(load_run(run), tmp_path / "figures", face="template")
    assert saved[CONFUSION].get_suptitle() == "dere-grl: confusion (pooled over 1 of 2 folds)"
    assert saved[RELATIONS].get_suptitle().startswith("dere-grl: relations by class (1 of 2 folds)\n")
    assert saved[TRAINING_CURVES].get_suptitle() == "dere-grl: training (1 of 2 folds)"
    assert saved["relations-negative.png"].axes[0].get_title() == "dere-grl: negative (1 of 2 folds)"

    complete = write_run(tmp_path / "complete")
    write_run_figures(load_run(complete), tmp_path / "figures", per_class=False)
    assert saved[CONFUSION].get_suptitle() == "dere-grl: confusion (pooled over folds)"


def test_the_summary_figures_keep_per_class_figures_already_drawn_current(tmp_path, monkeypatch):
    # geomer train and evaluate draw the summary figures; a plot drawn earlier (of fewer folds,
    # say) leaves per-class figures that would otherwise keep their old contents and titles
    from geomer.rundir import load_run
    from geomer.viz.run import write_run_figures
    from tests.geomer.relations.conftest import write_run

    run = load_run(write_run(tmp_path / "run"))
    figures = tmp_path / "figures"
    figures.mkdir()
    saved = _capture_figures(monkeypatch)
    write_run_figures(run, figures, face="template", per_class=False)
    assert not any(name.startswith(("relations-", "graph-")) for name in saved)
    (figures / "graph-negative.png").write_bytes(b"an earlier plot's")
    write_run_figures(run, figures, face="template", per_class=False)
    assert {f"{kind}-{name}.png" for kind in ("relations", "graph") for name in run.classes} <= set(saved)


def _texts_at(ax) -> dict[tuple[int, int], str]:
    """(x, y) data position → the text written there."""
    return {tuple(int(round(v)) for v in t.get_position()): t.get_text() for t in ax.texts}


def test_a_panel_rows_colour_range_is_its_off_diagonal_not_the_diagonal():
    """The diagonal, larger than every relation, leaves the row's colour limit at the largest off-diagonal value."""
    matrix = _relation(3)
    np.fill_diagonal(matrix, 5.0)
    figure = plot_relation_panel({"model": {"a": matrix}}, NAMES)
    low, high = figure.axes[0].get_images()[0].get_clim()
    off = ~np.eye(len(NAMES), dtype=bool)
    assert high == pytest.approx(matrix[off].max()) and low == pytest.approx(matrix[off].min())


def test_heatmap_texts_sit_at_column_x_row_y():
    """The text at (x=j, y=i) reads matrix[i, j] in the single heatmap and in the panel."""
    matrix = np.arange(49, dtype=float).reshape(7, 7) / 49  # asymmetric
    single = plot_relation_matrix(matrix, NAMES)
    panel = plot_relation_panel({"model": matrix}, NAMES)
    for ax in (single.axes[0], panel.axes[0]):
        texts = _texts_at(ax)
        for i in range(7):
            for j in range(7):
                assert texts[(j, i)] == f"{matrix[i, j]:.2f}"


def test_each_row_of_a_runs_relations_figure_shows_its_own_matrices(tmp_path, monkeypatch):
    """Intrinsic, occlusion, baseline and relevance rows each show the run's or the truth's own matrices."""
    from geomer.relations import synthetic_ground_truth
    from geomer.rundir import load_run
    from geomer.viz.run import RELATIONS, write_run_figures

    path, motion = _synthetic_run(tmp_path, "dere-grl")
    run = load_run(path)
    saved = _capture_figures(monkeypatch)
    write_run_figures(run, tmp_path / "figures", per_class=False)
    rows = _rows(saved[RELATIONS])
    _assert_shows(rows["dere-grl intrinsic"], run.class_relations)
    _assert_shows(rows["dere-grl occlusion"], np.load(path / "occlusion_relations.npy"))
    _assert_shows(rows["input-only baseline"], np.load(path / "baseline_relations.npy"))
    _assert_shows(rows["motion_relations (ground truth)"], motion)
    _assert_shows(rows["ground truth (relevance)"], synthetic_ground_truth(run).relations)


def test_a_runs_confusion_figure_writes_each_count_at_its_cell(tmp_path, monkeypatch):
    """The counts panel writes run.confusion()[i, j] at (x=j, y=i): rows true, columns predicted."""
    from geomer.rundir import load_run
    from geomer.viz.run import CONFUSION, write_run_figures
    from tests.geomer.relations.conftest import write_run

    run = load_run(write_run(tmp_path / "run", "dere-grl"))
    confusion = np.asarray(run.confusion())
    assert not np.array_equal(confusion, confusion.T)  # else a transpose would pass unseen
    saved = _capture_figures(monkeypatch)
    write_run_figures(run, tmp_path / "figures", per_class=False)
    texts = _texts_at(saved[CONFUSION].axes[0])
    for i, row in enumerate(confusion):
        assert [texts[(j, i)] for j in range(len(row))] == [str(int(v)) for v in row]
