"""Helpers shared by the sub-command modules."""

from __future__ import annotations

import argparse


def add_command(subparsers, name: str, help: str, func) -> argparse.ArgumentParser:
    """Add sub-command ``name`` that runs ``func(args)``; defaults show in ``--help``."""
    parser = subparsers.add_parser(
        name,
        help=help,
        description=help,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    parser.set_defaults(func=func)
    return parser
