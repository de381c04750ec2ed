"""The feature cache: hit, miss, invalidation, atomic writes and resume, build_cache."""

from __future__ import annotations

import json
import os
import re

import cv2
import numpy as np
import pytest

import geomer.data.cache as cache_module
from geomer.data.cache import CACHE_FORMAT, CONTENTS_ARRAY, FeatureCache, FeatureJob, build_cache, safe_name
from geomer.errors import GeomerError
from geomer.features import ClipFeatures, FeatureSettings
from landmarks import LandmarkTrack
from landmarks.io import frame_number
from landmarks.render import shift_transforms, transformed_photo_clip

SETTINGS = FeatureSettings(flow_method="dis", scales=(8, 16), patch_size=4, steps=4, sequence_steps=2)


def fake_features(clip="c", seed=0, n=68):
    rng = np.random.default_rng(seed)
    return ClipFeatures(
        clip=clip, onset=1, apex=3, offset=5, apex_spotted=False,
        points=rng.random((n, 2)), geometry=rng.random((4, n, 2)),
        apex_displacement=rng.random((n, 2)), edge_displacement=rng.random((182, 2)),
        flow_stats=rng.random((n, 2, 12)), flow_patches=rng.random((n, 2, 3, 4, 4)),
        texture_onset=rng.random((n, 2, 4, 4)), texture_apex=rng.random((n, 2, 4, 4)),
        sequence=rng.random((2, n, 4, 4)),
    )


def job_of(tmp_path, key="casme2/sub01/EP02_01f", dataset="casme2", apex=3, name="clip"):
    """A frames job on a small frame folder (the files only matter for the fingerprint)."""
    folder = tmp_path / name
    if not folder.is_dir():
        folder.mkdir(parents=True)
        for k in range(1, 6):
            (folder / f"img{k}.jpg").write_bytes(bytes([k]) * 10)
    return FeatureJob(key, folder, onset=1, apex=apex, offset=5, dataset=dataset)


def test_hit_miss_and_manifest(tmp_path):
    cache = FeatureCache(tmp_path / "cache", SETTINGS)
    job = job_of(tmp_path)
    assert not cache.has(job) and cache.get(job) is None  # miss
    path = cache.put(job, fake_features(job.key))
    assert path.parent == tmp_path / "cache" / f"v{CACHE_FORMAT}-{SETTINGS.key()}"
    assert path.name.startswith(safe_name(job.key)) and "/" not in path.name
    hit = cache.get(job)
    assert hit is not None and hit.clip == job.key and hit.apex == 3
    np.testing.assert_array_equal(hit.flow_patches, fake_features(job.key).flow_patches)
    manifest = json.loads(cache.manifest_path.read_text())
    assert manifest["settings"] == SETTINGS.to_dict() and manifest["key"] == cache.key
    assert manifest["format"] == CACHE_FORMAT and "version" in manifest
    # keys differing only in unsafe characters do not collide
    assert safe_name("a/b") != safe_name("a_b")
    # a key read from a folder name that is not UTF-8 (bytes kept as surrogates) has a name too
    import os

    assert safe_name(os.fsdecode(b"smic/s1/a\xff")) != safe_name(os.fsdecode(b"smic/s1/a\xfe"))


def test_entry_is_keyed_by_dataset_source_frames_and_files(tmp_path):
    """The same clip key from another dataset, another copy of the frames, another apex or
    changed frame files is another entry; the original entry is never served for it."""
    cache = FeatureCache(tmp_path / "cache", SETTINGS)
    job = job_of(tmp_path)
    cache.put(job, fake_features(job.key, seed=1))
    others = [
        job_of(tmp_path, dataset="synth"),                   # the same files read as another dataset
        job_of(tmp_path, name="cropped-copy"),               # another copy of the clip
        job_of(tmp_path, apex=4),                            # the sheet's apex corrected
    ]
    for other in others:
        assert cache.path(other) != cache.path(job) and cache.get(other) is None
    assert cache.get(job) is not None
    frame = job.source / "img3.jpg"
    frame.write_bytes(b"re-encoded frame")                  # a frame file changed
    assert cache.get(job) is None
    # two datasets with overlapping keys keep distinct features
    a, b = job_of(tmp_path, dataset="a"), job_of(tmp_path, dataset="b")
    cache.put(a, fake_features(a.key, seed=2))
    cache.put(b, fake_features(b.key, seed=3))
    np.testing.assert_array_equal(cache.get(a).points, fake_features(seed=2).points)
    np.testing.assert_array_equal(cache.get(b).points, fake_features(seed=3).points)


