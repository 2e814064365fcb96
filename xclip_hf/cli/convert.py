"""`xclip-hf convert [--from FAMILY] CHECKPOINT OUTPUT_DIR`: an X-CLIP or successor checkpoint -> a model folder."""

from __future__ import annotations

import sys

from .common import UsageError, nonnegative_float, positive_int

HELP = "convert a checkpoint of the original X-CLIP code (.pth), or of a successor (--from), to a model directory"


def add_arguments(c) -> None:
    """Arguments of `convert` (no heavy import here: `--help` must answer at once)."""
    from ..conversion.families import DEFAULT_FAMILY, FAMILIES

    c.add_argument("checkpoint", help="a .pth file written by the original X-CLIP code (or a bare state dict), or by "
                                      "the code of the --from family")
    c.add_argument("output_dir", help="directory to write (created if needed)")
    c.add_argument("--bpe", help="CLIP's BPE merges file, bpe_simple_vocab_16e6.txt.gz (in the original code's clip/ "
                                 "folder): writes the tokenizer")
    c.add_argument("--labels", help="the original labels CSV (id,name): also writes OUTPUT_DIR/classifier for the "
                                    "video-classification pipeline (needs --bpe)")
    c.add_argument("--from", dest="family", choices=sorted(FAMILIES), default=DEFAULT_FAMILY,
                   help="the code that wrote CHECKPOINT: " + "; ".join(f"{f.name}: {f.summary}"
                                                                     for f in FAMILIES.values())
                        + f" (default {DEFAULT_FAMILY})")
    c.add_argument("--clip", help="the CLIP the checkpoint was fine-tuned from, for weights it leaves out "
                                  "(--from vificlip: the token embedding): a transformers CLIP directory or hub id "
                                  "(openai/clip-vit-base-patch16) or a state-dict file")
    c.add_argument("--patching-ratio", type=nonnegative_float, default=None,
                   help="--from openvclip/froster with --clip: the weight of CLIP's weights in Open-VCLIP's test-time "
                        "interpolation, in [0, 1] (their TEST.PATCHING_RATIO)")
    c.add_argument("--template", default=None,
                   help="prompt of each class name for --labels (default: the family's; xclip \"{}\", the paper's; "
                        "vificlip \"a photo of a {}.\")")
    c.add_argument("--num-frames", type=positive_int, default=None,
                   help="frames per clip: xclip, checked against the checkpoint's (from mit.positional_embedding); "
                        "vificlip, the frames the processor samples (default 32, the released models' input)")
    c.add_argument("--trust-pickle", action="store_true",
                   help="unpickle the file fully; only for files you trust: it can run code stored in the file")
    c.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _check_arguments(args) -> dict:
    """Option values invalid on their face (`UsageError`, exit status 2); returns the family's extra options."""
    from ..conversion.families import get_family

    family = get_family(args.family)
    if args.labels and not args.bpe:
        raise UsageError("--labels needs --bpe: the class names are tokenized with CLIP's tokenizer")
    if args.template is not None and "{}" not in args.template:
        raise UsageError(f"--template {args.template!r} has no '{{}}' for the class name")
    if "clip" in family.required and args.clip is None:
        raise UsageError(f"--from {family.name} needs --clip: the CLIP the checkpoint was fine-tuned from "
                         "(e.g. openai/clip-vit-base-patch16), for the weights its checkpoints leave out")
    given = {"clip": args.clip, "patching_ratio": args.patching_ratio}
    for name, value in given.items():
        if value is not None and name not in family.options:
            raise UsageError(f"--{name.replace('_', '-')} is not used by --from {family.name}")
    if "patching_ratio" in family.options and (args.clip is None) != (args.patching_ratio is None):
        raise UsageError("--clip and --patching-ratio go together")
    if args.patching_ratio is not None and not 0 <= args.patching_ratio <= 1:
        raise UsageError(f"--patching-ratio must be in [0, 1] (the weight of CLIP's weights), got {args.patching_ratio}")
    return {name: value for name, value in given.items() if value is not None}


def run(args) -> int:
    from ..conversion.families import convert_checkpoint

    options = _check_arguments(args)
    result = convert_checkpoint(args.family, args.checkpoint, args.output_dir, bpe=args.bpe, labels=args.labels,
                                template=args.template, num_frames=args.num_frames, trust_pickle=args.trust_pickle,
                                progress=not args.no_progress, **options)
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
