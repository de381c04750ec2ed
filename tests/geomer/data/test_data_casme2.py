from __future__ import annotations

import re

import pytest
from data_layouts import CASME2_ROWS, write_casme2, write_frames

from geomer.data import read_dataset
from geomer.errors import GeomerError


def test_reads_every_row_with_its_quirks(tmp_path):
    index = read_dataset("casme2", write_casme2(tmp_path / "c2"))
    # the fear row is outside the 5-class scheme: excluded, not bad
    assert [s.clip for s in index.samples] == [
        "EP02_01f", "EP03_02", "EP01_11f", "EP05_02", "EP07_01", "EP08_04"
    ]
    assert index.classes == ("happiness", "surprise", "disgust", "repression", "others")
    assert index.excluded == (("casme2/sub04/EP09_01", "fear"),)
    first = index.samples[0]
    assert (first.subject_key, first.key) == ("casme2/sub01", "casme2/sub01/EP02_01f")
    assert (first.onset, first.apex, first.offset) == (46, 59, 86)
    assert first.source == tmp_path / "c2" / "sub01" / "EP02_01f"
    by_clip = {s.clip: s for s in index.samples}
    assert by_clip["EP03_02"].label == "others" and by_clip["EP03_02"].label_index == 4
    assert by_clip["EP03_02"].aus == ("R12", "L14")
    assert by_clip["EP01_11f"].aus == ("4", "7", "L10")
    assert by_clip["EP05_02"].aus == ("12?",) and by_clip["EP05_02"].label == "happiness"
    assert by_clip["EP07_01"].aus == ("4", "7")
    assert by_clip["EP08_04"].aus == ()
    assert index.subjects == ("casme2/sub01", "casme2/sub02", "casme2/sub03")


@pytest.mark.parametrize("subfolder,cropped", [("CASME2_RAW_selected", False), ("Cropped", True)])
def test_frames_under_a_known_subfolder(tmp_path, subfolder, cropped):
    root = write_casme2(tmp_path / "c2", subfolder=subfolder, cropped=cropped)
    index = read_dataset("casme2", root)
    assert index.samples[0].source == root / subfolder / "sub01" / "EP02_01f"


@pytest.mark.parametrize("in_sheet, on_disk", [("EP02_01", "EP02_01f"), ("EP02_01f", "EP02_01")])
def test_a_suffix_letter_missing_on_one_side_still_finds_the_folder(tmp_path, in_sheet, on_disk):
    """The sheet's clip finds its frames folder when either side lacks the suffix letter; the
    folder name is the clip id."""
    root = write_casme2(tmp_path / "c2", rows=[(1, in_sheet, 1, 2, 3, "12", "happiness")], frames=False)
    write_frames(root / "sub01" / on_disk, range(1, 4))
    (sample,) = read_dataset("casme2", root).samples
    assert sample.clip == on_disk and sample.source == root / "sub01" / on_disk


def test_two_folders_differing_by_a_suffix_letter_are_ambiguous(tmp_path):
    """With both "EP02_01f" and "EP02_01g" on disk, the sheet's "EP02_01" picks neither: a bad row."""
    root = write_casme2(tmp_path / "c2", rows=[(1, "EP02_01", 1, 2, 3, "12", "happiness")],
                        frames=False)
    write_frames(root / "sub01" / "EP02_01f", range(1, 4))
    write_frames(root / "sub01" / "EP02_01g", range(1, 4))
    (line,) = _bad_lines(root)
    assert f"frames folder {root / 'sub01' / 'EP02_01'} is missing" in line


