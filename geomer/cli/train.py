"""``geomer train``: train and evaluate a model under LOSO, then print the results table.

Without ``--root`` it runs on the standard synthetic dataset (generated once, cached): the main
job on a fresh machine. Epochs, batch size, learning rate and weight decay default to the model's
``train_defaults`` (a class attribute, when the model declares one), else to TrainConfig's.
"""

from __future__ import annotations

import json

from geomer.cli._common import add_command


def register(subparsers) -> None:
    parser = add_command(subparsers, "train", "train and evaluate a model (LOSO, pooled metrics)", run)
    parser.add_argument("--model", required=True, help="registered model name (see `geomer models`)")
    parser.add_argument("--dataset", default=None, help="dataset name (see `geomer datasets`); default: synthetic")
    parser.add_argument("--root", default=None, help="the dataset's folder; omitted: the standard synthetic dataset")
    parser.add_argument("--scheme", default=None, help="class scheme (default: the dataset's)")
    parser.add_argument("--skip-bad", action="store_true", help="leave out bad label-sheet rows (listed in config.json)")
    parser.add_argument("--protocol", default="loso", help="evaluation protocol")
    parser.add_argument("--epochs", type=int, default=None, help="fixed epoch budget (default: the model's)")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    parser.add_argument("--batch-size", type=int, default=None, help="batch size (default: the model's)")
    parser.add_argument("--lr", type=float, default=None, help="AdamW learning rate (default: the model's)")
    parser.add_argument("--weight-decay", type=float, default=None, help="AdamW weight decay (default: the model's)")
    parser.add_argument("--no-class-weights", action="store_true", help="plain cross-entropy (no inverse-frequency weights)")
    parser.add_argument("--val-fraction", type=float, default=0.0,
                        help="fraction of TRAINING subjects held out to pick the epoch (0: last epoch)")
    parser.add_argument("--leaky-best-epoch", action="store_true",
                        help="pick the best TEST epoch as some papers do; the run is marked leaky")
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                        help="a model setting (VALUE parsed as JSON when possible); repeatable")
    parser.add_argument("--jobs", type=int, default=None,
                        help="parallel fold × seed tasks and feature extraction; default: 1 (in-process) "
                             "with a GPU, else one process per CPU core (at most 8)")
    parser.add_argument("--executor", choices=("local", "ray"), default="local", help="where tasks run")
    parser.add_argument("--ray-address", default=None, help="Ray cluster address (default: a local Ray)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (in-process runs)")
    parser.add_argument("--out", default=None, help="run directory (default: runs/<model>-<dataset>; re-running resumes)")
    parser.add_argument("--cache", default=None, help="feature cache folder (default: the geomer cache)")
    parser.add_argument("--init", default=None, metavar="PRETRAINED.pt", help="pretrained weights (geomer pretrain)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def default_jobs(device: str = "auto") -> int:
    """1 when training goes to a GPU (in-process), else one process per CPU core, at most 8
    (each process holds the dataset's graphs)."""
    import os

    import torch

    if device != "cpu" and torch.cuda.is_available():
        return 1
    return max(1, min(8, os.cpu_count() or 1))


def parse_settings(items: list[str]) -> dict:
    """``["hidden=32", "rrm=matrix"]`` → ``{"hidden": 32, "rrm": "matrix"}``."""
    from geomer.errors import GeomerError

    settings = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise GeomerError(f"--set {item!r}: expected KEY=VALUE")
        try:
            settings[key] = json.loads(value)
        except json.JSONDecodeError:
            settings[key] = value
    return settings


def parse_seeds(text: str) -> tuple[int, ...]:
    from geomer.errors import GeomerError

    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise GeomerError(f"--seeds {text!r}: expected comma-separated integers") from None


def build_config(args):
    """The TrainConfig of parsed arguments (model defaults filled in)."""
    from geomer.models import get_spec
    from geomer.train.config import TrainConfig

    defaults = dict(getattr(get_spec(args.model).factory, "train_defaults", {}))
    chosen = {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "weight_decay": args.weight_decay,
    }
    for key, value in chosen.items():
        if value is not None:
            defaults[key] = value
    return TrainConfig(
        model=args.model,
        cfg={**dict(defaults.pop("cfg", {})), **parse_settings(args.settings)},
        seeds=parse_seeds(args.seeds),
        class_weighted=not args.no_class_weights and defaults.pop("class_weighted", True),
        val_fraction=args.val_fraction,
        leaky_best_epoch=args.leaky_best_epoch,
        jobs=args.jobs if args.jobs is not None else default_jobs(args.device),
        executor=args.executor,
        ray_address=args.ray_address,
        device=args.device,
        progress=not args.quiet,
        **{k: v for k, v in defaults.items() if k in ("epochs", "batch_size", "lr", "weight_decay")},
    )


def run(args) -> int:
    from geomer.train.pipeline import train_dataset
    from geomer.train.pool import format_table
    from geomer.train.run import read_run_config

    config = build_config(args)
    result = train_dataset(
        config,
        dataset=args.dataset,
        root=args.root,
        protocol=args.protocol,
        cache=args.cache,
        out=args.out,
        init=args.init,
        scheme=args.scheme,
        skip_bad=args.skip_bad,
        progress=not args.quiet,
    )
    print(format_table(result.metrics))
    for row in read_run_config(result.out_dir).get("skipped_rows", []):
        print(f"skipped: {row}")
    agreement = relation_agreement_line(result.out_dir)
    if agreement:
        print(agreement)
    print(f"\nrun directory: {result.out_dir}")
    return 0


def relation_agreement_line(run_dir) -> str | None:
    """The run's relations in words: faithfulness (intrinsic vs occlusion, Spearman per class) and,
    on a synthetic dataset, each kind's agreement with the relevance ground truth beside the
    input-only baseline and the ground truth's motion_relations."""
    from pathlib import Path

    from geomer.relations import faithfulness, ground_truth_agreement, load_ground_truth, load_run_relations
    from geomer.train.run import read_run_config

    config = read_run_config(run_dir)
    classes = list(config["classes"])
    components = list(config.get("component_names", []))
    kinds = load_run_relations(run_dir, classes, len(components))
    lines = []
    if "intrinsic" in kinds and "occlusion" in kinds:
        per_class = faithfulness(kinds["intrinsic"], kinds["occlusion"], classes)
        lines.append("faithfulness (intrinsic vs occlusion relations, Spearman per class): "
                     + ", ".join(f"{name} {value:.2f}" for name, value in per_class.items()))
    root = config.get("root")
    truth_path = Path(root) / "ground_truth.json" if root else None
    if truth_path is not None and truth_path.is_file():
        truth = load_ground_truth(truth_path)
        if list(truth.component_names) == components and set(classes) <= set(truth.classes):
            table = ground_truth_agreement(kinds, classes, truth)
            lines.append("relations vs the relevance ground truth (Spearman over off-diagonal entries of all "
                         "classes; permutation p): "
                         + ", ".join(f"{row.relation} {row.spearman:.3f} (p = {row.p_value:.2g})"
                                     for row in table.itertuples()))
    return "\n" + "\n".join(lines) if lines else None
