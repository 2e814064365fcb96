"""`xclip-hf convert CHECKPOINT OUTPUT_DIR [--from FAMILY]`: a checkpoint of the original code -> a model directory."""

from __future__ import annotations

import sys

from .common import UsageError, nonnegative_float, positive_int

HELP = "convert a checkpoint of the original X-CLIP code (.pth), or of a successor (--from), to a model directory"
FROM_CHOICES = ("xclip", "openvclip", "froster")  # conversion.families.FAMILIES (not imported: --help answers at once)
SUCCESSORS = FROM_CHOICES[1:]  # the PySlowFast families, which take --clip / --patching-ratio


def add_arguments(c) -> None:
    """Arguments of `convert` (no heavy import here: `--help` must answer at once)."""
    c.add_argument("checkpoint", help="a .pth file written by the original X-CLIP code (or a bare state dict), or by "
                                      "the code --from names")
    c.add_argument("output_dir", help="directory to write (created if needed)")
    c.add_argument("--from", dest="family", choices=FROM_CHOICES, default="xclip",
                   help="the code that wrote CHECKPOINT: xclip (default, microsoft/VideoX), openvclip "
                        "(wengzejia1/Open-VCLIP) or froster (Visual-AI/FROSTER), PySlowFast {'model_state': ...} files")
    c.add_argument("--clip", help="openvclip/froster: a transformers CLIP (directory or hub id) to interpolate the "
                                  "weights with (Open-VCLIP's test-time patching; needs --patching-ratio)")
    c.add_argument("--patching-ratio", type=nonnegative_float, default=None,
                   help="weight of CLIP's weights in the interpolation, in [0, 1] (Open-VCLIP's TEST.PATCHING_RATIO)")
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


def _check_arguments(args) -> None:
    """Option values invalid on their face (`UsageError`, exit status 2); the conversion checks the files."""
    if args.labels and not args.bpe:
        raise UsageError("--labels needs --bpe: the class names are tokenized with CLIP's tokenizer")
    if "{}" not in args.template:
        raise UsageError(f"--template {args.template!r} has no '{{}}' for the class name")
    if args.family not in SUCCESSORS and (args.clip or args.patching_ratio is not None):
        raise UsageError("--clip / --patching-ratio are for --from openvclip or froster")
    if (args.clip is None) != (args.patching_ratio is None):
        raise UsageError("--clip and --patching-ratio go together")
    if args.patching_ratio is not None and not 0 <= args.patching_ratio <= 1:
        raise UsageError(f"--patching-ratio must be in [0, 1] (the weight of CLIP's weights), got {args.patching_ratio}")


def run(args) -> int:
    from ..conversion.families import converter

    _check_arguments(args)
    extra = {"clip": args.clip, "patching_ratio": args.patching_ratio} if args.family in SUCCESSORS else {}
    result = converter(args.family)(args.checkpoint, args.output_dir, bpe=args.bpe, labels=args.labels,
                                    template=args.template, num_frames=args.num_frames,
                                    trust_pickle=args.trust_pickle, progress=not args.no_progress, **extra)
    _print_summary(args, result)
    return 0


def _print_summary(args, result) -> None:
    """What was written: the model's description on stdout, a note on stderr when no tokenizer was written."""
    from ..models.configuration_xclip import describe_config

    print(f"converted {args.checkpoint} -> {args.output_dir}")
    print("\n".join(f"  {k:<17} {v}" for k, v in describe_config(result.config).items()))
    if not result.has_tokenizer:
        print(f"no tokenizer written: pass --bpe bpe_simple_vocab_16e6.txt.gz for {args.output_dir} to take text "
              "(pipelines, processors)", file=sys.stderr)
    if result.classifier_dir:
        print(f"  classifier        {result.classifier_dir} ({len(result.class_names)} classes)")
