"""Component-relation analysis: three kinds of relations, loading runs, comparing relations.

A component relation says how two of the K facial components (contour, brows, nose, eyes, mouth)
matter together. Three kinds are kept apart and named:

- **intrinsic** relations: what a model's own mechanism says — every model's ``relations``
  [B,K,K] (row-normalised; DeRe-GRL's RRM weights, the transformers' attention rollout). A run
  stores them per test sample (``seed-<s>/<fold>/relations.npy`` in the order of
  ``predictions.csv``) and class-averaged (``relations.npy`` [C,K,K]).
- **occlusion** relations (:func:`occlusion_relations`), one definition for every model: each
  component, and each pair, is neutralised to "no movement" (:func:`neutralise`) and the drop of
  the model's evidence for the clip's class is measured (the true class; the predicted one for
  unlabelled clips): ``e_i`` for component i alone, ``e_ij`` for the pair (the joint effect). The
  evidence is the class's **log-odds**, ``log p − log(1 − p)`` (:func:`class_evidence`).
  From these K + K(K−1)/2 passes per clip, a component's **relevance** is its largest effect,
  alone or once any one other component is neutralised,
  ``ρ_i = max(e_i, max_j (e_ij − e_j))``, and the pairwise relation (**co-relevance**) of i ≠ j
  is ``min(ρ_i, ρ_j)``: a pair relates as strongly as the weaker of its two components matters
  (diagonal: ``ρ_i``). A run stores it as ``occlusion_relations.npy`` (per fold [n,K,K], and
  [C,K,K] averaged per true class).
- the **input-only baseline** (:func:`input_baseline`): the component co-activation read straight
  from the features' motion, with no model (the form of the synthetic ground truth). A model's
  relations tell something only where they differ from it and agree better with the ground truth.

Why the log-odds and not the log-probability: ``log p`` is bounded by 0, so for a clip the model
classifies confidently (p ≈ 1, most training-set-like clips) removing a component that carries
evidence changes ``log p`` by almost nothing until the decision flips; the class's effects then
come from the few uncertain clips, and a component that is one of several sufficient pieces of
evidence (redundancy, which trained classifiers have) reads as irrelevant. The log-odds is the
class's logit against the log-sum-exp of the others: it keeps falling as evidence is removed, is
linear in the evidence of an additive model, and for two classes is the logit difference. (Chosen
for this reason; the README's "Relations" section has its check on a synthetic tuning seed, not
on the dataset whose figures it reports.)

Why co-relevance, and not the joint effect or the interaction (``e_ij − e_i − e_j``) themselves:

- the joint effect of a pair is large whenever ONE of the two matters, so a class-defining
  component relates to every other component; the relation is meant to say that two components
  act together in the class (the ground truth's co-activation is zero for a pair with a component
  the class does not use);
- the interaction is negative for two components that each carry the class alone (redundant),
  positive for two needed together and zero for two whose evidence adds up, so it cancels when
  averaged over clips and changes sign with how a model combines evidence;
- a single-component effect alone misses redundancy: the brows and eyes are two components each,
  moved together by bilateral AUs, so neutralising the left brow costs a model little while the
  right brow still moves; ``e_ij − e_j`` (left brow's effect once the right one is gone) finds it.
  The same term finds components that matter only jointly (an OR of two components).

Co-relevance is large exactly when both components matter to the model's evidence, whether they
act additively, synergistically (AND) or redundantly (OR); ``OcclusionRelations.joint`` keeps the
raw joint effects for anyone who wants the interaction.

This module also

- reads a synthetic ground truth (:func:`load_ground_truth`); a run directory is read by
  :func:`geomer.rundir.load_run` (re-exported here);
- averages per-sample relations by class, subject or dataset (:func:`aggregate_relations`);
- measures how much two sets of relation matrices agree (:func:`compare_relations`,
  :func:`agreement_table`): Spearman and Pearson correlation over the OFF-DIAGONAL entries (the
  diagonal is a component's relation to itself, which models and the ground truth scale
  differently), per class and overall (all classes' off-diagonal entries pooled).

Significance is a one-sided permutation test of the Spearman (and Pearson) correlation under
the null "the component labels of one side carry no information" — a Mantel test: the K
component labels of the second matrix are permuted, rows and columns together and the same
permutation for every class, which keeps each matrix's internal structure (rows stay rows) and
so respects the dependence between entries that an entry-wise shuffle would ignore. With
K! ≤ ``permutations`` every permutation is enumerated (K = 7: 5040, an exact test); otherwise
``permutations`` random ones are drawn from a seeded generator. p = (#{null ≥ observed}) / P with
the identity included in the null, so p is never 0.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from geomer.bootstrap import bootstrap_interval, subject_resamples
from geomer.errors import GeomerError
from geomer.rundir import Run, class_averaged_relations, load_run, read_json_object

__all__ = [
    "GROUND_TRUTH_NAME",
    "GroundTruth",
    "RelationAgreement",
    "Run",
    "agreement_table",
    "aggregate_relations",
    "compare_relations",
    "is_constant",
    "load_ground_truth",
    "load_run",
    "off_diagonal",
    "run_labels",
    "run_relations_by",
    "spearman_undefined",
]

GROUND_TRUTH_NAME = "ground truth"


# --------------------------------------------------------------------------------------------
# reading


@dataclass(frozen=True)
class GroundTruth:
    """The synthetic generator's ground truth (see ``geomer.synth.generate``).

    ``relations`` is the relevance (what each class is defined by: the share of the
    class-defining motion each component and pair carries); ``motion_relations`` the same form
    over everything that moved, distractors included (None for a file written before it existed).

    Shapes:
        relations, motion_relations: [C, K, K] float32, class order = ``classes``.

    ``clips``: the dataset's clip ids (empty for a file without the ``clips`` record).
    """

    classes: tuple[str, ...]
    component_names: tuple[str, ...]
    relations: np.ndarray
    path: str = ""
    motion_relations: np.ndarray | None = None
    clips: tuple[str, ...] = ()


def load_ground_truth(path: str | Path) -> GroundTruth:
    """Read ``ground_truth.json`` from a synthetic dataset (a file, or the dataset folder)."""
    path = Path(path)
    if path.is_dir():
        path = path / "ground_truth.json"
    data = read_json_object(path)
    try:
        classes = tuple(str(c) for c in data["classes"])
        components = tuple(str(c) for c in data["components"])
        relations = data["relations"]
        matrices = np.asarray([relations[c] for c in classes], dtype=np.float32)
    except (KeyError, TypeError, ValueError) as error:
        raise GeomerError(f"{path}: needs 'classes', 'components' and a K×K 'relations' matrix per class ({error})") from None
    expected = (len(classes), len(components), len(components))
    if matrices.shape != expected:
        raise GeomerError(f"{path}: relations have shape {list(matrices.shape)}, expected {list(expected)}")
    motion = None
    if "motion_relations" in data:
        try:
            motion = np.asarray([data["motion_relations"][c] for c in classes], dtype=np.float32)
        except (KeyError, TypeError, ValueError) as error:
            raise GeomerError(f"{path}: 'motion_relations' needs a K×K matrix per class ({error})") from None
        if motion.shape != expected:
            raise GeomerError(f"{path}: motion_relations have shape {list(motion.shape)}, expected {list(expected)}")
    for key, values in (("relations", matrices), ("motion_relations", motion)):
        if values is not None and not np.isfinite(values).all():  # JSON null reads as NaN, Infinity as inf
            c, row = np.argwhere(~np.isfinite(values))[0][:2]
            raise GeomerError(f"{path}: {key} of class {classes[c]!r}, row {row}: not a finite number")
    clips = data.get("clips")
    return GroundTruth(classes=classes, component_names=components, relations=matrices, path=str(path),
                       motion_relations=motion, clips=tuple(str(c) for c in clips) if isinstance(clips, dict) else ())


# --------------------------------------------------------------------------------------------
# aggregation


def aggregate_relations(predictions: pd.DataFrame, sample_relations: np.ndarray, by: str = "true") -> dict[str, np.ndarray]:
    """Mean relation matrix per value of the column ``by`` ("true" class, "predicted" class,
    "subject", "dataset", "seed", …), in order of first appearance.

    Shapes:
        sample_relations: [n, K, K] aligned with the rows of ``predictions``; values [K, K].
    """
    if by not in predictions.columns:
        raise GeomerError(f"no column {by!r} to aggregate relations by (have {', '.join(map(str, predictions.columns))})")
    if len(predictions) != len(sample_relations):
        raise GeomerError(f"{len(sample_relations)} relation matrices for {len(predictions)} predictions")
    keys = predictions[by].astype(str).to_numpy()
    return {key: sample_relations[keys == key].mean(axis=0).astype(np.float32) for key in dict.fromkeys(keys)}


def run_relations_by(run: Run, by: str) -> dict[str, np.ndarray]:
    """``aggregate_relations`` over a run: by "class" (true class, in the run's class order),
    "subject", "dataset" or any other predictions column."""
    if by == "class":
        grouped = aggregate_relations(run.predictions, run.sample_relations, by="true")
        return {c: grouped[c] for c in run.classes if c in grouped}
    return aggregate_relations(run.predictions, run.sample_relations, by=by)


# --------------------------------------------------------------------------------------------
# agreement


@dataclass(frozen=True)
class RelationAgreement:
    """Agreement of two sets of relation matrices over their off-diagonal entries.

    ``p_value`` / ``pearson_p_value``: one-sided component-label permutation test (module doc);
    ``permutations``: size of the null (identity included); ``exact``: every permutation used.
    """

    spearman: float
    pearson: float
    p_value: float
    pearson_p_value: float
    entries: int
    permutations: int
    exact: bool


def off_diagonal(matrices: np.ndarray) -> np.ndarray:
    """Off-diagonal entries in row-major order. Shapes: [K,K] → [K(K-1)]; [C,K,K] → [C, K(K-1)]."""
    matrices = np.asarray(matrices)
    k = matrices.shape[-1]
    mask = ~np.eye(k, dtype=bool)
    return matrices[..., mask]


CONSTANT_TOLERANCE = 1e-6


def is_constant(values: np.ndarray) -> bool:
    """Whether ``values`` (any shape, finite) are all equal up to float noise: their range is at
    most :data:`CONSTANT_TOLERANCE` × max(1, their largest magnitude). Such relations (ststnet's
    uniform 1/K, averaged in float32) have no ranking: Spearman with them is undefined, not the
    correlation of rounding errors, and a figure gives them one colour."""
    values = np.asarray(values, dtype=np.float64)
    if not values.size:
        return True
    return float(np.ptp(values)) <= CONSTANT_TOLERANCE * max(1.0, float(np.abs(values).max()))


def spearman_undefined(a: np.ndarray, b: np.ndarray) -> str | None:
    """Why Spearman between ``a`` and ``b`` over their off-diagonal entries is undefined — "no
    clips" (a side is NaN: a class without test clips) or "uniform relations" (a side is
    constant, :func:`is_constant`) — or None where it is defined. Shapes: a, b [K, K] or [C, K, K]."""
    x, y = off_diagonal(a), off_diagonal(b)
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        return "no clips"
    if is_constant(x) or is_constant(y):
        return "uniform relations"
    return None


def _label_permutations(k: int, permutations: int, seed: int) -> tuple[np.ndarray, bool]:
    """[P, k] component-label permutations, the identity first; all of them when k! ≤ permutations."""
    if math.factorial(k) <= permutations:
        return np.array(list(itertools.permutations(range(k))), dtype=np.int64), True
    rng = np.random.default_rng(seed)
    drawn = np.stack([rng.permutation(k) for _ in range(permutations - 1)]) if permutations > 1 else np.zeros((0, k), np.int64)
    return np.concatenate([np.arange(k)[None], drawn]).astype(np.int64), False


def _correlations(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson correlation of x [n] with every row of y [P, n] (NaN where a side is constant)."""
    xc = x - x.mean()
    yc = y - y.mean(axis=1, keepdims=True)
    denominator = np.sqrt((xc**2).sum() * (yc**2).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, (yc @ xc) / np.where(denominator > 0, denominator, 1), np.nan)