def test_entry_is_keyed_by_onset_offset_and_the_source_path(tmp_path):
    """Another onset or offset is another entry; so is an exact copy of the frames elsewhere
    (same names, sizes and modification times: only the source path differs)."""
    import dataclasses
    import shutil

    from landmarks.files import fingerprint

    cache = FeatureCache(tmp_path / "cache", SETTINGS)
    job = job_of(tmp_path)
    cache.put(job, fake_features(job.key, seed=1))
    shutil.copytree(job.source, tmp_path / "copy")  # copy2: modification times kept
    copy = dataclasses.replace(job, source=tmp_path / "copy")
    assert fingerprint(copy.files()) == fingerprint(job.files())
    for other in (dataclasses.replace(job, onset=2), dataclasses.replace(job, offset=4), copy):
        assert cache.path(other) != cache.path(job) and cache.get(other) is None
    assert cache.get(job) is not None


def flow_image_job(folder, key="megc/sub01/EP01", dataset="megc2019-flow"):
    """A flow-image job on small apex and flow files (only their fingerprint matters)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "apex.png").write_bytes(b"apex" * 10)
    (folder / "flow.png").write_bytes(b"flow" * 10)
    return FeatureJob(key, None, None, None, None, kind="flow_image", apex_image=folder / "apex.png",
                      flow_image=folder / "flow.png", dataset=dataset)


def test_flow_image_entry_is_keyed_by_both_paths_and_the_flow_file(tmp_path):
    """A flow-image entry is another one for an exact copy of its apex or flow image elsewhere,
    and is not served once the flow image's file changed."""
    import dataclasses
    import shutil

    from landmarks.files import fingerprint

    cache = FeatureCache(tmp_path / "cache", SETTINGS)
    job = flow_image_job(tmp_path / "a")
    cache.put(job, fake_features(job.key))
    assert cache.get(job) is not None
    (tmp_path / "b").mkdir()
    for name in ("apex.png", "flow.png"):
        shutil.copy2(tmp_path / "a" / name, tmp_path / "b" / name)  # same name, size and mtime
    for field_name in ("apex_image", "flow_image"):
        other = dataclasses.replace(job, **{field_name: tmp_path / "b" / getattr(job, field_name).name})
        assert fingerprint(other.files()) == fingerprint(job.files())
        assert cache.path(other) != cache.path(job) and cache.get(other) is None
    job.flow_image.write_bytes(b"another flow image")  # the flow PNG re-made
    assert cache.get(job) is None


def test_build_cache_takes_one_clip_key_from_two_datasets(tmp_path):
    """Two datasets may hold the same clip key (each its own entry); only a key repeated
    within one dataset is a duplicate."""
    cache = FeatureCache(tmp_path / "cache", SETTINGS)
    a, b = job_of(tmp_path, dataset="a"), job_of(tmp_path, dataset="b")
    for job in (a, b):
        cache.put(job, fake_features(job.key))
    report = build_cache([a, b], cache, progress=False)
    assert (report.cached, report.done, report.failures) == (2, 0, [])
    with pytest.raises(GeomerError, match="duplicated clip key"):
        build_cache([a, b, a], cache, progress=False)


def test_settings_key_and_cache_folder_change_with_the_geomer_version(monkeypatch):
    """Another geomer version names another settings key (and so another cache folder)."""
    import geomer

    key, folder = SETTINGS.key(), FeatureCache("root", SETTINGS).folder
    monkeypatch.setattr(geomer, "__version__", geomer.__version__ + ".post1")
    assert SETTINGS.key() != key and FeatureCache("root", SETTINGS).folder != folder


def test_default_root_honours_geomer_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GEOMER_CACHE", str(tmp_path))
    cache = FeatureCache(settings=SETTINGS)
    cache.put(job_of(tmp_path), fake_features())
    assert (tmp_path / "features" / cache.key / "manifest.json").is_file()


def test_changed_setting_never_reads_stale_features(tmp_path):
    job = job_of(tmp_path)
    FeatureCache(tmp_path, SETTINGS).put(job, fake_features())
    changed = FeatureCache(tmp_path, FeatureSettings(**{**SETTINGS.to_dict(), "steps": 8}))
    assert changed.folder != FeatureCache(tmp_path, SETTINGS).folder
    assert not changed.has(job) and changed.get(job) is None


def test_manifest_mismatch_is_refused(tmp_path):
    cache = FeatureCache(tmp_path, SETTINGS)
    cache.put(job_of(tmp_path), fake_features())
    cache.manifest_path.write_text(json.dumps({"settings": {"steps": 99}}))
    with pytest.raises(GeomerError, match="manifest does not match"):
        cache.put(job_of(tmp_path, key="k2"), fake_features())


