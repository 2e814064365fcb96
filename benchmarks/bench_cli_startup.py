"""Wall time of `xclip-hf --help`: lazy package import vs the eager import it replaced, side by side.

"lazy" is the command as shipped (`python -m xclip_hf.cli --help`: no torch, no transformers). "eager" runs the
same command after doing what `import xclip_hf` used to do up front: import every public class and transformers'
Auto classes and pipeline machinery (which registers ours). "python" is a bare interpreter start, the floor.
Runs alternate (python, lazy, eager, python, ...) so machine load hits all three alike.

    python benchmarks/bench_cli_startup.py --rounds 5
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EAGER = (
    "import sys\n"
    "import xclip_hf\n"
    "from transformers import AutoConfig, AutoModel, AutoModelForVideoClassification, pipeline\n"
    "for name in xclip_hf.__all__:\n"
    "    getattr(xclip_hf, name)\n"
    "from xclip_hf.cli import main\n"
    "try:\n"
    "    main(['--help'])\n"
    "except SystemExit:\n"
    "    pass\n"
)
COMMANDS = {
    "python": [sys.executable, "-c", "pass"],
    "lazy": [sys.executable, "-m", "xclip_hf.cli", "--help"],
    "eager": [sys.executable, "-c", EAGER],
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")]), "HF_HUB_OFFLINE": "1"}
    times = {name: [] for name in COMMANDS}
    for _ in range(args.rounds):
        for name, cmd in COMMANDS.items():
            start = time.perf_counter()
            subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, cwd=REPO)
            times[name].append(time.perf_counter() - start)
    for name, values in times.items():
        print(f"{name:>6}: {min(values):.2f}-{max(values):.2f} s (median {sorted(values)[len(values) // 2]:.2f} s)")
    ratios = sorted(e / lz for e, lz in zip(times["eager"], times["lazy"]))
    print(f"eager / lazy, per round: {ratios[0]:.1f}x-{ratios[-1]:.1f}x")


if __name__ == "__main__":
    main()
