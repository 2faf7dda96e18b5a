"""Command line: ``python -m trainer [train] --data DIR --output RUN ...`` and
``python -m trainer predict --run RUN IMAGE...`` and
``python -m trainer evaluate --run RUN --data DIR`` (or ``--imagenet1k-val VAL_DIR``; training also under
``torchrun``).

The train flags are generated from :class:`trainer.config.TrainConfig`, so ``--help`` always
documents every setting with its default.
"""
from __future__ import annotations

import argparse
import sys

from hierarchy.command_line import OneLineParser, flag, renamed_flags
from trainer.config import ConfigError, TrainConfig, config_fields

_TYPES = {"str": str, "int": int, "float": float, "str | None": str, "int | None": int,
          "float | None": float}
# former flag names that still work, hidden from --help: predict's --checkpoint took a run directory
PREDICT_ALIASES = {"--checkpoint": "--run"}


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends ``(default: X)`` unless the help already says what the default is."""

    def _get_help_string(self, action):
        text = action.help or ""
        return text if "default" in text.lower() else super()._get_help_string(action)


def train_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="python -m trainer",
        description="Train a timm model on an ImageNet-21K-P style WebDataset with the semantic "
                    "softmax (default), single-label or multi-label scheme, optionally with "
                    "semantic knowledge distillation. Runs as one process or under torchrun. "
                    "Subcommand 'predict' (python -m trainer predict -h) prints semantic chains, "
                    "'evaluate' (python -m trainer evaluate -h) validates trained weights.",
        formatter_class=_HelpFormatter)
    for spec in config_fields():
        meta = dict(spec.metadata)
        option = flag(spec.name)
        if spec.type == "bool":
            parser.add_argument(option, action=argparse.BooleanOptionalAction, default=spec.default,
                                help=meta["help"])
            continue
        kwargs = {"type": _TYPES[spec.type], "help": meta.pop("help")}
        if meta.get("required"):
            kwargs.update(required=True, default=argparse.SUPPRESS)
        else:
            kwargs["default"] = spec.default
        if "choices" in meta:
            kwargs["choices"] = meta["choices"]
        parser.add_argument(option, **kwargs)
    return parser


def predict_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="python -m trainer predict",
        description="Print the semantic chain (root > ... > leaf, with probabilities) a trained "
                    "model predicts for each image.",
        formatter_class=_HelpFormatter)
    parser.add_argument("--run", metavar="RUN_DIR", required=True, default=argparse.SUPPRESS,
                        help="run directory of a training (model.json, semantic_tree.json and "
                             "model.safetensors, or checkpoint.pt while it is still running)")
    parser.add_argument("images", nargs="+", help="image files or folders of them (any size; squish-resized); "
                                                  "unreadable ones are reported and skipped (exit status 1)")
    parser.add_argument("--strategy", choices=["tree", "argmax"], default="tree",
                        help="tree: at each level pick the best class among the descendants of "
                             "the previous pick; argmax: the best class of each level on its own")
    parser.add_argument("--min-prob", type=float, default=0.5,
                        help="stop the chain at the first level whose pick has a lower level-"
                             "softmax probability (the root level is always printed)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--json", action="store_true", help="print one JSON object per image")
    return parser


def evaluate_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="python -m trainer evaluate",
        description="Validate trained weights on a dataset's validation split with training's own "
                    "validation code; print the metrics of a metrics.jsonl val entry and write eval.json "
                    "and accuracy_per_level.png. With --imagenet1k-val, score them on ImageNet-1K's "
                    "validation images instead.",
        formatter_class=_HelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", help="run directory of a training (model.json, semantic_tree.json and its "
                                      "weights, or checkpoint.pt while it is still running)")
    source.add_argument("--weights", help="a weights file (.safetensors or a torch state dict); needs --model "
                                          "and --output, the classes are the dataset's")
    parser.add_argument("--data", help="dataset directory written by the pipeline (its validation split is "
                                       "evaluated); with --imagenet1k-val only needed for --weights (its classes)")
    parser.add_argument("--imagenet1k-val", metavar="VAL_DIR",
                        help="instead of --data's validation split, score top-1/top-5 on an ILSVRC2012-style "
                             "validation folder (VAL_DIR/nXXXXXXXX/*.JPEG) among the model's ImageNet-1K classes "
                             "(the head's rows of them); writes eval_imagenet1k.json")
    parser.add_argument("--class-list", metavar="FILE",
                        help="with --imagenet1k-val: the benchmark's classes, one wnid a line (default: ImageNet-1K's "
                             "1,000, timm's imagenet_synsets.txt; e.g. timm's imagenet_r_synsets.txt for ImageNet-R)")
    parser.add_argument("--output", help="folder for eval.json and accuracy_per_level.png (default with "
                                         "--run: RUN/eval-<dataset folder name>, or RUN/eval-imagenet1k-<VAL_DIR "
                                         "name> with --imagenet1k-val)")
    parser.add_argument("--model", help="timm model name of --weights (with --run: from model.json)")
    parser.add_argument("--scheme", choices=["semantic", "single", "multi"], default="semantic",
                        help="the scheme --weights were trained with (with --run: from model.json)")
    parser.add_argument("--input-size", type=int,
                        help="network input side (default: the run's, from model.json; 224 for --weights)")
    parser.add_argument("--batch-size", type=int, default=64,
                        help="validation batch size; the run's (and its --workers) repeat its validation "
                             "batch for batch")
    parser.add_argument("--workers", type=int, default=8, help="data-loader worker processes")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                        help="auto: CUDA when available")
    parser.add_argument("--amp", choices=["auto", "bf16", "fp16", "off"], default="auto",
                        help="mixed precision, as training's --amp (auto: bf16 or fp16 on GPU, off on CPU)")
    parser.add_argument("--channels-last", choices=["auto", "on", "off"], default="auto",
                        help="channels-last memory format, as training's (auto: on GPU)")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                        help="tqdm progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["predict"]:
        from trainer.predict import run_predict

        args = predict_parser().parse_args(renamed_flags(argv[1:], PREDICT_ALIASES))
        return _guarded(lambda: run_predict(args))
    if argv[:1] == ["evaluate"]:
        from trainer.evaluate import run_evaluate

        args = evaluate_parser().parse_args(argv[1:])
        return _guarded(lambda: run_evaluate(args))
    if argv[:1] == ["train"]:
        argv = argv[1:]
    args = train_parser().parse_args(argv)
    try:
        config = TrainConfig(**vars(args))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from trainer.train import run_training

    return _guarded(lambda: run_training(config))


def _guarded(action) -> int:
    """Run ``action``; turn the expected user-facing errors into one line on stderr + exit 2."""
    from trainer.data import DataError

    try:
        result = action()
    except (DataError, ConfigError, FileNotFoundError) as exc:
        lines = str(exc).strip().splitlines() or [type(exc).__name__]
        print(f"error: {lines[-1]}", file=sys.stderr)
        return 2
    return result if isinstance(result, int) else 0
