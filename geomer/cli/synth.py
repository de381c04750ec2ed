"""``geomer synth OUT``: write a synthetic micro-expression dataset in a real layout."""

from __future__ import annotations

from geomer.cli._common import add_command, output_path
from geomer.synth.layouts import LAYOUTS
from geomer.synth.motion import DIFFICULTIES


def register(subparsers) -> None:
    parser = add_command(
        subparsers,
        "synth",
        "write a synthetic micro-expression dataset (label sheet, frames, ground_truth.json)",
        _run,
    )
    parser.add_argument("out", type=output_path, help="output folder (must not exist, or be empty)")
    parser.add_argument("--layout", choices=LAYOUTS, default="casme2", help="on-disk layout")
    parser.add_argument("--subjects", type=int, default=4, help="number of subjects")
    parser.add_argument("--clips", type=int, default=5, help="clips per subject")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--difficulty", choices=DIFFICULTIES.names(), default="standard",
                        help="expression amplitude vs distractors (distractor AUs, head motion, blinks, noise)")
    parser.add_argument("--fps", type=float, default=200.0, help="frame rate of the clips")
    parser.add_argument("--jobs", type=int, default=1, help="subjects rendered in parallel processes")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _run(args) -> int:
    from geomer.synth import generate

    out = generate(
        args.out,
        layout=args.layout,
        subjects=args.subjects,
        clips=args.clips,
        seed=args.seed,
        difficulty=args.difficulty,
        fps=args.fps,
        progress=not args.quiet,
        jobs=args.jobs,
    )
    print(f"wrote {args.layout} dataset ({args.subjects} subjects × {args.clips} clips) to {out}")
    return 0
