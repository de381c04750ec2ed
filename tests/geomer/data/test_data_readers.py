"""SAMM, SMIC, CAS(ME)^3, the MEGC 2019 composites and synth: tiny fictitious datasets in the real
layouts, plus hand-broken variants."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
from data_layouts import (
    CASME2_ROWS, FLOW_ROWS, SAMM_ROWS, write_casme2, write_casme3, write_frames,
    write_megc2019_flow, write_samm, write_smic,
)

from geomer.data import read_dataset
from geomer.errors import GeomerError


def test_samm_title_rows_above_header(tmp_path):
    root = write_samm(tmp_path / "samm", title_rows=12)
    index = read_dataset("samm", root)
    # disgust is outside SAMM 5-class: excluded
    assert [s.clip for s in index.samples] == ["006_1_2", "006_1_5", "007_3_1", "007_3_2"]
    assert index.excluded == (("samm/008/008_5_3", "Disgust"),)
    first = index.samples[0]
    assert (first.subject_key, first.onset, first.apex, first.offset) == ("samm/006", 5562, 5588, 5619)
    assert first.source == root / "006" / "006_1_2"
    assert [s.label for s in index.samples] == ["anger", "happiness", "surprise", "other"]
    assert index.samples[3].aus == ("R12?",)


def test_samm_bad_row_numbers_count_the_title_block(tmp_path):
    rows = SAMM_ROWS + [(9, "009_1_1", 10, 30, 20, "4", "Anger")]
    root = write_samm(tmp_path / "samm", rows=SAMM_ROWS, title_rows=5)  # frames of the good rows
    write_samm(root, rows=rows, title_rows=5, frames=False)  # the sheet with the bad row
    with pytest.raises(GeomerError) as caught:
        read_dataset("samm", root)
    (line,) = str(caught.value).splitlines()
    # 5 title rows + header = 6 rows; the bad row is the 6th data row → spreadsheet row 12
    assert ": row 12: " in line and "apex 30 outside [onset 10, offset 20]" in line
    assert "009_1_1 is missing" in line


def test_samm_root_without_sheet(tmp_path):
    root = write_samm(tmp_path / "samm")
    (root / "SAMM_Micro_FACS_Codes_v2.xlsx").unlink()
    with pytest.raises(GeomerError, match="SAMM_Micro_FACS_Codes"):
        read_dataset("samm", root)


def test_smic_labels_from_folders_and_no_apex(tmp_path):
    root = write_smic(tmp_path / "smic")
    index = read_dataset("smic", root)
    assert index.classes == ("negative", "positive", "surprise")
    by_clip = {s.clip: s for s in index.samples}
    first = by_clip["s1_ne_01"]
    assert (first.onset, first.apex, first.offset) == (106005, None, 106008)
    assert first.label == "negative" and first.subject_key == "smic/s1" and first.aus == ()
    assert by_clip["s2_sur_01"].label_index == 2
    assert index.subjects == ("smic/s1", "smic/s2", "smic/s3")


def test_smic_bad_clip_folders(tmp_path):
    root = write_smic(tmp_path / "smic")
    (root / "HS" / "s2" / "micro" / "happy_or_not" / "s2_x_01").mkdir(parents=True)
    write_frames(root / "HS" / "s2" / "micro" / "happy_or_not" / "s2_x_01", [1, 2])
    (root / "HS" / "s3" / "micro" / "positive" / "s3_po_09").mkdir(parents=True)
    with pytest.raises(GeomerError) as caught:
        read_dataset("smic", root)
    text = str(caught.value)
    assert "s2/micro/happy_or_not/s2_x_01: unknown label 'happy_or_not'" in text
    assert "s3/micro/positive/s3_po_09: " in text and "holds no frame images" in text
    index = read_dataset("smic", root, skip_bad=True)
    assert len(index.samples) == 4 and len(index.skipped) == 2
    with pytest.raises(GeomerError, match="HS/"):
        read_dataset("smic", tmp_path)


def test_smic_names_that_are_not_printable_text_are_refused_on_their_folder(tmp_path):
    import os

    root = write_smic(tmp_path / "smic")
    negative = root / "HS" / "s2" / "micro" / "negative"
    # a folder name that is not UTF-8 (Python keeps its byte as a surrogate) and one with a line break
    write_frames(negative / "s2_ne_03", [1, 2])  # OpenCV cannot write under such a name
    (negative / "s2_ne_03").rename(negative / os.fsdecode(b"s2_ne_0\xff"))
    write_frames(negative / "s2_ne\n02", [1, 2])
    with pytest.raises(GeomerError) as caught:
        read_dataset("smic", root)
    lines = str(caught.value).splitlines()
    assert len(lines) == 2  # the line break is escaped: each bad folder on one line
    assert "clip name 's2_ne\\n02' is not printable text" in lines[0]
    assert "clip name 's2_ne_0\\udcff' is not printable text" in lines[1]


def test_smic_subject_folders_s01_and_s1_are_one_subject(tmp_path):
    # one person's clip under "s01" and "s1" would otherwise land on both sides of a LOSO split
    root = write_smic(tmp_path / "smic")
    write_frames(root / "HS" / "s01" / "micro" / "negative" / "s01_ne_01", [1, 2])
    with pytest.raises(GeomerError, match=r"s01/micro/negative/s01_ne_01: duplicated clip id 's1_ne_01' of smic/s1"):
        read_dataset("smic", root)


def test_a_clip_folder_linked_to_another_subjects_is_refused(tmp_path):
    # sub05/EP10_01 → sub01's frames: one person's frames filed under two subjects
    rows = list(CASME2_ROWS) + [(5, "EP10_01", 46, 59, 86, "12", "happiness")]
    root = write_casme2(tmp_path / "c2", rows=CASME2_ROWS)
    (root / "sub05").mkdir(exist_ok=True)
    (root / "sub05" / "EP10_01").symlink_to(root / "sub01" / "EP02_01f")
    write_casme2(root, rows=rows, frames=False)
    with pytest.raises(GeomerError, match=rf"row {len(CASME2_ROWS) + 2}: reads the frames of casme2/sub01's clip at row 2 "):
        read_dataset("casme2", root)


def _casme2_and_its_sheet(tmp_path):
    """A CASME II root, its label sheet's path and the sheet as a table."""
    root = write_casme2(tmp_path / "c2")
    sheet = next(root.glob("CASME2-coding-*"))
    return root, sheet, pd.read_excel(sheet)


