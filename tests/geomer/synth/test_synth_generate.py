"""generate(): determinism, layouts on disk, atomic writes, the standard dataset, ground truth."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from geomer.errors import GeomerError
from geomer.graph import FaceGraph
from geomer.synth import STANDARD_SIZE, generate, standard_dataset
from geomer.synth.layouts import CASME2_SHEET, MEGC_APEX_DIR, MEGC_CSV, MEGC_FLOW_DIR, SAMM_SHEET

TINY = dict(subjects=2, clips=2, fps=50, progress=False)


def _frame_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.jpg"))}


@pytest.fixture(scope="module")
def casme2_root(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("casme2") / "data", layout="casme2", seed=3, **TINY)


def test_same_seed_gives_identical_sheet_and_frames(casme2_root, tmp_path):
    again = generate(tmp_path / "again", layout="casme2", seed=3, **TINY)
    first = pd.read_excel(casme2_root / CASME2_SHEET)
    pd.testing.assert_frame_equal(first, pd.read_excel(again / CASME2_SHEET))
    assert _frame_files(casme2_root) == _frame_files(again)
    truth = json.loads((casme2_root / "ground_truth.json").read_text())
    assert truth == json.loads((again / "ground_truth.json").read_text())


def test_parallel_rendering_gives_the_same_dataset(casme2_root, tmp_path):
    parallel = generate(tmp_path / "parallel", layout="casme2", seed=3, jobs=2, **TINY)
    assert _frame_files(casme2_root) == _frame_files(parallel)
    assert (casme2_root / "ground_truth.json").read_text() == (parallel / "ground_truth.json").read_text()


def test_other_seed_gives_other_data(casme2_root, tmp_path):
    other = generate(tmp_path / "other", layout="casme2", seed=4, **TINY)
    assert _frame_files(casme2_root) != _frame_files(other)
    assert not pd.read_excel(casme2_root / CASME2_SHEET).equals(pd.read_excel(other / CASME2_SHEET))


def test_casme2_layout_sheet_and_frame_numbering(casme2_root):
    sheet = pd.read_excel(casme2_root / CASME2_SHEET)
    assert list(sheet.columns) == [
        "Subject", "Filename", "OnsetFrame", "ApexFrame", "OffsetFrame", "Action Units", "Estimated Emotion",
    ]
    assert len(sheet) == 4
    truth = json.loads((casme2_root / "ground_truth.json").read_text())
    for row in sheet.itertuples(index=False):
        folder = casme2_root / f"sub{int(row.Subject):02d}" / row.Filename
        numbers = sorted(int(re.fullmatch(r"img(\d+)\.jpg", p.name).group(1)) for p in folder.iterdir())
        assert numbers == list(range(numbers[0], numbers[-1] + 1))  # contiguous
        assert numbers[0] >= 10  # like CASME II, numbering does not start at 0 or 1
        assert numbers[0] < row.OnsetFrame < row.ApexFrame < row.OffsetFrame < numbers[-1]
        image = cv2.imread(str(folder / f"img{row.ApexFrame}.jpg"), cv2.IMREAD_UNCHANGED)
        assert image.shape == (320, 320, 3)
        clip = truth["clips"][f"casme2/sub{int(row.Subject):02d}/{row.Filename}"]
        assert (clip["onset"], clip["apex"], clip["offset"]) == (row.OnsetFrame, row.ApexFrame, row.OffsetFrame)
        assert str(row._5) == "+".join(clip["aus"]) and row._6 == clip["label"]
    assert (casme2_root / "ground_truth_landmarks" / "casme2").is_dir()


def test_ground_truth_json_contract(casme2_root):
    truth = json.loads((casme2_root / "ground_truth.json").read_text())
    k7 = list(FaceGraph("k7").component_names)
    assert truth["layout"] == "casme2" and truth["dataset"] == "casme2"
    assert truth["fps"] == 50 and truth["seed"] == 3 and truth["difficulty"] == "standard"
    assert truth["components"] == k7
    assert truth["classes"] == ["happiness", "surprise", "disgust", "repression", "others"]
    assert len(truth["clips"]) == 4
    from geomer.synth.aus import action_unit
    from geomer.synth.emotions import distractor_pool
    from geomer.synth.generate import au_activation

    for key, clip in truth["clips"].items():
        assert key == f"{clip['subject']}/{key.rsplit('/', 1)[1]}"
        assert set(clip["components"]) <= set(k7) and clip["aus"]
        assert clip["onset"] < clip["apex"] < clip["offset"]
        # standard: four distractor AUs in every clip, from the scheme's one pool, none a class AU
        assert len(clip["distractor_aus"]) == len(clip["distractor_amplitudes_px"]) == 4
        assert set(clip["distractor_aus"]) <= set(distractor_pool("casme2"))
        assert not set(clip["distractor_aus"]) & set(clip["aus"])
    labelled = {clip["label"] for clip in truth["clips"].values()}
    for name in truth["classes"]:
        if name not in labelled:  # a class without clips: no motion, all zero
            assert not np.any(truth["relations"][name]) and not np.any(truth["motion_relations"][name])
            continue
        for field in ("relations", "motion_relations"):
            matrix = np.array(truth[field][name])
            assert matrix.shape == (7, 7) and np.allclose(matrix, matrix.T, atol=1e-5)
            # co-activation of motion shares: non-negative, entries sum to 1
            assert matrix.min() >= 0 and matrix.sum() == pytest.approx(1.0, abs=1e-4)
        # the relevance is zero for every pair with a component no class AU of the class moves,
        # while the motion ground truth also counts the distractors
        class_motion = sum(au_activation(c["aus"], c["amplitudes_px"]) for c in truth["clips"].values() if c["label"] == name)
        unused = class_motion == 0
        relevance, motion = np.array(truth["relations"][name]), np.array(truth["motion_relations"][name])
        assert unused.any() and np.all(relevance[unused] == 0) and np.all(relevance[:, unused] == 0)
        assert np.all(motion[unused][:, unused].diagonal() > 0)  # residual head motion moves everything a little


def test_the_standard_level_moves_the_face_more_by_distractors_than_moderate(casme2_root, tmp_path):
    # the standard of geomer 0.2.14 against that of 0.2.13 (moderate), the same draws otherwise:
    # four distractor AUs in every clip instead of three, and a larger share of the clip's AU
    # motion that no class explains, more than half of it
    moderate = generate(tmp_path / "moderate", layout="casme2", seed=3, difficulty="moderate", **TINY)

    def distractor_share(root: Path) -> tuple[float, set[int]]:
        clips = json.loads((root / "ground_truth.json").read_text())["clips"].values()
        distractor = sum(sum(c["distractor_amplitudes_px"]) for c in clips)
        return distractor / (distractor + sum(sum(c["amplitudes_px"]) for c in clips)), {
            len(c["distractor_aus"]) for c in clips}

    standard_share, standard_counts = distractor_share(casme2_root)
    moderate_share, moderate_counts = distractor_share(moderate)
    assert moderate_counts == {3} and standard_counts == {4}
    assert standard_share > max(moderate_share + 0.05, 0.5)


def test_dataset_reader_reads_what_was_written(casme2_root):
    from geomer.data.datasets import read_dataset

    truth = json.loads((casme2_root / "ground_truth.json").read_text())
    index = read_dataset("synth", casme2_root)
    assert {s.key for s in index.samples} == set(truth["clips"])
    for sample in index.samples:
        clip = truth["clips"][sample.key]
        assert (sample.label, sample.onset, sample.apex) == (clip["label"], clip["onset"], clip["apex"])


def test_an_unknown_scheme_error_names_the_synthetic_default(casme2_root):
    from geomer.data.datasets import read_dataset
    from geomer.errors import GeomerError

    with pytest.raises(GeomerError, match=r"'nonsense' for a synthetic dataset; known: ground-truth \(the default\), composite-3"):
        read_dataset("synth", casme2_root, scheme="nonsense")


def test_samm_layout_has_title_rows_and_greyscale_frames(tmp_path):
    root = generate(tmp_path / "samm", layout="samm", seed=0, **TINY)
    raw = pd.read_excel(root / SAMM_SHEET, header=None)
    header_row = next(i for i in range(len(raw)) if raw.iloc[i, 1] == "Filename")
    assert header_row > 0  # a title block sits above the header
    sheet = pd.read_excel(root / SAMM_SHEET, header=header_row)
    assert {"Subject", "Filename", "Onset Frame", "Apex Frame", "Offset Frame", "Action Units",
            "Estimated Emotion"} <= set(sheet.columns)
    for row in sheet.itertuples(index=False):
        subject = f"{int(row.Subject):03d}"
        folder = root / subject / row.Filename
        assert row.Filename.startswith(f"{subject}_")
        apex = folder / f"{subject}_{int(row._4):05d}.jpg"
        image = cv2.imread(str(apex), cv2.IMREAD_UNCHANGED)
        assert image is not None and image.ndim == 2  # greyscale, as SAMM is


def test_megc2019_flow_layout_csv_crops_and_flow_images(tmp_path):
    root = generate(tmp_path / "megc", layout="megc2019-flow", seed=0, subjects=3, clips=2, progress=False)
    table = pd.read_csv(root / MEGC_CSV, dtype=str)
    assert list(table.columns) == ["dataset", "sub", "filename_o", "label", "imagename"]
    assert set(table["dataset"]) == {"casme2", "samm", "smic"}
    assert set(table["label"]) <= {"0", "1", "2"}
    for row in table.itertuples(index=False):
        crop = cv2.imread(str(root / MEGC_APEX_DIR / row.imagename))
        assert crop.shape == (224, 224, 3)
        flow = cv2.imread(str(root / MEGC_FLOW_DIR / f"{row.sub}_{row.filename_o} .png"))
        assert flow.shape == (28, 28, 3)
        assert (flow.reshape(-1, 3).min(axis=0) == 0).all() and (flow.reshape(-1, 3).max(axis=0) == 255).all()
    truth = json.loads((root / "ground_truth.json").read_text())
    assert truth["classes"] == ["negative", "positive", "surprise"]
    expected = {f"{r.dataset}/{r.sub}/{r.filename_o}" for r in table.itertuples(index=False)}
    assert set(truth["clips"]) == expected


def test_refuses_a_non_empty_folder_and_leaves_nothing_half_written(tmp_path, monkeypatch):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(GeomerError, match="already exists"):
        generate(out, **TINY)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy"]

    from geomer.synth import layouts

    def broken_finish(self, root, plans):
        raise RuntimeError("disk full")

    monkeypatch.setattr(layouts.Casme2Layout, "finish", broken_finish)
    with pytest.raises(RuntimeError):
        generate(tmp_path / "fresh", **TINY)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy"]  # no out, no out.tmp-<pid>


@pytest.mark.parametrize("target", ["empty", "absent"])
def test_refuses_a_symbolic_link_before_any_work(tmp_path, monkeypatch, target):
    import importlib

    module = importlib.import_module("geomer.synth.generate")  # the package exports the function
    (tmp_path / "empty").mkdir()
    link = tmp_path / "link"
    link.symlink_to(tmp_path / target)
    monkeypatch.setattr(module, "_render_subject", lambda *a: pytest.fail("rendered before refusing"))
    with pytest.raises(GeomerError, match="link: is a symbolic link"):
        generate(link, **TINY)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "link"] and not any((tmp_path / "empty").iterdir())


def test_a_dataset_that_cannot_be_put_in_place_leaves_no_temp_folder(tmp_path, monkeypatch):
    import importlib
    from pathlib import Path

    module = importlib.import_module("geomer.synth.generate")
    out, temp = tmp_path / "out", tmp_path / "out.tmp-1"
    out.mkdir()
    temp.mkdir()
    (temp / "labels.csv").write_text("x")

    def refused(self):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "rmdir", refused)  # the empty ``out`` cannot be replaced
    with pytest.raises(GeomerError, match="out: cannot put the generated dataset there"):
        module._publish(temp, out)
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


@pytest.mark.parametrize("name", ["", ".", "..", "here/../.."])
def test_refuses_the_current_folder_or_one_holding_it_before_any_work(tmp_path, monkeypatch, name):
    here = tmp_path / "here"
    here.mkdir()  # empty: an empty output folder is otherwise accepted
    monkeypatch.chdir(here)
    with pytest.raises(GeomerError, match="is the current folder or holds it"):
        generate(name, **TINY)
    assert [p.name for p in tmp_path.iterdir()] == ["here"] and list(here.iterdir()) == []


@pytest.mark.parametrize("subjects, free_mb, stops_after", [
    (50, 8, "clip"),  # far too large: stopped after its first clip (about 1 MB), before a subject's worth
    (4, 3.5, "2 clips"),  # a little too large: the first clip leaves room for doubt, its first subject none
])
@pytest.mark.parametrize("jobs", [1, 2])
def test_a_dataset_too_large_for_the_disk_stops_early(tmp_path, monkeypatch, jobs, subjects, free_mb, stops_after):
    import importlib
    from collections import namedtuple

    module = importlib.import_module("geomer.synth.generate")  # the package exports the function
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(module.shutil, "disk_usage", lambda path: usage(10**12, 0, int(free_mb * 10**6)))
    rendered = []
    original = module._render_subject
    monkeypatch.setattr(module, "_render_subject", lambda *a: rendered.append(a[2]) or original(*a))
    with pytest.raises(GeomerError, match=rf"needs about 0\.\d GB \(its first {stops_after} took \d+ MB\) and 0\.0 GB are free"):
        generate(tmp_path / "big", **{**TINY, "subjects": subjects, "jobs": jobs})
    assert rendered == [0]  # the other subjects never started
    assert list(tmp_path.iterdir()) == []


def test_bad_arguments_are_one_line_errors(tmp_path):
    for kwargs, pattern in [
        (dict(layout="smic"), "unknown synthetic layout"),
        (dict(difficulty="extreme"), "unknown difficulty"),
        (dict(subjects=0), "--subjects"),
        (dict(fps=1), "--fps"),
        (dict(seed=-1), "--seed"),
    ]:
        with pytest.raises(GeomerError, match=pattern):
            generate(tmp_path / "x", **{**TINY, **kwargs})


def test_standard_dataset_is_made_once_in_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GEOMER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(STANDARD_SIZE, "subjects", 1)
    monkeypatch.setitem(STANDARD_SIZE, "clips", 1)
    root = standard_dataset(progress=False)
    assert root == tmp_path / "cache" / "synth" / "standard-v4"
    assert json.loads((root / "ground_truth.json").read_text())["difficulty"] == "standard"
    stamp = (root / "ground_truth.json").stat().st_mtime_ns
    assert standard_dataset(progress=False) == root
    assert (root / "ground_truth.json").stat().st_mtime_ns == stamp  # reused, not regenerated


@pytest.mark.slow
def test_tracked_landmarks_move_where_the_aus_say(tmp_path):
    """Track the rendered frames with dlib: the components of the class AUs and of the distractor
    AUs move more than the rest, and distractors move exactly the components they name."""
    from geomer.synth.aus import action_unit
    from landmarks import track

    root = generate(tmp_path / "easy", layout="casme2", subjects=2, clips=5, seed=1,
                    difficulty="easy", fps=80, progress=False)
    truth = json.loads((root / "ground_truth.json").read_text())
    graph = FaceGraph("k7")
    ratios = []
    for key, clip in truth["clips"].items():
        _, subject, name = key.split("/")
        tracked = track(root / subject / name)
        onset, apex = tracked.position(clip["onset"]), tracked.position(clip["apex"])
        # average 2 frames at each end: dlib jitters by a fraction of a pixel per frame
        moved = np.linalg.norm(
            tracked.points[apex - 1 : apex + 1].mean(0) - tracked.points[onset : onset + 2].mean(0), axis=1
        )
        per_component = {
            n: moved[graph.node_ids[graph.component == k]].max() for k, n in enumerate(graph.component_names)
        }
        moving = set(clip["components"]) | {k for u in clip["distractor_aus"] for k in action_unit(u).components}
        named = np.mean([per_component[n] for n in moving])
        others = [v for n, v in per_component.items() if n not in moving]
        if others:
            ratios.append(named / np.mean(others))
    ratios = np.array(ratios)
    assert np.median(ratios) > 2.0, ratios
    assert (ratios > 1.3).mean() >= 0.8, ratios


def _still_dataset(path: Path, monkeypatch, subjects: int = 1, **level) -> Path:
    """A small casme2 dataset at the standard level less head motion, residual head motion and
    landmark noise (plus the ``level`` changes, which may set these too): its ground-truth
    landmarks are the face shape plus exactly the motion its ground truth lists."""
    import dataclasses
    import importlib

    from geomer.synth.motion import DIFFICULTIES

    changes = dict(head_shift_px=0.0, head_rotation_deg=0.0, residual_head_px=0.0, landmark_noise_px=0.0)
    still = dataclasses.replace(DIFFICULTIES["standard"], **(changes | level))
    module = importlib.import_module("geomer.synth.generate")  # geomer.synth.generate is also the function
    monkeypatch.setattr(module, "get_difficulty", lambda name: still)
    return generate(path, layout="casme2", subjects=subjects, clips=2, seed=4, fps=50, progress=False)


def _landmarks(root: Path, key: str):
    from landmarks.track import LandmarkTrack

    return LandmarkTrack.load(root / "ground_truth_landmarks" / f"{key}.npz")


def test_distractor_aus_move_their_landmarks_by_their_amplitude_at_apex(tmp_path, monkeypatch):
    """Onset → apex, the landmarks move by every AU the ground truth lists, the distractors
    included: each AU's field scaled so its strongest landmark moves its amplitude (px)."""
    from geomer.synth.aus import action_unit

    root = _still_dataset(tmp_path / "still", monkeypatch, blink_probability=0.0)
    truth = json.loads((root / "ground_truth.json").read_text())

    def displacement(codes, amplitudes):
        return sum((action_unit(u).field / np.linalg.norm(action_unit(u).field, axis=1).max() * a
                    for u, a in zip(codes, amplitudes)), np.zeros((68, 2)))

    for key, clip in truth["clips"].items():
        assert clip["distractor_aus"] and not clip["blink"]
        track = _landmarks(root, key)
        moved = track.points[track.position(clip["apex"])] - track.points[track.position(clip["onset"])]
        np.testing.assert_allclose(
            moved,
            displacement(clip["aus"] + clip["distractor_aus"],
                         clip["amplitudes_px"] + clip["distractor_amplitudes_px"]),
            atol=2e-3,
        )
        beyond_class = moved - displacement(clip["aus"], clip["amplitudes_px"])
        for u, a in zip(clip["distractor_aus"], clip["distractor_amplitudes_px"]):
            others = displacement([v for v in clip["distractor_aus"] if v != u],
                                  [b for v, b in zip(clip["distractor_aus"], clip["distractor_amplitudes_px"]) if v != u])
            strongest = int(np.argmax(np.linalg.norm(action_unit(u).field, axis=1)))
            own = beyond_class[strongest] - others[strongest]
            assert np.linalg.norm(own) == pytest.approx(a, abs=2e-3), (key, u)
    # nothing else moves here, so the motion ground truth is the co-activation of the class and
    # distractor AUs together, the relevance that of the class AUs alone
    from geomer.synth.generate import au_activation, relation_matrices

    clips = truth["clips"].values()
    for field, with_distractors in (("motion_relations", True), ("relations", False)):
        expected = relation_matrices([
            (c["label"], au_activation(c["aus"] + c["distractor_aus"] * with_distractors,
                                       c["amplitudes_px"] + c["distractor_amplitudes_px"] * with_distractors))
            for c in clips], truth["classes"])
        for name in {c["label"] for c in clips}:
            np.testing.assert_allclose(truth[field][name], expected[name], atol=1e-6, err_msg=f"{field} {name}")