def compare_relations(a: np.ndarray, b: np.ndarray, *, permutations: int = 5040, seed: int = 0) -> RelationAgreement:
    """Spearman and Pearson agreement of ``a`` and ``b`` over off-diagonal entries, with a
    permutation test that relabels the components of ``b`` (same relabelling for every class).

    Shapes:
        a, b: [K, K] or [C, K, K] (classes already aligned); C·K·(K-1) entries are compared.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim not in (2, 3) or a.shape[-1] != a.shape[-2]:
        raise GeomerError(f"relation matrices to compare must share a [K,K] or [C,K,K] shape, got {list(a.shape)} and {list(b.shape)}")
    if a.ndim == 2:
        a, b = a[None], b[None]
    k = a.shape[-1]
    x = off_diagonal(a).reshape(-1)
    y = off_diagonal(b)  # [C, K(K-1)]
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise GeomerError("relation matrices to compare contain NaN (a class without samples?)")

    # Position of entry (i, j) in the off-diagonal ordering, so that a label permutation π of b
    # (b'[i, j] = b[π i, π j]) becomes an index gather on the off-diagonal vector.
    position = np.full((k, k), -1, dtype=np.int64)
    rows, cols = np.nonzero(~np.eye(k, dtype=bool))
    position[rows, cols] = np.arange(len(rows))
    labels, exact = _label_permutations(k, max(int(permutations), 1), seed)
    gather = position[labels[:, rows], labels[:, cols]]  # [P, K(K-1)]

    # Ranks are taken once: relabelling permutes b's entries, and permuting values permutes their
    # (average) ranks in the same way, so each permuted Spearman is a Pearson of gathered ranks.
    y_ranks = stats.rankdata(y.reshape(-1)).reshape(y.shape)
    x_ranks = stats.rankdata(x)
    null_spearman = _correlations(x_ranks, y_ranks[:, gather].transpose(1, 0, 2).reshape(len(labels), -1))
    null_pearson = _correlations(x, y[:, gather].transpose(1, 0, 2).reshape(len(labels), -1))

    flat_y = y.reshape(-1)
    constant = is_constant(x) or is_constant(flat_y)  # no ranking: NaN, not a Spearman of float noise
    spearman = float("nan") if constant else float(stats.spearmanr(x, flat_y).statistic)
    pearson = float("nan") if constant else float(stats.pearsonr(x, flat_y).statistic)

    def p_value(null: np.ndarray, observed: float) -> float:
        if math.isnan(observed):
            return float("nan")
        # a tolerance so that permutations tying the observed value count as "as extreme"
        return float(np.count_nonzero(null >= observed - 1e-12) / len(null))

    return RelationAgreement(
        spearman=spearman,
        pearson=pearson,
        p_value=p_value(null_spearman, spearman),
        pearson_p_value=p_value(null_pearson, pearson),
        entries=int(x.size),
        permutations=len(labels),
        exact=exact,
    )


def _as_class_dict(value) -> tuple[dict[str, np.ndarray], tuple[str, ...] | None]:
    """Normalise a Run, GroundTruth, mapping class → [K,K], or [K,K] array to (class → matrix, components)."""
    if isinstance(value, Run):
        present = {c: m for c, m in zip(value.classes, value.class_relations) if np.all(np.isfinite(m))}
        return present, value.component_names
    if isinstance(value, GroundTruth):
        return dict(zip(value.classes, value.relations)), value.component_names
    if isinstance(value, Mapping):
        return {str(k): np.asarray(v, np.float32) for k, v in value.items()}, None
    array = np.asarray(value, np.float32)
    if array.ndim == 2:
        return {"all": array}, None
    raise GeomerError(f"cannot compare relations given as {type(value).__name__} with shape {list(array.shape)}")


def agreement_table(
    models: Mapping[str, object],
    ground_truth: GroundTruth | Mapping[str, np.ndarray] | None = None,
    *,
    per_class: bool = False,
    permutations: int = 5040,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per model pair and per model vs ground truth: model_a, model_b, scope ("overall"
    or a class name when ``per_class``), classes, spearman, pearson, p_value, pearson_p_value,
    entries, permutations.

    ``models`` maps a display name to a :class:`Run`, a mapping class → [K,K], or a [K,K] array.
    Classes are matched by name (only shared classes count); component names must agree.
    """
    named = {name: _as_class_dict(value) for name, value in models.items()}
    pairs = list(itertools.combinations(named, 2))
    if ground_truth is not None:
        named[GROUND_TRUTH_NAME] = _as_class_dict(ground_truth)
        pairs += [(name, GROUND_TRUTH_NAME) for name in models]
    rows = []
    for left, right in pairs:
        (a, a_components), (b, b_components) = named[left], named[right]
        if a_components is not None and b_components is not None and tuple(a_components) != tuple(b_components):
            raise GeomerError(f"{left} and {right} name different components: {', '.join(a_components)} vs {', '.join(b_components)}")
        shared = [c for c in a if c in b]
        if not shared:
            raise GeomerError(f"{left} and {right} share no class ({', '.join(a)} vs {', '.join(b)})")
        scopes = [("overall", shared)] + ([(c, [c]) for c in shared] if per_class else [])
        for scope, classes in scopes:
            result = compare_relations(
                np.stack([a[c] for c in classes]), np.stack([b[c] for c in classes]), permutations=permutations, seed=seed
            )
            rows.append(
                {
                    "model_a": left,
                    "model_b": right,
                    "scope": scope,
                    "classes": len(classes),
                    "spearman": result.spearman,
                    "pearson": result.pearson,
                    "p_value": result.p_value,
                    "pearson_p_value": result.pearson_p_value,
                    "entries": result.entries,
                    "permutations": result.permutations,
                }
            )
    return pd.DataFrame(rows, columns=[
        "model_a", "model_b", "scope", "classes", "spearman", "pearson", "p_value", "pearson_p_value", "entries", "permutations",
    ])