def test_two_columns_giving_one_field_are_refused(tmp_path):
    root, sheet, table = _casme2_and_its_sheet(tmp_path)
    table["Emotion"] = "surprise"  # beside "Estimated Emotion": which one labels the clips?
    table.to_excel(sheet, index=False)
    with pytest.raises(GeomerError, match=r"row 1: columns 'Estimated Emotion' and 'Emotion' both give 'emotion'; keep one"):
        read_dataset("casme2", root)


def test_csv_row_numbers_count_blank_lines(tmp_path):
    root, sheet, table = _casme2_and_its_sheet(tmp_path)
    sheet.unlink()
    table.loc[1, "Estimated Emotion"] = "joy"
    text = table.to_csv(index=False).splitlines()  # the header, then two blank lines before the rows
    (root / "CASME2-coding-x.csv").write_text("\n".join([text[0], "", "", *text[1:]]) + "\n")
    with pytest.raises(GeomerError, match=r"CASME2-coding-x.csv: row 5: unknown label 'joy'"):
        read_dataset("casme2", root)
    # a blank line above the header too (a sheet exported with an empty first row)
    (root / "CASME2-coding-x.csv").write_text("\n".join(["", text[0], "", "", *text[1:]]) + "\n")
    with pytest.raises(GeomerError, match=r"CASME2-coding-x.csv: row 6: unknown label 'joy'"):
        read_dataset("casme2", root)


def test_a_csv_sheet_not_in_utf8_names_its_first_such_line(tmp_path):
    # pandas' decode error gives a byte position within its buffer, which points nowhere
    root, sheet, table = _casme2_and_its_sheet(tmp_path)
    sheet.unlink()
    table.loc[1, "Estimated Emotion"] = "répression"
    (root / "CASME2-coding-x.csv").write_bytes(table.to_csv(index=False).encode("latin-1"))
    with pytest.raises(GeomerError, match=r"CASME2-coding-x.csv: line 3: not UTF-8 text; save the sheet as UTF-8"):
        read_dataset("casme2", root)