def test_every_bad_row_reported_at_once(tmp_path):
    rows = list(CASME2_ROWS) + [
        (5, "EP10_01", 9, 5, 12, "4", "disgust"),          # onset > apex
        (5, "EP10_02", 1, 9, 5, "4", "disgust"),           # apex outside [onset, offset]
        (5, "EP10_03", 1, 2, 3, "4", "joy"),                # unknown label
        (5, "EP10_04", 1, "x", 3, "4", "disgust"),          # non-numeric frame
        (1, "EP02_01f", 46, 59, 86, "12", "happiness"),     # duplicated clip id
    ]
    root = write_casme2(tmp_path / "c2", rows=rows)
    write_frames(root / "sub05" / "EP10_05", range(1, 3))
    rows.append((5, "EP10_06", 1, 2, 3, "4", "disgust"))   # frames folder missing
    rows.append((5, "EP10_05", 1, 2, 3, "4", "disgust"))   # offset frame file missing
    write_casme2(root, rows=rows, frames=False)
    with pytest.raises(GeomerError) as caught:
        read_dataset("casme2", root)
    lines = str(caught.value).splitlines()  # the first names the first bad row and the count
    assert len(lines) == 7 and "casme2: 7 bad rows under" in lines[0]
    sheet = str(root / "CASME2-coding-20140508.xlsx")
    assert all(line.startswith(sheet + ": row ") for line in lines)
    text = "\n".join(lines)
    for reason in ("onset 9 > apex 5", "apex 9 outside [onset 1, offset 5]", "unknown label 'joy'",
                   "apex frame 'x' is not a number", "duplicated clip id 'EP02_01f'",
                   "EP10_06 is missing", "offset frame 3 missing"):
        assert reason in text, reason
    # the spreadsheet row of the first bad row: header is row 1, data starts at row 2
    assert lines[0].startswith(f"{sheet}: row {len(CASME2_ROWS) + 2}:")

    index = read_dataset("casme2", root, skip_bad=True)
    assert len(index.skipped) == 7
    assert len(index.samples) == 6


