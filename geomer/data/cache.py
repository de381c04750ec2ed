"""The feature cache: one ``.npz`` per clip entry, in a folder named by the feature settings' hash.

Layout under a root (default ``geomer.paths.cache_root() / "features"``)::

    root/<settings.key()>/manifest.json                 settings, geomer version, cache format, key
    root/<settings.key()>/<safe clip key>-<entry>.npz   a clip's features + the identity they were made from
    root/tracks/<backend>/<safe source>-<track>.npz     landmark tracks (LandmarkTrack.save)

A clip's entry is keyed by everything that determines its features (:func:`clip_identity`): the
dataset name, the clip key, the resolved source path(s), onset/apex/offset and a cheap fingerprint
of the source files (name, size and modification time of every frame file, of the video, or of
the apex and flow images). Two datasets whose clips share a key, a raw and a cropped copy of one
dataset, or a sheet whose apex was corrected therefore get different entries. The identity is
also stored inside the file and compared on load, so a file is used only for the clip it was made
from. A changed feature setting (or :data:`CACHE_FORMAT`) gives another folder.

Tracks depend on the source and the tracker only (source fingerprint, backend, tracker settings),
so correcting an apex or a flow setting does not re-track (tracking is the slow part).

Every file is written to a temp file in the same folder and renamed (``os.replace``), so a crash
mid-write leaves no readable partial file, and an interrupted build resumes by skipping the entries
already present. A present entry is verified by loading it: one that fails to load (truncated,
older format, another clip's identity, an array missing or of the wrong shape, a non-finite value)
is extracted again with a one-line notice on stderr, never used. Each entry lists the feature
arrays it was written with (:data:`CONTENTS_ARRAY`), so a missing one is noticed even where that
modality is optional (entries written before the list existed are checked without it). Clips
that fail are reported (key, one-line message), never cached.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

import geomer
from geomer.atomic import atomic_path, atomic_write_text, write_error
from geomer.errors import GeomerError, WriteError
from geomer.features.types import ARRAY_FIELDS, ClipFeatures, FeatureSettings
from landmarks.files import fingerprint

MANIFEST = "manifest.json"
#: Bumped whenever the layout or the meaning of cached files changes: an older cache is rebuilt.
CACHE_FORMAT = 3
#: The stored identity of an entry (a JSON string inside the ``.npz``).
IDENTITY_ARRAY = "cache_identity"
#: The names of the feature arrays an entry was written with (a JSON list inside the ``.npz``).
CONTENTS_ARRAY = "cache_contents"
#: Tracker settings that change a track (``landmarks.track``'s defaults, used by ``geomer prepare``).
TRACKER_SETTINGS = {"redetect_every": 30, "smooth": 0, "min_valid_fraction": 0.5, "move_fraction": 0.1}
# What np.load / zipfile / json raise for a truncated, foreign or older file (TypeError: its
# metadata is not the mapping of fields ClipFeatures takes).
_LOAD_ERRORS = (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile, GeomerError)


def safe_name(key: str) -> str:
    """A file-system-safe, collision-free file stem for a sample key (e.g. ``casme2/sub01/EP02``):
    the key with unsafe characters replaced, plus 8 hex digits of its hash. A key read from a
    folder name that is not UTF-8 (Python keeps its bytes as surrogates) hashes by those bytes."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", key).strip("._") or "clip"
    return f"{readable[:120]}-{hashlib.sha1(key.encode('utf-8', 'surrogateescape')).hexdigest()[:8]}"


