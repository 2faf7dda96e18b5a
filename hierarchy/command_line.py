"""What the project's command lines share: a parameter's flag name, one-line usage errors, no
abbreviated flags, and former flag names that keep working (used by the pipeline's checks,
``python -m hierarchy`` and ``python -m trainer``)."""
from __future__ import annotations

import argparse


def flag(name: str) -> str:
    """The command-line flag of a parameter: ``min_images`` -> ``--min-images``."""
    return "--" + name.replace("_", "-")


class OneLineParser(argparse.ArgumentParser):
    """Usage errors as one ``error:`` line (exit 2) that points to ``--help``, not the usage
    block; no abbreviated flags (``--init-check`` is a typo, not ``--init-checkpoint``)."""

    def __init__(self, **kwargs):
        super().__init__(allow_abbrev=False, **kwargs)

    def error(self, message: str):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def renamed_flags(argv: list[str], aliases: dict[str, str]) -> list[str]:
    """``argv`` with each former flag name in ``aliases`` (``--old`` or ``--old=VALUE``) given its
    current name; arguments after ``--`` are left alone."""
    out = list(argv)
    for i, arg in enumerate(out):
        if arg == "--":
            break
        name, equals, value = arg.partition("=")
        if name in aliases:
            out[i] = aliases[name] + equals + value
    return out
