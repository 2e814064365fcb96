"""Wall time and peak memory of `xclip-hf convert --from vificlip` on a ViT-B/16-sized ViFi-CLIP checkpoint.

The checkpoint has the released models' shapes (ViT-B/16, CLIP text encoder, 400 Kinetics class prompts kept as
`prompt_learner.complete_text_embeddings`) and random weights, written from the format's facts
(tests/_helpers_conversion.py: OpenAI-layout CLIP names under ViFi-CLIP's `module.image_encoder.` /
`module.text_encoder.` prefixes); the CLIP token embedding comes from an OpenAI-layout state-dict file. Each
conversion runs in a fresh process (`--rounds` times); the peak resident memory is that process's.

    python benchmarks/bench_convert_vificlip.py --rounds 2
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
B16 = dict(W=768, layers=12, patch=16, image=224, T=1, P=512, Wt=512, text_layers=12, ctx=77, vocab=49408, mlp=3072,
           text_mlp=2048, mit=0, prompt=0, mit_mlp=0)


def write_checkpoint(folder: str, classes: int = 400) -> tuple[str, str]:
    """A B/16 ViFi-CLIP .pth as their epoch_saving writes it (model entry only) and an OpenAI-layout CLIP file."""
    import torch

    from _helpers_conversion import original_state_dict, save_original

    clip = original_state_dict(B16, clip_only=True)
    table = clip.pop("token_embedding.weight")
    state = {("module.image_encoder." + k[len("visual."):] if k.startswith("visual.") else
              k if k == "logit_scale" else "module.text_encoder." + k): v for k, v in clip.items()}
    ids = torch.randint(0, B16["vocab"] - 2, (classes, B16["ctx"]))
    ids[:, 0], ids[:, 12], ids[:, 13:] = B16["vocab"] - 2, B16["vocab"] - 1, 0
    state["module.prompt_learner.complete_text_embeddings"] = table[ids]
    checkpoint = save_original(os.path.join(folder, "vificlip_b16.pth"), state)
    torch.save({"token_embedding.weight": table}, os.path.join(folder, "clip_b16.pt"))
    return checkpoint, os.path.join(folder, "clip_b16.pt")


CHILD = """
import resource, sys, time
t = time.perf_counter()
from xclip_hf.cli import main
status = main(["convert", "--from", "vificlip", sys.argv[1], sys.argv[2], "--clip", sys.argv[3], "--num-frames", "32",
               "--no-progress"])
print(f"RESULT {status} {time.perf_counter() - t:.2f} {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}")
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": os.path.join(HERE, "..")}
    with tempfile.TemporaryDirectory() as folder:
        checkpoint, clip = write_checkpoint(folder)
        print(f"checkpoint {os.path.getsize(checkpoint) / 2**20:.0f} MiB, clip file {os.path.getsize(clip) / 2**20:.0f} MiB")
        for i in range(args.rounds):
            out = subprocess.run([sys.executable, "-c", CHILD, checkpoint, os.path.join(folder, f"out{i}"), clip],
                                 env=env, capture_output=True, text=True, check=True).stdout
            status, seconds, rss = next(line for line in out.splitlines() if line.startswith("RESULT")).split()[1:]
            print(f"round {i}: exit {status}, {seconds} s (import included), peak RSS {rss} MiB, load "
                  f"{os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
