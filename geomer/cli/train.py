"""``geomer train``: train and evaluate a model under LOSO, then print the results table.

Without ``--root`` it runs on the standard synthetic dataset (generated once, cached): the main
job on a fresh machine. The budget (epochs or steps), batch size, learning rate, weight decay and
the ``--augment`` recipe default to the model's registered ``train_defaults`` (where it declares
them), else to TrainConfig's.
"""

from __future__ import annotations

from geomer.cli._common import add_command, output_path


def register(subparsers) -> None:
    parser = add_command(subparsers, "train", "train and evaluate a model (LOSO, pooled metrics)", run)
    parser.add_argument("--model", required=True, help="registered model name (see `geomer models`)")
    parser.add_argument("--dataset", default=None, help="dataset name (see `geomer datasets`); default: synthetic")
    parser.add_argument("--root", default=None, help="the dataset's folder; omitted: the standard synthetic dataset")
    parser.add_argument("--scheme", default=None, help="class scheme (default: the dataset's)")
    parser.add_argument("--skip-bad", action="store_true", help="leave out bad label-sheet rows (listed in config.json)")
    parser.add_argument("--protocol", default="loso",
                        help="evaluation protocol: loso (default) or holdout-dataset (a composite: train on the other datasets, test on each in turn)")
    parser.add_argument("--epochs", type=int, default=None, help="fixed epoch budget (default: the model's)")
    parser.add_argument("--steps", type=int, default=None,
                        help="fixed budget in optimiser steps per fold, rounded up to whole epochs; "
                             "instead of --epochs (default: the model's)")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    parser.add_argument("--batch-size", type=int, default=None, help="batch size (default: the model's)")
    parser.add_argument("--lr", type=float, default=None, help="AdamW learning rate (default: the model's)")
    parser.add_argument("--weight-decay", type=float, default=None, help="AdamW weight decay (default: the model's)")
    parser.add_argument("--no-class-weights", action="store_true", help="plain cross-entropy (no inverse-frequency weights)")
    parser.add_argument("--val-fraction", type=float, default=0.0,
                        help="fraction of TRAINING subjects held out to pick the epoch (0: last epoch)")
    parser.add_argument("--leaky-best-epoch", action="store_true",
                        help="pick the best TEST epoch as some papers do; the run is marked leaky")
    parser.add_argument("--augment", default=None, metavar="SPEC",
                        help="small-data recipe, e.g. flip,rotate=5,scale=0.05,jitter=0.1,smooth=0.1,mixup=0.2,ema=0.99,mirror "
                             "(geomer.train.augment); default: the model's (flip,mirror unless it names its own); "
                             "'none' turns it off")
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                        help="a model setting, VALUE parsed by the setting's type "
                             "(e.g. dim=32, movement_prior=true); repeatable")
    parser.add_argument("--jobs", type=int, default=None,
                        help="parallel fold × seed tasks and feature extraction; default: 1 (in-process) "
                             "with a GPU, else one process per CPU core (at most 8)")
    parser.add_argument("--executor", choices=("local", "ray"), default="local", help="where tasks run")
    parser.add_argument("--ray-address", default=None, help="Ray cluster address (default: a local Ray)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (in-process runs)")
    parser.add_argument("--out", default=None, type=output_path, help="run directory (default: runs/<model>-<dataset>; re-running resumes)")
    parser.add_argument("--cache", default=None, type=output_path, help="feature cache folder (default: the geomer cache)")
    parser.add_argument("--init", default=None, metavar="PRETRAINED.pt",
                        help="pretrained weights from external data (geomer pretrain); refused when they saw a test subject or one of an evaluated clip's frame files (byte-identical)")
    parser.add_argument("--pretrain", choices=("per-fold",), default=None,
                        help="per-fold: pretrain each fold's model (mubert) on its TRAINING clips' frames, then fine-tune")
    parser.add_argument("--pretrain-epochs", type=int, default=None,
                        help="passes over each fold's training frame pairs (--pretrain per-fold; default 10)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def default_jobs(device: str = "auto") -> int:
    """1 when training goes to a GPU (in-process), else one process per CPU core, at most 8
    (each process holds the dataset's graphs)."""
    import os

    import torch

    if device != "cpu" and torch.cuda.is_available():
        return 1
    return max(1, min(8, os.cpu_count() or 1))


def parse_settings(model: str, items: list[str]) -> dict:
    """``["hidden=32", "rrm=matrix"]`` → ``{"hidden": 32, "rrm": "matrix"}``, each value parsed by
    the model setting's declared type."""
    from geomer.errors import GeomerError
    from geomer.models.registry import parse_settings as parse_model_settings

    texts = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise GeomerError(f"--set {item!r}: expected KEY=VALUE")
        if key in texts:  # silently keeping the last would train a setting the user did not mean
            raise GeomerError(f"--set {item!r}: {key} is already set to {texts[key]!r}")
        texts[key] = value
    return parse_model_settings(model, texts)


def parse_seeds(text: str) -> tuple[int, ...]:
    from geomer.errors import GeomerError

    try:  # every part an integer: "0,,1" or "0,1," is a typo, not two seeds
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise GeomerError(f"--seeds {text!r}: expected comma-separated integers") from None


def build_config(args):
    """The TrainConfig of parsed arguments (the model's registered recipe filled in)."""
    from geomer.train.config import TrainConfig

    return TrainConfig.for_model(
        args.model,
        cfg=parse_settings(args.model, args.settings),
        epochs=args.epochs,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        class_weighted=False if args.no_class_weights else None,
        seeds=parse_seeds(args.seeds),
        val_fraction=args.val_fraction,
        leaky_best_epoch=args.leaky_best_epoch,
        jobs=args.jobs if args.jobs is not None else default_jobs(args.device),
        executor=args.executor,
        ray_address=args.ray_address,
        device=args.device,
        progress=not args.quiet,
        augment=args.augment,
    )


def run(args) -> int:
    from geomer.cli._common import summarise_run
    from geomer.train.pipeline import train_dataset

    config = build_config(args)
    pretrain = None
    if args.pretrain == "per-fold":
        from geomer.train.pretrain import PretrainConfig

        pretrain = PretrainConfig(epochs=10 if args.pretrain_epochs is None else args.pretrain_epochs, progress=False)
    elif args.pretrain_epochs is not None:
        from geomer.errors import GeomerError

        raise GeomerError("--pretrain-epochs needs --pretrain per-fold")
    result = train_dataset(
        config,
        dataset=args.dataset,
        root=args.root,
        protocol=args.protocol,
        cache=args.cache,
        out=args.out,
        init=args.init,
        pretrain=pretrain,
        scheme=args.scheme,
        skip_bad=args.skip_bad,
        progress=not args.quiet,
    )
    summarise_run(result.run_dir, result.metrics)
    for row in result.config.get("skipped_rows", []):
        print(f"skipped: {row}")
    print(f"\nrun directory: {result.out_dir}")
    return 0
