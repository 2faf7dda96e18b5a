"""``python -m trainer``: see :mod:`trainer.cli`. Ctrl-C ends with one line and exit status 130."""
import os
import signal
import sys


def interrupted_line(argv: list[str]) -> str:
    """What Ctrl-C prints: for a training run, how to continue it."""
    if argv[:1] in (["predict"], ["evaluate"]):
        return "error: interrupted (Ctrl-C)"
    return ("error: interrupted (Ctrl-C): the same command with --resume continues from the last "
            "checkpoint (checkpoint.pt, written every --checkpoint-minutes and at each epoch end)")


# Ctrl-C is KeyboardInterrupt even where the parent left SIGINT ignored (a job started in the
# background of a script inherits SIG_IGN, and torchrun's own SIGINT would then be lost).
signal.signal(signal.SIGINT, signal.default_int_handler)
try:
    from trainer.cli import main

    code = main()
except KeyboardInterrupt:
    if os.environ.get("RANK", "0") == "0":
        print(f"\n{interrupted_line(sys.argv[1:])}", file=sys.stderr)
    code = 130
sys.exit(code)
