"""AU library, class tables, time courses and ground-truth relation matrices."""

from __future__ import annotations

import numpy as np
import pytest

from geomer.errors import GeomerError
from geomer.graph import FaceGraph
from geomer.synth.aus import PEAK_IOD, action_unit, au_library
from geomer.synth.emotions import SCHEMES, class_table
from geomer.synth.generate import coactivation, relation_matrices
from geomer.synth.layouts import ClipPlan
from geomer.synth.motion import DIFFICULTIES, expression_course, head_motion
from landmarks.template import CANONICAL_TEMPLATE

REQUIRED = ("1", "2", "4", "5", "6", "7", "9", "10", "12", "14", "15", "17", "20", "23", "24", "25")
K7 = FaceGraph("k7").component_names


def test_library_covers_required_aus_with_unit_peak_fields():
    library = au_library()
    assert set(REQUIRED) <= set(library)
    for number, unit in library.items():
        assert unit.field.shape == (68, 2) and unit.field.dtype == np.float32
        assert np.linalg.norm(unit.field, axis=1).max() == pytest.approx(PEAK_IOD, rel=1e-5)
        assert unit.components and set(unit.components) <= set(K7)


@pytest.mark.parametrize(
    "code, expected",
    [("1", {"right_brow", "left_brow"}), ("12", {"mouth"}), ("9", {"nose"}), ("5", {"right_eye", "left_eye"})],
)
def test_au_components_match_facs_regions(code, expected):
    assert expected <= set(action_unit(code).components)


def test_brow_raisers_move_up_and_lowerer_down():
    assert action_unit("1").field[[21, 22], 1].max() < 0  # y grows downwards
    assert action_unit("4").field[[21, 22], 1].min() > 0
    corners = action_unit("12").field[[48, 54]]
    assert (corners[:, 1] < 0).all() and corners[0, 0] < 0 < corners[1, 0]  # up and outwards


def test_one_sided_au_moves_one_side_only():
    field = action_unit("R12").field
    moving = np.linalg.norm(field, axis=1) > 0
    assert moving.any()
    assert (CANONICAL_TEMPLATE[moving, 0] <= 1e-3).all()  # subject's right = image left (x < 0)
    assert np.allclose(action_unit("L12").field[54], action_unit("12").field[54])


def test_unknown_au_is_a_one_line_error():
    with pytest.raises(GeomerError, match="unknown action unit '99'"):
        action_unit("99")


def test_class_tables_use_library_aus_and_weights_sum_to_one():
    assert [c.name for c in class_table("casme2")] == ["happiness", "surprise", "disgust", "repression", "others"]
    for scheme in SCHEMES:
        for emotion in class_table(scheme):
            assert sum(w for _, w in emotion.combinations) == pytest.approx(1.0)
            for combination, _ in emotion.combinations:
                for code in combination:
                    action_unit(code)
    with pytest.raises(GeomerError):
        class_table("nope")


def test_expression_course_rises_to_apex_and_falls_to_zero():
    course = expression_course(40, onset=5, apex=15, offset=30)
    assert (course[:6] == 0).all() and course[15] == pytest.approx(1.0) and (course[30:] == 0).all()
    assert (np.diff(course[5:16]) > 0).all() and (np.diff(course[15:31]) < 0).all()


def test_head_motion_starts_at_identity_and_stays_small():
    transforms = head_motion(np.random.default_rng(0), 50, DIFFICULTIES["hard"])
    assert transforms.shape == (50, 2, 3)
    assert np.allclose(transforms[0], [[1, 0, 0], [0, 1, 0]], atol=1e-5)
    corner = np.einsum("tij,j->ti", transforms[:, :, :2], [160.0, 300.0]) + transforms[:, :, 2]
    assert np.abs(corner - [160.0, 300.0]).max() < 4.0  # rotation + drift of a chin point, px


@pytest.mark.parametrize("level", ["moderate", "standard", "hard"])
def test_head_motion_is_a_similarity_a_rotation_and_a_shift(level):
    """Each frame's transform is rigid: its linear part is the rotation [[c, −s], [s, c]] (determinant
    1, orthogonal), so distances between landmarks are kept."""
    transforms = head_motion(np.random.default_rng(1), 60, DIFFICULTIES[level]).astype(np.float64)
    linear = transforms[:, :, :2]
    assert np.abs(linear[:, 1, 0]).max() > 1e-3  # the head does turn
    np.testing.assert_allclose(linear[:, 0, 1], -linear[:, 1, 0], atol=1e-7)
    np.testing.assert_allclose(linear[:, 0, 0], linear[:, 1, 1], atol=1e-7)
    np.testing.assert_allclose(np.linalg.det(linear), 1.0, atol=1e-6)
    np.testing.assert_allclose(linear @ linear.transpose(0, 2, 1), np.broadcast_to(np.eye(2), linear.shape), atol=1e-6)
    points = np.asarray(CANONICAL_TEMPLATE, np.float64)[None].repeat(60, axis=0) * 300.0
    moved = np.einsum("tij,tnj->tni", linear, points) + transforms[:, None, :, 2]
    distances = np.linalg.norm(points[:, :, None] - points[:, None], axis=-1)
    moved_distances = np.linalg.norm(moved[:, :, None] - moved[:, None], axis=-1)
    np.testing.assert_allclose(moved_distances, distances, atol=1e-3)