def test_a_clip_folder_that_is_a_link_loop_is_a_missing_folder_on_its_row(tmp_path):
    root = write_casme3(tmp_path / "c3")
    (root / "part_A" / "spNO.2" / "d").symlink_to("d")  # resolves to itself
    rows = pd.read_excel(next(root.glob("*.xlsx")))
    rows.loc[len(rows)] = ["spNO.2", "d", 3, 4, 8, "4", 1, "Anger"]
    rows.to_excel(next(root.glob("*.xlsx")), index=False)
    with pytest.raises(GeomerError, match=rf"row {len(rows) + 1}: frames folder .*spNO.2/d/color is missing"):
        read_dataset("casme3", root)


def test_megc2019_flow_names_too_long_together_are_refused_on_their_row(tmp_path):
    # sub and filename_o each fit a file name, the flow image's "<sub>_<filename_o> .png" does not
    root = write_megc2019_flow(tmp_path / "flow")
    rows = FLOW_ROWS + [("casme2", "sub03", "E" * 250, 0, "sub03_E.png")]
    pd.DataFrame(rows, columns=["dataset", "sub", "filename_o", "label", "imagename"]).to_csv(
        root / "combined_3_class2_for_optical_flow.csv", index=False)
    with pytest.raises(GeomerError, match=rf"row {len(rows) + 1}: flow image name 'sub03_EEEEEEEEEEEEEE'... is longer than 255 bytes"):
        read_dataset("megc2019-flow", root)


def test_casme3_onset_equal_apex_and_schemes(tmp_path):
    root = write_casme3(tmp_path / "c3")
    index = read_dataset("casme3", root)
    assert [s.key for s in index.samples] == [
        "casme3/spNO.1/a_10", "casme3/spNO.1/a_40", "casme3/spNO.1/b_5", "casme3/spNO.2/c_3",
        "casme3/spNO.3/a_2",
    ]
    legal = index.samples[1]
    assert legal.onset == legal.apex == 40 and legal.label == "disgust"
    assert legal.source == root / "part_A" / "spNO.1" / "a" / "color"
    assert index.samples[0].aus == ("L1", "L2")
    assert [s.label for s in index.samples] == ["surprise", "disgust", "happiness", "anger", "others"]
    four = read_dataset("casme3", root, scheme="casme3-4")
    assert [s.label for s in four.samples] == ["surprise", "negative", "positive", "negative", "others"]
    three = read_dataset("casme3", root, scheme="casme3-3")
    assert len(three.samples) == 4 and three.classes == ("negative", "positive", "surprise")
    with pytest.raises(GeomerError, match="unknown class scheme 'casme3-9'"):
        read_dataset("casme3", root, scheme="casme3-9")


def _composite_root(tmp_path):
    root = tmp_path / "megc"
    write_casme2(root / "CASME2")
    write_samm(root / "SAMM")
    write_smic(root / "SMIC")
    return root


def test_megc2019_composite_by_the_rules(tmp_path):
    root = _composite_root(tmp_path)
    index = read_dataset("megc2019", root, scheme="composite-3")
    assert index.classes == ("negative", "positive", "surprise")
    assert index.datasets == ("casme2", "samm", "smic")
    # CASME II "Others" and SAMM "Other" are excluded; fear and disgust become negative
    excluded = dict(index.excluded)
    assert excluded == {"casme2/sub01/EP03_02": "Others", "samm/007/007_3_2": "Other"}
    assert len(index.samples) == len(CASME2_ROWS) - 1 + len(SAMM_ROWS) - 1 + 4
    labels = {s.key: s.label for s in index.samples}
    assert labels["casme2/sub04/EP09_01"] == "negative"  # fear
    assert labels["casme2/sub03/EP07_01"] == "negative"  # repression
    assert labels["samm/006/006_1_5"] == "positive"
    assert len({s.key for s in index.samples}) == len(index.samples)
    # explicit part roots give the same index
    explicit = read_dataset(
        "megc2019", f"casme2={root / 'CASME2'},samm={root / 'SAMM'},smic={root / 'SMIC'}",
        scheme="composite-3",
    )
    assert [s.key for s in explicit.samples] == [s.key for s in index.samples]
    with pytest.raises(GeomerError, match="part casme2 is given twice"):  # not the last one winning
        read_dataset("megc2019", f"casme2={root / 'CASME2'},casme2={root / 'SMIC'},samm={root / 'SAMM'},"
                                 f"smic={root / 'SMIC'}", scheme="composite-3")
    with pytest.raises(GeomerError, match="part casme2 has no folder"):  # not the current folder
        read_dataset("megc2019", f"casme2=,samm={root / 'SAMM'},smic={root / 'SMIC'}", scheme="composite-3")
    # a folder whose path holds "=" is a folder, not a mapping of parts
    moved = tmp_path / "lr=1" / "megc"
    moved.parent.mkdir()
    root.rename(moved)
    assert [s.key for s in read_dataset("megc2019", moved, scheme="composite-3").samples] == [s.key for s in index.samples]
    root = moved
    shutil.rmtree(root / "SAMM")
    with pytest.raises(GeomerError, match="SAMM/ missing"):
        read_dataset("megc2019", root)


