"""`xclip-hf convert ORIGINAL.pth OUTPUT_DIR`: a checkpoint of the original X-CLIP code -> a model directory.

Writes our `save_pretrained` format (loads with `AutoModel`), a video processor with the original preprocessing
(ImageNet mean/std; short side scaled to 256/224 of the input size, then a centre crop of 224 or 336) and, with
`--bpe`, CLIP's tokenizer. With `--labels` (the original `id,name` CSV) it also writes `OUTPUT_DIR/classifier`, an
`XClipForVideoClassification` for transformers' video-classification pipeline.
"""

from __future__ import annotations

import os
import sys

from .common import CommandFailure, UsageError, positive_int, writing

HELP = "convert a checkpoint of the original X-CLIP code (.pth) to a model directory"

# the original code normalises 0-255 frames with the ImageNet statistics
ORIGINAL_MEAN_255 = (123.675, 116.28, 103.53)
ORIGINAL_STD_255 = (58.395, 57.12, 57.375)


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


def original_video_processor(config):
    """The original evaluation preprocessing for `config`: short side 256/224 of the input size, centre crop,
    ImageNet mean/std on 0-255 values (rescaled by 1/255 first), bilinear resize."""
    from transformers.image_utils import PILImageResampling

    from ..models.video_processing_xclip import XClipVideoProcessor

    crop = config.vision_config.image_size
    return XClipVideoProcessor(
        num_frames=config.vision_config.num_frames, size={"shortest_edge": int(crop * 256 / 224 + 0.5)},
        crop_size={"height": crop, "width": crop}, resample=PILImageResampling.BILINEAR, do_rescale=True,
        rescale_factor=1 / 255, image_mean=[round(m / 255, 10) for m in ORIGINAL_MEAN_255],
        image_std=[round(s / 255, 10) for s in ORIGINAL_STD_255],
    )


def _check_inputs(args) -> None:
    """Cheap checks before any heavy work: bad arguments (`UsageError`), then missing files (`CommandFailure`)."""
    if args.labels and not args.bpe:
        raise UsageError("--labels needs --bpe: the class names are tokenized with CLIP's tokenizer")
    if "{}" not in args.template:
        raise UsageError(f"--template {args.template!r} has no '{{}}' for the class name")
    for flag, value in (("checkpoint", args.checkpoint), ("--bpe", args.bpe), ("--labels", args.labels)):
        if value is not None and not os.path.isfile(value):
            raise CommandFailure(f"{flag} file {value!r} does not exist")
    if os.path.exists(args.output_dir) and not os.path.isdir(args.output_dir):
        raise CommandFailure(f"output directory {args.output_dir!r} exists and is not a directory")


def run(args) -> int:
    from tqdm.auto import tqdm

    from ..conversion.original import load_original, read_original
    from ..models.configuration_xclip import describe_config

    _check_inputs(args)
    class_names = None
    if args.labels:
        from ..training.dataset import read_labels_file

        class_names = read_labels_file(args.labels)
    steps = ["read", "model", "processor"] + (["classifier"] if class_names else [])
    bar = tqdm(total=len(steps), desc="converting", unit="step", disable=args.no_progress or None, file=sys.stderr)
    ckpt = read_original(args.checkpoint, trust_pickle=args.trust_pickle)
    config = ckpt.config
    frames = config.vision_config.num_frames
    if args.num_frames is not None and args.num_frames != frames:
        raise CommandFailure(f"{args.checkpoint} was trained with {frames} frames per clip (mit.positional_embedding "
                         f"{tuple(ckpt.state_dict['mit.positional_embedding'].shape)}), not --num-frames {args.num_frames}")
    for note in ckpt.notes:
        bar.write(f"{args.checkpoint}: {note}", file=sys.stderr)
    bar.update()
    with writing(args.output_dir):  # a read-only place fails now, not after the model is built
        os.makedirs(args.output_dir, exist_ok=True)
    model = load_original(ckpt)  # refuses, before building, a model that does not fit in memory
    if args.bpe:  # build the tokenizer first: its vocabulary must fit the model before anything is written
        import tempfile

        from ..conversion.clip_bpe import build_tokenizer_from_bpe

        with tempfile.TemporaryDirectory() as tmp:
            tokenizer = build_tokenizer_from_bpe(args.bpe, tmp)
        if len(tokenizer) != config.text_config.vocab_size:
            raise CommandFailure(f"--bpe {args.bpe!r} gives {len(tokenizer)} tokens but the checkpoint's token_embedding "
                             f"has {config.text_config.vocab_size} rows")
    with writing(args.output_dir):  # disk full and friends name no file: name the output
        model.save_pretrained(args.output_dir)
        bar.update()
        processor = _save_processor(args, config, tokenizer if args.bpe else None, args.output_dir)
        bar.update()
    if class_names:
        _save_classifier(model, processor, class_names, args.template, os.path.join(args.output_dir, "classifier"))
        bar.update()
    bar.close()
    summary = describe_config(config)
    print(f"converted {args.checkpoint} -> {args.output_dir}")
    print("\n".join(f"  {k:<17} {v}" for k, v in summary.items()))
    if not args.bpe:
        print(f"no tokenizer written: pass --bpe bpe_simple_vocab_16e6.txt.gz for {args.output_dir} to take text "
              "(pipelines, processors)", file=sys.stderr)
    if class_names:
        print(f"  classifier        {os.path.join(args.output_dir, 'classifier')} ({len(class_names)} classes)")
    return 0


def _save_processor(args, config, tokenizer, directory):
    """XClipProcessor (video processor + tokenizer), or the video processor alone without a tokenizer."""
    from ..models.processing_xclip import XClipProcessor

    video_processor = original_video_processor(config)
    if tokenizer is None:
        video_processor.save_pretrained(directory)
        return None
    processor = XClipProcessor(video_processor=video_processor, tokenizer=tokenizer)
    processor.save_pretrained(directory)
    return processor


def _save_classifier(model, processor, class_names, template, directory):
    """An XClipForVideoClassification with the class names as its classifier, weights from `model`."""
    import copy

    from transformers.initialization import no_init_weights

    from ..models.modeling_xclip_classification import XClipForVideoClassification

    config = copy.deepcopy(model.config)
    config.id2label = dict(enumerate(class_names))
    config.label2id = {name: i for i, name in enumerate(class_names)}
    config.architectures = ["XClipForVideoClassification"]
    with no_init_weights():
        classifier = XClipForVideoClassification(config)
    classifier.xclip.load_state_dict(model.state_dict(), strict=True)
    classifier.set_class_texts(processor.tokenizer, template)
    with writing(directory):
        classifier.eval().save_pretrained(directory)
        processor.save_pretrained(directory)