def run_labels(runs: Sequence[Run]) -> list[str]:
    """Display names for runs: the model name, with the folder name added where models repeat."""
    models = [run.model for run in runs]
    return [run.model if models.count(run.model) == 1 else f"{run.model} ({Path(run.path).name})" for run in runs]


# --------------------------------------------------------------------------------------------
# occlusion relations


def component_subsets(k: int) -> list[tuple[int, ...]]:
    """The occluded sets, in pass order: each component alone, then each pair (i < j).
    K + K(K−1)/2 of them (28 for K = 7)."""
    return [(i,) for i in range(k)] + list(itertools.combinations(range(k), 2))


def neutralise(batch, components: Sequence[int]):
    """A new PyG batch in which the nodes of ``components`` show no movement (the attributes it
    changes are new tensors; the others are shared with ``batch``).

    What "no movement" is, per input (absent inputs are skipped):

    - ``geometry`` (displacements from onset), ``flow_stats``, ``flow_patches`` and the node
      feature matrix ``x`` (onset→apex displacement and flow statistics): zero;
    - ``edge_attr`` (relative motion along edges): recomputed with the neutralised nodes' motion
      set to zero (edges inside the component carry none; an edge to a moving node keeps that
      node's part);
    - ``texture`` (onset, apex patches): the apex patch becomes the onset patch; ``texture_apex``
      too; ``sequence`` (frames onset..offset): every frame becomes the first (the onset);
    - for a clip without an onset (flow-image data such as the preprocessed MEGC2019 composite),
      ``texture_apex`` has no neutral frame: each patch is replaced by its own mean grey level
      (the texture detail — wrinkles, edges — goes, the brightness stays);
    - ``flow_image`` (the whole face's u, v, strain image; per clip, not per node): the REGION of
      the components, i.e. the pixels whose nearest node belongs to one of them
      (``flow_image_component``, :func:`geomer.features.flow_image.flow_image_regions`; pixels off
      the face belong to none): u and v become 0 (no motion: the images' convention centres them
      on their median) and the strain becomes the image's median strain, the level of the face
      that does not move (the per-image min-max normalisation has no true zero for strain).

    Shapes: every node attribute [N_total, ...] as in ``geomer.data.to_pyg``; ``batch.component``
    [N_total] gives each node's component; flow_image [B, 3, F, F], flow_image_component [B, F, F].
    """
    import copy

    import torch

    out = copy.copy(batch)  # every attribute changed below is replaced by a new tensor
    _neutralise_flow_image(out, components)
    mask = torch.isin(out.component, torch.as_tensor(list(components), dtype=out.component.dtype, device=out.component.device))
    if not bool(mask.any()):
        return out
    geometry = getattr(out, "geometry", None)
    flow_stats = getattr(out, "flow_stats", None)
    edge_attr = getattr(out, "edge_attr", None)
    if edge_attr is not None and getattr(out, "edge_index", None) is not None:
        # edge (i, j) carries motion[j] − motion[i] (geomer.data.pyg.edge_motion); motion is the
        # onset→apex displacement (x[:, :2]) where the clip has an onset, else the mean flow
        x = getattr(out, "x", None)
        if geometry is not None and x is not None:
            motion = x[:, :2]
        elif geometry is None and flow_stats is not None:
            motion = flow_stats[:, 0, :2]
        else:
            raise GeomerError("cannot neutralise edge_attr: the graphs lack the node motion it is made of "
                              "(x for clips with an onset, flow_stats for flow-image clips)")
        change = torch.where(mask[:, None], -motion, torch.zeros_like(motion))
        source, target = out.edge_index
        out.edge_attr = edge_attr + change[target] - change[source]
    for name in ("x", "geometry", "flow_stats", "flow_patches"):
        value = getattr(out, name, None)
        if value is not None:
            value = value.clone()
            value[mask] = 0
            out[name] = value
    texture = getattr(out, "texture", None)
    if texture is not None:
        texture = texture.clone()
        texture[mask, :, 1] = texture[mask, :, 0]
        out.texture = texture
    apex = getattr(out, "texture_apex", None)
    if apex is not None:
        apex = apex.clone()
        if texture is not None:
            apex[mask] = texture[mask, :, 0]
        else:
            apex[mask] = apex[mask].mean(dim=(-2, -1), keepdim=True).expand_as(apex[mask])
        out.texture_apex = apex
    sequence = getattr(out, "sequence", None)
    if sequence is not None:
        sequence = sequence.clone()
        sequence[mask] = sequence[mask][:, :1].expand_as(sequence[mask])
        out.sequence = sequence
    return out


