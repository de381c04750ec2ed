"""Parsing the action-unit strings of the label sheets.

Real sheets write AUs in many ways: ``4+7+L10``, ``R12+L14``, ``AU4+AU7``, ``12?`` (uncertain),
``L1 + L2``, ``4B`` (SAMM intensity letter), blanks. :func:`parse_aus` turns them into a tuple of
canonical tokens: an optional side letter (L, R; T/B for top/bottom) followed by the AU number,
e.g. ``("4", "7", "L10")``. Uncertainty marks and intensity letters are dropped because no model
uses them; an unreadable token raises ``ValueError`` so the reader can report the row.
"""

from __future__ import annotations

import math
import re

_TOKEN = re.compile(
    r"^(?:AU)?\s*(?P<side>[LRTB])?\s*(?:AU)?\s*(?P<number>\d+)\s*(?P<intensity>[A-E])?\s*"
    r"(?:\(\s*\?\s*\)|\?)?$",
    re.IGNORECASE,
)
_SEPARATORS = re.compile(r"[+,;/&]|\s{2,}|\band\b", re.IGNORECASE)


def parse_aus(value: object) -> tuple[str, ...]:
    """Parse one sheet cell of action units into canonical tokens ("L10", "4", ...).

    Blank cells (None, NaN, "", "/", "-", "none") give ``()``. Raises ``ValueError`` naming the
    token it cannot read.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ()
    if isinstance(value, (int, float)):
        value = str(int(value)) if float(value).is_integer() else str(value)
    text = str(value).strip()
    if text.lower() in ("", "/", "-", "none", "nan", "n/a"):
        return ()
    tokens: list[str] = []
    for part in _SEPARATORS.split(text):
        part = part.strip()
        if not part:
            continue
        # "AU4 AU7" (single spaces between full tokens) is split here too.
        pieces = part.split() if re.fullmatch(r"(?:AU\d+\S*\s+)+AU\d+\S*", part, re.I) else [part]
        for piece in pieces:
            match = _TOKEN.match(piece)
            if match is None:
                raise ValueError(f"cannot read action unit {piece!r} in {text!r}")
            side = (match["side"] or "").upper()
            token = f"{side}{int(match['number'])}"
            if token not in tokens:
                tokens.append(token)
    return tuple(tokens)


def au_numbers(aus: tuple[str, ...]) -> tuple[int, ...]:
    """The AU numbers without side letters, sorted and unique: ("L10", "4") → (4, 10)."""
    return tuple(sorted({int(re.sub(r"\D", "", token)) for token in aus}))
