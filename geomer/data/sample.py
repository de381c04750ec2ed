"""The record a dataset reader yields for one micro-expression clip."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple


@dataclass(frozen=True)
class Sample:
    """One labelled micro-expression clip.

    Frame numbers (``onset``, ``apex``, ``offset``) are the numbers used by the label sheet and
    the frame file names (``img46.jpg`` → 46), not positions in a list. ``apex`` is None where the
    dataset has none (SMIC) or the sheet says it was not annotated ("/", "-", blank): it is then
    spotted when the features are extracted and recorded as ``ClipFeatures.apex_spotted``;
    ``offset`` is None where the clip has no frame sequence (``megc2019-flow``).

    Attributes:
        dataset: the dataset the clip comes from ("casme2"), also inside a composite.
        subject_key: global subject key "<dataset>/<subject>" ("casme2/sub01"): CASME and
            CASME II both have a subject 01, so bare ids are never used.
        clip: the clip id inside its subject ("EP02_01f").
        label: the class name under the chosen class scheme.
        label_index: index of ``label`` in the scheme's classes.
        aus: action units as parsed by :func:`geomer.data.aus.parse_aus` ("R12", "4", ...).
        source: the clip's frame folder (or video file; the apex image for ``megc2019-flow``).
        extra: further paths, e.g. "apex_image" and "flow_image" for ``megc2019-flow``.
        raw_label: the label as written in the sheet/folder, before the scheme mapped it.
    """

    dataset: str
    subject_key: str
    clip: str
    label: str
    label_index: int
    onset: int
    apex: int | None
    offset: int | None
    aus: tuple[str, ...]
    source: Path
    extra: dict[str, Path] = field(default_factory=dict, hash=False, compare=False)
    raw_label: str = ""

    @property
    def apex_annotated(self) -> bool:
        """False where the apex is spotted (SMIC, an apex cell "/" or blank, a flow-image clip)."""
        return self.apex is not None

    @property
    def subject(self) -> str:
        """The subject id inside its dataset ("sub01")."""
        return self.subject_key.split("/", 1)[1]

    @property
    def key(self) -> str:
        """Unique clip key "<dataset>/<subject>/<clip>", used as the feature-cache key."""
        return f"{self.subject_key}/{self.clip}"


class BadRow(NamedTuple):
    """A sheet row (or clip folder) a reader refused: which file, which row, and why."""

    file: str
    row: str
    reason: str

    def __str__(self) -> str:
        # a row named by a folder (SMIC) may hold a line break, which would split the one-line error
        row = self.row if self.row.isprintable() else repr(self.row)[1:-1]
        return f"{self.file}: row {row}: {self.reason}"


@dataclass(frozen=True)
class DatasetIndex:
    """What a reader found under a dataset root.

    Attributes:
        name: the dataset name asked for ("casme2", "megc2019", "synth", ...).
        samples: the usable clips, in sheet order (composites: in part order).
        classes: class names of the scheme; ``Sample.label_index`` indexes this.
        skipped: rows left out because they were bad (only with ``skip_bad=True``).
        excluded: clips deliberately left out by the class scheme (e.g. CASME II "others" in the
            composite), as (clip key, raw label).
        root: the dataset root that was read.
        scheme: name of the class scheme used.
    """

    name: str
    samples: tuple[Sample, ...]
    classes: tuple[str, ...]
    skipped: tuple[BadRow, ...] = ()
    excluded: tuple[tuple[str, str], ...] = ()
    root: Path | None = None
    scheme: str = ""

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def subjects(self) -> tuple[str, ...]:
        """Global subject keys in first-seen order."""
        return tuple(dict.fromkeys(s.subject_key for s in self.samples))

    @property
    def datasets(self) -> tuple[str, ...]:
        """Source datasets in first-seen order (several for a composite)."""
        return tuple(dict.fromkeys(s.dataset for s in self.samples))
