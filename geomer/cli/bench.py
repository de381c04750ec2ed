"""``geomer bench ENTRY``: the project's own speed measurements.

Each entry is a library function returning rows ``(what, value, unit)``; this module prints them
as a table. Entries: ``landmarks`` (the tracker), ``features`` (flow and node sampling), ``synth``
(the renderer), ``train`` (LOSO training), ``pretrain`` (Micron-BERT pretraining pairs/s).
"""

from __future__ import annotations

from geomer.cli._common import add_command, print_rows
from geomer.errors import GeomerError
from landmarks.registry import Registry

#: The most frames an entry times: ``landmarks`` holds them in memory (3000 frames of 1080p video
#: are 18 GB), and a few hundred already give a stable rate.
MAX_FRAMES = 3000


def register(subparsers) -> None:
    parser = add_command(subparsers, "bench", "measure the speed of a pipeline stage", _run)
    entries = parser.add_subparsers(dest="entry", required=True, metavar="ENTRY")

    landmarks = entries.add_parser(
        "landmarks", help="frames/s of per-frame detection vs the tracker"
    )
    landmarks.add_argument(
        "video", nargs="?", help="a face video; default: a clip rendered from a bundled photo"
    )
    landmarks.add_argument(
        "--frames", type=int, default=300, help=f"frames to time (at most {MAX_FRAMES}: they are held in memory)"
    )

    features = entries.add_parser("features", help="flow + node sampling per pair; clip extraction")
    features.add_argument("--repeats", type=int, default=20, help="timed repetitions")

    synth = entries.add_parser("synth", help="frames/s of the synthetic face renderer")
    synth.add_argument("--frames", type=int, default=300, help=f"frames to render (at most {MAX_FRAMES})")

    train = entries.add_parser("train", help="LOSO training time and clips/s for a model")
    train.add_argument("--model", default="dere-grl", help="registered model name")
    train.add_argument("--epochs", type=int, default=None, help="epochs (default: the model's budget)")
    train.add_argument("--steps", type=int, default=None, help="optimiser steps per fold, instead of --epochs")
    train.add_argument("--jobs", type=int, default=2, help="parallel folds")
    train.add_argument(
        "--device", choices=("auto", "cpu", "cuda"), default="auto",
        help="auto: the CPU, then the GPU when one is present; cpu or cuda: that one alone "
             "(the GPU runs the folds one after another in this process, whatever --jobs says)",
    )

    pretrain = entries.add_parser(
        "pretrain", help="frame pairs/s of Micron-BERT pretraining at a chosen width and depth"
    )
    pretrain.add_argument("--dim", type=int, default=512, help="encoder and decoder width (official small: 512)")
    pretrain.add_argument("--depth", type=int, default=4, help="encoder depth (official small: 4)")
    pretrain.add_argument("--heads", type=int, default=4, help="attention heads (official small: 4)")
    pretrain.add_argument("--decoder-depth", type=int, default=4, help="decoder depth (official small: 4)")
    pretrain.add_argument("--batch-size", type=int, default=16, help="frame pairs per step")
    pretrain.add_argument("--steps", type=int, default=5, help="timed optimiser steps (after one warm-up)")


def _landmarks(args):
    from landmarks.bench import bench_landmarks

    return bench_landmarks(args.video, frames=args.frames)


def _features(args):
    from geomer.features.bench import bench_features

    return bench_features(repeats=args.repeats)


def _synth(args):
    from geomer.synth.bench import bench_synth

    return bench_synth(frames=args.frames)


def _pretrain(args):
    from geomer.train.pretrain import bench_pretrain

    return bench_pretrain(dim=args.dim, depth=args.depth, heads=args.heads, decoder_depth=args.decoder_depth,
                          batch_size=args.batch_size, steps=args.steps)


def _train(args):
    from geomer.train.bench import bench_train

    return bench_train(args.model, epochs=args.epochs, steps=args.steps, jobs=args.jobs, device=args.device)


ENTRIES = Registry("bench entry", GeomerError, {
    "landmarks": _landmarks, "features": _features, "synth": _synth, "train": _train,
    "pretrain": _pretrain,
})


def _run(args) -> int:
    # every count an entry times must be at least 1 (0 frames or repeats times nothing)
    for option in ("frames", "repeats", "steps", "epochs", "jobs", "dim", "depth", "heads", "decoder_depth",
                   "batch_size"):
        value = getattr(args, option, None)
        if value is not None and value < 1:
            raise GeomerError(f"--{option.replace('_', '-')} must be at least 1, got {value}")
    if getattr(args, "frames", 0) > MAX_FRAMES:
        raise GeomerError(f"--frames must be at most {MAX_FRAMES}, got {args.frames}")
    print_rows(ENTRIES[args.entry](args))
    return 0
