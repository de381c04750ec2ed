"""Diagnosis of the relation targets on a synthetic dataset: the README's "Relations" figures
measured on the tuning seed (generator variants, the reference MLP) and the untrained rows.

Run on a generated and prepared synthetic dataset (the same ``GEOMER_CACHE`` as ``geomer prepare``)::

    python notebooks/relations_diagnosis.py ceilings ROOT     # UF1 of reference classifiers
    python notebooks/relations_diagnosis.py reference ROOT    # a reference MLP's occlusion relations
    python notebooks/relations_diagnosis.py run RUN_DIR       # a geomer run's fold models, re-measured

``ceilings``: LOSO UF1 of a linear model and a small MLP (64 hidden units, dropout 0.3, AdamW
3e-3, weight decay 0.1, 300 full-batch steps, inputs standardised with the training fold's
statistics) on (a) the amplitudes of every AU the generator drew for a clip (class and
distractor AUs), (b) the ground-truth landmark series' aligned onset→apex displacement, (c) the
tracked features' onset→apex displacement, (d) (c) plus the node flow means.

``reference``: the MLP of (d) per LOSO fold, its occlusion relations on the fold's test clips
(log-odds and log-probability evidence), a freshly initialised MLP's, and ways of turning the
joint effects into a K×K matrix, each against the relevance ground truth.

``run``: each fold checkpoint of a run directory (and a freshly initialised model of the same
settings) re-measured with both kinds of evidence; the mean relevance ρ per class and component.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from geomer.data import read_dataset
from geomer.data.cache import FeatureCache
from geomer.data.loading import load_graphs
from geomer.features.types import FeatureSettings
from geomer.relations import co_relevance, compare_relations, input_baseline, load_ground_truth, occlusion_relations
from geomer.rundir import class_averaged_relations
from geomer.train.metrics import classification_metrics

HIDDEN, STEPS = 64, 300


def _mlp(features: int, classes: int, hidden: int) -> torch.nn.Module:
    if hidden == 0:
        return torch.nn.Linear(features, classes)
    return torch.nn.Sequential(torch.nn.Linear(features, hidden), torch.nn.ReLU(), torch.nn.Dropout(0.3),
                               torch.nn.Linear(hidden, classes))


def _fit(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.nn.Module:
    optimiser = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=0.1)
    net.train()
    for _ in range(STEPS):
        loss = torch.nn.functional.cross_entropy(net(x), y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return net.eval()


def loso_uf1(x: np.ndarray, y: np.ndarray, subjects: np.ndarray, classes: int, hidden: int) -> float:
    """Pooled LOSO UF1 of :func:`_mlp` on features x [n, F]."""
    predicted = np.zeros_like(y)
    for subject in np.unique(subjects):
        test = subjects == subject
        mean, std = x[~test].mean(0), x[~test].std(0) + 1e-6
        torch.manual_seed(0)
        net = _fit(_mlp(x.shape[1], classes, hidden), torch.tensor((x[~test] - mean) / std), torch.tensor(y[~test]))
        with torch.no_grad():
            predicted[test] = net(torch.tensor((x[test] - mean) / std)).argmax(1).numpy()
    return classification_metrics(y, predicted, classes).uf1


def _dataset(root: Path):
    index = read_dataset("synth", root)
    settings = FeatureSettings()
    graphs = load_graphs(index, FeatureCache(None, settings), settings.graph())
    return index, settings, graphs


def ceilings(root: Path) -> None:
    import json

    from geomer.data.prepare import feature_job
    from geomer.synth.aus import AU_NUMBERS
    from landmarks.track import LandmarkTrack

    index, settings, _ = _dataset(root)
    truth = json.loads((root / "ground_truth.json").read_text())
    cache, graph = FeatureCache(None, settings), settings.graph()
    y = np.array([s.label_index for s in index.samples])
    subjects = np.array([s.subject_key for s in index.samples])
    amplitudes, landmarks, tracked, flow = [], [], [], []
    for sample in index.samples:
        clip = truth["clips"][sample.key]
        row = np.zeros(len(AU_NUMBERS), np.float32)
        for unit, amplitude in zip(clip["aus"] + clip["distractor_aus"],
                                   clip["amplitudes_px"] + clip["distractor_amplitudes_px"]):
            row[AU_NUMBERS.index(unit)] += amplitude
        amplitudes.append(row)
        track = LandmarkTrack.load(root / "ground_truth_landmarks" / f"{sample.key}.npz")
        matrix = track.alignment()  # [2, 3] affine to the canonical face
        aligned = track.points[:, graph.node_ids] @ matrix[:, :2].T + matrix[:, 2]
        onset, apex = (int(np.searchsorted(track.frame_index, clip[k])) for k in ("onset", "apex"))
        moved = aligned[apex] - aligned[onset]
        landmarks.append((moved - moved.mean(0)).ravel())
        features, _ = cache.load(feature_job(sample, index.name))
        moved = features.apex_displacement - features.apex_displacement.mean(0)
        tracked.append(moved.ravel())
        flow.append(np.concatenate([moved.ravel(), features.flow_stats[:, 0, :2].ravel()]))
    for name, x in (("true AU amplitudes", amplitudes), ("ground-truth landmark displacement", landmarks),
                    ("tracked displacement", tracked), ("tracked displacement + node flow", flow)):
        x = np.asarray(x, np.float32)
        print(f"{name}: linear {loso_uf1(x, y, subjects, len(index.classes), 0):.3f}, "
              f"MLP {loso_uf1(x, y, subjects, len(index.classes), HIDDEN):.3f}", flush=True)


class ReferenceMLP(torch.nn.Module):
    """The MLP of ``ceilings`` (d) on graphs: node displacement (less the clip's mean) and mean
    flow, standardised with the training fold's statistics."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, classes: int, nodes: int):
        super().__init__()
        self.mean, self.std, self.nodes = mean, std, nodes
        self.net = _mlp(nodes * 4, classes, HIDDEN)

    def inputs(self, batch) -> torch.Tensor:
        moved = batch.x[:, :2].view(-1, self.nodes, 2)
        moved = moved - moved.mean(1, keepdim=True)
        node = torch.cat([moved, batch.flow_stats[:, 0, :2].view(-1, self.nodes, 2)], dim=2)
        return (node.flatten(1) - self.mean) / self.std

    def forward(self, batch):
        from geomer.models import ModelOutput

        logits = self.net(self.inputs(batch))
        k = 7
        return ModelOutput(logits=logits, relations=torch.full((len(logits), k, k), 1 / k), embedding=logits)


def _rule_variants(joint: np.ndarray) -> dict[str, np.ndarray]:
    relevance, pairwise = co_relevance(joint)
    positive = np.clip(relevance, 0, None)
    share = positive / np.maximum(positive.sum(1, keepdims=True), 1e-12)
    single = np.clip(np.diagonal(joint, axis1=1, axis2=2), 0, None)
    single = single / np.maximum(single.sum(1, keepdims=True), 1e-12)
    off = ~np.eye(joint.shape[-1], dtype=bool)
    clipped = np.clip(pairwise, 0, None)
    return {
        "min of relevances (geomer's rule)": pairwise,
        "min of relevance shares": np.minimum(share[:, :, None], share[:, None, :]),
        "outer product of relevance shares": share[:, :, None] * share[:, None, :],
        "outer product of single-effect shares": single[:, :, None] * single[:, None, :],
        "min, per-clip normalised": clipped / np.maximum(clipped[:, off].sum(1)[:, None, None], 1e-12),
    }


def reference(root: Path) -> None:
    from torch_geometric.loader import DataLoader

    index, _, graphs = _dataset(root)
    truth = load_ground_truth(root)
    relevance = truth.relations[[truth.classes.index(c) for c in index.classes]]
    classes, k = len(index.classes), 7
    subjects = np.array([str(g.subject) for g in graphs])
    labels = np.array([int(g.y) for g in graphs])
    predicted = np.zeros_like(labels)
    joints = {(e, trained): np.zeros((len(graphs), k, k)) for e in ("log_odds", "log_prob") for trained in (True, False)}
    for subject in np.unique(subjects):
        test, train = np.flatnonzero(subjects == subject), np.flatnonzero(subjects != subject)
        batch = next(iter(DataLoader([graphs[i] for i in train], batch_size=len(train))))
        probe = ReferenceMLP(torch.zeros(1), torch.ones(1), classes, graphs[0].num_nodes)
        x = probe.inputs(batch)
        torch.manual_seed(0)
        net = ReferenceMLP(x.mean(0), x.std(0) + 1e-6, classes, graphs[0].num_nodes)
        test_graphs = [graphs[i] for i in test]
        for evidence in ("log_odds", "log_prob"):
            joints[evidence, False][test] = occlusion_relations(net, test_graphs, num_components=k, evidence=evidence).joint
        _fit(net.net, net.inputs(batch).detach(), batch.y.view(-1))
        with torch.no_grad():
            predicted[test] = net(next(iter(DataLoader(test_graphs, batch_size=len(test))))).logits.argmax(1).numpy()
        for evidence in ("log_odds", "log_prob"):
            joints[evidence, True][test] = occlusion_relations(net, test_graphs, num_components=k, evidence=evidence).joint
    print(f"reference MLP: UF1 {classification_metrics(labels, predicted, classes).uf1:.3f}; "
          f"input-only baseline {compare_relations(input_baseline(graphs, classes, k), relevance).spearman:.3f}")
    for (evidence, trained), joint in joints.items():
        for rule, matrices in _rule_variants(joint).items():
            agreement = compare_relations(class_averaged_relations(matrices, labels, classes), relevance)
            print(f"{'trained' if trained else 'untrained'} {evidence} {rule}: {agreement.spearman:.3f}")
    _print_relevance(co_relevance(joints["log_odds", True])[0], labels, index.classes, truth)


def _print_relevance(relevance_rho: np.ndarray, labels: np.ndarray, classes, truth) -> None:
    """Mean relevance ρ [n, K] per class and component, beside the ground truth's motion shares."""
    for c, name in enumerate(classes):
        shares = np.sqrt(np.diagonal(truth.relations[truth.classes.index(name)]))
        print(f"  mean ρ {name}: " + ", ".join(
            f"{component} {value:.1f} ({share:.2f})"
            for component, value, share in zip(truth.component_names, relevance_rho[labels == c].mean(0), shares)))


def run(run_dir: Path) -> None:
    import pandas as pd

    from geomer.rundir import load_run
    from geomer.train.checkpoint import load_checkpoint

    config = load_run(run_dir).config
    root = Path(config["root"])
    index, _, graphs = _dataset(root)
    truth = load_ground_truth(root)
    relevance = truth.relations[[truth.classes.index(c) for c in index.classes]]
    by_sample = {f"{g.subject}/{g.clip}": g for g in graphs}
    joints: dict[tuple[str, bool], list[np.ndarray]] = {}
    labels = []
    for path in sorted(run_dir.glob("seed-*/*/checkpoint.pt")):
        checkpoint = load_checkpoint(path)
        test = [by_sample[s] for s in pd.read_csv(path.parent / "predictions.csv")["sample"]]
        torch.manual_seed(0)
        fresh = checkpoint.build_model(trained=False)  # its version's settings, mirror-averaged alike
        for trained, model in ((True, checkpoint.build_model()), (False, fresh)):
            for evidence in ("log_odds", "log_prob"):
                joint = occlusion_relations(model, test, num_components=7, evidence=evidence).joint
                joints.setdefault((evidence, trained), []).append(joint)
        labels.append(np.array([int(g.y) for g in test]))
    labels = np.concatenate(labels)
    for (evidence, trained), parts in joints.items():
        relevance_rho, pairwise = co_relevance(np.concatenate(parts))
        agreement = compare_relations(class_averaged_relations(pairwise, labels, len(index.classes)), relevance)
        print(f"{'trained' if trained else 'untrained'} {evidence}: {agreement.spearman:.3f} (p = {agreement.p_value:.2g})")
        if trained and evidence == "log_odds":
            _print_relevance(relevance_rho, labels, index.classes, truth)


if __name__ == "__main__":
    torch.set_num_threads(1)
    command, target = sys.argv[1], Path(sys.argv[2])
    {"ceilings": ceilings, "reference": reference, "run": run}[command](target)
