"""``geomer predict VIDEO|FOLDER --checkpoint CKPT``: class probabilities and the relation figure."""

from __future__ import annotations

from geomer.cli._common import add_command, output_path


def register(subparsers) -> None:
    parser = add_command(subparsers, "predict", "run a trained model on a video or frame folder", run)
    parser.add_argument("source", metavar="VIDEO|FOLDER", help="a face video or a folder of frames")
    parser.add_argument("--checkpoint", required=True, help="a checkpoint.pt from a run directory")
    parser.add_argument("--onset", type=int, default=None, help="onset frame number (default: the first)")
    parser.add_argument("--apex", type=int, default=None, help="apex frame number (default: spotted)")
    parser.add_argument("--offset", type=int, default=None, help="offset frame number (default: the last)")
    parser.add_argument("-o", "--out", default=None, type=output_path,
                        help="folder for prediction.json and relations.png (default: <source name>-prediction)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args) -> int:
    import json
    import math
    from pathlib import Path

    from geomer.atomic import atomic_write_text
    from geomer.errors import GeomerError
    from landmarks.files import check_output_folder
    from geomer.train.predict import predict_clip
    from geomer.viz import plot_relation_matrix, save_figure

    out = check_output_folder(Path(args.out) if args.out is not None else Path(f"{Path(args.source).name}-prediction"), "-o", GeomerError)
    for name in ("relations.png", "prediction.json"):  # a folder in the way: found before the tracking
        if (out / name).is_dir():
            raise GeomerError(f"{out / name}: is a folder, where predict writes its {name}")
    prediction = predict_clip(
        args.source, args.checkpoint, onset=args.onset, apex=args.apex, offset=args.offset,
        progress=not args.quiet,
    )
    if not all(map(math.isfinite, prediction.probabilities)):  # NaN is neither a prediction nor JSON
        raise GeomerError(f"{args.checkpoint}: the model gives non-finite class probabilities for {args.source}")
    out.mkdir(parents=True, exist_ok=True)
    title = f"{Path(prediction.source).name}: {prediction.predicted}"
    figure = plot_relation_matrix(prediction.relations, list(prediction.component_names), title=title)
    figure_path = out / "relations.png"
    save_figure(figure, figure_path)
    # the result last: a prediction.json is only ever beside its figure
    atomic_write_text(out / "prediction.json", json.dumps(prediction.to_dict(), indent=2) + "\n")

    spotted = " (spotted)" if prediction.apex_spotted else ""
    print(f"{prediction.source}: frames {prediction.onset}–{prediction.offset}, apex {prediction.apex}{spotted}")
    width = max(len(c) for c in prediction.classes)
    for name, probability in sorted(zip(prediction.classes, prediction.probabilities), key=lambda x: -x[1]):
        print(f"  {name:<{width}}  {probability:.3f}")
    print(f"predicted: {prediction.predicted}; relation figure: {figure_path}")
    return 0
