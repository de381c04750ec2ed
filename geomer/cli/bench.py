"""``geomer bench ENTRY``: the project's own speed measurements.

Each entry is a library function returning rows ``(what, value, unit)``; this module prints them
as a table. Entries: ``landmarks`` (the tracker), ``features`` (flow and node sampling), ``synth``
(the renderer), ``train`` (LOSO training).
"""

from __future__ import annotations

from geomer.cli._common import add_command, print_rows
from geomer.errors import GeomerError
from landmarks.registry import Registry


def register(subparsers) -> None:
    parser = add_command(subparsers, "bench", "measure the speed of a pipeline stage", _run)
    entries = parser.add_subparsers(dest="entry", required=True, metavar="ENTRY")

    landmarks = entries.add_parser(
        "landmarks", help="frames/s of per-frame detection vs the tracker"
    )
    landmarks.add_argument(
        "video", nargs="?", help="a face video; default: a clip rendered from a bundled photo"
    )
    landmarks.add_argument("--frames", type=int, default=300, help="frames to time")

    features = entries.add_parser("features", help="flow + node sampling per pair; clip extraction")
    features.add_argument("--repeats", type=int, default=20, help="timed repetitions")

    synth = entries.add_parser("synth", help="frames/s of the synthetic face renderer")
    synth.add_argument("--frames", type=int, default=300, help="frames to render")

    train = entries.add_parser("train", help="LOSO training time and clips/s for a model")
    train.add_argument("--model", default="dere-grl", help="registered model name")
    train.add_argument("--epochs", type=int, default=None, help="epochs (default: the model's)")
    train.add_argument("--jobs", type=int, default=2, help="parallel folds")


def _landmarks(args):
    from landmarks.bench import bench_landmarks

    return bench_landmarks(args.video, frames=args.frames)


def _features(args):
    from geomer.features.bench import bench_features

    return bench_features(repeats=args.repeats)


def _synth(args):
    from geomer.synth.bench import bench_synth

    return bench_synth(frames=args.frames)


def _train(args):
    from geomer.train.bench import bench_train

    return bench_train(args.model, epochs=args.epochs, jobs=args.jobs)


ENTRIES = Registry("bench entry", GeomerError, {
    "landmarks": _landmarks, "features": _features, "synth": _synth, "train": _train,
})


def _run(args) -> int:
    print_rows(ENTRIES[args.entry](args))
    return 0
