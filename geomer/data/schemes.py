"""Class schemes: how the emotion labels written in a dataset become the classes of an experiment.

A scheme maps a normalised raw label (lower case, trimmed, synonyms folded: "Happiness " →
"happiness", "happy" → "happiness", "sad" → "sadness") to a class name, or to ``None`` when the
scheme deliberately leaves that label out (CASME II "others" in the composite). A label the scheme
does not know at all is a bad row.

| scheme | classes | raw labels mapped (excluded) |
|---|---|---|
| ``composite-3`` (MEGC 2019) | negative, positive, surprise | negative ← anger, contempt, disgust, fear, repression, sadness, negative; positive ← happiness, positive; surprise ← surprise (others/other excluded) |
| ``casme2-5`` | happiness, surprise, disgust, repression, others | identity (fear, sadness excluded, as in the literature's 5-class CASME II) |
| ``samm-5`` | happiness, surprise, anger, contempt, other | identity, "others" → other (disgust, fear, sadness excluded, as in the 136-clip SAMM 5-class) |
| ``casme3-7`` | anger, disgust, fear, happiness, sadness, surprise, others | identity |
| ``casme3-4`` | negative, positive, surprise, others | negative ← anger, disgust, fear, sadness, contempt; positive ← happiness; surprise; others |
| ``casme3-3`` | negative, positive, surprise | as casme3-4, others excluded |
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from geomer.errors import GeomerError
from landmarks.registry import Registry

# Spellings seen in the sheets, folded onto one name per emotion.
_SYNONYMS = {
    "happy": "happiness",
    "happines": "happiness",
    "sad": "sadness",
    "angry": "anger",
    "surprised": "surprise",
    "suprise": "surprise",
    "disgusted": "disgust",
    "fearful": "fear",
    "repressed": "repression",
    "pos": "positive",
    "neg": "negative",
    "sur": "surprise",
}


def normalise_label(value: object) -> str:
    """Lower-case, trimmed, synonym-folded label ("Happiness " → "happiness"); "" for blanks."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    text = " ".join(str(value).strip().lower().split())
    return _SYNONYMS.get(text, text)


class UnknownLabel(ValueError):
    """A label the scheme does not know (neither a class nor deliberately excluded)."""


@dataclass(frozen=True)
class ClassScheme:
    """A named mapping from normalised raw labels to classes.

    Attributes:
        name: "composite-3", "casme2-5", ...
        classes: class names in index order.
        mapping: normalised raw label → class name, or None for labels the scheme leaves out.
    """

    name: str
    classes: tuple[str, ...]
    mapping: dict[str, str | None]

    def classify(self, raw: object) -> str | None:
        """The class of a raw label, None when the scheme excludes it; ``UnknownLabel`` otherwise."""
        label = normalise_label(raw)
        if not label:
            raise UnknownLabel(f"empty label for scheme {self.name}")
        if label not in self.mapping:
            known = ", ".join(sorted(k for k in self.mapping))
            raise UnknownLabel(f"unknown label {raw!r} for scheme {self.name} (known: {known})")
        return self.mapping[label]

    def index(self, class_name: str) -> int:
        return self.classes.index(class_name)


def _identity(name: str, classes: tuple[str, ...], extra: dict[str, str | None]) -> ClassScheme:
    mapping: dict[str, str | None] = {c: c for c in classes}
    mapping.update(extra)
    return ClassScheme(name, classes, mapping)


_NEGATIVE = ("anger", "contempt", "disgust", "fear", "repression", "sadness", "negative")

SCHEMES: Registry[ClassScheme] = Registry("class scheme", GeomerError, {
    "composite-3": ClassScheme(
        "composite-3",
        ("negative", "positive", "surprise"),
        {
            **{label: "negative" for label in _NEGATIVE},
            "happiness": "positive",
            "positive": "positive",
            "surprise": "surprise",
            "others": None,
            "other": None,
        },
    ),
    "casme2-5": _identity(
        "casme2-5",
        ("happiness", "surprise", "disgust", "repression", "others"),
        {"other": "others", "fear": None, "sadness": None},
    ),
    "samm-5": _identity(
        "samm-5",
        ("happiness", "surprise", "anger", "contempt", "other"),
        {"others": "other", "disgust": None, "fear": None, "sadness": None},
    ),
    "casme3-7": _identity(
        "casme3-7",
        ("anger", "disgust", "fear", "happiness", "sadness", "surprise", "others"),
        {"other": "others"},
    ),
    "casme3-4": ClassScheme(
        "casme3-4",
        ("negative", "positive", "surprise", "others"),
        {
            **{label: "negative" for label in ("anger", "disgust", "fear", "sadness", "contempt")},
            "happiness": "positive",
            "surprise": "surprise",
            "others": "others",
            "other": "others",
        },
    ),
    "casme3-3": ClassScheme(
        "casme3-3",
        ("negative", "positive", "surprise"),
        {
            **{label: "negative" for label in ("anger", "disgust", "fear", "sadness", "contempt")},
            "happiness": "positive",
            "surprise": "surprise",
            "others": None,
            "other": None,
        },
    ),
})


def identity_scheme(classes: tuple[str, ...] | list[str], name: str = "identity") -> ClassScheme:
    """A scheme whose classes are exactly the given (normalised) labels, e.g. a synthetic set's."""
    classes = tuple(normalise_label(c) for c in classes)
    return _identity(name, classes, {})


def get_scheme(scheme: str | ClassScheme) -> ClassScheme:
    """Look a scheme up by name (a :class:`ClassScheme` passes through)."""
    if isinstance(scheme, ClassScheme):
        return scheme
    return SCHEMES[scheme]