def _neutralise_flow_image(batch, components: Sequence[int]) -> None:
    """Neutralise the components' regions of ``batch.flow_image`` in place (see :func:`neutralise`)."""
    import torch

    image = getattr(batch, "flow_image", None)
    if image is None:
        return
    regions = getattr(batch, "flow_image_component", None)
    if regions is None:
        raise GeomerError("cannot neutralise flow_image: the graphs lack flow_image_component (the nodes' "
                          "regions of the flow image); features cached before it existed are made again by geomer prepare")
    if regions.shape != image.shape[:1] + image.shape[2:]:
        raise GeomerError(f"flow_image_component {list(regions.shape)} does not match flow_image {list(image.shape)}")
    region = torch.isin(regions, torch.as_tensor(list(components), dtype=regions.dtype, device=regions.device))
    if not bool(region.any()):
        return
    image = image.clone()
    still_strain = image[:, 2].flatten(1).median(dim=1).values  # [B]
    image[:, 0][region] = 0
    image[:, 1][region] = 0
    image[:, 2] = torch.where(region, still_strain[:, None, None], image[:, 2])
    batch.flow_image = image


@dataclass(frozen=True)
class OcclusionRelations:
    """Occlusion relations of a set of clips (module docstring).

    ``target`` is the class whose evidence (:func:`class_evidence`) was measured (the true class
    by default).

    Shapes:
        importance: [B, K], ``e_i``: drop of the target's evidence when component i is neutralised;
        joint: [B, K, K], ``e_ij``: drop when components i and j are both neutralised
            (symmetric), ``e_i`` on the diagonal;
        relevance: [B, K], ``ρ_i = max(e_i, max_j (e_ij − e_j))``;
        pairwise: [B, K, K], co-relevance ``min(ρ_i, ρ_j)`` (symmetric), ``ρ_i`` on the diagonal —
            THE occlusion relation;
        target: [B] int64.
    """

    importance: np.ndarray
    joint: np.ndarray
    relevance: np.ndarray
    pairwise: np.ndarray
    target: np.ndarray