def test_a_folder_of_other_settings_is_refused_when_read(tmp_path):
    import dataclasses
    import shutil

    job = job_of(tmp_path)
    FeatureCache(tmp_path, SETTINGS).put(job, fake_features())
    other = FeatureCache(tmp_path, dataclasses.replace(SETTINGS, backend="dlib-cnn"))
    shutil.copytree(FeatureCache(tmp_path, SETTINGS).folder, other.folder)  # copied under the other key
    with pytest.raises(GeomerError, match=f"{other.manifest_path}: manifest does not match"):
        other.load(job)


def test_crash_mid_write_leaves_nothing_and_resumes(tmp_path, monkeypatch):
    cache = FeatureCache(tmp_path / "cache", SETTINGS)
    first, second = job_of(tmp_path, key="first"), job_of(tmp_path, key="second")
    cache.put(first, fake_features("first"))
    manifest = cache.manifest_path.read_text()

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(cache_module.os, "replace", crash)
    with pytest.raises(GeomerError, match=f"{cache.path(second)}: cannot write it"):
        cache.put(second, fake_features("second"))
    monkeypatch.undo()
    assert not cache.has(second) and cache.get(second) is None
    assert sorted(p.name for p in cache.folder.iterdir()) == sorted(
        ["manifest.json", cache.path(first).name]
    )  # no temp file left behind
    assert cache.manifest_path.read_text() == manifest
    cache.put(second, fake_features("second"))
    assert cache.get(second).clip == "second"


def test_unreadable_or_foreign_file_is_not_used(tmp_path):
    cache = FeatureCache(tmp_path / "cache", SETTINGS)
    job = job_of(tmp_path)
    path = cache.put(job, fake_features())
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2])  # truncated
    features, problem = cache.load(job)
    assert features is None and str(path) in problem and "\n" not in problem
    # an older-format file (no stored identity) under the entry's name
    np.savez(path, **fake_features().to_arrays())
    features, problem = cache.load(job)
    assert features is None and "older cache format" in problem
    # another clip's file under this entry's name
    other = job_of(tmp_path, key="casme2/sub09/EP09_09")
    path.write_bytes(cache.put(other, fake_features()).read_bytes())
    features, problem = cache.load(job)
    assert features is None and "another source" in problem
    # its metadata not the mapping of fields a ClipFeatures takes
    path.write_bytes(good)
    for meta in ({"extra_field": 1}, [1, 2]):
        rewrite(path, lambda arrays: arrays.__setitem__(
            "meta", np.array(json.dumps({**json.loads(str(arrays["meta"])), **meta} if isinstance(meta, dict) else meta))))
        features, problem = cache.load(job)
        assert features is None and str(path) in problem and "cannot be read" in problem


def rewrite(path, change):
    """Rewrite the valid ``.npz`` at ``path`` with ``change(arrays)`` applied (a valid file whose
    content is wrong, unlike a truncated one)."""
    with np.load(path) as loaded:
        arrays = dict(loaded)
    change(arrays)
    np.savez(path, **arrays)


def test_entry_lacking_an_array_or_with_non_finite_values_is_not_used(tmp_path):
    cache = FeatureCache(tmp_path / "cache", SETTINGS)
    job = job_of(tmp_path)
    path = cache.put(job, fake_features(job.key))
    good = path.read_bytes()
    rewrite(path, lambda arrays: arrays.pop("geometry"))  # optional modality, but this entry had it
    features, problem = cache.load(job)
    assert features is None and str(path) in problem and "lacks geometry" in problem
    assert "\n" not in problem and cache.get(job) is None
    for name, value in (("geometry", np.nan), ("texture_apex", np.inf)):
        path.write_bytes(good)
        rewrite(path, lambda arrays: arrays[name].__setitem__((0,), value))
        features, problem = cache.load(job)
        assert features is None and f"non-finite values in {name}" in problem and str(path) in problem
    # consistent within itself but not what these settings make (3 time steps, not 4): not used,
    # where the graph models would fail on it with a traceback when they batch it with the others
    path.write_bytes(good)
    rewrite(path, lambda arrays: arrays.__setitem__("geometry", arrays["geometry"][:3]))
    features, problem = cache.load(job)
    assert features is None and str(path) in problem and "geometry must be [T=4, N=68, 2], got [3, 68, 2]" in problem
    path.write_bytes(good)
    assert cache.get(job) is not None
    # an entry written before entries listed their arrays is still used (no mass re-extraction)
    rewrite(path, lambda arrays: arrays.pop(CONTENTS_ARRAY))
    assert cache.get(job) is not None


