"""Install WordNet 3.0 for nltk without internet: ``python -m tools.install_wordnet``.

Sources, first that works: an existing install at the destination; Debian's ``wordnet-base`` +
``wordnet-sense-index`` dict files in ``/usr/share/wordnet`` (installed with apt-get when running
as root); ``nltk.download('wordnet')`` where the internet is reachable. The destination is an nltk
data directory (default: the project's ``data/nltk_data``); the files land in
``DEST/corpora/wordnet``.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

from hierarchy.atomic import atomic_dir, remove_stale_temp_files
from hierarchy.wordnet import DEFAULT_NLTK_DATA, configured_nltk_data

DEBIAN_DICT = Path("/usr/share/wordnet")
DEBIAN_PACKAGES = ["wordnet-base", "wordnet-sense-index"]
DICT_FILES = [
    "adj.exc", "adv.exc", "noun.exc", "verb.exc", "cntlist.rev",
    "data.adj", "data.adv", "data.noun", "data.verb",
    "index.adj", "index.adv", "index.noun", "index.verb", "index.sense",
]
# WordNet's lexnames(5): file number, lexicographer file name, syntactic category.
LEXNAMES = """adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute
noun.body noun.cognition noun.communication noun.event noun.feeling noun.food noun.group
noun.location noun.motive noun.object noun.person noun.phenomenon noun.plant noun.possession
noun.process noun.quantity noun.relation noun.shape noun.state noun.substance noun.time
verb.body verb.change verb.cognition verb.communication verb.competition verb.consumption
verb.contact verb.creation verb.emotion verb.motion verb.perception verb.possession verb.social
verb.stative verb.weather adj.ppl""".split()
CATEGORY = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}


def lexnames_text() -> str:
    """The 45-line ``lexnames`` file nltk needs (Debian does not ship it)."""
    return "".join(
        f"{i:02d}\t{name}\t{CATEGORY[name.split('.')[0]]}\n" for i, name in enumerate(LEXNAMES)
    )


def is_installed(dest: Path) -> bool:
    root = dest / "corpora" / "wordnet"
    return (root / "data.noun").is_file() and (root / "lexnames").is_file()


def install_from_debian(dest: Path) -> None:
    """Copy Debian's dict files into ``dest/corpora/wordnet`` (atomically, via a temp dir)."""
    if not (DEBIAN_DICT / "data.noun").is_file():
        if os.geteuid() != 0 or not shutil.which("apt-get"):
            raise FileNotFoundError(f"{DEBIAN_DICT} is missing and apt-get is not usable")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "install", "-y", "-qq", *DEBIAN_PACKAGES], check=False, env=env)
        if not (DEBIAN_DICT / "data.noun").is_file():
            subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
            subprocess.run(["apt-get", "install", "-y", "-qq", *DEBIAN_PACKAGES], check=True, env=env)
    corpora = dest / "corpora"
    remove_stale_temp_files(corpora / "wordnet")  # a killed earlier install's
    with atomic_dir(corpora / "wordnet") as tmp:
        for name in DICT_FILES:
            src = DEBIAN_DICT / name
            if src.is_file():
                shutil.copyfile(src, tmp / name)
        (tmp / "lexnames").write_text(lexnames_text())


def install_with_nltk(dest: Path) -> None:
    import nltk

    if not nltk.download("wordnet", download_dir=str(dest), quiet=True):
        raise RuntimeError("nltk.download('wordnet') failed")
    archive = dest / "corpora" / "wordnet.zip"
    if archive.is_file() and not (dest / "corpora" / "wordnet").is_dir():
        shutil.unpack_archive(str(archive), str(dest / "corpora"))


def install(dest: Path) -> str:
    """Make sure WordNet is in ``dest``; return how it got there."""
    if is_installed(dest):
        return "already installed"
    errors = []
    for how, fn in (("Debian wordnet-base", install_from_debian), ("nltk.download", install_with_nltk)):
        try:
            fn(dest)
            if is_installed(dest):
                return how
        except Exception as exc:  # try the next source, report all at the end
            errors.append(f"{how}: {exc}")
    raise SystemExit("could not install WordNet 3.0: " + "; ".join(errors))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=configured_nltk_data() or DEFAULT_NLTK_DATA,
                        help="nltk data directory (default: %(default)s)")
    args = parser.parse_args(argv)
    how = install(args.dest)
    print(f"WordNet 3.0 in {args.dest / 'corpora' / 'wordnet'} ({how})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
