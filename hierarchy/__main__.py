"""Command line: ``python -m hierarchy build ...`` and ``python -m hierarchy show ...``.

``build --classes FILE --out TREE.json [--tree-source wordnet|is_a] [--is-a-path PATH]
[--words-path PATH]`` writes a tree JSON; ``show TREE.json [--plot PNG]`` prints its levels. The
flags are named as the pipeline's; the former names ``--source``, ``--is-a`` and ``--words`` still
work (hidden from ``--help``). ``--classes`` is a text file of wnids or a Parquet table with a
``wnid`` column (the pipeline's ``classes.parquet``; read with pyarrow, imported only then).
A missing folder of ``--out`` or ``--plot`` is created, as every writer of the project does
(:func:`hierarchy.atomic.atomic_path`), and the command says so.

Exit status: 0 done; 2 bad input (a flag value; a missing, unreadable or malformed file; an
output path that is a folder or lies under a file), each one ``error:`` line naming the flag and
the file; 5 WordNet is not installed; 1 anything else (e.g. the output could not be written).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import BinaryIO, Callable, NamedTuple

from hierarchy.command_line import OneLineParser, renamed_flags
from hierarchy.isa import SOURCES, placeable
from hierarchy.names import read_words
from hierarchy.tree import SemanticTree
from hierarchy.wordnet import WNID_RE, WordNetMissing, is_known_wnid

BAD_INPUT = 2
WORDNET_MISSING = 5  # the pipeline's status for it (pipeline.errors.WORDNET_MISSING); no pipeline import here
# former flag names of `build`, still accepted (hidden from --help); errors use the new names
ALIASES = {"--source": "--tree-source", "--is-a": "--is-a-path", "--words": "--words-path"}
PARQUET_MAGIC = b"PAR1"
SHOWN = 20  # ids or line numbers quoted in one message

CLASSES_EXPECTED = "expected a text file of wnids, one per line, or a Parquet table with a wnid column"
IS_A_EXPECTED = "expected ImageNet's wordnet.is_a.txt, 'parent child' wnids per line"
WORDS_EXPECTED = "expected ImageNet's words.txt, 'wnid<TAB>lemmas' per line"
TREE_EXPECTED = "expected a tree JSON written by 'python -m hierarchy build'"


class CommandError(Exception):
    """A failure the command reports as one ``error:`` line; ``exit_code`` is its status."""

    exit_code = 1


class InputError(CommandError):
    """Bad input: a flag value, or a file the command cannot use (named in the message)."""

    exit_code = BAD_INPUT


class ClassList(NamedTuple):
    """The wnids of ``--classes``, each with the line (text file) or row (Parquet) it came from."""

    path: Path
    unit: str  # "line" or "row"
    number: dict[str, int]

    @property
    def wnids(self) -> list[str]:
        """The wnids in file order."""
        return list(self.number)

    def where(self, wnids: list[str]) -> str:
        """``"line 4"`` / ``"lines 4, 9"``: where ``wnids`` are in the file."""
        numbers = ", ".join(str(self.number[w]) for w in wnids[:SHOWN])
        return f"{self.unit}{'s' if len(wnids) > 1 else ''} {numbers}{', ...' if len(wnids) > SHOWN else ''}"


def shown(wnids: list[str]) -> str:
    """The first ids of a list, for a message."""
    return ", ".join(wnids[:SHOWN]) + (", ..." if len(wnids) > SHOWN else "")


def named(flag: str, path: Path) -> str:
    """``"--classes c.txt"``, or just the path for a positional argument (``flag`` empty)."""
    return f"{flag} {path}" if flag else str(path)


# ----- input files ----------------------------------------------------------------------------

def open_input(path: Path, flag: str, expected: str) -> BinaryIO:
    """Open an input file for reading; :class:`InputError` when it is missing, a folder or unreadable."""
    try:
        return open(path, "rb")
    except IsADirectoryError:
        raise InputError(f"{named(flag, path)}: a folder, not a file ({expected})") from None
    except FileNotFoundError:
        raise InputError(f"{named(flag, path)}: No such file ({expected})") from None
    except OSError as exc:
        raise InputError(f"{named(flag, path)}: cannot read: {exc.strerror} ({expected})") from None


def read_text(path: Path, flag: str, expected: str) -> str:
    """The UTF-8 text of an input file; :class:`InputError` for a binary or non-UTF-8 file."""
    with open_input(path, flag, expected) as file:
        head = file.read(8192)
        if b"\0" in head:
            raise InputError(f"{named(flag, path)}: not a text file ({expected})")
        data = head + file.read()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{named(flag, path)}: not a text file (bad UTF-8 at byte {exc.start}; "
                         f"{expected})") from None


def is_parquet(path: Path) -> bool:
    """True when ``path`` starts as a Parquet file does."""
    with open_input(path, "--classes", CLASSES_EXPECTED) as file:
        return file.read(len(PARQUET_MAGIC)) == PARQUET_MAGIC


def text_entries(path: Path) -> list[tuple[int, object]]:
    """``(line number, first field)`` of each line of a class list that is not blank or ``#``."""
    lines = read_text(path, "--classes", CLASSES_EXPECTED).split("\n")
    return [(number, line.split()[0]) for number, line in enumerate(lines, start=1)
            if line.strip() and not line.lstrip().startswith("#")]


