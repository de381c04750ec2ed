"""MEGC 2019 composite reader: CASME II + SAMM + SMIC-HS under one 3-class scheme.

Layout: ROOT holds the three datasets' roots as subfolders, named (case-insensitively) ``CASME2``
(or ``CASME_II``, ``CASMEII``), ``SAMM`` and ``SMIC``; each is read by its own reader
(:mod:`geomer.data.casme2`, :mod:`geomer.data.samm`, :mod:`geomer.data.smic`). The parts' roots can
also be given explicitly: ``read(root={"casme2": P1, "samm": P2, "smic": P3})`` or, from the
command line, ``--root casme2=P1,samm=P2,smic=P3``.

Which clips and classes (``scheme``):

- ``megc2019`` (the default): exactly the published MEGC 2019 composite — 442 clips of 68
  subjects; casme2 88/32/25, samm 92/26/15, smic 70/51/43 negative/positive/surprise — from the
  shipped list ``megc2019_composite.csv`` (dataset, subject, clip, label: clip ids and 3-class
  labels only, as published with the challenge). The label sheets' versions differ (the 2019
  CASME II coding sheet gives 95/32/28 by the rules below, and 69 subjects), so the rules alone
  cannot reproduce the composite; the list fixes membership and classes, the parts' sheets and
  folders supply the frames and onset/apex/offset. A listed clip that is not found is a bad row
  of the list; clips not listed are recorded in ``excluded``.
- ``composite-3``: the MEGC 2019 rules applied to whatever the sheets say: negative ← anger,
  contempt, disgust, fear, repression, sadness; positive ← happiness; surprise; CASME II
  "others" and SAMM "other" excluded.

Subject keys stay per dataset ("casme2/sub01", "samm/006", "smic/s1"), so subjects never collide;
bad rows of all three parts are reported together.
"""

from __future__ import annotations

import csv
from dataclasses import replace
from functools import lru_cache
from pathlib import Path

from geomer.data import casme2, samm, smic
from geomer.data.sample import DatasetIndex
from geomer.data.schemes import ClassScheme, get_scheme
from geomer.data.sheets import SampleCollector
from geomer.errors import GeomerError

NAME = "megc2019"
#: The published composite (the shipped clip list); "composite-3" applies the rules to the sheets.
DEFAULT_SCHEME = "megc2019"
COMPOSITE_LIST = Path(__file__).with_name("megc2019_composite.csv")
LAYOUT = "ROOT/CASME2 + ROOT/SAMM + ROOT/SMIC (each in its own layout), or casme2=P,samm=P,smic=P"
PARTS = {"casme2": casme2, "samm": samm, "smic": smic}
_FOLDER_NAMES = {
    "casme2": ("casme2", "casme_ii", "casmeii", "casme ii", "casme2_raw"),
    "samm": ("samm",),
    "smic": ("smic", "smic-hs", "smic_hs", "smic_all_raw"),
}


def is_part_mapping(root: str | Path | dict) -> bool:
    """True for a mapping of part roots or a string "casme2=P1,…"; a folder whose path holds
    "=" ("runs/lr=1/MEGC") is a folder."""
    return isinstance(root, dict) or ("=" in str(root) and not Path(str(root)).expanduser().is_dir())


def parse_roots(root: str | Path | dict) -> dict[str, Path]:
    """The three part roots from a folder, a mapping, or "casme2=P1,samm=P2,smic=P3"."""
    if is_part_mapping(root):
        pairs = root.items() if isinstance(root, dict) else (item.partition("=")[::2] for item in str(root).split(","))
        given = {}
        for name, path in pairs:
            name = str(name).strip().lower()
            if name in given:  # the last one would silently win
                raise GeomerError(f"megc2019: part {name} is given twice in {root}")
            if not str(path).strip():  # Path("") is the current folder
                raise GeomerError(f"megc2019: part {name} has no folder in {root}")
            given[name] = Path(str(path).strip()).expanduser()
    else:
        folder = Path(root)
        if not folder.is_dir():
            raise GeomerError(f"{folder}: dataset root is not a folder")
        children = {p.name.lower(): p for p in folder.iterdir() if p.is_dir()}
        given = {}
        for part, names in _FOLDER_NAMES.items():
            found = [children[n] for n in names if n in children]
            if found:
                given[part] = found[0]
    unknown = sorted(set(given) - set(PARTS))
    if unknown:
        raise GeomerError(f"megc2019: unknown part(s) {', '.join(unknown)} (parts: casme2, samm, smic)")
    missing = [p for p in PARTS if p not in given]
    if missing:
        names = ", ".join(f"{_FOLDER_NAMES[p][0].upper()}/" for p in missing)
        raise GeomerError(f"{root}: not a megc2019 root: part folder(s) {names} missing")
    for part, path in given.items():
        if not path.is_dir():
            raise GeomerError(f"{path}: megc2019 part {part} root is not a folder")
    return given


@lru_cache(maxsize=1)
def composite_clips() -> dict[str, str]:
    """The published composite: clip key ("casme2/sub01/EP02_01f") → class name, in list order."""
    with open(COMPOSITE_LIST, newline="") as file:
        return {f"{r['dataset']}/{r['subject']}/{r['clip']}": r["label"] for r in csv.DictReader(file)}


def read(
    root: str | Path | dict,
    scheme: str | ClassScheme = DEFAULT_SCHEME,
    skip_bad: bool = False,
    dataset: str = NAME,
) -> DatasetIndex:
    """Read the composite (see the module docstring); ``dataset`` is unused (parts keep theirs)."""
    roots = parse_roots(root)
    display_root = Path(roots["casme2"]).parent if is_part_mapping(root) else Path(root)
    if scheme == DEFAULT_SCHEME:
        classes = replace(get_scheme("composite-3"), name=DEFAULT_SCHEME)
        collector = SampleCollector(
            NAME, classes, skip_bad, display_root,
            selection=composite_clips(), selection_file=str(COMPOSITE_LIST),
        )
    else:
        collector = SampleCollector(NAME, get_scheme(scheme), skip_bad, display_root)
    for part, module in PARTS.items():
        module.collect(roots[part], collector, part)
    return collector.finish()