def co_relevance(joint: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(relevance ρ [..., K], co-relevance [..., K, K]) from joint effects (module docstring).

    Shapes: joint [..., K, K] symmetric with the single effects on the diagonal.
    """
    joint = np.asarray(joint, np.float64)
    k = joint.shape[-1]
    single = np.diagonal(joint, axis1=-2, axis2=-1)
    conditional = joint - single[..., None, :]  # [.., i, j]: i's effect once j is neutralised
    conditional = np.where(np.eye(k, dtype=bool), -np.inf, conditional)
    relevance = np.maximum(single, conditional.max(axis=-1))
    pairwise = np.minimum(relevance[..., :, None], relevance[..., None, :])
    return relevance, pairwise


EVIDENCE = ("log_odds", "log_prob")


def class_evidence(logits, chosen, evidence: str = "log_odds"):
    """The model's evidence for class ``chosen`` of each clip.

    ``"log_odds"``: ``log p − log(1 − p)`` = the class's logit minus the log-sum-exp of the other
    classes' logits (unbounded both ways); ``"log_prob"``: ``log p`` (bounded above by 0).

    Shapes: logits [B, C] (C ≥ 2), chosen [B] int64 → [B].
    """
    import torch

    if evidence not in EVIDENCE:
        raise GeomerError(f"occlusion evidence must be one of {', '.join(EVIDENCE)}, got {evidence!r}")
    own = logits.gather(1, chosen[:, None])[:, 0]
    if evidence == "log_prob":
        return own - torch.logsumexp(logits, dim=1)
    others = logits.scatter(1, chosen[:, None], float("-inf"))
    return own - torch.logsumexp(others, dim=1)


def occlusion_relations(model, graphs: Sequence, *, num_components: int, target: str = "true",
                        evidence: str = "log_odds", batch_size: int = 64, device=None) -> OcclusionRelations:
    """Occlusion relations of ``model`` on ``graphs`` (PyG ``Data`` with ``component`` and, for
    ``target="true"``, ``y``): for each of the K + K(K−1)/2 sets of :func:`component_subsets`, one
    pass over every clip (in batches of ``batch_size``) with that set neutralised.

    ``target``: "true" (the labelled class) or "predicted" (the class the unoccluded model
    predicts; for clips without a label). ``evidence``: what is measured for that class,
    :func:`class_evidence` — the log-odds by default (module docstring: why not the
    log-probability). Positive values: the model loses evidence without the component(s). The
    model is evaluated in ``eval()`` mode and left so.
    """
    import torch
    from torch_geometric.loader import DataLoader

    if target not in ("true", "predicted"):
        raise GeomerError(f"occlusion target must be 'true' or 'predicted', got {target!r}")
    if evidence not in EVIDENCE:
        raise GeomerError(f"occlusion evidence must be one of {', '.join(EVIDENCE)}, got {evidence!r}")
    if num_components < 1:
        raise GeomerError(f"num_components must be at least 1, got {num_components}")
    from geomer.data.pyg import stack_batches

    model.eval()
    subsets = component_subsets(num_components)
    importance, joints, targets = [], [], []
    with torch.no_grad():
        for batch in DataLoader(list(graphs), batch_size=batch_size, shuffle=False):
            if device is not None:
                batch = batch.to(device)
            logits = model(batch).logits.float()
            chosen = batch.y.view(-1) if target == "true" else logits.argmax(dim=1)
            reference = class_evidence(logits, chosen, evidence)
            size = logits.shape[0]
            # several neutralised copies of the batch go through the model as one batch of up to
            # max(batch_size, size) clips: fewer, fuller passes when the batch is small
            per_pass = max(1, batch_size // size)
            drops = torch.empty(len(subsets), size, dtype=torch.float64)
            for start in range(0, len(subsets), per_pass):
                chunk = subsets[start:start + per_pass]
                occluded = stack_batches([neutralise(batch, subset) for subset in chunk])
                occluded_logits = model(occluded).logits.float().view(len(chunk), size, -1)
                for s, part in enumerate(occluded_logits, start=start):
                    drops[s] = (reference - class_evidence(part, chosen, evidence)).double().cpu()
            matrix = torch.zeros(size, num_components, num_components, dtype=torch.float64)
            for s, subset in enumerate(subsets):
                i, j = subset if len(subset) == 2 else (subset[0], subset[0])
                matrix[:, i, j] = drops[s]
                matrix[:, j, i] = drops[s]
            importance.append(drops[:num_components].T.numpy())
            joints.append(matrix.numpy())
            targets.append(chosen.cpu().numpy())
    joint = np.concatenate(joints)
    relevance, pairwise = co_relevance(joint)
    return OcclusionRelations(
        importance=np.concatenate(importance).astype(np.float32),
        joint=joint.astype(np.float32),
        relevance=relevance.astype(np.float32),
        pairwise=pairwise.astype(np.float32),
        target=np.concatenate(targets).astype(np.int64),
    )


# --------------------------------------------------------------------------------------------
# input-only baseline


def motion_activation(flow_stats: np.ndarray, component: np.ndarray, num_components: int) -> np.ndarray:
    """[K] motion read from one clip's features: the node flow magnitude (smallest scale) above the
    clip's median node magnitude (what moves against the still face), summed per component.

    Shapes: flow_stats [N, S, 12] (channel 2 = mean magnitude), component [N] → [K].
    """
    magnitude = np.asarray(flow_stats, np.float64)[:, 0, 2]
    above = np.clip(magnitude - np.median(magnitude), 0.0, None)
    return np.bincount(np.asarray(component, np.int64), weights=above, minlength=num_components)[:num_components]


def input_baseline(graphs: Sequence, num_classes: int, num_components: int) -> np.ndarray:
    """The input-only baseline [C, K, K]: per clip, the co-activation of :func:`motion_activation`
    (``geomer.synth.generate.coactivation``: outer product of the components' motion shares, the
    form of the synthetic ground truth), averaged per class (``y``). No model, no labels beyond
    grouping: what reading the motion alone gives.
    """
    from geomer.synth.generate import coactivation

    shares, labels = [], []
    for data in graphs:
        activation = motion_activation(data.flow_stats.numpy(), data.component.numpy(), num_components)
        shares.append(coactivation(activation))
        labels.append(int(data.y.view(-1)[0]))
    if not shares:
        raise GeomerError("no clips to compute the input-only baseline from")
    return class_averaged_relations(np.stack(shares), np.asarray(labels), num_classes)


# --------------------------------------------------------------------------------------------
# a run's three kinds of relations, side by side

#: Display names of the relation kinds a run directory holds, and their ``geomer.rundir`` kinds.
RELATION_FILES = {
    "intrinsic": "relations",
    "occlusion": "occlusion_relations",
    "input-only baseline": "baseline_relations",
}


def load_run_relations(run_dir, classes: Sequence[str], num_components: int) -> dict[str, np.ndarray]:
    """The class-averaged relations [C, K, K] of every kind a run directory holds (keys of
    :data:`RELATION_FILES`; a kind whose file is absent — a run from before it existed — is left
    out). Classes without test clips are NaN."""
    from geomer.rundir import RunDir

    run_dir = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    found = {}
    for name, kind in RELATION_FILES.items():
        matrices = run_dir.load_relations(kind, components=num_components)
        if matrices is not None:
            if len(matrices) != len(classes):
                raise GeomerError(f"{run_dir.relations_path(kind)}: {len(matrices)} classes, config.json names {len(classes)}")
            found[name] = matrices
    return found


def synthetic_ground_truth(run) -> GroundTruth | None:
    """The ground truth of the synthetic dataset a run was trained on (``ground_truth.json`` at
    its root, with the run's components and classes), else None."""
    root = run.config.get("root")
    path = Path(root) / "ground_truth.json" if root else None
    if path is None or not path.is_file():
        return None
    truth = load_ground_truth(path)
    if tuple(truth.component_names) != tuple(run.component_names) or not set(run.classes) <= set(truth.classes):
        return None
    return truth


def check_ground_truth_of(run, truth: GroundTruth) -> None:
    """One-line GeomerError unless ``truth`` is the ground truth of the dataset ``run`` was tested
    on: the same matrices as the ``ground_truth.json`` at the run's root (where it still exists),
    and a clip list that holds every clip the run tested and no more (bar the rows the run
    skipped). Another draw of the generator, or a larger one of the same seed, has other class
    means, and scoring a run against it would give a figure that looks right and is not."""
    own = synthetic_ground_truth(run)
    if own is not None and not (own.classes == truth.classes and np.array_equal(own.relations, truth.relations)):
        raise GeomerError(f"{truth.path}: not the ground truth of {run.path}'s dataset ({own.path} is)")
    if not truth.clips:  # written before the generator recorded its clips
        return
    tested = {sample[len(subject) + 1:] for sample, subject in zip(run.predictions["sample"], run.predictions["subject"])}
    unknown = sorted(tested - set(truth.clips))
    if unknown:
        raise GeomerError(f"{truth.path}: has no clip {unknown[0]}, which {run.path} was tested on; "
                          "is it the ground truth of the run's dataset?")
    untested = len(truth.clips) - len(tested) - len(run.config.get("skipped_rows") or ())
    if untested > 0:
        raise GeomerError(f"{truth.path}: {len(truth.clips)} clips, {untested} more than {run.path} was tested on "
                          "and skipped; is it the ground truth of the run's dataset?")


def faithfulness(intrinsic: np.ndarray, occlusion: np.ndarray, classes: Sequence[str]) -> dict[str, float]:
    """Per class, Spearman between a model's intrinsic and its own occlusion relations over the
    off-diagonal entries (NaN where :func:`spearman_undefined` says why it is undefined).

    Shapes: intrinsic, occlusion [C, K, K].
    """
    result = {}
    for name, a, b in zip(classes, intrinsic, occlusion):
        undefined = spearman_undefined(a, b)
        result[name] = float("nan") if undefined else float(stats.spearmanr(off_diagonal(a), off_diagonal(b)).statistic)
    return result


def agreement_ceiling(relevance: np.ndarray) -> float:
    """The highest Spearman agreement with ``relevance`` (over the off-diagonal entries of all
    classes, as :func:`ground_truth_agreement`) that a symmetric read-out reaches without exact
    ties among the irrelevant pairs: it orders the relevant pairs exactly as ``relevance`` does and
    gives every irrelevant pair (relevance 0) a value of its own below them. The ground truth ties
    its irrelevant pairs at 0; a read-out whose irrelevant pairs differ by noise, however small,
    pays for the ranks it spreads there, so a sparse ground truth caps the figure well below 1
    (the README's "Relations" gives it for the standard synthetic dataset).

    Shapes: relevance [C, K, K] symmetric, ≥ 0 → float.
    """
    relevance = np.asarray(relevance, np.float64)
    k = relevance.shape[-1]
    upper = np.triu(np.ones((k, k), dtype=bool), 1)
    irrelevant = (relevance == 0) & upper  # one entry per unordered pair
    readout = relevance.copy()
    readout[irrelevant] = -np.arange(1, int(irrelevant.sum()) + 1)  # distinct, below every relevant pair
    readout = np.where(upper, readout, np.swapaxes(readout, -1, -2))
    return float(stats.spearmanr(off_diagonal(readout).ravel(), off_diagonal(relevance).ravel()).statistic)


def subject_bootstrap_interval(sample_relations: np.ndarray, row_class: np.ndarray, subjects: np.ndarray,
                               relevance: np.ndarray, *, strata: np.ndarray | None = None,
                               level: float = 0.95) -> tuple[float, float]:
    """95 % interval of the agreement between the class means of per-clip relations and
    ``relevance`` (Spearman over the off-diagonal entries of all classes, as
    :func:`ground_truth_agreement`), the test SUBJECTS resampled
    (:func:`geomer.bootstrap.subject_resamples`: a subject's clips of every training seed
    together, within its dataset where ``strata`` names them).

    Each resample's class means are taken over its drawn clips; the interval is the figure ±
    1.96 of the resampled agreements' standard deviation (:func:`geomer.bootstrap.bootstrap_interval`:
    resampling with repeats adds noise that pulls a rank agreement down, so the resamples' spread
    is used, not their percentiles). It says how far the figure would move with other subjects
    from the same source; not with other training seeds beyond the pooled ones, nor with other
    generator settings. A resample in which a class has no clip leaves that class out; one whose
    relations are constant gives no value.

    Shapes: sample_relations [n, K, K]; row_class [n] int, the row's index into ``relevance``'s
    classes (-1: a row left out); subjects, strata [n] (any keys); relevance [C, K, K] →
    (low, high), NaN with fewer than :data:`~geomer.bootstrap.MIN_BOOTSTRAP_SUBJECTS`
    subjects or no defined figure.
    """
    sample_relations = np.asarray(sample_relations, np.float64)
    row_class = np.asarray(row_class, np.int64)
    keep = row_class >= 0
    drawn = subject_resamples(np.asarray(subjects, dtype=object)[keep],
                              None if strata is None else np.asarray(strata, dtype=object)[keep])
    if drawn is None:
        return float("nan"), float("nan")
    subject_index, draws = drawn
    k = sample_relations.shape[-1]
    sums = np.zeros((draws.shape[1], len(relevance), k, k))
    counts = np.zeros((draws.shape[1], len(relevance)))
    np.add.at(sums, (subject_index, row_class[keep]), sample_relations[keep])
    np.add.at(counts, (subject_index, row_class[keep]), 1.0)
    truth = off_diagonal(np.asarray(relevance, np.float64))  # [C, K(K-1)]

    def agreement(totals: np.ndarray, seen: np.ndarray) -> float:
        present = seen > 0
        means = off_diagonal(totals[present] / seen[present, None, None]).reshape(-1)
        return float("nan") if is_constant(means) else float(stats.spearmanr(means, truth[present].reshape(-1)).statistic)

    figure = agreement(sums.sum(axis=0), counts.sum(axis=0))
    resampled = [agreement(t, c) for t, c in zip(np.einsum("rs,sckl->rckl", draws, sums), draws @ counts)]
    return bootstrap_interval(figure, resampled, level)


def run_sample_relations(run: Run) -> dict[str, np.ndarray]:
    """The per-clip relations [n, K, K] of each kind a run keeps per clip (``"intrinsic"``, and
    ``"occlusion"`` where every finished fold has them), row i for ``run.predictions`` row i."""
    found = {"intrinsic": run.sample_relations}
    if run.sample_occlusion is not None:
        found["occlusion"] = run.sample_occlusion
    return found


def ground_truth_agreement(kinds: Mapping[str, np.ndarray], classes: Sequence[str], truth: GroundTruth,
                           *, permutations: int = 5040, seed: int = 0, run: Run | None = None) -> pd.DataFrame:
    """Agreement of each kind of relations [C, K, K] (and the ground truth's own
    ``motion_relations``) with the relevance ground truth, over the off-diagonal entries of the
    classes that every side has: one row per kind (relation, spearman, p_value, low, high,
    classes); ``attrs["ceiling"]``: :func:`agreement_ceiling` over the same classes.

    ``low``, ``high``: with ``run``, the 95 % subject-bootstrap interval
    (:func:`subject_bootstrap_interval`) of each kind the run keeps per clip
    (:func:`run_sample_relations`) whose class means are the ``kinds`` given; NaN for the others
    (the input-only baseline and ``motion_relations`` are read from the whole dataset, not per
    test clip)."""
    missing = [c for c in classes if c not in truth.classes]
    if missing:
        raise GeomerError(f"{truth.path}: no class {missing[0]!r}")
    order = [truth.classes.index(c) for c in classes]
    relevance = truth.relations[order]
    sides = dict(kinds)
    if truth.motion_relations is not None:
        sides["motion_relations (ground truth)"] = truth.motion_relations[order]
    present = np.all([np.isfinite(m).all(axis=(-2, -1)) for m in sides.values()], axis=0)
    per_clip = {}
    if run is not None:
        position = {name: i for i, name in enumerate(classes)}
        true = np.array([position.get(name, -1) for name in run.predictions["true"]], dtype=np.int64)
        compared = np.cumsum(present) - 1  # a class's index among the compared ones
        row_class = np.where((true >= 0) & present[np.maximum(true, 0)], compared[np.maximum(true, 0)], -1)
        for kind, rows in run_sample_relations(run).items():
            # the interval belongs to the figure only where these clips' class means are the kind given
            if kind in kinds and np.allclose(class_averaged_relations(rows[true >= 0], true[true >= 0], len(classes))[present],
                                             kinds[kind][present], rtol=1e-4, atol=1e-5):
                per_clip[kind] = rows
    rows = []
    for kind, matrices in sides.items():
        result = compare_relations(matrices[present], relevance[present], permutations=permutations, seed=seed)
        low, high = float("nan"), float("nan")
        if kind in per_clip:
            low, high = subject_bootstrap_interval(per_clip[kind], row_class, run.predictions["subject"].to_numpy(),
                                                   relevance[present], strata=run.predictions["dataset"].to_numpy())
        rows.append({"relation": kind, "spearman": result.spearman, "p_value": result.p_value,
                     "low": low, "high": high, "classes": int(present.sum())})
    table = pd.DataFrame(rows, columns=["relation", "spearman", "p_value", "low", "high", "classes"])
    table.attrs["ceiling"] = agreement_ceiling(relevance[present])
    return table