def test_root_that_is_not_casme2(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(GeomerError, match="label sheet CASME2-coding-"):
        read_dataset("casme2", tmp_path / "empty")
    root = write_casme2(tmp_path / "c2", frames=False)
    with pytest.raises(GeomerError, match="no sub01"):
        read_dataset("casme2", root)


def test_empty_after_filtering(tmp_path):
    root = write_casme2(tmp_path / "c2", rows=[(1, "EP02_01f", 1, 2, 3, "", "fear")])
    with pytest.raises(GeomerError, match="no usable clips"):
        read_dataset("casme2", root)
    with pytest.raises(GeomerError, match="unknown dataset 'casme9'"):
        read_dataset("casme9", root)


def test_apex_not_annotated_is_spotted_and_aus_of_real_sheets_are_kept(tmp_path):
    """The real sheets' quirks: apex cells "/", "-" or blank (not annotated) and the FACS
    notations of SAMM's codes are read, not refused."""
    rows = [
        (1, "EP02_01f", 46, "/", 86, "(R6 or R12)+R15", "happiness"),
        (1, "EP03_02", 10, "-", 20, "ref(7B)+43", "disgust"),
        (2, "EP01_11f", 5, None, 12, "ref(43)", "disgust"),
        (2, "EP05_02", 3, 4, 9, "43C+12?+smile", "happiness"),
    ]
    root = write_casme2(tmp_path / "c2", rows=rows)
    index = read_dataset("casme2", root)
    assert [s.apex for s in index.samples] == [None, None, None, 4]
    assert [s.apex_annotated for s in index.samples] == [False, False, False, True]
    assert [s.aus for s in index.samples] == [
        ("R6|R12", "R15"), ("ref(7B)", "43"), ("ref(43)",), ("43C", "12?", "?smile"),
    ]
    assert not index.skipped


def _bad_lines(root):
    with pytest.raises(GeomerError) as caught:
        read_dataset("casme2", root)
    return str(caught.value).splitlines()


def test_onset_after_offset_is_reported_on_its_row(tmp_path):
    rows = list(CASME2_ROWS) + [(5, "EP10_01", 9, 9, 5, "4", "disgust")]
    root = write_casme2(tmp_path / "c2", rows=CASME2_ROWS)
    write_frames(root / "sub05" / "EP10_01", range(4, 11))  # every frame the row names exists
    write_casme2(root, rows=rows, frames=False)
    (line,) = _bad_lines(root)
    sheet = str(root / "CASME2-coding-20140508.xlsx")
    assert line.startswith(f"{sheet}: row {len(CASME2_ROWS) + 2}: ")
    assert "onset 9 > offset 5" in line


def test_fractional_frame_number_is_reported_on_its_row(tmp_path):
    rows = list(CASME2_ROWS) + [(5, "EP10_01", 2.5, 4, 6, "4", "disgust")]
    root = write_casme2(tmp_path / "c2", rows=CASME2_ROWS)
    write_frames(root / "sub05" / "EP10_01", range(1, 8))
    write_casme2(root, rows=rows, frames=False)
    (line,) = _bad_lines(root)
    assert f": row {len(CASME2_ROWS) + 2}: " in line
    assert "onset frame 2.5 is not a whole number" in line


@pytest.mark.parametrize("onset", ["9" * 400, 1e300], ids=["400 digits", "1e300"])
def test_a_frame_number_too_large_is_reported_on_its_row(tmp_path, onset):
    rows = list(CASME2_ROWS) + [(5, "EP10_01", onset, 4, 6, "4", "disgust")]
    root = write_casme2(tmp_path / "c2", rows=CASME2_ROWS)
    write_frames(root / "sub05" / "EP10_01", range(1, 8))
    write_casme2(root, rows=rows, frames=False)
    (line,) = _bad_lines(root)
    assert re.search(rf": row {len(CASME2_ROWS) + 2}: onset frame \d+\.\.\. is too large \(at most 9223372036854775807\)", line)


@pytest.mark.parametrize("filename, problem", [
    ("../sub01/EP02_01f", "is not a plain name"), ("..", "is not a plain name"), ("EP10\n01", "is not a plain name"),
    ("E" * 300, "is longer than 255 bytes"),
], ids=["path", "parent", "newline", "too-long"])
def test_a_filename_that_is_no_folder_name_is_refused_on_its_row(tmp_path, filename, problem):
    # "../sub01/EP02_01f" under sub05 would file sub01's frames as a clip of sub05: a LOSO leak;
    # a name longer than a file system stores failed every lookup (ENAMETOOLONG), not on its row
    rows = list(CASME2_ROWS) + [(5, filename, 1, 2, 3, "4", "disgust")]
    root = write_casme2(tmp_path / "c2", rows=CASME2_ROWS)
    write_casme2(root, rows=rows, frames=False)
    (line,) = _bad_lines(root)
    assert f": row {len(CASME2_ROWS) + 2}: Filename {filename[:20]!r}" in line and problem in line
    index = read_dataset("casme2", root, skip_bad=True)  # a bad row like any other: --skip-bad leaves it out
    assert len(index.skipped) == 1 and filename not in {sample.clip for sample in index.samples}


def test_a_subject_number_too_large_is_refused_on_its_row(tmp_path):
    rows = list(CASME2_ROWS) + [("1" * 300, "EP10_01", 1, 2, 3, "4", "disgust")]
    root = write_casme2(tmp_path / "c2", rows=CASME2_ROWS)
    write_casme2(root, rows=rows, frames=False)
    (line,) = _bad_lines(root)
    assert f": row {len(CASME2_ROWS) + 2}: subject '11111111111111111111'... has a number too large" in line


def test_missing_apex_frame_file_is_reported(tmp_path):
    rows = list(CASME2_ROWS) + [(5, "EP10_01", 1, 3, 5, "4", "disgust")]
    root = write_casme2(tmp_path / "c2", rows=CASME2_ROWS)
    folder = root / "sub05" / "EP10_01"
    write_frames(folder, [1, 2, 4, 5])  # onset and offset frames exist, the apex frame does not
    write_casme2(root, rows=rows, frames=False)
    (line,) = _bad_lines(root)
    assert f": row {len(CASME2_ROWS) + 2}: " in line
    assert f"apex frame 3 missing in {folder}" in line
    assert "onset frame" not in line and "offset frame" not in line


def test_blank_rows_are_skipped_and_row_numbers_stay_the_spreadsheets(tmp_path):
    blank = (None,) * 7
    spaces = (" ",) * 7
    rows = list(CASME2_ROWS[:3]) + [blank, spaces] + list(CASME2_ROWS[3:]) + [blank] + [spaces]
    root = write_casme2(tmp_path / "c2", rows=CASME2_ROWS)
    write_casme2(root, rows=rows, frames=False)
    index = read_dataset("casme2", root)
    assert [s.clip for s in index.samples] == [
        "EP02_01f", "EP03_02", "EP01_11f", "EP05_02", "EP07_01", "EP08_04"
    ]
    assert not index.skipped

    bad_row = (5, "EP10_01", 9, 5, 12, "4", "disgust")  # onset > apex
    write_frames(root / "sub05" / "EP10_01", range(5, 13))
    write_casme2(root, rows=rows + [bad_row] + [blank], frames=False)
    (line,) = _bad_lines(root)
    # header row 1, then every sheet row counts, the blank ones included
    assert f": row {len(rows) + 2}: " in line and "onset 9 > apex 5" in line