def test_a_blink_lowers_the_upper_lids_by_its_amplitude(tmp_path, monkeypatch):
    """A clip whose ground truth has a blink: at the blink's peak the upper lids are lower (image
    y larger) than at rest by up to ``blink_px``, the lower lids slightly higher, and no other
    landmark moves (no AU moves here: amplitudes 0)."""
    root = _still_dataset(tmp_path / "blink", monkeypatch, blink_probability=1.0,
                          amplitude_px=(0.0, 0.0), distractor_amplitude_px=(0.0, 0.0))
    truth = json.loads((root / "ground_truth.json").read_text())
    upper, lower = [37, 38, 43, 44], [41, 40, 47, 46]
    for key, clip in truth["clips"].items():
        assert clip["blink"] and clip["blink_px"] > 0.5
        points = _landmarks(root, key).points.astype(np.float64)
        lid_y = points[:, upper, 1]
        peak, rest = int(np.argmax(lid_y[:, 0])), int(np.argmin(lid_y[:, 0]))
        drop = lid_y[peak] - lid_y[rest]
        assert drop.max() == pytest.approx(clip["blink_px"], abs=2e-3)
        assert np.all(drop > 0.3 * clip["blink_px"])  # every upper lid closes
        rise = points[rest, lower, 1] - points[peak, lower, 1]
        assert np.all(rise > 0) and np.all(rise < drop)  # lower lids rise a little
        still = np.setdiff1d(np.arange(68), upper + lower)
        np.testing.assert_allclose(points[:, still], np.broadcast_to(points[:1, still], points[:, still].shape), atol=1e-4)
    # the blink is all that moved: the motion ground truth holds the two eyes only, the relevance nothing
    eyes = [truth["components"].index(name) for name in ("right_eye", "left_eye")]
    for name in {clip["label"] for clip in truth["clips"].values()}:
        motion = np.array(truth["motion_relations"][name])
        assert motion.sum() == pytest.approx(1.0, abs=1e-4) and np.all(motion[np.ix_(eyes, eyes)] > 0)
        assert not np.any(np.array(truth["relations"][name]))


