"""Emotion classes as AU combinations: the class tables of the synthetic generator.

Each class lists AU combinations with sampling weights. The tables follow CASME II's AU→emotion
rules (Yan et al. 2014, Table 2) and the MEGC objective classes (Davison et al. 2018: I AU6/12,
II AU1+2/5/25, III AU4/7/23, IV AU9/10, V AU1/15/17), simplified so that every class keeps a
distinct component/direction signature — a model that reads the motion of the facial components
can separate them:

========== ============================================ ======================= ==================
class      combinations (weight)                        signature               objective class
========== ============================================ ======================= ==================
happiness  6+12 (.5), 12 (.25), 6+7+12 (.15), 6+12+25   mouth corners up/out,   I
           (.1)                                         lower lids up
surprise   1+2 (.5), 1+2+5 (.2), 1+2+25 (.2),           brows up                II
           1+2+5+25 (.1)
disgust    9 (.3), 10 (.3), 4+9 (.2), 7+10 (.2)         nose + upper lip up     IV
repression 15 (.15), 17 (.2), 15+17 (.25), 14 (.2),     corners down/in, chin   V (and III for 24)
           17+24 (.2)                                   and lower lip up
others     4 (.35), 4+7 (.4), 4+23 (.25)                brows down/together     III
========== ============================================ ======================= ==================

Deviation from CASME II, on purpose: CASME II labels AU4+7 "disgust"; here disgust always includes
AU9 or AU10 and AU4+7 is "others" (objective class III, anger-like), which keeps the classes
separable by their components. AU1+4 (sadness-like "others" in CASME II) is left out because
the two fields oppose each other at the inner brows and the sum barely moves a landmark.

Schemes: ``casme2`` (the table above; the standard dataset), ``samm`` (SAMM's 5 classes:
happiness, surprise, anger, contempt — one-sided AU12/AU14 —, other) and ``megc3`` (the composite's
negative / positive / surprise, used by the ``megc2019-flow`` layout: negative draws from the
disgust, repression and anger-like combinations).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from geomer.errors import GeomerError


@dataclass(frozen=True)
class EmotionClass:
    """A class and the AU combinations that express it (weights sum to 1)."""

    name: str
    combinations: tuple[tuple[tuple[str, ...], float], ...]
    objective_class: str

    def sample(self, rng: np.random.Generator) -> tuple[str, ...]:
        weights = np.array([w for _, w in self.combinations], np.float64)
        choice = rng.choice(len(self.combinations), p=weights / weights.sum())
        return self.combinations[choice][0]


def _c(name: str, objective: str, *combos: tuple[str, float]) -> EmotionClass:
    return EmotionClass(name, tuple((tuple(c.split("+")), w) for c, w in combos), objective)


_HAPPINESS = _c("happiness", "I", ("6+12", 0.5), ("12", 0.25), ("6+7+12", 0.15), ("6+12+25", 0.1))
_SURPRISE = _c("surprise", "II", ("1+2", 0.5), ("1+2+5", 0.2), ("1+2+25", 0.2), ("1+2+5+25", 0.1))
_DISGUST = _c("disgust", "IV", ("9", 0.3), ("10", 0.3), ("4+9", 0.2), ("7+10", 0.2))
_REPRESSION = _c("repression", "V", ("15", 0.15), ("17", 0.2), ("15+17", 0.25), ("14", 0.2), ("17+24", 0.2))
_OTHERS = _c("others", "III", ("4", 0.35), ("4+7", 0.4), ("4+23", 0.25))

SCHEMES: dict[str, tuple[EmotionClass, ...]] = {
    "casme2": (_HAPPINESS, _SURPRISE, _DISGUST, _REPRESSION, _OTHERS),
    "samm": (
        _HAPPINESS,
        _SURPRISE,
        _c("anger", "III", ("4", 0.3), ("4+7", 0.4), ("4+5", 0.15), ("4+5+7", 0.15)),
        _c("contempt", "VII", ("R12", 0.3), ("L12", 0.3), ("R14", 0.2), ("L14", 0.2)),
        _c("other", "IV/V", ("9", 0.25), ("10", 0.25), ("15+17", 0.25), ("17", 0.25)),
    ),
    "megc3": (
        _c("negative", "III/IV/V", ("9", 0.15), ("10", 0.15), ("4+9", 0.1), ("15+17", 0.15),
           ("17", 0.1), ("14", 0.1), ("4+7", 0.15), ("4", 0.1)),
        _c("positive", "I", *((("+".join(c), w) for c, w in _HAPPINESS.combinations))),
        _c("surprise", "II", *((("+".join(c), w) for c, w in _SURPRISE.combinations))),
    ),
}


def class_table(scheme: str) -> tuple[EmotionClass, ...]:
    """The classes of ``scheme`` (casme2, samm, megc3)."""
    try:
        return SCHEMES[scheme]
    except KeyError:
        raise GeomerError(f"unknown class scheme {scheme!r}; known: {', '.join(SCHEMES)}") from None
