"""``geomer prepare``: landmarks + features for every clip of a dataset into the feature cache."""

from __future__ import annotations

import sys

from geomer.cli._common import add_command, output_path


def register(subparsers) -> None:
    parser = add_command(
        subparsers,
        "prepare",
        "Track landmarks and extract region-graph features for every clip of a dataset into the "
        "feature cache (resumable: cached clips are skipped).",
        run,
    )
    parser.add_argument(
        "--dataset", default="synth",
        help="dataset name (see `geomer datasets`)",
    )
    parser.add_argument(
        "--root", default=None,
        help="dataset root folder (megc2019 also: casme2=P,samm=P,smic=P); without it, "
        "--dataset synth prepares the standard synthetic dataset (generated once)",
    )
    parser.add_argument("--scheme", default=None, help="class scheme; None: the dataset's own")
    parser.add_argument("--cache", default=None, type=output_path, help="feature-cache root; None: $GEOMER_CACHE/features")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes")
    parser.add_argument("--backend", default="dlib", help="landmark backend (dlib, dlib-cnn, fan)")
    parser.add_argument("--skip-bad", action="store_true", help="leave bad sheet rows and clips that fail (no face) out, listed, instead of refusing the dataset")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def dataset_root(name: str, root: str | None, progress: bool):
    """The root to read: ``root``, or the standard synthetic dataset for ``synth``."""
    from geomer.errors import GeomerError

    if root is not None:
        return root
    if name != "synth":
        raise GeomerError(f"--root is required for dataset {name!r} (only synth has a default)")
    from geomer.synth.generate import standard_dataset

    return standard_dataset(progress=progress)


def run(args) -> int:
    from geomer.data.datasets import check_scheme, read_dataset
    from geomer.data.prepare import prepare_dataset
    from geomer.errors import GeomerError
    from geomer.features.types import FeatureSettings
    from geomer.paths import cache_root
    from landmarks.backends import get_backend
    from landmarks.files import check_output_folder

    if args.jobs < 1:
        raise GeomerError(f"--jobs must be at least 1 (got {args.jobs})")
    get_backend(args.backend)  # an unknown or uninstalled backend is a one-line error before any work
    check_scheme(args.dataset, args.scheme)  # before the standard synthetic dataset is rendered
    check_output_folder(args.cache if args.cache is not None else cache_root() / "features", "--cache", GeomerError)
    root = dataset_root(args.dataset, args.root, not args.quiet)
    index = read_dataset(args.dataset, root, scheme=args.scheme, skip_bad=args.skip_bad)
    summary = prepare_dataset(
        index, args.cache, FeatureSettings(backend=args.backend), jobs=args.jobs, progress=not args.quiet
    )
    print(f"{index.name}: {len(index.samples)} clips, {len(index.subjects)} subjects, "
          f"classes {', '.join(index.classes)}")
    for line in summary.lines():
        print(line)
    # with --skip-bad the failed clips are left out; a dataset with no clip left is still an error
    if summary.failures and (not args.skip_bad or len(summary.failures) == summary.clips):
        print(f"geomer prepare: error: {summary.error_line()}; the other clips are cached", file=sys.stderr)
        return 2
    return 0
