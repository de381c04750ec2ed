"""Reader of the widely shared preprocessed MEGC 2019 composite (apex crops + flow images).

Layout::

    ROOT/<any>.csv                      columns dataset, sub, filename_o, label, imagename
                                        (label 0 negative, 1 positive, 2 surprise, or the name)
    ROOT/[datasets/]combined_datasets_whole/<imagename>          224×224 apex face crops
    ROOT/[datasets/]STSNet_whole_norm_u_v_os/<sub>_<filename_o> .png
                                        28×28 onset→apex flow: channels u, v, optical strain
                                        (note the space before ".png", as distributed)

A copy whose images were re-saved in another format (the crops as PNG, a flow image without the
space) is read as it is: a named file that is missing is looked for under its stem with any image
suffix (:func:`image_file`).

There is no frame sequence: ``Sample.source`` is the apex image, ``Sample.extra`` holds
"apex_image" and "flow_image", onset is 0 and apex/offset are None. Subject keys follow the raw
readers ("casme2/sub01", "samm/006", "smic/s1") so they agree with ``megc2019``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from geomer.data import casme2, samm, smic
from geomer.data.sample import DatasetIndex
from geomer.data.schemes import ClassScheme, get_scheme
from geomer.data.sheets import SampleCollector, cell_text, plain_name_problem, read_table
from geomer.errors import GeomerError
from landmarks.io import IMAGE_SUFFIXES

NAME = "megc2019-flow"
DEFAULT_SCHEME = "composite-3"
LAYOUT = (
    "*.csv (dataset, sub, filename_o, label, imagename) + [datasets/]combined_datasets_whole/ "
    "+ [datasets/]STSNet_whole_norm_u_v_os/<sub>_<filename_o> .png"
)
APEX_FOLDER = "combined_datasets_whole"
FLOW_FOLDER = "STSNet_whole_norm_u_v_os"
LABEL_NAMES = ("negative", "positive", "surprise")
COLUMNS = {
    "dataset": ("dataset",),
    "sub": ("sub", "subject"),
    "filename_o": ("filename_o",),
    "label": ("label",),
    "imagename": ("imagename",),
}
_DATASET_NAMES = {
    "casme2": "casme2", "casmeii": "casme2", "casme": "casme2",
    "samm": "samm",
    "smic": "smic", "smichs": "smic",
}


def find_csv(root: Path) -> Path:
    """The one CSV at the root whose header has the layout's columns; when none has them, the
    error names each CSV present and what it lacks (or why it could not be read)."""
    wanted = {"dataset": "dataset", "sub": "sub", "filenameo": "filename_o", "label": "label",
              "imagename": "imagename"}
    found, rejected = [], []
    for path in sorted(Path(root).glob("*.csv")):
        try:
            header = pd.read_csv(path, nrows=0).columns
        except Exception as error:  # not a readable CSV: not ours, but say so if none is
            rejected.append(f"{path.name} unreadable: {str(error).splitlines()[0] if str(error) else type(error).__name__}")
            continue
        have = {re.sub(r"[^0-9a-z]", "", str(c).lower()) for c in header}
        missing = [name for key, name in wanted.items() if key not in have]
        if missing:
            rejected.append(f"{path.name}: lacks {', '.join(missing)}")
        else:
            found.append(path)
    if not found:
        raise GeomerError(
            f"{root}: not a megc2019-flow root: no CSV with columns dataset, sub, filename_o, "
            "label, imagename" + (f" ({'; '.join(rejected)})" if rejected else "")
        )
    if len(found) > 1:
        raise GeomerError(f"{root}: several megc2019-flow CSVs ({', '.join(p.name for p in found)}); keep one")
    return found[0]


def image_folders(root: Path) -> tuple[Path, Path]:
    """(apex crops folder, flow images folder), beside the CSV or under datasets/."""
    for base in (root, root / "datasets"):
        if (base / APEX_FOLDER).is_dir() and (base / FLOW_FOLDER).is_dir():
            return base / APEX_FOLDER, base / FLOW_FOLDER
    missing = [f for f in (APEX_FOLDER, FLOW_FOLDER) if not (root / f).is_dir() and not (root / "datasets" / f).is_dir()]
    raise GeomerError(
        f"{root}: not a megc2019-flow root: folder {' and '.join(m + '/' for m in missing)} missing "
        "(looked beside the CSV and under datasets/)"
    )


def image_file(folder: Path, *names: str) -> Path:
    """The image a row names: the first of ``names`` that is a file in ``folder``, else the one
    file with a name's stem and another image suffix (a copy re-saved in another format, e.g.
    the crops as PNG while the CSV still says ``.jpg``), else ``folder / names[0]`` (reported
    missing by the caller)."""
    for name in names:
        if (folder / name).is_file():
            return folder / name
    for name in names:
        stem = Path(name).stem
        found = [folder / f"{stem}{suffix}" for suffix in IMAGE_SUFFIXES if (folder / f"{stem}{suffix}").is_file()]
        if len(found) == 1:
            return found[0]
    return folder / names[0]


def global_subject(dataset: str, sub: str) -> str:
    """The subject id as the raw readers write it (sub01, 006, s1)."""
    if dataset == "casme2":
        return casme2.subject_folder_name(sub)
    if dataset == "samm":
        return samm.subject_folder_name(sub)
    digits = re.findall(r"\d+", sub)
    if not digits:
        raise ValueError(f"subject {sub!r} has no number")
    return f"s{int(digits[-1])}"


def collect(
    root: Path,
    collector: SampleCollector,
    dataset: str | None = None,
    label_names: tuple[str, ...] = LABEL_NAMES,
) -> None:
    """Add every CSV row to ``collector``; ``dataset`` overrides the CSV's dataset column (synth).

    ``label_names[i]`` is the raw label of integer label i.
    """
    root = Path(root)
    csv = find_csv(root)
    apex_folder, flow_folder = image_folders(root)
    table = read_table(csv, COLUMNS, key_column="imagename")
    for record, row in zip(table.rows, table.row_numbers):
        raw_dataset = re.sub(r"[^0-9a-z]", "", cell_text(record["dataset"]).lower())
        part = dataset or _DATASET_NAMES.get(raw_dataset)
        if part is None:
            collector.reject(csv, row, f"unknown dataset {cell_text(record['dataset'])!r}")
            continue
        sub = cell_text(record["sub"])
        filename = cell_text(record["filename_o"])
        # each names a file (the flow image's is "<sub>_<filename_o> .png"): a path would read
        # another subject's images, a line break in a quoted cell split the one-line error
        names = {column: cell_text(record[column]) for column in ("sub", "filename_o", "imagename")}
        names["flow image name"] = f"{names['sub']}_{names['filename_o']} .png"  # two cells: their length adds up
        problem = next(filter(None, (plain_name_problem(name, what) for what, name in names.items())), "")
        if problem:
            collector.reject(csv, row, problem)
            continue
        try:
            subject = global_subject(part, sub) if dataset is None else sub
        except ValueError as error:
            collector.reject(csv, row, str(error))
            continue
        label_text = cell_text(record["label"])
        if re.fullmatch(r"\d{1,9}", label_text) and int(label_text) < len(label_names):
            label = label_names[int(label_text)]
        elif label_text.lower() in label_names:  # a copy that writes the class name
            label = label_text.lower()
        else:
            label = f"label {label_text if len(label_text) <= 20 else label_text[:20] + '...'}"
        # the shared CSV writes SMIC clips "s01_ne_01"; the HS folders (and megc2019) "s1_ne_01"
        clip = smic.clip_id(filename) if part == "smic" and dataset is None else filename
        apex_image = image_file(apex_folder, cell_text(record["imagename"]))
        # as distributed, with a space before ".png"; re-saved copies lose the space
        flow_image = image_file(flow_folder, f"{sub}_{filename} .png", f"{sub}_{filename}.png")
        problems = []
        if not apex_image.is_file():
            problems.append(f"apex image {apex_image} is missing")
        if not flow_image.is_file():
            problems.append(f"flow image {flow_image} is missing")
        collector.add(
            file=csv,
            row=row,
            dataset=part,
            subject=subject,
            clip=clip,
            label=label,
            onset=0,
            apex=None,
            offset=None,
            folder=None,
            required_frames=("onset",),
            check_frames=False,
            problems=tuple(problems),
            source=apex_image,
            extra={"apex_image": apex_image, "flow_image": flow_image},
        )


def read(
    root: Path,
    scheme: str | ClassScheme = DEFAULT_SCHEME,
    skip_bad: bool = False,
    dataset: str | None = None,
    label_names: tuple[str, ...] = LABEL_NAMES,
) -> DatasetIndex:
    """Read a megc2019-flow root into a :class:`DatasetIndex` (see the module docstring)."""
    collector = SampleCollector(NAME, get_scheme(scheme), skip_bad, Path(root))
    collect(root, collector, dataset, label_names)
    return collector.finish()
