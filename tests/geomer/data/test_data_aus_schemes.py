from __future__ import annotations

import math

import pytest

from geomer.data.aus import au_numbers, parse_aus
from geomer.data.schemes import SCHEMES, UnknownLabel, get_scheme, identity_scheme, normalise_label
from geomer.errors import GeomerError


@pytest.mark.parametrize(
    "text,expected",
    [
        ("R12+L14", ("R12", "L14")),
        ("4+7+L10", ("4", "7", "L10")),
        ("12?", ("12",)),
        ("AU4+AU7", ("4", "7")),
        ("AU4 AU7", ("4", "7")),
        ("L1 + L2", ("L1", "L2")),
        ("4B+R12C", ("4", "R12")),
        ("R2(?)", ("R2",)),
        ("12+12", ("12",)),
        (12.0, ("12",)),
        (4, ("4",)),
        ("", ()),
        (None, ()),
        (math.nan, ()),
        ("/", ()),
    ],
)
def test_parse_aus(text, expected):
    assert parse_aus(text) == expected


def test_unreadable_au_is_an_error():
    with pytest.raises(ValueError, match="cannot read action unit 'smile'"):
        parse_aus("12+smile")


def test_au_numbers():
    assert au_numbers(("L10", "4", "R4")) == (4, 10)


def test_label_normalisation():
    assert normalise_label("Happiness") == normalise_label("happiness ") == "happiness"
    assert normalise_label("happy") == "happiness"
    assert normalise_label("Repression") == "repression"
    assert normalise_label(" Others") == "others"


def test_composite_scheme():
    scheme = get_scheme("composite-3")
    assert scheme.classes == ("negative", "positive", "surprise")
    for raw in ("Anger", "contempt", "Disgust", "fear", "Repression", "sadness", "negative"):
        assert scheme.classify(raw) == "negative"
    assert scheme.classify("Happiness") == scheme.classify("positive") == "positive"
    assert scheme.classify("surprise") == "surprise"
    assert scheme.classify("Others") is None and scheme.classify("other") is None
    with pytest.raises(UnknownLabel, match="unknown label 'joy'"):
        scheme.classify("joy")


def test_dataset_schemes():
    assert SCHEMES["casme2-5"].classes == ("happiness", "surprise", "disgust", "repression", "others")
    assert SCHEMES["casme2-5"].classify("Others") == "others"
    assert SCHEMES["casme2-5"].classify("sadness") is None
    assert SCHEMES["samm-5"].classes == ("happiness", "surprise", "anger", "contempt", "other")
    assert SCHEMES["samm-5"].classify("Other") == "other"
    assert len(SCHEMES["casme3-7"].classes) == 7
    assert SCHEMES["casme3-4"].classify("sad") == "negative"
    assert SCHEMES["casme3-3"].classify("others") is None
    assert SCHEMES["casme3-4"].index("others") == 3
    with pytest.raises(GeomerError, match="unknown class scheme"):
        get_scheme("nope")


def test_identity_scheme():
    scheme = identity_scheme(["Happiness", "surprise"])
    assert scheme.classes == ("happiness", "surprise")
    assert scheme.classify("happy") == "happiness"
    with pytest.raises(UnknownLabel):
        scheme.classify("disgust")
