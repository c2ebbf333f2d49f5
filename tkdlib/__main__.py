"""Command line: ``python -m tkdlib batch --profile sample``."""

from __future__ import annotations

import argparse
import sys

from tkdlib.batch import parse_shard, run_batch
from tkdlib.profile import available_profiles


def _shard_argument(text: str) -> tuple[int, int]:
    """`parse_shard` for argparse: a malformed or out-of-range shard is a usage error."""
    try:
        return parse_shard(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tkdlib", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    batch = commands.add_parser("batch", help="run a profile's grid with papermill, then its results notebook")
    batch.add_argument("--profile", required=True, help=f"one of {', '.join(available_profiles())}, or a .toml path")
    batch.add_argument("--out-dir", default=None, help="where runs live (default: the profile's out_dir)")
    batch.add_argument("--data-root", default=None, help="folder holding the datasets (default: $TKD_DATA)")
    batch.add_argument("--only", default=None, help="run only cells whose label contains this glob")
    batch.add_argument(
        "--shard",
        type=_shard_argument,
        default=None,
        metavar="I/N",
        help="run only shard I of N (1 <= I <= N) of the selected cells, for job arrays: cell k of the stable order goes to shard k mod N + 1",
    )
    batch.add_argument("--dry-run", action="store_true", help="list the cells (of the shard) and whether each is done")
    batch.add_argument(
        "--no-notebooks", action="store_true", help="run the cells directly, without papermill or summary notebooks (same records)"
    )
    args = parser.parse_args(argv)
    failures = run_batch(args.profile, args.out_dir, args.data_root, args.only, args.dry_run, shard_of=args.shard, notebooks=not args.no_notebooks)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
