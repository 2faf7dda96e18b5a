"""Command line: ``python -m hierarchy build ...`` and ``python -m hierarchy show ...``."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from hierarchy.isa import SOURCES
from hierarchy.tree import SemanticTree
from hierarchy.wordnet import WordNetMissing


def read_class_list(path: Path) -> list[str]:
    """wnids from a text file: the first field of each non-empty line not starting with ``#``."""
    with open(path, encoding="utf-8") as lines:
        return [line.split()[0] for line in lines if line.strip() and not line.lstrip().startswith("#")]


def build(args: argparse.Namespace) -> None:
    if args.source == "is_a" and args.is_a is None:
        raise ValueError("--source is_a needs --is-a PATH (ImageNet's wordnet.is_a.txt)")
    if args.source == "wordnet" and args.is_a is not None:
        raise ValueError("--is-a is only used with --source is_a")
    started = time.perf_counter()
    tree = SemanticTree.build(read_class_list(args.classes), source=args.source,
                              is_a_path=args.is_a, words_path=args.words)
    tree.save(args.out)
    print(f"wrote {args.out} in {time.perf_counter() - started:.1f} s")
    print(tree.summary(), end="")


def show(args: argparse.Namespace) -> None:
    tree = SemanticTree.load(args.tree)
    print(tree.summary(), end="")
    if args.plot is not None:
        tree.plot_levels(args.plot)
        print(f"wrote {args.plot}")


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="python -m hierarchy",
                                   description="Semantic tree of ImageNet-21K-P classes (WordNet is-a).")
    commands = main.add_subparsers(dest="command", required=True)

    b = commands.add_parser("build", help="build a tree JSON from a class list",
                            description="Build the semantic tree of a class list and write it as JSON.")
    b.add_argument("--classes", type=Path, required=True,
                   help="text file, one wnid per line (first field; blank and # lines skipped)")
    b.add_argument("--out", type=Path, required=True, help="tree JSON to write")
    b.add_argument("--source", choices=SOURCES, default="wordnet",
                   help="is-a relation: nltk WordNet 3.0 or ImageNet's wordnet.is_a.txt (default: %(default)s)")
    b.add_argument("--is-a", type=Path, help="wordnet.is_a.txt (with --source is_a)")
    b.add_argument("--words", type=Path, help="words.txt for class names (default: WordNet lemmas)")
    b.set_defaults(run=build)

    s = commands.add_parser("show", help="print a tree's levels and factors",
                            description="Print levels, classes per level, softmax levels and factors.")
    s.add_argument("tree", type=Path, help="tree JSON written by 'build'")
    s.add_argument("--plot", type=Path, help="also write a PNG bar chart of classes per level")
    s.set_defaults(run=show)
    return main


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        args.run(args)
    except (OSError, ValueError, WordNetMissing) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
