"""Parsing the action-unit strings of the label sheets.

Real sheets write AUs in many FACS notations: ``4+7+L10``, ``R12+L14``, ``AU4+AU7``, ``L1 + L2``,
``12?`` or ``R2(?)`` (uncertain), ``4B`` / ``43C`` (intensity letters A–E), ``(R6 or R12)+R15``
(alternatives), ``ref(7B)+43`` and ``ref(43)`` (SAMM's ``ref(...)`` notation), blanks.
:func:`parse_aus` keeps all of it in a tuple of canonical tokens, one per AU written:

========================  =====================  ==========================================
notation                  token                  meaning
========================  =====================  ==========================================
``4``, ``AU4``            ``"4"``                AU 4
``L10``, ``r12``          ``"L10"``, ``"R12"``   side prefix L, R, U, B or T kept (upper case)
``43C``                   ``"43C"``              intensity letter A–E kept
``12?``, ``R2(?)``        ``"12?"``, ``"R2?"``   marked uncertain in the sheet
``(R6 or R12)``           ``"R6|R12"``           one of the alternatives
``ref(7B)``               ``"ref(7B)"``          kept as written, contents canonical
anything else (``smile``) ``"?smile"``           an unknown part, recorded as uncertain
========================  =====================  ==========================================

No model reads AUs yet; nothing is dropped, so a sheet row is never refused for its AU cell.
:func:`au_numbers` gives the AU numbers of the readable tokens.
"""

from __future__ import annotations

import math
import re

_TOKEN = re.compile(
    r"^(?:AU)?\s*(?P<side>[LRUBT])?\s*(?:AU)?\s*(?P<number>\d+)\s*(?P<intensity>[A-E])?\s*"
    r"(?P<uncertain>\(\s*\?\s*\)|\?)?$",
    re.IGNORECASE,
)
_REFERENCE = re.compile(r"^ref\s*\((?P<inner>.*)\)$", re.IGNORECASE)
_ALTERNATIVES = re.compile(r"\s+or\s+|\|", re.IGNORECASE)
_BLANK = ("", "/", "-", "none", "nan", "n/a", "na")


def _split_top_level(text: str) -> list[str]:
    """Split on +, ',', ';', '&', '/' and ' and ' outside parentheses."""
    parts, depth, current = [], 0, ""
    index = 0
    while index < len(text):
        char = text[index]
        if char == "(":
            depth += 1
        elif char == ")":
            depth = max(0, depth - 1)
        if depth == 0:
            if char in "+,;&/":
                parts.append(current)
                current = ""
                index += 1
                continue
            match = re.match(r"\s+and\s+", text[index:], re.IGNORECASE)
            if match:
                parts.append(current)
                current = ""
                index += match.end()
                continue
        current += char
        index += 1
    parts.append(current)
    return [part.strip() for part in parts if part.strip()]


def _token(piece: str) -> str | None:
    match = _TOKEN.match(piece.strip())
    if match is None:
        return None
    side = (match["side"] or "").upper()
    intensity = (match["intensity"] or "").upper()
    return f"{side}{int(match['number'])}{intensity}{'?' if match['uncertain'] else ''}"


def _part(part: str) -> list[str]:
    """Canonical tokens of one top-level part of a cell."""
    reference = _REFERENCE.match(part)
    if reference:
        inner = parse_aus(reference["inner"])
        return [f"ref({'+'.join(inner)})"]
    text = part
    if text.startswith("(") and text.endswith(")"):
        text = text[1:-1].strip()
    if _ALTERNATIVES.search(text):
        options = [_token(option) for option in _ALTERNATIVES.split(text)]
        if all(options):
            return ["|".join(options)]
        return [f"?{part}"]
    # "AU4 AU7" (single spaces between full tokens) holds several AUs
    if re.fullmatch(r"(?:AU\d+\S*\s+)+AU\d+\S*", text, re.IGNORECASE):
        pieces = text.split()
    else:
        pieces = [text]
    tokens = [_token(piece) for piece in pieces]
    if all(tokens):
        return tokens
    return [f"?{' '.join(part.split())}"]


def parse_aus(value: object) -> tuple[str, ...]:
    """Parse one sheet cell of action units into canonical tokens (see the module docstring).

    Blank cells (None, NaN, "", "/", "-", "none") give ``()``. Never raises for the cell's
    contents: an unknown part is kept as an uncertain token ``"?<text>"``.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ()
    if isinstance(value, (int, float)):
        value = str(int(value)) if float(value).is_integer() else str(value)
    text = " ".join(str(value).split())
    if text.lower() in _BLANK:
        return ()
    tokens: list[str] = []
    for part in _split_top_level(text):
        for token in _part(part):
            if token not in tokens:
                tokens.append(token)
    return tuple(tokens)


def au_numbers(aus: tuple[str, ...]) -> tuple[int, ...]:
    """The AU numbers of the readable tokens (alternatives and ``ref(...)`` contents included,
    unknown parts left out), sorted and unique: ("L10", "4", "R6|R12") → (4, 6, 10, 12)."""
    numbers: set[int] = set()
    for token in aus:
        if token.startswith("?"):
            continue
        numbers.update(int(n) for n in re.findall(r"\d+", token))
    return tuple(sorted(numbers))
