"""Landmarks + features for every clip of a dataset, into the feature cache (``geomer prepare``).

Resumable: clips already in the cache are not extracted again. Clips that fail (no face, a frame
that cannot be read) are reported and nothing is cached for them; the good ones are cached.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from geomer.data.sample import BadRow, DatasetIndex, Sample


@dataclass(frozen=True)
class PrepareSummary:
    """What :func:`prepare_dataset` did.

    Attributes:
        clips: clips in the dataset index.
        done: clips extracted by this run.
        cached: clips found in the cache already.
        frames: frames tracked by this run; faces_found: of those, frames with a face.
        failures: (clip key, one-line message) for clips that failed (nothing cached for them).
        skipped: bad rows the reader left out (with ``skip_bad``).
        cache_folder: the folder holding the features of these settings.
    """

    clips: int
    done: int
    cached: int
    frames: int
    faces_found: int
    failures: tuple[tuple[str, str], ...]
    skipped: tuple[BadRow, ...]
    cache_folder: Path

    def lines(self) -> list[str]:
        """A human summary, one fact per line (the CLI prints these)."""
        lines = [
            f"clips: {self.clips} ({self.done} extracted now, {self.cached} already cached, "
            f"{len(self.failures)} failed)",
            f"frames: {self.frames} tracked now, faces found in {self.faces_found}",
            f"cache: {self.cache_folder}",
        ]
        lines += [f"skipped: {row}" for row in self.skipped]
        lines += [f"failed: {key}: {message}" for key, message in self.failures]
        return lines


def feature_job(sample: Sample):
    """The :class:`geomer.data.cache.FeatureJob` of one sample (flow-image clips for
    megc2019-flow, frame clips otherwise)."""
    from geomer.data.cache import FeatureJob

    if "flow_image" in sample.extra:
        return FeatureJob(
            key=sample.key,
            source=sample.source,
            onset=sample.onset,
            apex=sample.apex,
            offset=sample.offset,
            kind="flow_image",
            apex_image=sample.extra["apex_image"],
            flow_image=sample.extra["flow_image"],
        )
    return FeatureJob(
        key=sample.key, source=sample.source, onset=sample.onset, apex=sample.apex, offset=sample.offset
    )


def prepare_dataset(
    index: DatasetIndex,
    cache_dir: str | Path | None = None,
    settings=None,
    jobs: int = 1,
    progress: bool = True,
) -> PrepareSummary:
    """Track landmarks and extract features for every clip of ``index`` into the cache.

    Args:
        index: from :func:`geomer.data.read_dataset`.
        cache_dir: the feature-cache root (default ``cache_root()/features``).
        settings: :class:`geomer.features.FeatureSettings` (default settings when None).
        jobs: worker processes.
        progress: show a tqdm bar.
    """
    from geomer.data.cache import FeatureCache, build_cache
    from geomer.features.types import FeatureSettings

    cache = FeatureCache(cache_dir, settings if settings is not None else FeatureSettings())
    report = build_cache([feature_job(s) for s in index.samples], cache, n_jobs=jobs, progress=progress)
    return PrepareSummary(
        clips=len(index.samples),
        done=report.done,
        cached=report.cached,
        frames=report.frames,
        faces_found=report.faces_found,
        failures=tuple(report.failures),
        skipped=tuple(index.skipped),
        cache_folder=cache.folder,
    )