def parquet_entries(path: Path) -> list[tuple[int, object]]:
    """``(row number from 1, value)`` of the ``wnid`` column of a Parquet table."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise InputError(f"--classes {path}: a Parquet table, and reading one needs pyarrow (not "
                         "installed); give a text file of wnids, one per line") from None
    try:
        columns = pq.ParquetFile(path).schema_arrow.names
        if "wnid" not in columns:
            raise InputError(f"--classes {path}: a Parquet table without a wnid column (columns: "
                             f"{', '.join(columns) or 'none'}; {CLASSES_EXPECTED})")
        values = pq.read_table(path, columns=["wnid"]).column("wnid").to_pylist()
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError, ArrowIOError an OSError
        first_line = str(exc).strip().split("\n")[0].rstrip(".")
        raise InputError(f"--classes {path}: not a readable Parquet table ({first_line}; "
                         f"{CLASSES_EXPECTED})") from None
    return list(enumerate(values, start=1))


def read_class_list(path: Path) -> ClassList:
    """The wnids of ``--classes`` (see :data:`CLASSES_EXPECTED`), each once, in file order;
    :class:`InputError` naming the file and line (or row) for anything that is not a wnid, a
    repeated wnid, or no wnid at all."""
    parquet = is_parquet(path)
    unit = "row" if parquet else "line"
    number: dict[str, int] = {}
    for n, value in (parquet_entries(path) if parquet else text_entries(path)):
        where = f"{path} row {n}" if parquet else f"{path}:{n}"
        if not isinstance(value, str) or not WNID_RE.match(value):
            raise InputError(f"--classes {where}: expected a wnid (n + 8 digits, e.g. n01440764), "
                             f"got {value!r}")
        if value in number:
            raise InputError(f"--classes {where}: {value} repeats {unit} {number[value]} "
                             "(expected each class once)")
        number[value] = n
    if not number:
        raise InputError(f"--classes {path}: no wnids ({CLASSES_EXPECTED})")
    return ClassList(path, unit, number)


# ----- output files ---------------------------------------------------------------------------

def check_output(path: Path, flag: str, what: str) -> Path | None:
    """Refuse an output path that is a folder or lies under a file; return its folder when that
    is still to be created (the write creates it), else None."""
    if path.is_dir():
        raise InputError(f"{flag} {path}: a folder; expected the path of the {what} to write")
    existing = path.parent
    while not existing.exists():  # ends at the root or '.', which exist
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(f"{flag} {path}: {existing} is a file, not a folder")
    return None if existing == path.parent else path.parent


def write_output(path: Path, flag: str, write: Callable[[Path], None], new_folder: Path | None) -> None:
    """Run ``write(path)``; one line for a folder it created; :class:`CommandError` naming the
    file when writing fails."""
    try:
        write(path)
    except OSError as exc:
        raise CommandError(f"{flag} {path}: cannot write: {exc.strerror or exc}") from None
    if new_folder is not None:
        print(f"created folder {new_folder}")


# ----- build ----------------------------------------------------------------------------------

def check_source(args: argparse.Namespace) -> None:
    """Refuse a tree source without its is-a file, or an is-a file the source would not read."""
    if args.tree_source == "is_a" and args.is_a_path is None:
        raise InputError("--tree-source is_a needs --is-a-path (ImageNet's wordnet.is_a.txt)")
    if args.tree_source != "is_a" and args.is_a_path is not None:
        raise InputError(f"--is-a-path is read only with --tree-source is_a (now {args.tree_source}); "
                         "add --tree-source is_a, or drop --is-a-path")


def check_placeable(classes: ClassList, args: argparse.Namespace) -> None:
    """Refuse a malformed is-a file, and classes the tree source cannot place (naming their lines)."""
    try:
        is_placeable = placeable(args.tree_source, args.is_a_path)
    except ValueError as exc:  # read_is_a names the file and line
        raise InputError(f"--is-a-path {exc}") from None
    unknown = [w for w in classes.wnids if not is_placeable(w)]
    if unknown:
        what = (f"neither in {args.is_a_path} nor WordNet 3.0 nouns" if args.is_a_path is not None
                else "not WordNet 3.0 nouns")
        raise InputError(f"{len(unknown)} class id(s) are {what}: {shown(unknown)} "
                         f"(--classes {classes.path} {classes.where(unknown)}; drop them first)")


def check_names(classes: ClassList, words_path: Path | None) -> None:
    """Refuse a malformed words file, one without some class, or (without one) classes that are
    not WordNet nouns and so have no name."""
    if words_path is None:
        unnamed = [w for w in classes.wnids if not is_known_wnid(w)]
        if unnamed:
            raise InputError(f"{len(unnamed)} class id(s) of --classes {classes.path} are not WordNet "
                             f"3.0 nouns, so have no name: {shown(unnamed)} (give --words-path words.txt)")
        return
    try:
        words = read_words(words_path)
    except ValueError as exc:  # names the file and line
        raise InputError(f"--words-path {exc}") from None
    missing = [w for w in classes.wnids if w not in words]
    if missing:
        raise InputError(f"--words-path {words_path}: no entry for {len(missing)} class id(s) of "
                         f"--classes {classes.path}: {shown(missing)} ({WORDS_EXPECTED})")


def build_tree(classes: ClassList, args: argparse.Namespace) -> SemanticTree:
    """The tree of checked classes; :class:`InputError` for an is-a relation with a cycle."""
    try:
        return SemanticTree.build(classes.wnids, source=args.tree_source,
                                  is_a_path=args.is_a_path, words_path=args.words_path)
    except ValueError as exc:
        where = f"--is-a-path {args.is_a_path}" if args.is_a_path is not None else "WordNet"
        raise InputError(f"{where}: {exc}") from None


def build(args: argparse.Namespace) -> None:
    """Check every input and the output path first, then build the tree and write it."""
    check_source(args)
    classes = read_class_list(args.classes)
    for flag, path, expected in (("--is-a-path", args.is_a_path, IS_A_EXPECTED),
                                 ("--words-path", args.words_path, WORDS_EXPECTED)):
        if path is not None:
            read_text(path, flag, expected)
    new_folder = check_output(args.out, "--out", "tree JSON")
    started = time.perf_counter()
    check_placeable(classes, args)
    check_names(classes, args.words_path)
    tree = build_tree(classes, args)
    write_output(args.out, "--out", tree.save, new_folder)
    print(f"wrote {args.out} in {time.perf_counter() - started:.1f} s")
    print(tree.summary(), end="")


# ----- show -----------------------------------------------------------------------------------

def load_tree(path: Path) -> SemanticTree:
    """A tree JSON; :class:`InputError` naming the file when it is missing or not such a tree."""
    read_text(path, "", TREE_EXPECTED)
    try:
        return SemanticTree.load(path)
    except ValueError as exc:  # names the file
        raise InputError(f"{exc} ({TREE_EXPECTED})") from None
    except (TypeError, KeyError, IndexError, AttributeError) as exc:  # fields of the wrong JSON type
        raise InputError(f"{path}: not a semantic tree file ({type(exc).__name__}: {exc}; "
                         f"{TREE_EXPECTED})") from None


def show(args: argparse.Namespace) -> None:
    """Print a tree's levels table; with ``--plot``, also write its bar chart."""
    tree = load_tree(args.tree)
    new_folder = check_output(args.plot, "--plot", "PNG") if args.plot is not None else None
    print(tree.summary(), end="")
    if args.plot is not None:
        write_output(args.plot, "--plot", tree.plot_levels, new_folder)
        print(f"wrote {args.plot}")