def _digest(payload: dict) -> str:
    return hashlib.sha1(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def source_files(source: Path | str) -> list[Path]:
    """The files a clip source consists of: every frame image of a folder (by frame number), or
    the file itself (a video, an image)."""
    from geomer.data.frames import index_frames

    source = Path(source)
    if source.is_dir():
        return list(index_frames(source).values())
    return [source]


def _resolved(path: Path | str | None) -> str | None:
    return None if path is None else str(Path(path).resolve())


@dataclass(frozen=True)
class FeatureJob:
    """One clip to extract.

    ``kind="frames"``: ``source`` is the clip's video or frame folder and onset/apex/offset are
    frame NUMBERS (apex None → spotted). ``kind="flow_image"`` (megc2019-flow): ``apex_image`` and
    ``flow_image`` paths; source/onset/offset may be None. ``dataset`` is the name of the dataset read (part of the
    cache key: two datasets never share an entry).
    """

    key: str
    source: Path | str | None
    onset: int | None
    apex: int | None
    offset: int | None
    kind: str = "frames"
    apex_image: Path | str | None = None
    flow_image: Path | str | None = None
    dataset: str = ""

    def files(self) -> list[Path]:
        """The source files whose fingerprint is part of the cache key."""
        if self.kind == "flow_image":
            return [Path(p) for p in (self.apex_image, self.flow_image) if p is not None]
        return source_files(self.source) if self.source is not None else []


def clip_identity(job: FeatureJob) -> dict:
    """Everything that determines a clip's features apart from the settings (JSON-ready)."""
    return {
        "format": CACHE_FORMAT,
        "dataset": job.dataset,
        "clip": job.key,
        "kind": job.kind,
        "source": _resolved(job.source),
        "apex_image": _resolved(job.apex_image),
        "flow_image": _resolved(job.flow_image),
        "onset": job.onset,
        "apex": job.apex,
        "offset": job.offset,
        "fingerprint": fingerprint(job.files()),
    }


def track_identity(source: Path | str, backend: str) -> dict:
    """Everything that determines a landmark track: the resolved source, its fingerprint, the
    backend and the tracker settings (and the landmarks package version)."""
    import landmarks

    return {
        "format": CACHE_FORMAT,
        "source": _resolved(source),
        "fingerprint": fingerprint(source_files(source)),
        "backend": backend,
        "tracker": TRACKER_SETTINGS,
        "landmarks": getattr(landmarks, "__version__", ""),
    }


@dataclass
class BuildReport:
    """What :func:`build_cache` did: clips extracted now (``done``), found in the cache
    (``cached``), failures (key, one-line message), cache files that failed to load and were
    extracted again (``rebuilt``: key, one-line reason), and frames tracked / with a face found
    over the clips processed now."""

    done: int = 0
    cached: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    rebuilt: list[tuple[str, str]] = field(default_factory=list)
    frames: int = 0
    faces_found: int = 0


class FeatureCache:
    """Cached :class:`ClipFeatures` for one :class:`FeatureSettings`.

    Entries are addressed by :class:`FeatureJob` (see the module docstring for the key).
    """

    def __init__(self, root: str | os.PathLike | None = None, settings: FeatureSettings | None = None):
        from geomer.paths import cache_root

        self.root = Path(root) if root is not None else cache_root() / "features"
        self.settings = settings if settings is not None else FeatureSettings()
        self.key = f"v{CACHE_FORMAT}-{self.settings.key()}"
        self.folder = self.root / self.key

    @property
    def manifest_path(self) -> Path:
        return self.folder / MANIFEST

    def manifest(self) -> dict:
        """The manifest this cache writes: settings, version, cache format and key."""
        return {
            "settings": self.settings.to_dict(), "version": geomer.__version__,
            "format": CACHE_FORMAT, "key": self.key,
        }

    def _existing_manifest(self) -> dict | None:
        """The folder's manifest; None when there is none or it does not read (it is rewritten).
        GeomerError when it records other settings: the folder is another cache's (copied or
        renamed), whose entries must not pass for these settings'."""
        try:
            existing = json.loads(self.manifest_path.read_text())
        except (OSError, ValueError, RecursionError):
            return None
        # a manifest of another geomer version is fine: entries carry their own identity (cache
        # format included) and are verified on load
        if not (isinstance(existing, dict) and {**existing, "version": None} == {**self.manifest(), "version": None}):
            raise GeomerError(
                f"{self.manifest_path}: manifest does not match the feature settings (delete the folder to rebuild)"
            )
        return existing

    def _ensure_manifest(self) -> None:
        if self._existing_manifest() != self.manifest():
            atomic_write_text(self.manifest_path, json.dumps(self.manifest(), indent=2, sort_keys=True))

    def path(self, job: FeatureJob, identity: dict | None = None) -> Path:
        """The ``.npz`` file of ``job``'s entry (``identity``: its :func:`clip_identity`, when
        already computed)."""
        identity = identity if identity is not None else clip_identity(job)
        return self.folder / f"{safe_name(job.key)}-{_digest(identity)}.npz"

    def track_path(self, source: Path | str) -> Path:
        """Where the landmark track of a video or frame folder is cached (see :func:`track_identity`)."""
        identity = track_identity(source, self.settings.backend)
        stem = safe_name("/".join(Path(_resolved(source)).parts[-3:]))
        return self.root / "tracks" / self.settings.backend / f"{stem}-{_digest(identity)}.npz"

    def load(self, job: FeatureJob, identity: dict | None = None) -> tuple[ClipFeatures | None, str]:
        """(features, "") for a good entry; (None, "") when there is none; (None, reason) when the
        file exists but fails to load or was made from another identity (rebuild it)."""
        identity = identity if identity is not None else clip_identity(job)
        path = self.path(job, identity)
        if not path.is_file():
            return None, ""
        self._existing_manifest()  # entries of a folder another cache's manifest claims are refused
        try:
            with np.load(path, allow_pickle=False) as arrays:
                if IDENTITY_ARRAY not in arrays.files:
                    return None, f"{path}: no cache identity (older cache format)"
                if json.loads(str(arrays[IDENTITY_ARRAY])) != identity:
                    return None, f"{path}: made from another source or frame numbers"
                # entries written before the list existed are checked by shape and value only (not
                # re-extracted: that would print a notice for every clip of every existing cache)
                listed = json.loads(str(arrays[CONTENTS_ARRAY])) if CONTENTS_ARRAY in arrays.files else []
                missing = [name for name in listed if name not in arrays.files]
                if missing:
                    return None, f"{path}: lacks {', '.join(missing)}"
                features = ClipFeatures.from_arrays(arrays)
            features.check_sizes(self.settings)
            bad = nonfinite(features)
            if bad:
                return None, f"{path}: non-finite values in {', '.join(bad)}"
            return features, ""
        except _LOAD_ERRORS as error:
            return None, f"{path}: cannot be read ({' '.join(str(error).split()) or type(error).__name__})"

    def has(self, job: FeatureJob) -> bool:
        """True when ``job``'s entry exists and loads."""
        return self.get(job) is not None

    def get(self, job: FeatureJob) -> ClipFeatures | None:
        """The cached features of ``job``, or None when absent or unusable (then rebuilt)."""
        return self.load(job)[0]

    def put(self, job: FeatureJob, features: ClipFeatures, identity: dict | None = None) -> Path:
        """Store ``features`` as ``job``'s entry atomically (and the manifest, once)."""
        identity = identity if identity is not None else clip_identity(job)
        self._ensure_manifest()
        path = self.path(job, identity)
        arrays = features.to_arrays()
        arrays[CONTENTS_ARRAY] = np.array(json.dumps(sorted(name for name in ARRAY_FIELDS if name in arrays)))
        arrays[IDENTITY_ARRAY] = np.array(json.dumps(identity, sort_keys=True))
        with atomic_path(path) as temporary, open(temporary, "wb") as stream:
            np.savez(stream, **arrays)
        return path


def nonfinite(features: ClipFeatures) -> list[str]:
    """The names of ``features``' arrays holding a NaN or an infinity (all are float32)."""
    return [
        name for name in ARRAY_FIELDS
        if getattr(features, name) is not None and not np.isfinite(getattr(features, name)).all()
    ]


def missing_frames(job: FeatureJob) -> tuple[int, int | None]:
    """How many frame numbers between a frame-folder clip's onset and offset have no file (a gap
    the tracker steps over), and the first of them; (0, None) for videos, flow-image clips and
    clips without an offset (:func:`geomer.data.frames.frame_gap`)."""
    if job.kind != "frames" or job.source is None or job.offset is None or not Path(job.source).is_dir():
        return 0, None
    from geomer.data.frames import frame_gap, frames_of

    return frame_gap(frames_of(Path(job.source)), int(job.onset or 0), int(job.offset))


def notice(message: str) -> None:
    """One line on stderr (above any progress bar)."""
    from tqdm import tqdm

    tqdm.write(f"geomer: {' '.join(message.split())}", file=sys.stderr)


def _load_or_track(job: FeatureJob, cache: FeatureCache):
    import landmarks
    from landmarks import LandmarkTrack

    path = cache.track_path(job.source)
    if path.is_file():
        try:
            track = LandmarkTrack.load(path)
            if Path(track.source).resolve() != Path(job.source).resolve():
                notice(f"cached track {path} is of {track.source}: tracking {job.source} again")
            elif track.backend != cache.settings.backend:
                notice(f"cached track {path} was made by {track.backend}: tracking {job.source} again")
            else:
                return track
        except landmarks.LandmarksError as error:
            notice(f"cached track unusable ({error}): tracking {job.source} again")
    track = landmarks.track(job.source, backend=cache.settings.backend, **TRACKER_SETTINGS)
    try:
        track.save(path)
    except OSError as error:
        raise write_error(path, error) from None
    return track


def process_job(job: FeatureJob, root: str, settings: dict) -> tuple[str, str | None, int, int]:
    """Extract and cache one job (runs in a worker process). Returns (key, error or None,
    frames, faces found)."""
    from geomer.features.extract import extract_clip, extract_flow_image_clip
    from landmarks.errors import LandmarksError

    cache = FeatureCache(root, FeatureSettings.from_dict(settings))
    identity = clip_identity(job)
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
        bad = nonfinite(features)
        if bad:  # never cached: the entry would not verify
            raise GeomerError(f"clip {job.key}: non-finite feature values in {', '.join(bad)}")
    except WriteError:
        raise  # the cache's fault, not the clip's: the build stops (as at cache.put below)
    except (GeomerError, LandmarksError) as error:
        message = " ".join(str(error).split())  # one line
        return job.key, message, 0, 0
    cache.put(job, features, identity)
    return job.key, None, frames, faces


def build_cache(
    jobs: Sequence[FeatureJob] | Iterable[FeatureJob],
    cache: FeatureCache,
    n_jobs: int = 1,
    progress: bool = True,
) -> BuildReport:
    """Extract every job not yet cached; ``n_jobs > 1`` uses a process pool.

    Resumable: entries already in the cache are verified by loading them and skipped; an entry
    that fails to load is extracted again with a one-line notice (``BuildReport.rebuilt``).
    Per-clip failures (bad input, no face) are collected in the report and nothing is cached for
    them.
    """
    from tqdm import tqdm

    jobs = list(jobs)
    keys = [(job.dataset, job.key) for job in jobs]
    if len(set(keys)) != len(keys):
        duplicate = next(key for key in keys if keys.count(key) > 1)
        raise GeomerError(f"duplicated clip key {duplicate[1]!r} in the feature jobs")
    report = BuildReport()
    todo = []
    for job in jobs:
        features, problem = cache.load(job)
        if features is not None:
            report.cached += 1
            continue
        if problem:
            notice(f"cached features unusable, extracting {job.key} again: {problem}")
            report.rebuilt.append((job.key, problem))
        missing, first = missing_frames(job)
        if missing:  # tracked without them: said once, when the clip is extracted
            notice(f"{job.source}: {missing} frame(s) missing between onset {job.onset} and offset "
                   f"{job.offset} (first: {first}); {job.key} is tracked without them")
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
