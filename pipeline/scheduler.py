"""``python -m pipeline scheduler``: a cluster's luigid with the package's Luigi defaults."""
from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    """``python -m pipeline scheduler [luigid flags]``: luigid with the package's Luigi defaults
    (the ``archive_io`` cap, retries), listening on 127.0.0.1 unless ``--address`` says otherwise."""
    from luigi.cmdline import luigid

    from pipeline.luigi_config import apply_defaults

    apply_defaults()
    address = "127.0.0.1"
    for i, arg in enumerate(argv):
        if arg == "--address" and i + 1 < len(argv):
            address = argv[i + 1]
        elif arg.startswith("--address="):
            address = arg.split("=", 1)[1]
    print(f"luigid listening on {address} (no authentication: whoever reaches this address and port can "
          "see every task and change the build's state; bind it to a private interface)", file=sys.stderr)
    luigid(["--address", address, *argv])
    return 0
