"""Emotion classes as AU combinations, and the distractor AUs: the class tables of the generator.

Each class lists AU combinations with sampling weights. The tables follow CASME II's AU→emotion
rules (Yan et al. 2014, Table 2) and the MEGC objective classes (Davison et al. 2018: I AU6/12,
II AU1+2/5/25, III AU4/7/23, IV AU9/10, V AU1/15/17), simplified and changed on purpose so that
the ground truth is something the motion alone cannot read (``casme2`` scheme, the standard
dataset):

========== ================================== ======================== ==========================
class      combinations (weight)              components (k7)          distractor AUs allowed
========== ================================== ======================== ==========================
happiness  6+12 (.6), 6+7+12 (.2), 6+12+25     contour, eyes, mouth     1, 2, 4, 38
           (.2)
surprise   1+2+5 (.5), 1+2 (.5)               brows, eyes              9, 14, 17, 20, 25, 31, 38
disgust    9 (.3), 9+10 (.3), 4+9 (.2), 4+10  brows, nose, mouth       5, 7, 31
           (.2)
repression 1+2+12, 1+2+12+17, 4+15, 4+15+17   brows, mouth, contour    5, 7, 38
           (.25 each)
others     1+2+15, 1+2+15+17, 4+12, 4+12+17   brows, mouth, contour    5, 7, 38
           (.25 each)
========== ================================== ======================== ==========================

**repression and others move the same components and differ only in how they act together**:
in each, the brows go up in half the clips and down in the other half, and the lip corners too
(the chin raiser AU17 joins half of each); in repression the brows and the corners move the same
way (both up or both down), in others opposite ways. No single component's motion separates them;
only the pair does. Every class uses three or four of the seven components, so that its relevance
ground truth has pairs of several strengths to rank (not one pair against ties).

**Distractor AUs**: every clip also carries AUs from ``DISTRACTOR_POOL`` that say nothing about its
class: two draws per clip, each adding, with the difficulty's ``distractor_probability``, one AU
drawn uniformly from the pool AUs that move no component the class uses (the last column), with
an amplitude from the same range as the class-defining AUs'. The draw probability is the same in
every class; only *which* AUs a class may receive differs, because a distractor never moves a
class-defining component (the ground truth's relevance stays what the class is defined by). A
model can therefore learn from a distractor's presence by exclusion, and classifiers do: the mouth
distractors AU14, 20 and 25 occur in surprise clips only, so a trained classifier's
occlusion relations give surprise's mouth and contour a relevance the ground truth does not
count (README, "Relations").

Deviations from CASME II, on purpose: repression and others are the constructed pair above
(CASME II repression is AU14/15/17, others a catch-all); disgust always includes AU9 or AU10 and
never AU7, so its components stay disjoint from the eyes that distractors may move. AU31 (jaw
clencher) and AU38 (nostril dilator) are in the library only as distractors.

Schemes: ``casme2`` (the table above; the standard dataset), ``samm`` (SAMM's 5 classes:
happiness, surprise, anger, contempt — one-sided AU12/AU14 —, other) and ``megc3`` (the composite's
negative / positive / surprise, used by the ``megc2019-flow`` layout: negative draws from the
disgust, repression and anger-like combinations). Distractors apply to every scheme.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from geomer.errors import GeomerError
from landmarks.registry import Registry


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

    @property
    def components(self) -> frozenset[str]:
        """Every k7 component some combination of the class moves."""
        from geomer.synth.aus import action_unit

        return frozenset(k for combo, _ in self.combinations for u in combo for k in action_unit(u).components)

    def distractor_pool(self) -> tuple[str, ...]:
        """The pool AUs that move none of the class's components."""
        from geomer.synth.aus import action_unit

        used = self.components
        return tuple(u for u in DISTRACTOR_POOL if not used & set(action_unit(u).components))

    def sample_distractors(self, rng: np.random.Generator, probability: float, draws: int = 2) -> tuple[str, ...]:
        """Distractor AUs of one clip (module docstring): ``draws`` tries, each adding one allowed
        AU with ``probability`` (an AU is not drawn twice)."""
        pool = list(self.distractor_pool())
        chosen: list[str] = []
        for _ in range(draws):
            hit = rng.uniform() < probability
            pick = int(rng.integers(0, max(len(pool), 1)))
            if hit and pool:
                chosen.append(pool.pop(pick))
        return tuple(chosen)


def _c(name: str, objective: str, *combos: tuple[str, float]) -> EmotionClass:
    return EmotionClass(name, tuple((tuple(c.split("+")), w) for c, w in combos), objective)


#: AUs that may be added to a clip as class-independent motion (see the module docstring).
DISTRACTOR_POOL: tuple[str, ...] = ("1", "2", "4", "5", "7", "9", "14", "17", "20", "25", "31", "38")

_HAPPINESS = _c("happiness", "I", ("6+12", 0.6), ("6+7+12", 0.2), ("6+12+25", 0.2))
_SURPRISE = _c("surprise", "II", ("1+2+5", 0.5), ("1+2", 0.5))
_DISGUST = _c("disgust", "IV", ("9", 0.3), ("9+10", 0.3), ("4+9", 0.2), ("4+10", 0.2))
_REPRESSION = _c("repression", "V", ("1+2+12", 0.25), ("1+2+12+17", 0.25), ("4+15", 0.25), ("4+15+17", 0.25))
_OTHERS = _c("others", "III", ("1+2+15", 0.25), ("1+2+15+17", 0.25), ("4+12", 0.25), ("4+12+17", 0.25))

SCHEMES: Registry[tuple[EmotionClass, ...]] = Registry("class scheme", GeomerError, {
    "casme2": (_HAPPINESS, _SURPRISE, _DISGUST, _REPRESSION, _OTHERS),
    "samm": (
        _c("happiness", "I", ("6+12", 0.5), ("12", 0.25), ("6+7+12", 0.15), ("6+12+25", 0.1)),
        _c("surprise", "II", ("1+2", 0.5), ("1+2+5", 0.2), ("1+2+25", 0.2), ("1+2+5+25", 0.1)),
        _c("anger", "III", ("4", 0.3), ("4+7", 0.4), ("4+5", 0.15), ("4+5+7", 0.15)),
        _c("contempt", "VII", ("R12", 0.3), ("L12", 0.3), ("R14", 0.2), ("L14", 0.2)),
        _c("other", "IV/V", ("9", 0.25), ("10", 0.25), ("15+17", 0.25), ("17", 0.25)),
    ),
    "megc3": (
        _c("negative", "III/IV/V", ("9", 0.15), ("10", 0.15), ("4+9", 0.1), ("15+17", 0.15),
           ("17", 0.1), ("14", 0.1), ("4+7", 0.15), ("4", 0.1)),
        _c("positive", "I", ("6+12", 0.5), ("12", 0.25), ("6+7+12", 0.15), ("6+12+25", 0.1)),
        _c("surprise", "II", ("1+2", 0.5), ("1+2+5", 0.2), ("1+2+25", 0.2), ("1+2+5+25", 0.1)),
    ),
})


def class_table(scheme: str) -> tuple[EmotionClass, ...]:
    """The classes of ``scheme`` (casme2, samm, megc3)."""
    return SCHEMES[scheme]
