"""Per-dataset diagnosis of a ``megc2019-flow`` composite (CASME II / SAMM / SMIC parts): the
README's "Per-dataset diagnosis on the composite" figures.

Run on your own copy of the composite, after ``geomer prepare --dataset megc2019-flow --root ROOT``
(the same ``GEOMER_CACHE``; the features are read from that cache, never recomputed)::

    python notebooks/composite_diagnosis.py ROOT [--runs RUN_DIR ...] [--detection]
                                                 [--probe] [--overlays DIR]

Sections printed, per dataset part:

- class counts and chance-level UF1 (a classifier guessing by the class priors scores 1/C in
  expectation; always predicting the majority class scores 2p/(1+p)/C);
- for each ``--runs`` directory (a ``geomer train`` run): UF1, per-class F1 and the confusion
  matrix (rows true, columns predicted) of the predictions pooled over folds, mean over seeds
  (confusion summed over seeds);
- alignment: the nodes' positions in the flow image (``ClipFeatures.flow_image_points``): the
  inter-ocular distance in flow pixels, and each clip's residual to the part's mean shape after
  a similarity (Procrustes) fit, in inter-ocular distances (median, 95th percentile, clips > 0.15);
- motion energy of the flow images (|u, v|², u and v median-centred): the fraction on the face
  region (``flow_image_regions``) and within k flow pixels of some node; how concentrated it is
  (the share of the top 10 % pixels; a flow image of noise spreads it evenly); the lag-1 spatial
  autocorrelation of |u, v| (smooth motion fields are near 1, noise near 0); the strain channel;
- the node statistics (``flow_stats``) per scale: mean flow magnitude and strain at the nodes;
- with ``--runs``: each run's accuracy on the clips of each part split into thirds by the flow's
  peakedness (p95/p50 of |u, v|) and by the share of its motion inside the node patches;
- ``--detection``: how many apex crops the plain one-pass face detector misses (those need the
  landmarks package's upsampled, padded or CNN retries); re-runs the detector, about 1 s a clip;
- ``--probe``: the same linear classifier (multinomial logistic regression, class-balanced,
  standardised on the training fold, LOSO) on (a) the whole flow image's pixels, (b) only its
  face-region pixels, (c) only the pixels within 1 flow pixel of a node, (d) the node flow
  statistics; UF1 per part. It shows what the nodes' sampling loses against the whole image,
  with the model held fixed;
- ``--overlays DIR``: PNGs of the nodes and face regions drawn over the flow magnitude for the
  first clips of each part (for looking at; the composite is licensed, keep them private).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from geomer.data import read_dataset
from geomer.data.cache import FeatureCache
from geomer.data.prepare import feature_job
from geomer.features.flow_image import flow_image_regions
from geomer.errors import GeomerError
from geomer.features.types import FeatureSettings
from geomer.train.metrics import classification_metrics

DATASET = "megc2019-flow"
NEAR_PIXELS = (0.5, 1.0, 2.0)
OUTLIER_IOD = 0.15
EYES = (range(36, 42), range(42, 48))
BROWS = range(17, 27)
#: Heights above the brow nodes (inter-ocular distances) of the extra forehead probe points.
FOREHEAD_IOD = (0.4, 0.8)


def _iod(points: np.ndarray, eyes) -> float:
    return float(np.linalg.norm(points[eyes[0]].mean(0) - points[eyes[1]].mean(0)))


def footprint(points: np.ndarray, size: int, eyes, settings: FeatureSettings) -> np.ndarray:
    """[F, F] bool: the flow-image pixels inside some node's largest patch (the patch side is
    in aligned-crop pixels, where the inter-ocular distance is ``IOD_FRACTION · face_size``)."""
    from geomer.features.crop import IOD_FRACTION

    half = max(settings.scales) / 2 / (IOD_FRACTION * settings.face_size) * _iod(points, eyes)
    grid = np.stack(np.meshgrid(np.arange(size), np.arange(size), indexing="xy"), -1).reshape(-1, 2)
    chebyshev = np.abs(grid[:, None] - points[None]).max(-1).min(1)
    return (chebyshev <= half).reshape(size, size)


def forehead_points(points: np.ndarray, graph, eyes) -> np.ndarray:
    """The brow nodes moved up by each of FOREHEAD_IOD inter-ocular distances: [B·len, 2]."""
    brows = points[np.isin(graph.node_ids, BROWS)]
    return np.concatenate([brows - [0.0, h * _iod(points, eyes)] for h in FOREHEAD_IOD])


def load_clips(root: Path):
    """(index, list of ClipFeatures in sample order, FaceGraph) from the feature cache."""
    index = read_dataset(DATASET, root)
    settings = FeatureSettings()
    cache = FeatureCache(None, settings)
    clips, missing = [], []
    for sample in index.samples:
        features, _ = cache.load(feature_job(sample, index.name))
        (clips if features is not None else missing).append(features if features is not None else sample.key)
    if missing:
        raise GeomerError(f"{len(missing)} clips not in the feature cache {cache.folder} (first: {missing[0]}); "
                         f"run `geomer prepare --dataset {DATASET} --root {root}` first")
    return index, clips, settings.graph()


def chance(index) -> pd.DataFrame:
    rows = []
    for part in sorted({s.dataset for s in index.samples}):
        labels = np.array([s.label_index for s in index.samples if s.dataset == part])
        counts = np.bincount(labels, minlength=len(index.classes))
        p = counts.max() / counts.sum()
        rows.append({"part": part, "clips": int(counts.sum()),
                     **{c: int(n) for c, n in zip(index.classes, counts)},
                     "UF1 prior guess": 1 / len(index.classes),
                     "UF1 majority": 2 * p / (1 + p) / len(index.classes)})
    return pd.DataFrame(rows)


def run_scores(run: Path, classes) -> None:
    predictions = {}
    for csv in sorted(run.glob("seed-*/*/predictions.csv")):
        predictions.setdefault(csv.parts[-3], []).append(pd.read_csv(csv))
    if not predictions:
        raise SystemExit(f"{run}: no seed-*/*/predictions.csv")
    print(f"\n## {run} ({len(predictions)} seed(s))")
    code = {c: i for i, c in enumerate(classes)}
    for part in ("all", "casme2", "samm", "smic"):
        uf1, f1, confusion = [], [], 0
        for frames in predictions.values():
            table = pd.concat(frames)
            table = table if part == "all" else table[table.dataset == part]
            m = classification_metrics(table.true.map(code).to_numpy(), table.predicted.map(code).to_numpy(), len(classes))
            uf1.append(m.uf1), f1.append(m.f1)
            confusion = confusion + m.confusion
        f1 = np.mean(f1, axis=0)
        print(f"{part:7s} UF1 {np.mean(uf1):.3f}  F1 " + " ".join(f"{c} {v:.3f}" for c, v in zip(classes, f1))
              + "  confusion " + str(confusion.tolist()))


def clip_accuracy(run: Path) -> pd.Series:
    """Per clip (``subject/clip``, as predictions.csv writes it): the share of seeds right."""
    table = pd.concat(pd.read_csv(csv) for csv in sorted(run.glob("seed-*/*/predictions.csv")))
    return (table.true == table.predicted).groupby(table["sample"]).mean()


def accuracy_by_tercile(index, energy: pd.DataFrame, runs, columns=("|uv| p95/p50", "in node patches")) -> pd.DataFrame:
    """Accuracy of each run on the clips of each part split into thirds by a per-clip measure."""
    keys = [f"{s.subject_key}/{s.key}" for s in index.samples]
    table = energy.copy()
    for run in runs:
        table[run.name] = pd.Series(keys).map(clip_accuracy(run)).to_numpy()
    rows = []
    for part, clips in table.groupby("part"):
        for column in columns:
            third = pd.qcut(clips[column], 3, labels=["low", "mid", "high"])
            for name, group in clips.groupby(third, observed=True):
                rows.append({"part": part, "measure": column, "third": name, "clips": len(group),
                             "measure mean": group[column].mean(),
                             **{run.name: group[run.name].mean() for run in runs}})
    return pd.DataFrame(rows)


def procrustes_residuals(points: np.ndarray, eyes) -> tuple[np.ndarray, np.ndarray]:
    """points [M, N, 2] → (inter-ocular distances [M], RMS residual to the mean shape after a
    similarity fit [M], in inter-ocular distances)."""
    iod = np.linalg.norm(points[:, eyes[0]].mean(1) - points[:, eyes[1]].mean(1), axis=-1)
    centred = points - points.mean(1, keepdims=True)
    shapes = centred / np.linalg.norm(centred, axis=(1, 2), keepdims=True)
    mean = shapes.mean(0)
    for _ in range(5):  # generalised Procrustes: align to the mean, re-estimate it
        aligned = []
        for shape in shapes:
            u, _, vt = np.linalg.svd(shape.T @ mean)
            rotation = u @ vt
            fitted = shape @ rotation
            aligned.append(fitted * np.sum(fitted * mean) / np.sum(fitted * fitted))
        aligned = np.array(aligned)
        mean = aligned.mean(0)
        mean /= np.linalg.norm(mean)
    mean_iod = np.linalg.norm(mean[eyes[0]].mean(0) - mean[eyes[1]].mean(0))
    residual = np.sqrt(((aligned - mean) ** 2).sum(-1).mean(-1)) / mean_iod
    return iod, residual


def energy_table(index, clips, graph) -> pd.DataFrame:
    eyes = tuple(np.flatnonzero(np.isin(graph.node_ids, ids)) for ids in EYES)
    rows = []
    for sample, clip in zip(index.samples, clips):
        image = clip.flow_image  # [3, F, F]
        size = image.shape[-1]
        energy = image[0] ** 2 + image[1] ** 2
        magnitude = np.sqrt(energy)
        regions = flow_image_regions(clip.flow_image_points, graph.component, size, eyes=eyes)
        grid = np.stack(np.meshgrid(np.arange(size), np.arange(size), indexing="xy"), -1).reshape(-1, 2)
        nearest = np.linalg.norm(grid[:, None] - clip.flow_image_points[None], axis=-1).min(1).reshape(size, size)
        total = energy.sum()
        flat = np.sort(energy.ravel())[::-1]
        m = magnitude - magnitude.mean()
        autocorr = (np.sum(m[:, 1:] * m[:, :-1]) + np.sum(m[1:] * m[:-1])) / (
            (m[:, 1:].size + m[1:].size) * m.var() + 1e-12)
        stats = clip.flow_stats  # [N, S, 12]
        row = {"part": sample.dataset, "label": sample.label,
               "on face": energy[regions >= 0].sum() / total,
               "face area": (regions >= 0).mean(),
               "top10% share": flat[: len(flat) // 10].sum() / total,
               "autocorr": autocorr,
               "|uv| mean": magnitude.mean(), "|uv| p95/p50": np.percentile(magnitude, 95) / np.median(magnitude),
               "strain mean": image[2].mean(),
               "strain on face/off": (image[2][regions >= 0].mean() / max(image[2][regions < 0].mean(), 1e-6)
                                      if (regions < 0).any() else np.nan)}
        settings = FeatureSettings()
        brow_top = clip.flow_image_points[np.isin(graph.node_ids, BROWS), 1].min()
        above = np.arange(size)[:, None] < brow_top - 0.5
        row["above brows"] = energy[np.broadcast_to(above, energy.shape)].sum() / total
        row["area above brows"] = np.broadcast_to(above, energy.shape).mean()
        inside = footprint(clip.flow_image_points, size, eyes, settings)
        row["in node patches"] = energy[inside].sum() / total
        row["area node patches"] = inside.mean()
        for k in NEAR_PIXELS:
            row[f"within {k:g}px"] = energy[nearest <= k].sum() / total
            row[f"area {k:g}px"] = (nearest <= k).mean()
        for s, scale in enumerate(FeatureSettings().scales):
            row[f"node |uv| s{scale}"] = stats[:, s, 2].mean()
            row[f"node strain s{scale}"] = stats[:, s, 11].mean()
        rows.append(row)
    return pd.DataFrame(rows)


def alignment_table(index, clips, graph) -> pd.DataFrame:
    eyes = tuple(np.flatnonzero(np.isin(graph.node_ids, ids)) for ids in EYES)
    parts = np.array([s.dataset for s in index.samples])
    rows = []
    for part in sorted(set(parts)):
        points = np.stack([c.flow_image_points for c, p in zip(clips, parts) if p == part]).astype(np.float64)
        iod, residual = procrustes_residuals(points, eyes)
        centre = points.mean(1)
        rows.append({"part": part, "IOD px median": np.median(iod), "IOD px range": f"{iod.min():.1f}–{iod.max():.1f}",
                     "centre x": np.median(centre[:, 0]), "centre y": np.median(centre[:, 1]),
                     "centre spread px": float(np.linalg.norm(centre.std(0))),
                     "residual median": np.median(residual), "residual p95": np.percentile(residual, 95),
                     f"clips > {OUTLIER_IOD}": int((residual > OUTLIER_IOD).sum())})
    return pd.DataFrame(rows)


def detection_table(index) -> pd.DataFrame:
    import cv2

    from landmarks.backends import find_faces, resolve_backend

    backend = resolve_backend(FeatureSettings().backend)
    missed = {}
    for sample in index.samples:
        grey = cv2.imread(str(sample.extra["apex_image"]), cv2.IMREAD_GRAYSCALE)
        found = len(find_faces(grey, backend, thorough=False))
        missed.setdefault(sample.dataset, []).append(found == 0)
    return pd.DataFrame([{"part": p, "clips": len(m), "plain detector misses": int(np.sum(m)),
                          "share": np.mean(m)} for p, m in sorted(missed.items())])


def _fit_predict(train_x, train_y, test_x, num_classes, l2=1e-2):
    import torch

    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    x = torch.tensor((train_x - mean) / std, dtype=torch.float32)
    y = torch.tensor(train_y)
    counts = np.bincount(train_y, minlength=num_classes)
    weight = torch.tensor(len(train_y) / (num_classes * np.maximum(counts, 1)), dtype=torch.float32)
    torch.manual_seed(0)
    linear = torch.nn.Linear(x.shape[1], num_classes)
    optimiser = torch.optim.LBFGS(linear.parameters(), max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        optimiser.zero_grad()
        loss = torch.nn.functional.cross_entropy(linear(x), y, weight=weight) + l2 * linear.weight.pow(2).sum()
        loss.backward()
        return loss

    optimiser.step(closure)
    with torch.no_grad():
        return linear(torch.tensor((test_x - mean) / std, dtype=torch.float32)).argmax(1).numpy()


def probe_table(index, clips, graph) -> pd.DataFrame:
    """LOSO UF1 of one linear classifier on different views of the same flow."""
    import torch

    torch.set_num_threads(1)
    eyes = tuple(np.flatnonzero(np.isin(graph.node_ids, ids)) for ids in EYES)
    images = np.stack([c.flow_image for c in clips])  # [M, 3, F, F]
    size = images.shape[-1]
    grid = np.stack(np.meshgrid(np.arange(size), np.arange(size), indexing="xy"), -1).reshape(-1, 2)
    face = np.stack([flow_image_regions(c.flow_image_points, graph.component, size, eyes=eyes) >= 0 for c in clips])
    near = np.stack([np.linalg.norm(grid[:, None] - c.flow_image_points[None], axis=-1).min(1).reshape(size, size) <= 1.0
                     for c in clips])
    settings = FeatureSettings()
    patches = np.stack([footprint(c.flow_image_points, size, eyes, settings) for c in clips])
    with_forehead = np.stack([
        footprint(np.concatenate([c.flow_image_points, forehead_points(c.flow_image_points, graph, eyes)]),
                  size, eyes, settings) for c in clips])
    views = {
        "whole flow image": images.reshape(len(clips), -1),
        "face region only": (images * face[:, None]).reshape(len(clips), -1),
        "within 1 px of a node": (images * near[:, None]).reshape(len(clips), -1),
        "inside the nodes' largest patches": (images * patches[:, None]).reshape(len(clips), -1),
        "... and forehead patches above the brows": (images * with_forehead[:, None]).reshape(len(clips), -1),
        "node flow_stats": np.stack([c.flow_stats.reshape(-1) for c in clips]),
    }
    labels = np.array([s.label_index for s in index.samples])
    subjects = np.array([s.subject_key for s in index.samples])
    parts = np.array([s.dataset for s in index.samples])
    rows = []
    for name, x in views.items():
        predicted = np.empty_like(labels)
        for subject in np.unique(subjects):
            test = subjects == subject
            predicted[test] = _fit_predict(x[~test], labels[~test], x[test], len(index.classes))
        row = {"view": name, "features": x.shape[1],
               "all": classification_metrics(labels, predicted, len(index.classes)).uf1}
        for part in sorted(set(parts)):
            keep = parts == part
            row[part] = classification_metrics(labels[keep], predicted[keep], len(index.classes)).uf1
        rows.append(row)
    return pd.DataFrame(rows)


def overlays(index, clips, graph, out: Path, per_part: int = 4) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    eyes = tuple(np.flatnonzero(np.isin(graph.node_ids, ids)) for ids in EYES)
    out.mkdir(parents=True, exist_ok=True)
    for part in sorted({s.dataset for s in index.samples}):
        chosen = [(s, c) for s, c in zip(index.samples, clips) if s.dataset == part][:per_part]
        figure, axes = plt.subplots(2, len(chosen), figsize=(3 * len(chosen), 6))
        for column, (sample, clip) in enumerate(chosen):
            import cv2

            apex = cv2.imread(str(sample.extra["apex_image"]), cv2.IMREAD_GRAYSCALE)
            size = clip.flow_image.shape[-1]
            scale = apex.shape[1] / size
            axes[0, column].imshow(apex, cmap="gray")
            axes[0, column].scatter((clip.flow_image_points[:, 0] + 0.5) * scale - 0.5,
                                    (clip.flow_image_points[:, 1] + 0.5) * scale - 0.5, s=4, c="r")
            extra = forehead_points(clip.flow_image_points, graph, eyes)
            axes[1, column].scatter(*extra.T, s=3, c="c", marker="x")
            axes[0, column].set_title(f"{sample.label}", fontsize=8)
            magnitude = np.hypot(clip.flow_image[0], clip.flow_image[1])
            regions = flow_image_regions(clip.flow_image_points, graph.component, size, eyes=eyes)
            axes[1, column].imshow(magnitude, cmap="magma")
            axes[1, column].contour(regions >= 0, levels=[0.5], colors="c", linewidths=0.8)
            axes[1, column].scatter(*clip.flow_image_points.T, s=3, c="lime")
            for axis in axes[:, column]:
                axis.set_axis_off()
        figure.tight_layout()
        figure.savefig(out / f"overlay-{part}.png", dpi=100)
        plt.close(figure)
    print(f"overlays written to {out}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("root", type=Path, help="your copy of the megc2019-flow composite")
    parser.add_argument("--runs", type=Path, nargs="*", default=[], help="geomer train run directories")
    parser.add_argument("--detection", action="store_true", help="re-run the plain face detector on the crops")
    parser.add_argument("--probe", action="store_true", help="LOSO linear probe on views of the flow")
    parser.add_argument("--overlays", type=Path, help="folder for overlay PNGs (keep private)")
    args = parser.parse_args(argv)
    pd.set_option("display.width", 200, "display.max_columns", 40, "display.precision", 3)

    try:
        index, clips, graph = load_clips(args.root)
    except GeomerError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    print("## class balance and chance-level UF1\n", chance(index).to_string(index=False))
    for run in args.runs:
        run_scores(run, index.classes)
    print("\n## alignment of the nodes in the flow image (residual in inter-ocular distances)\n",
          alignment_table(index, clips, graph).to_string(index=False))
    energy = energy_table(index, clips, graph)
    print("\n## motion energy and flow statistics (medians over clips)\n",
          energy.drop(columns="label").groupby("part").median().T.to_string())
    print("\n## per class: energy above the brows and inside the node patches (medians over clips)\n",
          energy.groupby(["part", "label"])[["above brows", "in node patches", "|uv| p95/p50"]].median()
          .unstack("label").to_string())
    if args.runs:
        print("\n## accuracy by thirds of a per-clip measure (share of seeds right, mean over clips)\n",
              accuracy_by_tercile(index, energy, args.runs).to_string(index=False))
    if args.detection:
        print("\n## face detection on the apex crops\n", detection_table(index).to_string(index=False))
    if args.probe:
        print("\n## linear probe, LOSO UF1\n", probe_table(index, clips, graph).to_string(index=False))
    if args.overlays:
        overlays(index, clips, graph, args.overlays)


if __name__ == "__main__":
    main()