@pytest.fixture()
def clip_folders(tmp_path):
    """Two rendered clips as frame folders, with their (true) tracks pre-cached."""
    shifts = np.zeros((6, 2))
    shifts[3:] = (1.0, 0.5)
    frames, truth = transformed_photo_clip(shift_transforms(shifts))
    cache = FeatureCache(tmp_path / "cache", SETTINGS)
    jobs = []
    for name in ("s1/clipA", "s2/clipB"):
        folder = tmp_path / name
        folder.mkdir(parents=True)
        for k, image in enumerate(frames):
            cv2.imwrite(str(folder / f"img{10 + k}.png"), image)
        LandmarkTrack(
            points=np.repeat(truth[:1], 6, axis=0), valid=np.ones(6, bool),
            frame_index=np.arange(10, 16), box=np.zeros((6, 4)), fps=30.0,
            source=str(folder), backend=SETTINGS.backend,
        ).save(cache.track_path(folder))
        jobs.append(FeatureJob(f"test/{name}", folder, onset=10, apex=13, offset=15, dataset="test"))
    return cache, jobs


def test_build_cache_resumes_and_reports_failures(clip_folders):
    cache, jobs = clip_folders
    broken = FeatureJob("test/s1/broken", jobs[0].source, onset=10, apex=40, offset=15, dataset="test")

    report = build_cache([jobs[0], broken], cache, progress=False)
    assert (report.done, report.cached, report.frames, report.faces_found) == (1, 0, 6, 6)
    assert len(report.failures) == 1
    key, message = report.failures[0]
    assert key == broken.key and "apex frame 40" in message and "\n" not in message
    assert not cache.has(broken)

    # an interrupted build resumes: the first clip is not redone
    report = build_cache(jobs, cache, progress=False)
    assert (report.done, report.cached) == (1, 1)
    features = cache.get(jobs[1])
    assert features.flow_stats.shape == (68, 2, 12) and features.apex == 13


def test_a_track_that_cannot_be_written_stops_the_build_naming_the_file(clip_folders, monkeypatch):
    import errno

    cache, jobs = clip_folders
    track_file = cache.track_path(jobs[0].source)
    track_file.unlink()  # tracked again, then saved

    def full_disk(self, path):
        raise OSError(errno.ENOSPC, "No space left on device")  # a real full disk names no file

    monkeypatch.setattr(LandmarkTrack, "save", full_disk)
    # the cache's fault, not the clip's: not counted as a bad clip, and the file is named
    with pytest.raises(GeomerError, match=rf"^{re.escape(str(track_file))}: cannot write it \(No space left on device\)$"):
        build_cache(jobs[:1], cache, progress=False)
    assert not cache.has(jobs[0])


def test_a_gap_in_a_clips_frames_is_a_notice_when_it_is_extracted(clip_folders, capsys):
    cache, jobs = clip_folders
    (jobs[0].source / "img12.png").unlink()  # between onset 10 and apex 13
    capsys.readouterr()
    report = build_cache(jobs, cache, progress=False)
    assert (report.done, report.failures) == (2, [])
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(jobs[0].source) in err[0] and "1 frame(s) missing" in err[0]
    assert "first: 12" in err[0] and jobs[0].key in err[0]
    build_cache(jobs, cache, progress=False)  # cached: nothing to say
    assert capsys.readouterr().err == ""


def test_a_stray_frame_numbered_far_beyond_the_clip_is_counted_not_walked(clip_folders, capsys):
    import dataclasses
    import shutil

    cache, jobs = clip_folders
    far = 10**11  # the offset of a clip read up to its last file (SMIC): a gap this long
    shutil.copy(jobs[0].source / "img12.png", jobs[0].source / f"img{far}.png")
    job = dataclasses.replace(jobs[0], offset=far)
    capsys.readouterr()
    build_cache([job], cache, progress=False)
    err = capsys.readouterr().err.strip().splitlines()
    present = sum(jobs[0].onset <= frame_number(p) <= far for p in jobs[0].source.iterdir())
    assert len(err) == 1 and f"{far - jobs[0].onset + 1 - present} frame(s) missing" in err[0]


def _nan_geometry(arrays):
    arrays["geometry"][:] = np.nan


