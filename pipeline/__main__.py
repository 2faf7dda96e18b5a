"""``python -m pipeline --version`` (versions of the tool and of the libraries on its hot path),
``python -m pipeline scheduler [luigid flags]`` (a cluster's luigid with the package's Luigi
defaults, on 127.0.0.1 unless ``--address`` says otherwise) and ``python -m pipeline verify OUT``
(every output file against the build's ``SHA256SUMS``: :mod:`pipeline.checksums`) and
``python -m pipeline eval-hashes DIR_OR_TAR -o FILE`` (the fingerprints of an evaluation set, to
share instead of its images: :mod:`pipeline.contamination`)."""
from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["scheduler"]:
        from pipeline import scheduler

        return scheduler.main(argv[1:])
    if argv[:1] == ["verify"]:
        from pipeline import checksums

        return checksums.main(argv[1:])
    if argv[:1] == ["eval-hashes"]:
        from pipeline import contamination

        return contamination.eval_hashes_main(argv[1:])
    parser = argparse.ArgumentParser(
        prog="python -m pipeline",
        description="ImageNet-21K-P dataset build. Run it with Luigi: "
                    "luigi --module pipeline BuildImageNet21KP --archive A --output-dir O [--local-scheduler]. "
                    "`python -m pipeline scheduler --address IP [--port 8082 --state-path F --logdir D]` "
                    "starts a cluster's luigid with the pipeline's Luigi defaults. "
                    "`python -m pipeline verify OUT [--workers N] [--remove-damaged]` checks a built output dir "
                    "against its SHA256SUMS (exit 0: intact, 11: files missing or damaged, 2: no finished build). "
                    "`python -m pipeline eval-hashes DIR_OR_TAR -o FILE` writes an evaluation set's fingerprints "
                    "for --eval-sets.")
    parser.add_argument("--version", action="store_true", help="print versions and the active PIL build")
    args = parser.parse_args(argv)
    if not args.version:
        parser.print_help()
        return 0
    import luigi

    import pipeline
    from pipeline.pil_build import describe_pil_build

    print(f"imagenet21kp pipeline {pipeline.__version__}")
    print(describe_pil_build())
    print(f"luigi {luigi.__version__}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