def _plan(label: str, aus: tuple[str, ...], amplitudes: tuple[float, ...]) -> ClipPlan:
    return ClipPlan("casme2", "sub01", f"c{len(aus)}", label, aus, amplitudes, 10, 20, 12, 15, 25)


def test_relations_are_the_co_activation_of_the_class_motion():
    plans = [_plan("happiness", ("12",), (2.0,)), _plan("surprise", ("1", "2"), (2.0, 3.0))]
    relations = relation_matrices(plans, ["happiness", "surprise", "others"])
    k = len(K7)
    mouth, nose = K7.index("mouth"), K7.index("nose")
    brows = [K7.index("right_brow"), K7.index("left_brow")]
    # AU12 moves only the mouth: all of the co-activation is mouth with mouth
    happiness = relations["happiness"]
    assert happiness[mouth, mouth] == pytest.approx(1.0) and happiness[mouth, nose] == 0
    # AU1+2 move both brows alike: a quarter for each brow pair entry
    surprise = relations["surprise"]
    assert surprise[brows[0], brows[1]] == pytest.approx(0.25, abs=1e-5)
    assert surprise[brows[0], mouth] == 0
    assert np.allclose(relations["others"], 0)  # a class without clips
    for matrix in relations.values():
        assert matrix.shape == (k, k) and np.allclose(matrix, matrix.T)


def test_coactivation_of_an_activation():
    matrix = coactivation(np.array([1.0, 0.0, 3.0]))
    assert np.allclose(matrix, np.outer([0.25, 0, 0.75], [0.25, 0, 0.75]))
    assert np.allclose(coactivation(np.zeros(3)), 0)


def test_distractors_come_from_one_pool_of_non_class_aus_drawn_alike_in_every_class():
    import collections

    from geomer.synth.emotions import class_table, distractor_pool, sample_distractors

    for scheme in ("casme2", "samm", "megc3"):
        pool = distractor_pool(scheme)
        class_numbers = {u.lstrip("LR") for e in class_table(scheme) for combo, _ in e.combinations for u in combo}
        assert pool and not {u.lstrip("LR") for u in pool} & class_numbers
    rng = np.random.default_rng(0)
    pool = distractor_pool("casme2")
    counts = collections.Counter(len(sample_distractors(pool, rng, 0.75, 2)) for _ in range(2000))
    assert counts[2] / 2000 == pytest.approx(0.5625, abs=0.04) and counts[0] / 2000 < 0.1
    drawn = collections.Counter(u for _ in range(3000) for u in sample_distractors(pool, rng, 1.0, 3))
    assert set(drawn) == set(pool)  # uniform over the pool, never a repeat within a clip
    assert max(drawn.values()) / min(drawn.values()) < 1.15


def test_repression_and_others_differ_only_in_how_brows_and_mouth_act_together():
    from geomer.synth.aus import action_unit
    from geomer.synth.emotions import class_table

    table = {e.name: e for e in class_table("casme2")}
    repression, others = table["repression"], table["others"]
    assert repression.components == others.components == {"right_brow", "left_brow", "mouth", "contour"}

    def vertical(emotion, part):  # P(component moves up), per the AU fields
        ids = {"brows": [19, 24], "mouth": [48, 54]}[part]
        up = sum(w for combo, w in emotion.combinations
                 if sum(action_unit(u).field[ids, 1].sum() for u in combo) < 0)
        return up

    for part in ("brows", "mouth"):  # each component alone: up half the time in both classes
        assert vertical(repression, part) == pytest.approx(0.5) == vertical(others, part)
    same = lambda e: sum(w for combo, w in e.combinations if ("12" in combo) == ("1" in combo))  # noqa: E731
    assert same(repression) == pytest.approx(1.0) and same(others) == pytest.approx(0.0)


def test_bench_reports_renderer_speed():
    from geomer.synth.bench import bench_synth

    rows = bench_synth(frames=3)
    assert [unit for _, _, unit in rows] == ["ms", "frames/s", "frames/s"]
    assert all(value > 0 for _, value, _ in rows)