def test_composite_subject_keys_never_collide(tmp_path):
    """CASME II sub01 and a CAS(ME)^3/SMIC/SAMM subject 1 stay distinct subjects."""
    root = _composite_root(tmp_path)
    index = read_dataset("megc2019", root, scheme="composite-3")
    assert {"casme2/sub01", "smic/s1"} <= set(index.subjects)
    per_part = {d: {s.subject for s in index.samples if s.dataset == d} for d in index.datasets}
    assert per_part["casme2"] & {"sub01"} and per_part["smic"] & {"s1"}
    assert len(set(index.subjects)) == sum(len(v) for v in per_part.values()) == 4 + 3 + 3


def test_megc2019_bad_rows_of_all_parts_together(tmp_path):
    root = _composite_root(tmp_path)
    write_casme2(root / "CASME2", rows=CASME2_ROWS + [(7, "EP01_01", 3, 1, 5, "", "disgust")],
                 frames=False)
    write_samm(root / "SAMM", rows=SAMM_ROWS + [(9, "009_1_1", 1, 2, 3, "", "Anger")], frames=False)
    with pytest.raises(GeomerError) as caught:
        read_dataset("megc2019", root, scheme="composite-3")
    lines = str(caught.value).splitlines()
    assert len(lines) == 2
    assert "CASME2-coding" in lines[0] and "SAMM_Micro" in lines[1]


def _published_composite_root(tmp_path):
    """Hand-made sheets and folders holding every clip of the shipped MEGC 2019 list plus clips
    the composite leaves out, with the real sheets' quirks: an apex "/" (not annotated), SAMM's
    FACS notations, a listed clip whose sheet label is "Others" (sheet versions differ)."""
    from geomer.data.megc2019 import composite_clips

    clips = composite_clips()
    parts = {"casme2": [], "samm": [], "smic": []}
    for key, label in clips.items():
        dataset, subject, clip = key.split("/")
        parts[dataset].append((subject, clip, label))
    emotion = {"negative": "disgust", "positive": "happiness", "surprise": "surprise"}
    casme2_rows = [(s, c, 1, 2, 3, "4+7", emotion[label]) for s, c, label in parts["casme2"]]
    casme2_rows[0] = (*casme2_rows[0][:3], "/", *casme2_rows[0][4:])   # apex not annotated
    casme2_rows[1] = (*casme2_rows[1][:6], "Others")                   # another sheet version
    casme2_rows += [("sub01", "EP99_01f", 1, 2, 3, "", "others"),      # not in the composite
                    ("sub26", "EP99_02", 1, 2, 3, "", "fear")]
    notations = ["(R6 or R12)+R15", "ref(7B)+43", "ref(43)", "43C", "12?"]
    samm_rows = [(s, c, 1, 2, 3, notations[k % 5], emotion[label].title())
                 for k, (s, c, label) in enumerate(parts["samm"])]
    samm_rows.append(("006", "006_9_9", 1, 2, 3, "4", "Other"))
    folder = {"negative": "negative", "positive": "positive", "surprise": "surprise"}
    smic_clips = [(s, folder[label], c, 1, 3) for s, c, label in parts["smic"]]
    root = tmp_path / "megc"
    write_casme2(root / "CASME2", rows=casme2_rows)
    write_samm(root / "SAMM", rows=samm_rows)
    write_smic(root / "SMIC", clips=smic_clips)
    return root


