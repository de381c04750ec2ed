"""Where geomer keeps what it makes once and reuses (synthetic datasets, feature caches).

(The check that an output folder can be written before any work is done is
``landmarks.files.check_output_folder``, shared by both packages.)"""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """The cache folder: ``$GEOMER_CACHE`` if set, else ``$XDG_CACHE_HOME/geomer`` (``~/.cache``)."""
    explicit = os.environ.get("GEOMER_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "geomer"
