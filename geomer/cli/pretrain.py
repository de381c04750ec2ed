"""``geomer pretrain``: Micron-BERT self-supervised pretraining on unlabeled face frames."""

from __future__ import annotations

from geomer.cli._common import add_command, output_path


def register(subparsers) -> None:
    parser = add_command(
        subparsers,
        "pretrain",
        "Pretrain Micron-BERT (blockwise swapping + Patch of Interest) on unlabeled face frames; "
        "runs unchanged under `torchrun --nproc_per_node N` (DDP; gloo on CPU, nccl on GPU). "
        "The checkpoint records the subjects it saw, so a LOSO run refuses it when it saw a "
        "test subject or read a frame file of an evaluated clip (compared byte for byte): pretrain on external data here, or per fold "
        "inside the evaluation (geomer train --pretrain per-fold).",
        run,
    )
    parser.add_argument("--model", default="mubert", help="model to pretrain (one with pretraining: mubert, mubert-base)")
    parser.add_argument(
        "--frames", nargs="+", default=None, metavar="PATH",
        help="videos, frame folders or folders of them (subjects recorded as external/<parent>); "
        "default: the synthetic standard dataset's clips",
    )
    parser.add_argument("--dataset", default=None, help="pretrain on a dataset's clips instead (needs --root), keeping its subject keys")
    parser.add_argument("--root", default=None, help="root of --dataset")
    parser.add_argument(
        "--exclude-subjects", default="", metavar="KEYS",
        help="comma-separated global subject keys to leave out (per-fold pretraining)",
    )
    parser.add_argument("--epochs", type=int, default=10, help="passes over the frame pairs")
    parser.add_argument("--batch-size", type=int, default=32, help="frame pairs per step (per process)")
    parser.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate")
    parser.add_argument("--pairs-per-source", type=int, default=4, help="frame pairs taken from each video / folder")
    parser.add_argument("--gap", type=int, default=None, help="frames between the two frames of a pair; default a quarter of the clip")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--backend", default="dlib", help="landmark backend")
    parser.add_argument("--out", default="runs/pretrain-mubert", type=output_path, help="output folder (pretrained.pt)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args) -> int:
    from pathlib import Path

    from geomer.errors import GeomerError
    from geomer.features.types import FeatureSettings
    from geomer.models.pretrained import pretraining_record
    from geomer.train.pretrain import (
        PRETRAINED_FILE,
        PretrainConfig,
        check_pretrainable,
        default_sources,
        pretrain,
        sources_from_dataset,
        sources_from_paths,
    )
    from geomer.rundir import check_not_inside_a_run
    from landmarks.backends import get_backend
    from landmarks.files import check_output_folder

    if args.seed < 0:  # as geomer synth and train: a seed is a non-negative integer
        raise GeomerError(f"--seed must be at least 0, got {args.seed}")
    get_backend(args.backend)  # an unknown or uninstalled backend is a one-line error before any work
    check_pretrainable(args.model)
    progress = not args.quiet
    config = PretrainConfig(  # checks its settings: before the clips are found (or rendered)
        model=args.model, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        seed=args.seed, pairs_per_source=args.pairs_per_source, gap=args.gap, progress=progress,
    )
    check_output_folder(args.out, "--out", GeomerError)  # before the training, not after it
    check_not_inside_a_run(args.out)
    checkpoint = Path(args.out) / PRETRAINED_FILE
    if checkpoint.is_dir():
        raise GeomerError(f"{checkpoint}: is a folder, where pretrain writes its checkpoint; move it away")
    if checkpoint.exists():  # an earlier pretraining is never replaced unasked
        raise GeomerError(f"{checkpoint}: exists (an earlier pretraining); remove it or choose another --out")
    if args.frames and args.dataset:
        raise GeomerError("give either --frames or --dataset, not both")
    exclude = [s.strip() for s in args.exclude_subjects.split(",") if s.strip()]
    if args.dataset:
        if not args.root:
            raise GeomerError(f"--dataset {args.dataset} needs --root")
        sources = sources_from_dataset(args.dataset, args.root, exclude)
    elif args.frames:
        sources = sources_from_paths(args.frames, exclude)
    else:
        sources = default_sources(exclude, progress=progress)
    if not sources:
        raise GeomerError("no clip left to pretrain on")
    path = pretrain(sources, args.out, config, FeatureSettings(backend=args.backend))
    if path is not None:  # the rank that wrote it
        record = pretraining_record(path)
        print(f"pretrained {args.model} on {record['num_sources']} clips of "
              f"{len(record['subjects'])} subjects ({record['mode']}) → {path}")
    return 0
