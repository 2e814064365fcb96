"""Forward throughput of xclip_hf vs transformers' XCLIPModel on the same random B/32-8f weights.

Both models are timed alternately in one run (fp32, sdpa, batch 4; 1 label and 400 labels), then ours in bf16,
then ours through `torch.compile(model, fullgraph=True)` in fp32 and bf16 (the compiled columns; `--no-compile`
skips them, the warm-up takes minutes on a CPU and is printed). Prints videos/s and the ratios to transformers'
XCLIPModel in fp32. Usage:

    HF_HUB_OFFLINE=1 python benchmarks/bench_forward.py [--variant xclip-base-patch32] [--frames 8]
        [--batch 4] [--rounds 3] [--device cpu|cuda] [--dtype fp32|bf16] [--no-compile]
"""

import argparse
import statistics
import tempfile
import time

import torch
from transformers import XCLIPConfig, XCLIPModel

from xclip_hf import XClipConfig, XClipModel


def oracle_config(ours: XClipConfig) -> XCLIPConfig:
    """The same architecture in transformers' published format."""
    t, v = ours.text_config, ours.vision_config
    text = {k: getattr(t, k) for k in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                                        "num_attention_heads", "max_position_embeddings")}
    vision = {k: getattr(v, k) for k in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                                          "image_size", "patch_size", "num_frames", "mit_hidden_size",
                                          "mit_intermediate_size", "mit_num_attention_heads")}
    return XCLIPConfig(text_config=text, vision_config=vision, projection_dim=ours.projection_dim,
                       prompt_num_attention_heads=t.prompt_num_attention_heads)


def timed(fn, sync):
    sync()
    start = time.perf_counter()
    with torch.inference_mode():
        fn()
    sync()
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="xclip-base-patch32")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--labels", type=int, nargs="+", default=[1, 400])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"], help="dtype of the side-by-side run")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile columns")
    args = parser.parse_args()
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[args.dtype]
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)

    config = XClipConfig.from_variant(args.variant, num_frames=args.frames)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        XCLIPModel(oracle_config(config)).save_pretrained(tmp)
        theirs = XCLIPModel.from_pretrained(tmp, attn_implementation="sdpa", dtype=dtype).to(args.device).eval()
        ours = XClipModel.from_pretrained(tmp, attn_implementation="sdpa", dtype=dtype).to(args.device).eval()
    ours_bf16 = None
    if dtype == torch.float32:
        ours_bf16 = XClipModel(config).to(torch.bfloat16)
        ours_bf16.load_state_dict(ours.state_dict())
        ours_bf16 = ours_bf16.to(args.device).eval()

    compiled = {}
    if not args.no_compile:
        compiled["fp32c"] = torch.compile(ours, fullgraph=True)
        if ours_bf16 is not None:
            compiled["bf16c"] = torch.compile(ours_bf16, fullgraph=True)

    v = config.vision_config
    pixels = torch.randn(args.batch, args.frames, 3, v.image_size, v.image_size, device=args.device)
    print(f"{args.variant} {args.frames}f, batch {args.batch}, sdpa, {args.dtype}, device {args.device}, "
          f"torch threads {torch.get_num_threads()}")
    header = f"{'labels':>6} {'transformers v/s':>17} {'ours v/s':>9} {'ratio':>6} {'ours bf16 v/s':>14} {'bf16/tf':>8}"
    for name in compiled:
        header += f" {'ours ' + name + ' v/s':>16} {name + '/tf':>9}"
    print(header)
    for num_labels in args.labels:
        g = torch.Generator().manual_seed(num_labels)
        vocab = config.text_config.vocab_size
        ids = torch.randint(1, vocab - 1, (num_labels, 8), generator=g)
        ids[:, -1] = vocab - 1  # end-of-text: the highest id
        ids = ids.to(args.device)
        run_theirs = lambda: theirs(input_ids=ids, pixel_values=pixels.to(dtype))  # noqa: E731
        run_ours = lambda: ours(input_ids=ids, pixel_values=pixels.to(dtype))  # noqa: E731
        run_bf16 = lambda: ours_bf16(input_ids=ids, pixel_values=pixels.to(torch.bfloat16))  # noqa: E731
        runs_compiled = {
            name: (lambda m=model, dt=(torch.bfloat16 if name.startswith("bf16") else dtype):
                   m(input_ids=ids, pixel_values=pixels.to(dt)))
            for name, model in compiled.items()
        }
        timed(run_theirs, sync), timed(run_ours, sync)  # warm-up
        if ours_bf16 is not None:
            timed(run_bf16, sync)
        for name, run in runs_compiled.items():  # warm-up = compilation (a new label count compiles again)
            print(f"  compiling ours {name} for {num_labels} label(s): {timed(run, sync):.0f} s", flush=True)
        t_theirs, t_ours, t_bf16 = [], [], []
        t_compiled = {name: [] for name in runs_compiled}
        for _ in range(args.rounds):  # alternate so that machine noise hits every column alike
            t_theirs.append(timed(run_theirs, sync))
            t_ours.append(timed(run_ours, sync))
            if ours_bf16 is not None:
                t_bf16.append(timed(run_bf16, sync))
            for name, run in runs_compiled.items():
                t_compiled[name].append(timed(run, sync))
        vps = lambda ts: args.batch / statistics.median(ts)  # noqa: E731
        bf16 = f"{vps(t_bf16):14.2f} {vps(t_bf16) / vps(t_theirs):8.2f}" if t_bf16 else ""
        line = f"{num_labels:>6} {vps(t_theirs):17.2f} {vps(t_ours):9.2f} {vps(t_ours) / vps(t_theirs):6.3f} {bf16}"
        for name, ts in t_compiled.items():
            line += f" {vps(ts):16.2f} {vps(ts) / vps(t_theirs):9.2f}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
