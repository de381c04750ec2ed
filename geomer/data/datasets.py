"""The dataset registry: names → reader modules, and :func:`read_dataset`.

Every reader module ``geomer.data.<module>`` has ``NAME``, ``DEFAULT_SCHEME``, ``LAYOUT`` (one
line describing the expected files) and ``read(root, scheme, skip_bad, dataset) -> DatasetIndex``.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

from geomer.data.megc2019 import is_part_mapping
from geomer.data.sample import DatasetIndex
from geomer.data.schemes import SCHEMES, ClassScheme, get_scheme
from geomer.data.sheets import SampleCollector
from geomer.errors import GeomerError
from landmarks.registry import Registry

# Dataset name → its reader module (imported when first read).
_READERS: Registry[str] = Registry("dataset", GeomerError, {
    "casme2": "geomer.data.casme2",
    "samm": "geomer.data.samm",
    "smic": "geomer.data.smic",
    "casme3": "geomer.data.casme3",
    "megc2019": "geomer.data.megc2019",
    "megc2019-flow": "geomer.data.megc2019_flow",
    "synth": "geomer.data.synth_reader",
})


def list_datasets() -> tuple[str, ...]:
    """The dataset names :func:`read_dataset` knows."""
    return _READERS.names()


def reader(name: str) -> ModuleType:
    """The reader module of a dataset name; GeomerError listing the known names otherwise."""
    return importlib.import_module(_READERS[name])


def describe_datasets() -> list[tuple[str, str, str]]:
    """(name, default class scheme, expected layout) for every dataset."""
    rows = []
    for name in _READERS:
        module = reader(name)
        rows.append((name, module.DEFAULT_SCHEME, module.LAYOUT))
    return rows


def check_scheme(name: str, scheme: str | ClassScheme | None) -> None:
    """One-line GeomerError when dataset ``name`` cannot take the class scheme ``scheme`` by name
    (neither its default nor a registered scheme): refused before any work, such as rendering
    the standard synthetic dataset. None is the dataset's default."""
    module = reader(name)
    if scheme is None or isinstance(scheme, ClassScheme) or scheme == module.DEFAULT_SCHEME or scheme in SCHEMES:
        return
    known = ", ".join((module.DEFAULT_SCHEME + " (the default)", *(s for s in SCHEMES.names() if s != module.DEFAULT_SCHEME)))
    raise GeomerError(f"unknown class scheme {scheme!r} for dataset {name}; known: {known}")


def read_dataset(
    name: str,
    root: str | Path | dict,
    scheme: str | ClassScheme | None = None,
    skip_bad: bool = False,
) -> DatasetIndex:
    """Read dataset ``name`` at ``root`` into a validated :class:`DatasetIndex`.

    Args:
        name: one of :func:`list_datasets`.
        root: the dataset's root folder. For ``megc2019`` also a mapping (or a string
            "casme2=PATH,samm=PATH,smic=PATH") naming each part's root explicitly.
        scheme: a class-scheme name from :mod:`geomer.data.schemes` (or a ClassScheme);
            None → the dataset's default.
        skip_bad: leave bad rows out (listed in ``DatasetIndex.skipped``) instead of raising one
            GeomerError that lists them all.
    """
    module = reader(name)
    if not isinstance(root, dict) and not (name == "megc2019" and is_part_mapping(root)):
        root = Path(root).expanduser()
        if not root.exists():
            raise GeomerError(f"{root}: dataset root does not exist")
    scheme = scheme if scheme is not None else module.DEFAULT_SCHEME
    if hasattr(module, "read"):  # composites and layouts that pick their parts themselves
        return module.read(root, scheme, skip_bad)
    # a single dataset: its module only knows how to walk its own layout
    collector = SampleCollector(module.NAME, get_scheme(scheme), skip_bad, Path(root))
    module.collect(root, collector, module.NAME)
    return collector.finish()
