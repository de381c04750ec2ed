"""The feature cache: one ``.npz`` per clip, in a folder named by the feature settings' hash.

Layout under a root (default ``geomer.paths.cache_root() / "features"``)::

    root/<settings.key()>/manifest.json     settings.to_dict(), geomer version, key
    root/<settings.key()>/<safe clip key>.npz
    root/tracks/<backend>/<safe clip key>.npz   landmark tracks (LandmarkTrack.save)

A changed setting gives another key, hence another folder: stale features are never read.
Tracks depend on the backend only, so changing a flow setting does not re-track (tracking is the
slow part). Every file is written to a temp file in the same folder and renamed (``os.replace``),
so a crash mid-write leaves no readable partial file, and an interrupted build resumes by skipping
the keys already present. Clips that fail are reported (key, one-line message), never cached.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

import geomer
from geomer.atomic import atomic_path, atomic_write_text
from geomer.errors import GeomerError
from geomer.features.types import ClipFeatures, FeatureSettings

MANIFEST = "manifest.json"


def safe_name(key: str) -> str:
    """A file-system-safe, collision-free file stem for a sample key (e.g. ``casme2/sub01/EP02``):
    the key with unsafe characters replaced, plus 8 hex digits of its hash."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", key).strip("._") or "clip"
    return f"{readable[:120]}-{hashlib.sha1(key.encode()).hexdigest()[:8]}"


@dataclass(frozen=True)
class FeatureJob:
    """One clip to extract.

    ``kind="frames"``: ``source`` is the clip's video or frame folder and onset/apex/offset are
    frame NUMBERS (apex None → spotted). ``kind="flow_image"`` (megc2019-flow): ``apex_image`` and
    ``flow_image`` paths; source/onset/offset may be None.
    """

    key: str
    source: Path | str | None
    onset: int | None
    apex: int | None
    offset: int | None
    kind: str = "frames"
    apex_image: Path | str | None = None
    flow_image: Path | str | None = None


@dataclass
class BuildReport:
    """What :func:`build_cache` did: clips extracted now (``done``), found in the cache
    (``cached``), failures (key, one-line message), and frames tracked / with a face found over
    the clips processed now."""

    done: int = 0
    cached: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    frames: int = 0
    faces_found: int = 0


class FeatureCache:
    """Cached :class:`ClipFeatures` for one :class:`FeatureSettings`."""

    def __init__(self, root: str | os.PathLike | None = None, settings: FeatureSettings | None = None):
        from geomer.paths import cache_root

        self.root = Path(root) if root is not None else cache_root() / "features"
        self.settings = settings if settings is not None else FeatureSettings()
        self.key = self.settings.key()
        self.folder = self.root / self.key

    @property
    def manifest_path(self) -> Path:
        return self.folder / MANIFEST

    def manifest(self) -> dict:
        """The manifest this cache writes: settings, version and key."""
        return {"settings": self.settings.to_dict(), "version": geomer.__version__, "key": self.key}

    def _ensure_manifest(self) -> None:
        if self.manifest_path.is_file():
            try:
                existing = json.loads(self.manifest_path.read_text())
            except (OSError, ValueError):
                existing = None
            if existing == self.manifest():
                return
            if existing is not None:
                raise GeomerError(
                    f"{self.manifest_path}: manifest does not match the feature settings "
                    "(delete the folder to rebuild)"
                )
        text = json.dumps(self.manifest(), indent=2, sort_keys=True)
        atomic_write_text(self.manifest_path, text)

    def path(self, key: str) -> Path:
        """The ``.npz`` file of sample ``key``."""
        return self.folder / f"{safe_name(key)}.npz"

    def track_path(self, key: str) -> Path:
        """Where the landmark track of sample ``key`` is cached (depends on the backend only)."""
        return self.root / "tracks" / self.settings.backend / f"{safe_name(key)}.npz"

    def has(self, key: str) -> bool:
        return self.path(key).is_file()

    def get(self, key: str) -> ClipFeatures | None:
        """The cached features of ``key``, or None when absent or unreadable (then rebuilt)."""
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as arrays:
                return ClipFeatures.from_arrays(arrays)
        except (OSError, ValueError, KeyError, GeomerError):
            return None

    def put(self, key: str, features: ClipFeatures) -> Path:
        """Store ``features`` under ``key`` atomically (and the manifest, once)."""
        self._ensure_manifest()
        path = self.path(key)
        arrays = features.to_arrays()
        with atomic_path(path) as temporary, open(temporary, "wb") as stream:
            np.savez(stream, **arrays)
        return path


