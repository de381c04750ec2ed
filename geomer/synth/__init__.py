"""The AU-driven synthetic micro-expression generator (the embedded default dataset).

``generate(out, layout=…)`` writes a dataset in a real layout (casme2, samm, megc2019-flow) plus
``ground_truth.json``; ``standard_dataset()`` makes the standard one once, in the cache.
Modules: ``face`` (canonical face, subject shapes), ``aus`` (AU displacement fields),
``emotions`` (class tables), ``motion`` (time courses, distractors, difficulty), ``render``
(piecewise-affine renderer), ``layouts`` (writers), ``generate``.
"""

from geomer.synth.generate import STANDARD_SIZE, STANDARD_VERSION, generate, relation_matrices, standard_dataset

__all__ = ["STANDARD_SIZE", "STANDARD_VERSION", "generate", "relation_matrices", "standard_dataset"]