def test_megc2019_reproduces_the_published_composite(tmp_path):
    root = _published_composite_root(tmp_path)
    index = read_dataset("megc2019", root)
    assert len(index.samples) == 442 and len(index.subjects) == 68 and index.scheme == "megc2019"
    counts = {
        dataset: tuple(sum(1 for s in index.samples if s.dataset == dataset and s.label == c)
                       for c in index.classes)
        for dataset in index.datasets
    }
    assert counts == {"casme2": (88, 32, 25), "samm": (92, 26, 15), "smic": (70, 51, 43)}
    assert {key for key, _ in index.excluded} == {
        "casme2/sub01/EP99_01f", "casme2/sub26/EP99_02", "samm/006/006_9_9"
    }
    first, second = index.samples[0], index.samples[1]
    assert first.apex is None and not first.apex_annotated           # spotted later
    assert second.raw_label == "Others" and second.label == "negative"  # the list's class
    samm = [s for s in index.samples if s.dataset == "samm"]
    assert samm[0].aus == ("R6|R12", "R15") and samm[1].aus == ("ref(7B)", "43")
    assert not index.skipped

    # a listed clip missing from the folders: a bad row of the list, refused unless skip_bad
    shutil.rmtree(root / "SMIC" / "HS" / "s1" / "micro" / "negative" / "s1_ne_01")
    with pytest.raises(GeomerError, match="megc2019_composite.csv: row smic/s1/s1_ne_01: clip "):
        read_dataset("megc2019", root)
    assert len(read_dataset("megc2019", root, skip_bad=True).samples) == 441


@pytest.mark.parametrize("under_datasets", [False, True])
def test_megc2019_flow(tmp_path, under_datasets):
    root = write_megc2019_flow(tmp_path / "flow", under_datasets=under_datasets)
    index = read_dataset("megc2019-flow", root)
    assert [s.key for s in index.samples] == [
        "casme2/sub01/EP02_01f", "casme2/sub02/EP01_11f", "smic/s1/s1_ne_01", "samm/006/006_1_2",
        "samm/007/007_3_1",
    ]
    assert [s.label for s in index.samples] == ["positive", "negative", "negative", "negative", "surprise"]
    first = index.samples[0]
    base = root / "datasets" if under_datasets else root
    assert first.extra["flow_image"] == base / "STSNet_whole_norm_u_v_os" / "sub01_EP02_01f .png"
    assert first.extra["apex_image"] == base / "combined_datasets_whole" / "sub01_EP02_01f.png"
    assert first.source == first.extra["apex_image"]
    assert (first.onset, first.apex, first.offset) == (0, None, None)


def test_megc2019_flow_bad_rows(tmp_path):
    rows = FLOW_ROWS + [("casme2", "sub03", "EP09_09", 7, "sub03_EP09_09.png"),
                        ("casme2", "sub03", "EP09\n10", 0, "sub03_EP09_10.png"),  # a quoted line break
                        # a path would read sub01's images for sub03 (a leak across LOSO folds)
                        ("casme2", "sub03", "EP09_11", 0, "../combined_datasets_whole/sub01_EP02_01f.png")]
    root = write_megc2019_flow(tmp_path / "flow", rows=rows)
    (root / "STSNet_whole_norm_u_v_os" / "s1_s1_ne_01 .png").unlink()
    with pytest.raises(GeomerError) as caught:
        read_dataset("megc2019-flow", root)
    lines = str(caught.value).splitlines()
    assert len(lines) == 4
    assert "row 4: flow image" in lines[0] and "s1_s1_ne_01 .png is missing" in lines[0]
    assert "row 7: " in lines[1] and "unknown label 'label 7'" in lines[1]
    assert "row 8: filename_o 'EP09\\n10' is not a plain name" in lines[2]
    assert "row 9: imagename '../combined_datasets_whole/sub01_EP02_01f.png' is not a plain name" in lines[3]
    shutil.rmtree(root / "combined_datasets_whole")
    with pytest.raises(GeomerError, match="combined_datasets_whole/ missing"):
        read_dataset("megc2019-flow", root)


