"""Landmarks + features for every clip of a dataset, into the feature cache (``geomer prepare``).

Resumable: clips already in the cache (verified by loading) are not extracted again. Clips that
fail (no face, a frame that cannot be read) are reported and nothing is cached for them; the good
ones are cached. :func:`without_failures` leaves the failed clips out of an index (``--skip-bad``).
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
        rebuilt: (clip key, reason) for cache files that failed to load and were extracted again.
    """

    clips: int
    done: int
    cached: int
    frames: int
    faces_found: int
    failures: tuple[tuple[str, str], ...]
    skipped: tuple[BadRow, ...]
    cache_folder: Path
    rebuilt: tuple[tuple[str, str], ...] = ()

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

    def error_line(self) -> str:
        """One line for a run that stops on failed clips: the first one's key and message (which
        names its file and frame), how many more failed, and how to leave them out."""
        key, message = self.failures[0]
        more = f"; {len(self.failures) - 1} more clip(s) failed" if len(self.failures) > 1 else ""
        return f"feature extraction failed for {key}: {message}{more} (--skip-bad leaves them out)"


def feature_job(sample: Sample, dataset: str):
    """The :class:`geomer.data.cache.FeatureJob` of one sample of dataset ``dataset`` (the name
    it was read as; flow-image clips for megc2019-flow, frame clips otherwise)."""
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
            dataset=dataset,
        )
    return FeatureJob(
        key=sample.key, source=sample.source, onset=sample.onset, apex=sample.apex,
        offset=sample.offset, dataset=dataset,
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
    report = build_cache([feature_job(s, index.name) for s in index.samples], cache, n_jobs=jobs, progress=progress)
    return PrepareSummary(
        clips=len(index.samples),
        done=report.done,
        cached=report.cached,
        frames=report.frames,
        faces_found=report.faces_found,
        failures=tuple(report.failures),
        skipped=tuple(index.skipped),
        cache_folder=cache.folder,
        rebuilt=tuple(report.rebuilt),
    )


def without_failures(index: DatasetIndex, failures) -> DatasetIndex:
    """``index`` without the clips that failed to extract, each recorded in ``skipped`` as a bad
    row naming the clip and the reason (what ``--skip-bad`` does with clips in which no face is
    found). ``failures``: (clip key, one-line message) pairs, as in :class:`PrepareSummary`."""
    from dataclasses import replace

    from geomer.errors import GeomerError

    failed = dict(failures)
    if not failed:
        return index
    kept = tuple(s for s in index.samples if s.key not in failed)
    if not kept:
        raise GeomerError(f"{index.name}: every clip under {index.root} failed to extract")
    rows = tuple(BadRow(str(s.source), s.key, failed[s.key]) for s in index.samples if s.key in failed)
    return replace(index, samples=kept, skipped=tuple(index.skipped) + rows)