# ----- command line ---------------------------------------------------------------------------

def parser() -> argparse.ArgumentParser:
    """The ``build`` and ``show`` subcommands, with the new flag names only."""
    main = OneLineParser(prog="python -m hierarchy",
                   description="Semantic tree of ImageNet-21K-P classes (WordNet is-a).")
    commands = main.add_subparsers(dest="command", required=True)

    b = commands.add_parser("build", help="build a tree JSON from a class list",
                            description="Build the semantic tree of a class list and write it as JSON.")
    b.add_argument("--classes", type=Path, required=True, metavar="FILE",
                   help="text file, one wnid per line (first field; blank and # lines skipped), or a "
                        "Parquet table with a wnid column (e.g. the pipeline's classes.parquet)")
    b.add_argument("--out", type=Path, required=True, metavar="TREE_JSON",
                   help="tree JSON to write (a missing folder is created)")
    b.add_argument("--tree-source", choices=SOURCES, default="wordnet",
                   help="is-a relation: nltk WordNet 3.0 or ImageNet's wordnet.is_a.txt (default: %(default)s)")
    b.add_argument("--is-a-path", type=Path, metavar="PATH", help="wordnet.is_a.txt (with --tree-source is_a)")
    b.add_argument("--words-path", type=Path, metavar="PATH",
                   help="words.txt for class names (default: WordNet lemmas)")
    b.set_defaults(run=build)

    s = commands.add_parser("show", help="print a tree's levels and factors",
                            description="Print levels, classes per level, softmax levels and factors.")
    s.add_argument("tree", type=Path, help="tree JSON written by 'build'")
    s.add_argument("--plot", type=Path, metavar="PNG",
                   help="also write a PNG bar chart of classes per level (a missing folder is created)")
    s.set_defaults(run=show)
    return main


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; return its exit status (see the module docstring)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(renamed_flags(argv, ALIASES) if argv[:1] == ["build"] else argv)
    try:
        args.run(args)
    except CommandError as exc:
        return fail(exc, exc.exit_code)
    except WordNetMissing as exc:
        return fail(exc, WORDNET_MISSING)
    except (OSError, ValueError) as exc:  # not foreseen above: still one line
        return fail(exc, 1)
    return 0


def fail(exc: Exception, code: int) -> int:
    """Print ``error: <message>`` on one line; return the exit status."""
    print("error: " + str(exc).replace("\n", " "), file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
