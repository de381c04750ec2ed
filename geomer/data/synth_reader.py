"""Reader of a synthetic dataset written by ``geomer synth`` (:mod:`geomer.synth`).

Layout: any of the real layouts (casme2, samm, megc2019-flow, …) plus ``ROOT/ground_truth.json``
whose "layout" key names it. The dataset is read with that layout's reader; samples keep the
layout's dataset name (e.g. "casme2", subject keys "casme2/sub01") unless ground_truth.json has a
"dataset" key naming another dataset (for megc2019-flow the CSV names each clip's part). Classes: by default exactly the "classes" listed in ground_truth.json, in that
order (an identity scheme); a named scheme may be passed instead.
"""

from __future__ import annotations

import json
from pathlib import Path

from geomer.data.sample import DatasetIndex
from geomer.data.schemes import SCHEMES, ClassScheme, get_scheme, identity_scheme
from geomer.data.sheets import SampleCollector
from geomer.errors import GeomerError

NAME = "synth"
DEFAULT_SCHEME = "ground-truth"
LAYOUT = "ground_truth.json (its \"layout\" names the layout) + that layout's files (geomer synth)"
GROUND_TRUTH = "ground_truth.json"


def load_ground_truth(root: Path) -> dict:
    """ground_truth.json of a synthetic root, as a dict."""
    path = Path(root) / GROUND_TRUTH
    if not path.is_file():
        raise GeomerError(f"{root}: not a synth root: {GROUND_TRUTH} is missing")
    try:
        truth = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise GeomerError(f"{path}: cannot read ({error})") from None
    if not isinstance(truth, dict) or "layout" not in truth:
        raise GeomerError(f"{path}: no \"layout\" key naming the on-disk layout")
    return truth


def read(
    root: Path,
    scheme: str | ClassScheme = DEFAULT_SCHEME,
    skip_bad: bool = False,
    dataset: str | None = None,
) -> DatasetIndex:
    """Read a synthetic root with the reader its ground truth names."""
    from geomer.data.datasets import reader

    root = Path(root)
    truth = load_ground_truth(root)
    layout = str(truth["layout"])
    if layout in ("synth", "megc2019"):
        raise GeomerError(f"{root / GROUND_TRUTH}: layout {layout!r} cannot hold a synthetic dataset")
    module = reader(layout)
    if scheme == DEFAULT_SCHEME:
        if not truth.get("classes"):
            raise GeomerError(f"{root / GROUND_TRUTH}: no \"classes\" list")
        chosen = identity_scheme(truth["classes"], name="synth-ground-truth")
    elif isinstance(scheme, str) and scheme not in SCHEMES:
        known = ", ".join((DEFAULT_SCHEME + " (the default)", *SCHEMES.names()))
        raise GeomerError(f"unknown class scheme {scheme!r} for a synthetic dataset; known: {known}")
    else:
        chosen = get_scheme(scheme)
    collector = SampleCollector(NAME, chosen, skip_bad, root)
    # "dataset" equal to the layout name means "the layout's own naming" (for megc2019-flow the
    # CSV's dataset column names each clip's part, as in the real composite).
    name = dataset or truth.get("dataset")
    if name == layout:
        name = None
    if layout == "megc2019-flow":
        module.collect(root, collector, name)
    else:
        module.collect(root, collector, name or layout)
    return collector.finish()