def test_megc2019_flow_root_without_its_csv_names_each_csv_and_what_it_lacks(tmp_path):
    root = write_megc2019_flow(tmp_path / "flow")
    csv = next(root.glob("*.csv"))
    csv.write_text(csv.read_text().replace("imagename", "image"))
    (root / "notes.csv").write_bytes(b"\xff\xfe\x00 not text")
    with pytest.raises(GeomerError) as caught:
        read_dataset("megc2019-flow", root)
    message = str(caught.value)
    assert len(message.splitlines()) == 1 and "not a megc2019-flow root" in message
    assert f"{csv.name}: lacks imagename" in message and "notes.csv unreadable" in message


def test_synth_root_read_with_its_layout(tmp_path):
    root = write_casme2(tmp_path / "syn")
    truth = {"layout": "casme2", "classes": ["happiness", "disgust", "surprise", "repression",
                                            "others", "fear"]}
    (root / "ground_truth.json").write_text(json.dumps(truth))
    index = read_dataset("synth", root)
    assert index.name == "synth"
    assert index.classes == tuple(truth["classes"])
    assert len(index.samples) == len(CASME2_ROWS)  # fear is a class here
    assert index.samples[0].subject_key == "casme2/sub01"
    truth["dataset"] = "synth"
    (root / "ground_truth.json").write_text(json.dumps(truth))
    assert read_dataset("synth", root).samples[0].key == "synth/sub01/EP02_01f"
    (root / "ground_truth.json").write_bytes(b"\xff" + json.dumps(truth).encode())  # not UTF-8
    with pytest.raises(GeomerError, match="ground_truth.json: cannot read .*utf-8"):
        read_dataset("synth", root)
    (root / "ground_truth.json").unlink()
    with pytest.raises(GeomerError, match="ground_truth.json is missing"):
        read_dataset("synth", root)


def test_casme3_bad_rows(tmp_path):
    from data_layouts import CASME3_ROWS

    rows = CASME3_ROWS + [
        ("spNO.1", "a", "010", 12, 16, "", 3, "surprise"),  # same subject, file and onset (010 = 10)
        ("spNO.2", "c", 6, 5, 8, "", 1, "anger"),          # onset > apex
        ("spNO.9", "a", 1, 2, 3, "", 1, "anger"),          # no frames folder
        ("spNO.2", "c", 3, 4, 8, "", 1, "bored"),          # unknown label (and a duplicate)
    ]
    root = write_casme3(tmp_path / "c3")
    import pandas as pd

    pd.DataFrame(rows, columns=["Subject", "Filename", "Onset", "Apex", "Offset", "AU",
                                "Objective class", "emotion"]).to_excel(
        root / "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx", index=False)
    with pytest.raises(GeomerError) as caught:
        read_dataset("casme3", root)
    lines = str(caught.value).splitlines()
    assert [line.split(": row ")[1].split(":")[0] for line in lines] == ["7", "8", "9", "10"]
    assert "duplicated clip id 'a_10' of casme3/spNO.1 (first at row 2)" in lines[0]
    assert "onset 6 > apex 5" in lines[1]
    assert "spNO.9/a/color is missing" in lines[2]
    assert "unknown label 'bored'" in lines[3] and "duplicated clip id 'c_3'" in lines[3]


def test_frames_are_ordered_by_the_number_in_their_names(tmp_path):
    from geomer.data.frames import frame_number_of, index_frames

    write_frames(tmp_path, [10, 9, 100, 1], lambda n: f"reg_img{n}.jpg")
    (tmp_path / "notes.txt").write_text("not a frame")
    # hidden files (a Mac's "._" metadata beside copied frames) are not frames, as for the tracker
    (tmp_path / "._reg_img10.jpg").write_bytes(b"\0" * 4096)
    (tmp_path / ".reg_img11.jpg").write_bytes(b"\0" * 4096)
    assert list(index_frames(tmp_path)) == [1, 9, 10, 100]
    assert index_frames(tmp_path)[10].name == "reg_img10.jpg"
    assert frame_number_of(tmp_path / "006_05562.jpg") == 5562
    assert frame_number_of(tmp_path / "image0106005.bmp") == 106005


