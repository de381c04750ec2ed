"""``geomer bench ENTRY``: the project's own speed measurements.

Each entry is a library function returning rows ``(what, value, unit)``; this module prints them
as a table. Entries: ``landmarks`` (issue 2), ``features`` (issue 3), ``synth`` (the renderer, issue 4),
``train`` (issues 5, 6).
"""

from __future__ import annotations

from geomer.cli._common import add_command, print_rows


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


def _run(args) -> int:
    if args.entry == "landmarks":
        from landmarks.bench import bench_landmarks

        rows = bench_landmarks(args.video, frames=args.frames)
    elif args.entry == "features":
        from geomer.features.bench import bench_features

        rows = bench_features(repeats=args.repeats)
    elif args.entry == "synth":
        from geomer.synth.bench import bench_synth

        rows = bench_synth(frames=args.frames)
    else:
        from geomer.train.bench import bench_train

        rows = bench_train(args.model, epochs=args.epochs, jobs=args.jobs)
    print_rows(rows)
    return 0