def _load_or_track(job: FeatureJob, cache: FeatureCache):
    import landmarks
    from landmarks import LandmarkTrack

    path = cache.track_path(job.key)
    if path.is_file():
        try:
            return LandmarkTrack.load(path)
        except landmarks.LandmarksError:
            pass  # unreadable: track again and overwrite
    track = landmarks.track(job.source, backend=cache.settings.backend)
    track.save(path)
    return track


def process_job(job: FeatureJob, root: str, settings: dict) -> tuple[str, str | None, int, int]:
    """Extract and cache one job (runs in a worker process). Returns (key, error or None,
    frames, faces found)."""
    from geomer.features.extract import extract_clip, extract_flow_image_clip
    from landmarks.errors import LandmarksError

    cache = FeatureCache(root, FeatureSettings.from_dict(settings))
    try:
        if job.kind == "flow_image":
            features = extract_flow_image_clip(
                job.apex_image, job.flow_image, cache.settings, clip=job.key,
                apex_frame=-1 if job.apex is None else int(job.apex),
            )
            frames = faces = 1
        elif job.kind == "frames":
            if job.source is None or job.onset is None:
                raise GeomerError(f"clip {job.key}: a frames job needs a source and an onset")
            track = _load_or_track(job, cache)
            frames, faces = len(track), int(track.valid.sum())
            features = extract_clip(
                job.source, track, job.onset, job.apex, job.offset, cache.settings, clip=job.key
            )
        else:
            raise GeomerError(f"clip {job.key}: unknown job kind {job.kind!r}")
    except (GeomerError, LandmarksError) as error:
        message = " ".join(str(error).split())  # one line
        return job.key, message, 0, 0
    cache.put(job.key, features)
    return job.key, None, frames, faces


def build_cache(
    jobs: Sequence[FeatureJob] | Iterable[FeatureJob],
    cache: FeatureCache,
    n_jobs: int = 1,
    progress: bool = True,
) -> BuildReport:
    """Extract every job not yet cached; ``n_jobs > 1`` uses a process pool.

    Resumable: keys already in the cache are skipped. Per-clip failures (bad input, no face) are
    collected in the report and nothing is cached for them.
    """
    from tqdm import tqdm

    jobs = list(jobs)
    keys = [job.key for job in jobs]
    if len(set(keys)) != len(keys):
        duplicate = next(key for key in keys if keys.count(key) > 1)
        raise GeomerError(f"duplicated clip key {duplicate!r} in the feature jobs")
    report = BuildReport()
    todo = []
    for job in jobs:
        if cache.has(job.key):
            report.cached += 1
        else:
            todo.append(job)
    settings = cache.settings.to_dict()
    bar = tqdm(total=len(todo), desc="features", unit="clip", disable=not progress)

    def record(result):
        key, error, frames, faces = result
        if error is None:
            report.done += 1
            report.frames += frames
            report.faces_found += faces
        else:
            report.failures.append((key, error))
        bar.update(1)

    try:
        if n_jobs > 1 and len(todo) > 1:
            from landmarks.pool import process_pool

            with process_pool(min(n_jobs, len(todo))) as pool:
                futures = [pool.submit(process_job, job, str(cache.root), settings) for job in todo]
                for future in futures:
                    record(future.result())
        else:
            for job in todo:
                record(process_job(job, str(cache.root), settings))
    finally:
        bar.close()
    return report
