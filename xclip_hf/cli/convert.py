"""`xclip-hf convert ORIGINAL.pth OUTPUT_DIR`: a checkpoint of the original X-CLIP code -> a model directory."""

from __future__ import annotations

import sys

from .common import UsageError, add_weight_ensembling_arguments, check_weight_ensembling, positive_int

HELP = "convert a checkpoint of the original X-CLIP code (.pth) to a model directory"


def add_arguments(c) -> None:
    """Arguments of `convert` (no heavy import here: `--help` must answer at once)."""
    c.add_argument("checkpoint", help="a .pth file written by the original X-CLIP code (or a bare state dict)")
    c.add_argument("output_dir", help="directory to write (created if needed)")
    c.add_argument("--bpe", help="CLIP's BPE merges file, bpe_simple_vocab_16e6.txt.gz (in the original code's clip/ "
                                 "folder): writes the tokenizer")
    c.add_argument("--labels", help="the original labels CSV (id,name): also writes OUTPUT_DIR/classifier for the "
                                    "video-classification pipeline (needs --bpe)")
    c.add_argument("--template", default="{}", help='prompt of each class name for --labels (default "{}", the paper\'s)')
    c.add_argument("--num-frames", type=positive_int, default=None,
                   help="frames per clip you expect; checked against the checkpoint's (from mit.positional_embedding)")
    c.add_argument("--trust-pickle", action="store_true",
                   help="unpickle the file fully; only for files you trust: it can run code stored in the file")
    c.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_weight_ensembling_arguments(c)


def _check_arguments(args) -> None:
    """Option values invalid on their face (`UsageError`, exit status 2); the conversion checks the files."""
    check_weight_ensembling(args)
    if args.labels and not args.bpe:
        raise UsageError("--labels needs --bpe: the class names are tokenized with CLIP's tokenizer")
    if "{}" not in args.template:
        raise UsageError(f"--template {args.template!r} has no '{{}}' for the class name")


def run(args) -> int:
    from ..conversion.convert import convert_original_checkpoint

    _check_arguments(args)
    result = convert_original_checkpoint(args.checkpoint, args.output_dir, bpe=args.bpe, labels=args.labels,
                                         template=args.template, num_frames=args.num_frames,
                                         trust_pickle=args.trust_pickle, progress=not args.no_progress,
                                         clip_source=args.clip_source, alpha=args.alpha)
    _print_summary(args, result)
    return 0


def _print_summary(args, result) -> None:
    """What was written: the model's description on stdout, a note on stderr when no tokenizer was written."""
    from ..models.configuration_xclip import describe_config

    print(f"converted {args.checkpoint} -> {args.output_dir}")
    print("\n".join(f"  {k:<17} {v}" for k, v in describe_config(result.config).items()))
    if args.alpha is not None:
        print(f"  weights           (1-{args.alpha:g})*CLIP + {args.alpha:g}*checkpoint, CLIP: {args.clip_source}")
    if not result.has_tokenizer:
        print(f"no tokenizer written: pass --bpe bpe_simple_vocab_16e6.txt.gz for {args.output_dir} to take text "
              "(pipelines, processors)", file=sys.stderr)
    if result.classifier_dir:
        print(f"  classifier        {result.classifier_dir} ({len(result.class_names)} classes)")
