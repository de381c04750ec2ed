"""``geomer datasets``, ``geomer prepare`` and ``load_graphs`` on tiny synthetic datasets."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from geomer.cli import main
from geomer.data import read_dataset
from geomer.data.cache import FeatureCache
from geomer.data.datasets import list_datasets
from geomer.data.loading import load_graphs
from geomer.data.prepare import feature_job, prepare_dataset, without_failures
from geomer.errors import GeomerError
from geomer.features.types import FeatureSettings
from geomer.synth.generate import generate


@pytest.fixture(scope="module")
def flow_root(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("syn") / "flow", layout="megc2019-flow", subjects=2,
                    clips=2, seed=3, progress=False)


def test_datasets_command_lists_every_name(capsys):
    assert main(["datasets"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == list(list_datasets())
    casme2 = next(line for line in lines if line.startswith("casme2 "))
    assert "CASME2-coding-*.xlsx" in casme2 and "sub01/EP02_01f/img46.jpg" in casme2


def test_prepare_caches_then_resumes(flow_root, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GEOMER_CACHE", str(tmp_path / "cache"))
    argv = ["prepare", "--dataset", "synth", "--root", str(flow_root), "--quiet"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "clips: 4 (4 extracted now, 0 already cached, 0 failed)" in out
    assert "faces found in 4" in out
    assert main(argv) == 0
    assert "clips: 4 (0 extracted now, 4 already cached, 0 failed)" in capsys.readouterr().out

    index = read_dataset("synth", flow_root)
    cache = FeatureCache(tmp_path / "cache" / "features", FeatureSettings())
    graphs = load_graphs(index, cache)
    assert [g.clip for g in graphs] == [s.key for s in index.samples]
    assert [g.subject for g in graphs] == [s.subject_key for s in index.samples]
    assert [int(g.y) for g in graphs] == [s.label_index for s in index.samples]
    assert graphs[0].dataset == index.samples[0].dataset
    assert graphs[0].x.shape[0] == 68 and graphs[0].flow_patches.shape[:2] == (68, 3)


def test_failed_clip_exits_2_after_caching_the_good_ones(flow_root, tmp_path, capsys):
    broken = tmp_path / "broken"
    import shutil

    shutil.copytree(flow_root, broken)
    index = read_dataset("synth", broken)
    victim = index.samples[1]
    cv2.imwrite(str(victim.extra["apex_image"]), np.full((224, 224, 3), 128, np.uint8))  # no face
    status = main(["prepare", "--dataset", "synth", "--root", str(broken),
                   "--cache", str(tmp_path / "cache"), "--quiet"])
    captured = capsys.readouterr()
    assert status == 2
    failed = [line for line in captured.out.splitlines() if line.startswith("failed: ")]
    assert len(failed) == 1 and failed[0].startswith(f"failed: {victim.key}: ")
    assert str(victim.extra["apex_image"]) in failed[0] and "no face" in failed[0]
    (error,) = captured.err.strip().splitlines()  # one line naming the clip and its file
    assert error.startswith(f"geomer prepare: error: feature extraction failed for {victim.key}: ")
    assert str(victim.extra["apex_image"]) in error and "--skip-bad" in error
    cache = FeatureCache(tmp_path / "cache", FeatureSettings())
    assert [cache.has(feature_job(s, index.name)) for s in index.samples] == [True, False, True, True]
    with pytest.raises(GeomerError, match=f"clip {victim.key} not .*in the feature cache.*geomer prepare"):
        load_graphs(index, cache)
    # --skip-bad: the failed clip is listed and left out
    status = main(["prepare", "--dataset", "synth", "--root", str(broken),
                   "--cache", str(tmp_path / "cache"), "--quiet", "--skip-bad"])
    captured = capsys.readouterr()
    assert status == 0 and f"failed: {victim.key}: " in captured.out
    kept = without_failures(index, [(victim.key, "no face")])
    assert [s.key for s in kept.samples] == [s.key for s in index.samples if s.key != victim.key]
    assert kept.skipped[-1].row == victim.key and len(load_graphs(kept, cache)) == 3
    # --skip-bad with every clip failed: no dataset is left, an error
    for sample in index.samples:
        cv2.imwrite(str(sample.extra["apex_image"]), np.full((224, 224, 3), 128, np.uint8))
    status = main(["prepare", "--dataset", "synth", "--root", str(broken),
                   "--cache", str(tmp_path / "other-cache"), "--quiet", "--skip-bad"])
    (error,) = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and "3 more clip(s) failed" in error


def test_an_unknown_scheme_is_refused_before_the_standard_dataset_is_rendered(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GEOMER_CACHE", str(tmp_path / "cache"))
    assert main(["prepare", "--scheme", "bogus", "--quiet"]) == 2
    (error,) = capsys.readouterr().err.strip().splitlines()
    assert "unknown class scheme 'bogus' for dataset synth" in error
    assert list(tmp_path.iterdir()) == []


def test_overlapping_clip_keys_keep_distinct_features(flow_root, tmp_path, capsys):
    """The standard and the hard synthetic dataset of one seed share every clip key; prepared
    into one cache, each keeps its own features."""
    from geomer.features.extract import extract_flow_image_clip

    hard = generate(tmp_path / "hard", layout="megc2019-flow", subjects=2, clips=2, seed=3,
                    difficulty="hard", progress=False)
    standard_index, hard_index = read_dataset("synth", flow_root), read_dataset("synth", hard)
    assert [s.key for s in standard_index.samples] == [s.key for s in hard_index.samples]
    cache_dir = tmp_path / "cache"
    for root in (flow_root, hard):
        assert main(["prepare", "--dataset", "synth", "--root", str(root), "--cache", str(cache_dir),
                     "--quiet"]) == 0
        assert "clips: 4 (4 extracted now, 0 already cached, 0 failed)" in capsys.readouterr().out
    cache = FeatureCache(cache_dir, FeatureSettings())
    for index in (standard_index, hard_index):
        graphs = load_graphs(index, cache)
        for sample, graph in zip(index.samples, graphs):
            own = extract_flow_image_clip(sample.extra["apex_image"], sample.extra["flow_image"],
                                          FeatureSettings())
            np.testing.assert_allclose(graph.flow_patches.numpy(), own.flow_patches, atol=1e-6)
    first = (load_graphs(standard_index, cache)[0], load_graphs(hard_index, cache)[0])
    assert not np.allclose(first[0].flow_patches.numpy(), first[1].flow_patches.numpy())


def _truncate(path):
    path.write_bytes(path.read_bytes()[:100])


def _drop_flow_image_points(path):
    with np.load(path) as loaded:
        arrays = dict(loaded)
    del arrays["flow_image_points"]  # a valid .npz, missing an array this entry was written with
    np.savez(path, **arrays)


@pytest.mark.parametrize("damage, problem", [(_truncate, "cannot be read"),
                                             (_drop_flow_image_points, "lacks flow_image_points")])
def test_a_damaged_cache_file_is_refused_by_load_graphs_and_rebuilt_with_a_notice(flow_root, tmp_path, capsys,
                                                                                   damage, problem):
    argv = ["prepare", "--dataset", "synth", "--root", str(flow_root), "--cache",
            str(tmp_path / "cache"), "--quiet"]
    assert main(argv) == 0
    index = read_dataset("synth", flow_root)
    cache = FeatureCache(tmp_path / "cache", FeatureSettings())
    sample = index.samples[2]
    path = cache.path(feature_job(sample, index.name))
    damage(path)
    # training reads the cache through load_graphs: the same verification refuses the entry
    with pytest.raises(GeomerError, match=problem) as refused:
        load_graphs(index, cache)
    assert sample.key in str(refused.value)
    capsys.readouterr()
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "clips: 4 (1 extracted now, 3 already cached, 0 failed)" in captured.out
    notices = [line for line in captured.err.splitlines() if line.strip()]
    assert len(notices) == 1 and sample.key in notices[0] and str(path) in notices[0] and problem in notices[0]
    assert len(load_graphs(index, cache)) == 4


def test_unknown_backend_is_refused_before_any_work(flow_root, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GEOMER_CACHE", str(tmp_path / "home"))
    for argv in (["prepare", "--dataset", "synth", "--root", str(flow_root)],
                 ["prepare", "--cache", str(tmp_path / "cache")]):  # no root: the standard synth set
        assert main(argv + ["--backend", "nope", "--quiet"]) == 2
        captured = capsys.readouterr()
        err = captured.err.strip().splitlines()
        assert captured.out == "" and len(err) == 1
        assert "unknown landmark backend 'nope'" in err[0] and "dlib" in err[0] and "fan" in err[0]
    assert list(tmp_path.iterdir()) == []  # nothing written: no cache, no synthetic dataset


def test_prepare_bad_dataset_is_one_line_exit_2(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["prepare", "--dataset", "casme2", "--root", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "label sheet CASME2-coding-" in err[0]
    assert main(["prepare", "--dataset", "casme2"]) == 2
    assert "--root is required" in capsys.readouterr().err
    assert main(["prepare", "--dataset", "casme2", "--root", str(tmp_path / "empty"), "--jobs", "0"]) == 2
    assert "--jobs must be at least 1 (got 0)" in capsys.readouterr().err


def test_feature_jobs_by_kind(flow_root):
    sample = read_dataset("synth", flow_root).samples[0]
    job = feature_job(sample, "synth")
    assert job.kind == "flow_image" and job.key == sample.key and job.dataset == "synth"
    assert Path(job.flow_image).name.endswith(" .png")


def test_installed_command(tmp_path):
    result = subprocess.run(
        [str(Path(sys.executable).with_name("geomer")), "datasets"], capture_output=True, text=True
    )
    assert result.returncode == 0 and "megc2019-flow" in result.stdout


@pytest.mark.slow
def test_prepare_frame_clips_and_skip_bad(tmp_path, monkeypatch):
    """The frames path end to end on a generated CASME II layout with one broken row skipped."""
    import json

    import pandas as pd

    root = generate(tmp_path / "c2", layout="casme2", subjects=1, clips=2, seed=1, progress=False)
    sheet = next(root.glob("CASME2-coding-*.xlsx"))
    table = pd.read_excel(sheet)
    bad = table.iloc[[0]].copy()
    bad["Filename"] = "EP99_99"
    pd.concat([table, bad]).to_excel(sheet, index=False)
    with pytest.raises(GeomerError, match="EP99_99 is missing"):
        read_dataset("synth", root)
    index = read_dataset("synth", root, skip_bad=True)
    assert len(index.samples) == 2 and len(index.skipped) == 1
    truth = json.loads((root / "ground_truth.json").read_text())
    for sample in index.samples:
        clip = truth["clips"][sample.key]
        assert (sample.onset, sample.apex, sample.offset) == (clip["onset"], clip["apex"], clip["offset"])
    summary = prepare_dataset(index, tmp_path / "cache", FeatureSettings(), progress=False)
    assert (summary.clips, summary.done, summary.failures) == (2, 2, ())
    assert summary.frames == summary.faces_found > 2 * 20
    assert any("EP99_99" in line for line in summary.lines())
    graphs = load_graphs(index, FeatureCache(tmp_path / "cache", FeatureSettings()))
    assert graphs[0].geometry.shape == (68, 16, 2)
    assert graphs[0].sequence.shape[:2] == (68, 8)

    # the sheet's apex of one clip corrected: that clip is extracted again, no other
    edited = pd.read_excel(sheet)
    first = index.samples[0]
    row = edited.index[edited["Filename"].astype(str) == first.clip][0]
    edited.loc[row, "ApexFrame"] = first.apex - 1
    edited.to_excel(sheet, index=False)
    index = read_dataset("synth", root, skip_bad=True)
    assert index.samples[0].apex == first.apex - 1
    summary = prepare_dataset(index, tmp_path / "cache", FeatureSettings(), progress=False)
    assert (summary.done, summary.cached, summary.failures) == (1, 1, ())
    cache = FeatureCache(tmp_path / "cache", FeatureSettings())
    features = cache.get(feature_job(index.samples[0], "synth"))
    assert features.apex == first.apex - 1 and not features.apex_spotted

    # an apex marked "/" (not annotated): spotted, and recorded as spotted
    second = index.samples[1]
    edited["ApexFrame"] = edited["ApexFrame"].astype(object)
    edited.loc[edited.index[edited["Filename"].astype(str) == second.clip][0], "ApexFrame"] = "/"
    edited.to_excel(sheet, index=False)
    index = read_dataset("synth", root, skip_bad=True)
    assert index.samples[1].apex is None
    summary = prepare_dataset(index, tmp_path / "cache", FeatureSettings(), progress=False)
    assert (summary.done, summary.cached, summary.failures) == (1, 1, ())
    features = cache.get(feature_job(index.samples[1], "synth"))
    assert features.apex_spotted and second.onset < features.apex <= second.offset


def test_synth_samples_agree_with_ground_truth(flow_root):
    import json

    truth = json.loads((flow_root / "ground_truth.json").read_text())
    index = read_dataset("synth", flow_root)
    assert index.classes == tuple(truth["classes"])
    assert {s.key for s in index.samples} == set(truth["clips"])
    for sample in index.samples:
        assert sample.label == truth["clips"][sample.key]["label"]
        assert sample.subject_key == truth["clips"][sample.key]["subject"]
    # the same files read as the real layout give the same keys
    assert [s.key for s in read_dataset("megc2019-flow", flow_root).samples] == [
        s.key for s in index.samples
    ]


@pytest.mark.slow
def test_train_refuses_a_dataset_with_failed_clips_unless_skip_bad(flow_root, tmp_path):
    """A clip that fails to extract refuses training at the start of the run; with skip_bad it
    is left out and listed in the run's config."""
    import json
    import shutil

    from geomer.train.config import TrainConfig
    from geomer.train.pipeline import train_dataset

    broken = tmp_path / "broken"
    shutil.copytree(flow_root, broken)
    victim = read_dataset("synth", broken).samples[0]
    victim.extra["apex_image"].write_bytes(b"not a JPEG")
    config = TrainConfig(model="dere-grl", epochs=1, seeds=(0,), jobs=1, progress=False)
    options = dict(dataset="synth", root=broken, cache=tmp_path / "cache", progress=False)
    with pytest.raises(GeomerError, match=f"failed for {victim.key}.*--skip-bad"):
        train_dataset(config, out=tmp_path / "refused", **options)
    assert not (tmp_path / "refused").exists()
    result = train_dataset(config, out=tmp_path / "run", skip_bad=True, **options)
    written = json.dumps(json.loads((result.out_dir / "config.json").read_text()))
    assert victim.key in written
    predictions = "".join(p.read_text() for p in result.out_dir.rglob("predictions.csv"))
    assert victim.key not in predictions and predictions.count("\n") >= 3


@pytest.mark.skipif(__import__("importlib").util.find_spec("face_alignment") is not None,
                    reason="needs a machine without face-alignment")
def test_an_uninstalled_backend_is_refused_before_the_dataset_is_read(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GEOMER_CACHE", str(tmp_path / "cache"))
    assert main(["prepare", "--dataset", "casme2", "--root", str(tmp_path / "data"), "--backend", "fan",
                 "--skip-bad", "--quiet"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "geomer prepare: error: the fan backend needs face-alignment: pip install 'geomer[fan]'"]
    assert list(tmp_path.iterdir()) == []
