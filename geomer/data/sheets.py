"""Reading label sheets and turning their rows into validated :class:`Sample` records.

Shared by the sheet-based readers (casme2, samm, casme3, megc2019-flow). Sheets may carry a title
block above the header (SAMM): the header is the first row among the first 40 whose cells include
the key column. Column names are matched case- and space-insensitively, with aliases per reader.
Row numbers in messages are the spreadsheet's own (1-based, header row included).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from geomer.data.aus import parse_aus
from geomer.data.frames import frames_of
from geomer.data.sample import BadRow, DatasetIndex, Sample
from geomer.data.schemes import ClassScheme, UnknownLabel
from geomer.errors import GeomerError
from landmarks.io import MAX_FRAME_NUMBER

_HEADER_SEARCH_ROWS = 40


def column_key(name: object) -> str:
    """"Onset Frame" / "OnsetFrame" / "onset_frame" → "onsetframe"."""
    return re.sub(r"[^0-9a-z]", "", str(name).lower())


@dataclass(frozen=True)
class Table:
    """A label sheet: ``rows`` are dicts keyed by canonical column names; ``row_numbers`` the
    spreadsheet row of each (1-based)."""

    path: Path
    rows: list[dict[str, object]]
    row_numbers: list[int]


def find_sheet(root: Path, patterns: tuple[str, ...], layout: str) -> Path:
    """The single label sheet in ``root`` matching one of ``patterns`` (glob, case-insensitive)."""
    root = Path(root)
    if not root.is_dir():
        raise GeomerError(f"{root}: dataset root is not a folder")
    matches: list[Path] = []
    for pattern in patterns:
        regex = re.compile(_glob_to_regex(pattern), re.IGNORECASE)
        matches += [p for p in sorted(root.iterdir()) if p.is_file() and regex.fullmatch(p.name)]
    matches = [p for p in dict.fromkeys(matches) if not p.name.startswith(("~$", "."))]
    if not matches:
        raise GeomerError(
            f"{root}: not a {layout} root: label sheet {' or '.join(patterns)} is missing"
        )
    if len(matches) > 1:
        names = ", ".join(p.name for p in matches)
        raise GeomerError(f"{root}: several {layout} label sheets ({names}); keep one")
    return matches[0]


@dataclass(frozen=True)
class ClipRow:
    """A label-sheet row that names a subject and a clip (see :func:`clip_rows`): its sheet and
    row number, the subject's folder name, the clip's name in the sheet and every wanted cell."""

    sheet: Path
    row: int
    subject: str
    filename: str
    record: dict[str, object]


def clip_rows(
    root: Path,
    patterns: tuple[str, ...],
    columns: dict[str, tuple[str, ...]],
    layout: str,
    subject_folder_name: Callable[[object], str],
    collector: SampleCollector,
) -> Iterator[ClipRow]:
    """The rows of the one label sheet under ``root`` (:func:`find_sheet`, :func:`read_table`
    keyed by ``filename``) that name a subject and a clip.

    The sheet is read at once (a missing or broken sheet is the first error); a row whose subject
    ``subject_folder_name`` refuses (``ValueError``) or whose Filename is blank is rejected in
    ``collector`` as the rows are taken.
    """
    sheet = find_sheet(root, patterns, layout)
    table = read_table(sheet, columns, key_column="filename")
    return _clip_rows(sheet, table, subject_folder_name, collector)


def _clip_rows(sheet: Path, table: Table, subject_folder_name, collector: SampleCollector) -> Iterator[ClipRow]:
    for record, row in zip(table.rows, table.row_numbers):
        try:
            subject = subject_folder_name(record["subject"])
        except ValueError as error:
            collector.reject(sheet, row, str(error))
            continue
        filename = cell_text(record["filename"])
        if not filename:
            collector.reject(sheet, row, "Filename is blank")
            continue
        problem = plain_name_problem(filename, "Filename")
        if problem:
            collector.reject(sheet, row, problem)
            continue
        yield ClipRow(sheet, row, subject, filename, record)


def _glob_to_regex(pattern: str) -> str:
    return "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)


def _first_line_not_utf8(path: Path) -> int:
    """The 1-based line of ``path`` that first fails to decode as UTF-8 (0 if none does)."""
    with open(path, "rb") as stream:
        for number, line in enumerate(stream, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                return number
    return 0


def read_table(path: Path, columns: dict[str, tuple[str, ...]], key_column: str) -> Table:
    """Read an .xlsx/.xls/.csv sheet, find its header row, and keep the wanted columns.

    Args:
        columns: canonical name → accepted header spellings; every one is required.
        key_column: canonical name of the column that identifies the header row ("filename").

    Raises GeomerError naming the file and the missing columns.
    """
    path = Path(path)
    try:
        if path.suffix.lower() == ".csv":
            raw = pd.read_csv(path, header=None, dtype=object, keep_default_na=False)
        else:
            raw = pd.read_excel(path, header=None, dtype=object)
    except Exception as error:  # pandas raises many kinds for broken files
        if isinstance(error, UnicodeDecodeError) and path.suffix.lower() == ".csv":
            # its byte position is within pandas' buffer, not the file: name the line instead
            raise GeomerError(f"{path}: line {_first_line_not_utf8(path)}: not UTF-8 text; "
                              "save the sheet as UTF-8") from None
        # one line: pandas' parser messages end in a newline
        raise GeomerError(f"{path}: cannot read the label sheet ({' '.join(str(error).split())})") from error
    # the file's row number of each record pandas read (it skips blank lines)
    file_rows = _csv_record_rows(path, len(raw)) if path.suffix.lower() == ".csv" else range(1, len(raw) + 1)
    wanted_keys = {canonical: {column_key(a) for a in aliases} for canonical, aliases in columns.items()}
    header_row = None
    for row in range(min(len(raw), _HEADER_SEARCH_ROWS)):
        cells = {column_key(v) for v in raw.iloc[row].tolist()}
        if cells & wanted_keys[key_column]:
            header_row = row
            break
    if header_row is None:
        raise GeomerError(f"{path}: no header row with a {key_column!r} column found")
    header = [column_key(v) for v in raw.iloc[header_row].tolist()]
    positions: dict[str, int] = {}
    missing = []
    for canonical, keys in wanted_keys.items():
        found = [i for i, h in enumerate(header) if h in keys]
        if len(found) > 1:  # e.g. "Emotion" and "Estimated Emotion": which one labels the clips?
            names = " and ".join(repr(str(raw.iloc[header_row, i]).strip()) for i in found)
            raise GeomerError(f"{path}: row {file_rows[header_row]}: columns {names} both give {canonical!r}; keep one")
        if found:
            positions[canonical] = found[0]
        else:
            missing.append(f"{canonical!r} (header spellings: {', '.join(columns[canonical])})")
    if missing:
        raise GeomerError(f"{path}: row {file_rows[header_row]}: missing column {'; '.join(missing)}")
    rows, numbers = [], []
    for row in range(header_row + 1, len(raw)):
        values = raw.iloc[row].tolist()
        record = {name: values[i] for name, i in positions.items()}
        if all(is_blank(v) for v in values):
            continue  # trailing empty rows of spreadsheets
        rows.append(record)
        numbers.append(file_rows[row])
    return Table(path, rows, numbers)


def _csv_record_rows(path: Path, count: int) -> list[int] | range:
    """The 1-based row of each of the ``count`` records pandas read from the CSV at ``path``,
    which skips blank lines (so rows after a blank line keep the number a spreadsheet shows);
    the plain count where the file does not split into that many non-blank records."""
    import csv

    try:
        with open(path, newline="", encoding="utf-8-sig") as file:
            rows = [number for number, record in enumerate(csv.reader(file), 1) if record]
    except (OSError, UnicodeDecodeError, csv.Error):
        rows = []
    return rows if len(rows) == count else range(1, count + 1)


def is_blank(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or str(value).strip() == ""


#: Apex cells that say "not annotated" (the real CASME II sheet has "/"): the apex is spotted.
APEX_NOT_ANNOTATED = ("", "/", "-", "–", "n/a", "na", "none")


def apex_not_annotated(value: object) -> bool:
    """True for an apex cell that is blank or says the apex was not annotated."""
    return is_blank(value) or str(value).strip().lower() in APEX_NOT_ANNOTATED


def frame_value(value: object, what: str) -> int:
    """A frame number cell as int; ``ValueError`` naming ``what`` for blanks, non-numbers and
    numbers beyond ``MAX_FRAME_NUMBER``."""
    if is_blank(value):
        raise ValueError(f"{what} frame is blank")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not float(value).is_integer():
            raise ValueError(f"{what} frame {value!r} is not a whole number")
        digits = str(int(value))
    else:
        text = str(value).strip()
        if not re.fullmatch(r"\d+(\.0+)?", text):
            raise ValueError(f"{what} frame {text!r} is not a number")
        digits = text.split(".")[0]  # not via float: 400 digits would be infinity
    # judged by its length first: int() refuses more than 4300 digits
    if len(digits.lstrip("-")) > 19 or abs(int(digits)) > MAX_FRAME_NUMBER:
        shown = digits if len(digits) <= 20 else digits[:20] + "..."
        raise ValueError(f"{what} frame {shown} is too large (at most {MAX_FRAME_NUMBER})")
    return int(digits)


def cell_text(value: object) -> str:
    """A cell as text; whole floats lose their ".0" (Excel stores 1 as 1.0)."""
    if is_blank(value):
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def subject_number(value: object) -> int:
    """The last number in a subject cell (``"sub01"``, ``"spNO.1"``, ``1.0`` → 1); ``ValueError``
    when it has none."""
    digits = re.findall(r"\d+", cell_text(value))
    if not digits:
        raise ValueError(f"subject {value!r} has no number")
    if len(digits[-1].lstrip("0")) > MAX_SUBJECT_DIGITS:  # no folder name holds it
        raise ValueError(f"subject {cell_text(value)[:20]!r}{'...' if len(cell_text(value)) > 20 else ''} has a number too large")
    return int(digits[-1])


#: Subject numbers longer than this are refused (real datasets have two or three digits).
MAX_SUBJECT_DIGITS = 9
#: The longest file or folder name most file systems store, in bytes of UTF-8.
MAX_NAME_BYTES = 255


def plain_name_problem(name: str, what: str) -> str:
    """Why ``name`` (a sheet cell naming a file or folder) is not the plain name of one entry of a
    folder, or ``""``. A path ("../sub02/EP01_01f") would file another subject's clip under this
    one (a leak across LOSO folds); a name too long for a file system fails on every lookup."""
    if name in (".", "..") or any(c in name for c in "/\\") or not name.isprintable():
        return f"{what} {name[:60]!r} is not a plain name"
    if len(name.encode()) > MAX_NAME_BYTES:
        return f"{what} {name[:20]!r}... is longer than {MAX_NAME_BYTES} bytes"
    return ""


@dataclass
class SampleCollector:
    """Validates rows one by one and builds the :class:`DatasetIndex`, reporting every bad row.

    A row is bad for: unknown label, non-numeric or blank onset/offset, a non-numeric apex,
    onset > apex, apex outside [onset, offset], a missing frames folder, a missing onset/apex/offset
    frame file, or a clip id already seen. An apex that is not annotated (blank, "/", "-") is None:
    it is spotted when the features are extracted (``ClipFeatures.apex_spotted``). Labels the scheme
    excludes are recorded in ``excluded``, not checked.

    ``selection`` (clip key → class name, read from ``selection_file``) fixes which clips exist and
    their classes (the published MEGC 2019 composite): a clip not in it is recorded in
    ``excluded`` and not checked, its class is the selection's (the sheet's label is kept as
    ``raw_label``), and a selected clip no row produced is a bad row of ``selection_file``.
    """

    name: str
    scheme: ClassScheme
    skip_bad: bool
    root: Path
    samples: list[Sample] = field(default_factory=list)
    bad: list[BadRow] = field(default_factory=list)
    excluded: list[tuple[str, str]] = field(default_factory=list)
    selection: dict[str, str] | None = None
    selection_file: str = ""
    _seen: dict[str, str] = field(default_factory=dict)
    # resolved source → (subject key, (file, row)) of the first clip that reads it
    _sources: dict[str, tuple[str, tuple[str, str]]] = field(default_factory=dict)

    def add(
        self,
        *,
        file: Path | str,
        row: object,
        dataset: str,
        subject: str,
        clip: str,
        label: object,
        onset: object,
        apex: object,
        offset: object,
        aus: object = None,
        folder: Path | None,
        folder_problem: str = "",
        required_frames: tuple[str, ...] = ("onset", "apex", "offset"),
        check_frames: bool = True,
        problems: tuple[str, ...] = (),
        source: Path | None = None,
        extra: dict[str, Path] | None = None,
    ) -> Sample | None:
        """Validate one row; returns the Sample, or None when it was bad or excluded.

        ``folder`` is the clip's frame folder (None with ``folder_problem`` saying why it is
        missing). Frame numbers not in ``required_frames`` may be blank (SMIC has no apex).
        With ``check_frames=False`` frame files are not looked up (megc2019-flow), and
        ``problems`` adds reasons the reader found itself (e.g. a missing flow image).
        """
        file = str(file)
        row = str(row)
        subject_key = f"{dataset}/{subject}"
        key = f"{subject_key}/{clip}"
        reasons: list[str] = list(problems)
        if self.selection is not None:
            if key not in self.selection:
                self.excluded.append((key, f"not in {Path(self.selection_file).name}"))
                return None
            class_name = self.selection[key]
        else:
            try:
                class_name = self.scheme.classify(label)
            except UnknownLabel as error:
                reasons.append(str(error))
                class_name = ""
        if class_name is None:
            self.excluded.append((key, str(label).strip()))
            return None
        numbers: dict[str, int | None] = {}
        for what, value in (("onset", onset), ("apex", apex), ("offset", offset)):
            if what not in required_frames and is_blank(value):
                numbers[what] = None
                continue
            if what == "apex" and apex_not_annotated(value):
                numbers[what] = None  # spotted downstream, as for SMIC
                continue
            try:
                numbers[what] = frame_value(value, what)
            except ValueError as error:
                reasons.append(str(error))
                numbers[what] = None
        on, ap, off = numbers["onset"], numbers["apex"], numbers["offset"]
        if on is not None and off is not None and on > off:
            reasons.append(f"onset {on} > offset {off}")
        if on is not None and ap is not None and on > ap:
            reasons.append(f"onset {on} > apex {ap}")
        elif ap is not None and on is not None and off is not None and not on <= ap <= off:
            reasons.append(f"apex {ap} outside [onset {on}, offset {off}]")
        parsed_aus = parse_aus(aus)  # never refuses a row: unknown parts are kept as uncertain
        if check_frames:
            if folder is None or not Path(folder).is_dir():
                reasons.append(folder_problem or f"frames folder {folder} is missing")
            else:
                frames = frames_of(folder)
                if not frames:
                    reasons.append(f"frames folder {folder} holds no frame images")
                else:
                    for what, number in (("onset", on), ("apex", ap), ("offset", off)):
                        if number is not None and number not in frames:
                            reasons.append(f"{what} frame {number} missing in {folder}")
        for what, name in (("subject", subject), ("clip", clip)):
            if not name.isprintable():  # a line break would split the one-line error; a name that
                # is not UTF-8 (read from a folder) cannot be written into a run's files
                reasons.append(f"{what} name {name!r} is not printable text")
        if key in self._seen:
            reasons.append(f"duplicated clip id {clip!r} of {subject_key} (first at row {self._seen[key]})")
        else:
            self._seen[key] = row
        reasons += self._shared_source(source if source is not None else folder, subject_key, (file, row))
        if reasons:
            self.bad.append(BadRow(file, row, "; ".join(reasons)))
            return None
        sample = Sample(
            dataset=dataset,
            subject_key=subject_key,
            clip=clip,
            label=class_name,
            label_index=self.scheme.index(class_name),
            onset=int(on if on is not None else 0),
            apex=ap,
            offset=off,
            aus=parsed_aus,
            source=Path(source if source is not None else folder),
            extra=dict(extra or {}),
            raw_label=str(label).strip(),
        )
        self.samples.append(sample)
        return sample

    def _shared_source(self, source: Path | None, subject_key: str, where: tuple[str, str]) -> list[str]:
        """Why the clip's frames (``source`` resolved: through a link, another name is the same
        folder) may not be read for it: another subject's clip reads them (one person's frames
        filed under two subjects leak across LOSO folds). ``where``: the row's (file, row)."""
        try:
            resolved = str(Path(source).resolve()) if source is not None else None
        except (OSError, RuntimeError):  # a link loop: reported as a missing folder or file
            return []
        if resolved is None:
            return []
        first_subject, first_where = self._sources.setdefault(resolved, (subject_key, where))
        if first_subject == subject_key:
            return []
        at = f"row {first_where[1]}" if first_where[0] == where[0] else f"{first_where[0]}: row {first_where[1]}"
        return [f"reads the frames of {first_subject}'s clip at {at} ({resolved})"]

    def add_clip_row(
        self, entry: ClipRow, *, dataset: str, clip: str, folder: Path | None, folder_problem: str = ""
    ) -> Sample | None:
        """:meth:`add` for a :class:`ClipRow` of a sheet with the columns emotion, onset, apex,
        offset and aus."""
        record = entry.record
        return self.add(
            file=entry.sheet,
            row=entry.row,
            dataset=dataset,
            subject=entry.subject,
            clip=clip,
            label=record["emotion"],
            onset=record["onset"],
            apex=record["apex"],
            offset=record["offset"],
            aus=record["aus"],
            folder=folder,
            folder_problem=folder_problem,
        )

    def reject(self, file: Path | str, row: object, reason: str) -> None:
        """Record a bad row found outside :meth:`add` (e.g. an unreadable subject)."""
        self.bad.append(BadRow(str(file), str(row), reason))

    def finish(self) -> DatasetIndex:
        """The index; raises one GeomerError listing every bad row unless ``skip_bad``."""
        if self.selection is not None:
            for key in self.selection:
                if key not in self._seen:
                    self.reject(self.selection_file, key, f"clip {key} not found under {self.root}")
        if self.bad and not self.skip_bad:
            # the first line names the first bad row's file and row; any others follow, one a line
            first, *others = self.bad
            if not others:
                raise GeomerError(f"{first} ({self.name}; fix the row, or pass --skip-bad / skip_bad=True "
                                  "to leave it out)")
            lines = "\n".join(str(b) for b in others)
            raise GeomerError(
                f"{first} ({self.name}: {len(self.bad)} bad rows under {self.root}, the others below; fix them, "
                f"or pass --skip-bad / skip_bad=True to leave them out)\n{lines}"
            )
        if not self.samples:
            raise GeomerError(
                f"{self.name}: no usable clips under {self.root} "
                f"({len(self.bad)} bad, {len(self.excluded)} excluded by scheme {self.scheme.name})"
            )
        return DatasetIndex(
            name=self.name,
            samples=tuple(self.samples),
            classes=self.scheme.classes,
            skipped=tuple(self.bad),
            excluded=tuple(self.excluded),
            root=Path(self.root),
            scheme=self.scheme.name,
        )