CORRUPTIONS = {
    "truncated": lambda path: path.write_bytes(path.read_bytes()[:200]),
    "lacks geometry": lambda path: rewrite(path, lambda arrays: arrays.pop("geometry")),
    "NaN geometry": lambda path: rewrite(path, _nan_geometry),
}


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_build_cache_rebuilds_a_bad_file_with_a_notice(clip_folders, capsys, corruption):
    cache, jobs = clip_folders
    build_cache(jobs, cache, progress=False)
    path = cache.path(jobs[0])
    expected = cache.get(jobs[0]).flow_stats
    CORRUPTIONS[corruption](path)
    capsys.readouterr()
    report = build_cache(jobs, cache, progress=False)
    assert (report.done, report.cached) == (1, 1)
    assert [key for key, _ in report.rebuilt] == [jobs[0].key]
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and jobs[0].key in err[0] and str(path) in err[0]
    np.testing.assert_allclose(cache.get(jobs[0]).flow_stats, expected)


def test_non_finite_features_are_a_failure_never_cached(clip_folders, monkeypatch):
    import geomer.features.extract as extract_module

    cache, jobs = clip_folders
    real = extract_module.extract_clip

    def extract_with_nan(*args, **kwargs):
        features = real(*args, **kwargs)
        features.flow_stats[0, 0, 0] = np.nan
        return features

    monkeypatch.setattr(extract_module, "extract_clip", extract_with_nan)
    report = build_cache(jobs[:1], cache, progress=False)
    assert report.done == 0 and len(report.failures) == 1
    key, message = report.failures[0]
    assert key == jobs[0].key and "non-finite" in message and "flow_stats" in message
    assert not cache.path(jobs[0]).exists()


def test_a_failure_message_of_several_lines_is_reported_on_one(clip_folders, monkeypatch):
    import geomer.features.extract as extract_module
    from geomer.errors import GeomerError

    cache, jobs = clip_folders

    def extract_failing(*args, **kwargs):
        raise GeomerError("frame 12 of clipA:\n  unreadable\n  (decoder says so)")

    monkeypatch.setattr(extract_module, "extract_clip", extract_failing)
    report = build_cache(jobs[:1], cache, progress=False)
    assert report.failures == [(jobs[0].key, "frame 12 of clipA: unreadable (decoder says so)")]


def test_build_cache_process_pool_matches_serial(clip_folders, tmp_path):
    cache, jobs = clip_folders
    report = build_cache(jobs, cache, n_jobs=2, progress=False)
    assert report.done == 2 and not report.failures
    serial = FeatureCache(tmp_path / "serial", SETTINGS)
    for job in jobs:
        serial.track_path(job.source).parent.mkdir(parents=True, exist_ok=True)
        os.link(cache.track_path(job.source), serial.track_path(job.source))
    build_cache(jobs, serial, n_jobs=1, progress=False)
    for job in jobs:
        np.testing.assert_allclose(cache.get(job).flow_stats, serial.get(job).flow_stats)


def test_build_cache_tracks_and_caches_the_track(tmp_path, capsys):
    """Without a cached track, build_cache tracks the source with landmarks.track (dlib); the
    track is keyed by the source's files, not by the clip key or frame numbers."""
    frames, _ = transformed_photo_clip(shift_transforms(np.zeros((4, 2))))
    folder = tmp_path / "clip"
    folder.mkdir()
    for k, image in enumerate(frames):
        cv2.imwrite(str(folder / f"{k}.png"), image)
    cache = FeatureCache(tmp_path / "cache", SETTINGS)
    job = FeatureJob("t/clip", folder, onset=0, apex=2, offset=3)
    missing = FeatureJob("t/missing", tmp_path / "nope", onset=0, apex=2, offset=3)
    report = build_cache([job, missing], cache, progress=False)
    assert report.done == 1 and report.faces_found == 4
    track = cache.track_path(folder)
    assert track.is_file() and track.parent == tmp_path / "cache" / "tracks" / "dlib"
    assert [key for key, _ in report.failures] == ["t/missing"]
    with pytest.raises(GeomerError, match="duplicated"):
        build_cache([job, job], cache, progress=False)
    # a corrected apex re-extracts from the cached track (no re-tracking: no frames tracked)
    report = build_cache([FeatureJob("t/clip", folder, onset=0, apex=1, offset=3)], cache, progress=False)
    assert report.done == 1 and cache.track_path(folder) == track
    # a track another backend made, in this backend's place, is tracked again (and said)
    import dataclasses

    dataclasses.replace(LandmarkTrack.load(track), backend="fan").save(track)
    capsys.readouterr()
    report = build_cache([FeatureJob("t/clip", folder, onset=0, apex=3, offset=3)], cache, progress=False)
    assert report.done == 1 and LandmarkTrack.load(track).backend == "dlib"
    assert f"cached track {track} was made by fan" in capsys.readouterr().err
    # a changed frame file changes the track's key
    cv2.imwrite(str(folder / "3.png"), frames[0])
    assert cache.track_path(folder) != track