def test_megc2019_flow_keys_agree_with_megc2019(tmp_path):
    """The shared CSV writes SMIC subjects and clips zero-padded (s01, s01_ne_01); keys follow the
    HS folders, as in megc2019 and its shipped list."""
    from geomer.data.megc2019 import composite_clips

    rows = [("smic", "s01", "s01_ne_01", 0, "s01_s1_ne_01.jpg"),
            ("casme2", "sub01", "EP02_01f", 1, "sub01_EP02_01f.jpg"),
            ("samm", "006", "006_1_2", 0, "006_006_1_2.jpg")]
    index = read_dataset("megc2019-flow", write_megc2019_flow(tmp_path / "flow", rows=rows))
    assert [s.key for s in index.samples] == ["smic/s1/s1_ne_01", "casme2/sub01/EP02_01f", "samm/006/006_1_2"]
    assert all(composite_clips()[s.key] == s.label for s in index.samples)
    assert index.samples[0].extra["flow_image"].name == "s01_s01_ne_01 .png"


def test_megc2019_flow_missing_apex_image_is_reported_on_its_row(tmp_path):
    root = write_megc2019_flow(tmp_path / "flow")
    (root / "combined_datasets_whole" / "006_006_1_2.png").unlink()  # the 4th data row's crop
    with pytest.raises(GeomerError) as caught:
        read_dataset("megc2019-flow", root)
    (line,) = str(caught.value).splitlines()
    csv = root / "combined_3_class2_for_optical_flow.csv"
    assert line.startswith(f"{csv}: row 5: ")
    assert f"apex image {root / 'combined_datasets_whole' / '006_006_1_2.png'} is missing" in line
    assert "flow image" not in line
    index = read_dataset("megc2019-flow", root, skip_bad=True)
    assert "samm/006/006_1_2" not in {s.key for s in index.samples} and len(index.samples) == 4


def test_megc2019_flow_finds_images_resaved_in_another_format(tmp_path):
    # another preprocessing of the same clips: crops re-saved as JPEG, a flow image as BMP without
    # the space, while the CSV still names the distributed files
    root = write_megc2019_flow(tmp_path / "flow")
    crops, flows = root / "combined_datasets_whole", root / "STSNet_whole_norm_u_v_os"
    (crops / "sub01_EP02_01f.png").rename(crops / "sub01_EP02_01f.jpg")
    (flows / "sub01_EP02_01f .png").rename(flows / "sub01_EP02_01f.bmp")
    first = read_dataset("megc2019-flow", root).samples[0]
    assert first.extra["apex_image"] == crops / "sub01_EP02_01f.jpg"
    assert first.extra["flow_image"] == flows / "sub01_EP02_01f.bmp"
    # two candidates: which one the row means is unknown, so it is reported missing on its row
    shutil.copy(crops / "sub01_EP02_01f.jpg", crops / "sub01_EP02_01f.tif")
    with pytest.raises(GeomerError, match=r"row 2: apex image .*sub01_EP02_01f\.png is missing"):
        read_dataset("megc2019-flow", root)


def test_megc2019_flow_reads_labels_written_as_class_names(tmp_path):
    named = {0: "Negative", 1: "positive", 2: "SURPRISE"}
    rows = [(d, sub, clip, named[label], image) for d, sub, clip, label, image in FLOW_ROWS]
    index = read_dataset("megc2019-flow", write_megc2019_flow(tmp_path / "flow", rows=rows))
    assert [s.label for s in index.samples] == ["positive", "negative", "negative", "negative", "surprise"]


def test_a_ragged_csv_sheet_is_one_line_naming_it(tmp_path):
    from geomer.data.sheets import read_table

    sheet = tmp_path / "labels.csv"
    sheet.write_text("Subject,Filename\n01,EP01\n01,EP02,1,2,44\n")  # a row with more fields
    with pytest.raises(GeomerError) as caught:
        read_table(sheet, {"subject": ("Subject",), "filename": ("Filename",)}, key_column="filename")
    message = str(caught.value)
    assert message.startswith(f"{sheet}: cannot read the label sheet (") and "\n" not in message


def test_megc2019_flow_label_of_many_digits_is_an_unknown_label_on_its_row(tmp_path):
    rows = [("casme2", "sub01", "EP02_01f", "9" * 5000, "sub01_EP02_01f.jpg")]  # beyond int()'s 4300 digits
    root = write_megc2019_flow(tmp_path / "flow", rows=rows)
    with pytest.raises(GeomerError) as caught:
        read_dataset("megc2019-flow", root)
    (line,) = str(caught.value).splitlines()
    assert line.startswith(f"{root / 'combined_3_class2_for_optical_flow.csv'}: row 2: ") and "label 999" in line
