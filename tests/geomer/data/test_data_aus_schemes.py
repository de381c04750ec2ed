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
        ("12?", ("12?",)),
        ("AU4+AU7", ("4", "7")),
        ("AU4 AU7", ("4", "7")),
        ("L1 + L2", ("L1", "L2")),
        ("4B+R12C", ("4B", "R12C")),
        ("R2(?)", ("R2?",)),
        ("12+12", ("12",)),
        (12.0, ("12",)),
        (4, ("4",)),
        ("", ()),
        (None, ()),
        (math.nan, ()),
        ("/", ()),
        ("-", ()),
        # notations of SAMM's v2 FACS codes and CASME II's coding sheet
        ("(R6 or R12)+R15", ("R6|R12", "R15")),
        ("ref(7B)+43", ("ref(7B)", "43")),
        ("ref(43)", ("ref(43)",)),
        ("43C", ("43C",)),
        ("U14+B7", ("U14", "B7")),
        ("r12 and l14", ("R12", "L14")),
        ("4+(L10 or R10)+ref(R12B?)", ("4", "L10|R10", "ref(R12B?)")),
    ],
)
def test_parse_aus(text, expected):
    assert parse_aus(text) == expected


def test_unknown_au_is_kept_as_uncertain():
    assert parse_aus("12+smile") == ("12", "?smile")
    assert parse_aus("(6 or grin)") == ("?(6 or grin)",)
    assert parse_aus("12+smile+4?+ref(43)")[1:3] == ("?smile", "4?")  # unknown and sheet-marked uncertain


def test_au_numbers():
    assert au_numbers(("L10", "4", "R4")) == (4, 10)
    assert au_numbers(parse_aus("(R6 or R12)+ref(7B)+43C+smile")) == (6, 7, 12, 43)


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
    for blank in (None, float("nan"), " "):  # an empty cell: said so, not "unknown label nan"
        with pytest.raises(UnknownLabel, match="^empty label for scheme"):
            scheme.classify(blank)


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


def test_samm5_excludes_disgust_fear_and_sadness():
    """samm-5 leaves disgust, fear and sadness out (None), it does not fold them into "other"."""
    scheme = SCHEMES["samm-5"]
    for raw in ("disgust", "Fear", "sadness", "sad"):
        assert scheme.classify(raw) is None, raw


def test_casme3_7_keeps_every_class():
    """casme3-7 is the identity on its seven classes: none is excluded or renamed."""
    scheme = SCHEMES["casme3-7"]
    assert scheme.classes == ("anger", "disgust", "fear", "happiness", "sadness", "surprise", "others")
    for name in scheme.classes:
        assert scheme.classify(name) == name
    assert scheme.classify("Other") == "others"


@pytest.mark.parametrize("name", ["casme3-4", "casme3-3"])
def test_casme3_negatives(name):
    """casme3-4 and casme3-3 fold anger, disgust, fear, sadness and contempt into "negative"."""
    scheme = SCHEMES[name]
    for raw in ("anger", "disgust", "fear", "sadness", "contempt"):
        assert scheme.classify(raw) == "negative", raw
    assert scheme.classify("happiness") == "positive"
    assert scheme.classify("surprise") == "surprise"