def test_clip_components_are_those_of_the_class_aus_only(casme2_root):
    """A clip's ``components`` are the k7 components its class AUs move (in k7 order), not
    those of its distractor AUs."""
    from geomer.synth.aus import action_unit

    k7 = list(FaceGraph("k7").component_names)
    truth = json.loads((casme2_root / "ground_truth.json").read_text())
    widened = 0
    for key, clip in truth["clips"].items():
        own = sorted({k for u in clip["aus"] for k in action_unit(u).components}, key=k7.index)
        assert clip["components"] == own, key
        widened += bool({k for u in clip["distractor_aus"] for k in action_unit(u).components} - set(own))
    assert widened  # the distractors move other components too: the check above can tell


def test_a_subject_shows_different_classes_in_its_clips(casme2_root):
    """Classes rotate through a subject's clips: with no more clips than classes, a subject's
    clips all have different labels."""
    truth = json.loads((casme2_root / "ground_truth.json").read_text())
    assert truth["clips_per_subject"] <= len(truth["classes"])
    by_subject: dict[str, list[str]] = {}
    for clip in truth["clips"].values():
        by_subject.setdefault(clip["subject"], []).append(clip["label"])
    assert len(by_subject) == truth["subjects"]
    for subject, labels in by_subject.items():
        assert len(labels) == truth["clips_per_subject"] and len(set(labels)) == len(labels), (subject, labels)


def test_the_subject_expressivity_scales_class_and_distractor_amplitudes(tmp_path, monkeypatch):
    """With every amplitude drawn as 1 px, a clip's class and distractor AU amplitudes are both
    the subject's expressivity: equal within a subject, within [0.5, 1.5], different across
    subjects."""
    root = _still_dataset(tmp_path / "fixed", monkeypatch, subjects=2, blink_probability=0.0,
                          amplitude_px=(1.0, 1.0), distractor_amplitude_px=(1.0, 1.0))
    truth = json.loads((root / "ground_truth.json").read_text())
    per_subject: dict[str, set[float]] = {}
    for clip in truth["clips"].values():
        assert clip["aus"] and clip["distractor_aus"]
        per_subject.setdefault(clip["subject"], set()).update(clip["amplitudes_px"] + clip["distractor_amplitudes_px"])
    assert len(per_subject) == 2
    expressivity = []
    for subject, values in per_subject.items():
        assert len(values) == 1, (subject, values)  # one factor for every AU of its clips, class or distractor
        (value,) = values
        assert 0.5 <= value <= 1.5, subject
        expressivity.append(value)
    assert expressivity[0] != expressivity[1]


def test_residual_head_motion_alone_enters_the_motion_relations(tmp_path, monkeypatch):
    """A level whose only non-rigid motion is the residual head motion: the motion ground truth is
    the co-activation of the residual's landmark motion at its peak (not zero), the relevance
    is zero."""
    from geomer.synth.generate import coactivation, field_shares

    root = _still_dataset(tmp_path / "residual", monkeypatch, residual_head_px=0.5, blink_probability=0.0,
                          amplitude_px=(0.0, 0.0), distractor_amplitude_px=(0.0, 0.0))
    truth = json.loads((root / "ground_truth.json").read_text())
    expected: dict[str, list[np.ndarray]] = {}
    for key, clip in truth["clips"].items():
        assert not clip["blink"] and clip["residual_head_px"] > 0
        points = _landmarks(root, key).points.astype(np.float64)
        residual = points - points[0]  # zero at frame 0; nothing else moves the landmarks
        peak = residual[int(np.argmax(np.linalg.norm(residual, axis=2).max(axis=1)))]
        assert np.linalg.norm(peak, axis=1).max() == pytest.approx(clip["residual_head_px"], abs=2e-3)
        expected.setdefault(clip["label"], []).append(coactivation(field_shares(peak)))
    for name in truth["classes"]:
        motion, relevance = np.array(truth["motion_relations"][name]), np.array(truth["relations"][name])
        assert not np.any(relevance)
        if name in expected:
            assert motion.sum() == pytest.approx(1.0, abs=1e-4)
            np.testing.assert_allclose(motion, np.mean(expected[name], axis=0), atol=1e-4, err_msg=name)
        else:
            assert not np.any(motion)
