"""Shared by the embed tests: a tiny checkpoint and two videos (a module fixture), the environment of a child
process, `xclip-hf ARGS` run in this process, and webdataset tar shards."""

from __future__ import annotations

import os

import pytest

from _helpers_pipeline import make_our_checkpoint, write_videos

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("embed")
    ckpt = make_our_checkpoint(root / "ckpt")
    videos = write_videos(str(root))
    return root, ckpt, videos


def child_env():
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    return env


def cli(capsys, *args):
    """`xclip-hf ARGS` in this process (a subprocess would pay the package import again): (status, stderr)."""
    from xclip_hf.cli import main

    capsys.readouterr()
    status = main([str(a) for a in args])
    return status, capsys.readouterr().err


def kill_after_first_shard(args, out, wait_s: float) -> None:
    """Run `xclip-hf ARGS` (writing the embed output `out`) in a subprocess and SIGKILL it as soon as its first
    shard is committed (or after `wait_s` seconds)."""
    import signal
    import subprocess
    import sys
    import time

    proc = subprocess.Popen([sys.executable, "-m", "xclip_hf.cli", *map(str, args)], env=child_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    shards = out / "_shards"
    deadline = time.time() + wait_s
    while time.time() < deadline and not (shards.is_dir() and any(n.startswith("rank") for n in os.listdir(shards))):
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def tar_shards(directory, samples, per_shard):
    """Write ``samples`` (dicts with __key__ and members) with webdataset's TarWriter, ``per_shard`` a shard."""
    import webdataset as wds

    os.makedirs(directory, exist_ok=True)
    paths = []
    for start in range(0, len(samples), per_shard):
        paths.append(os.path.join(directory, f"shard-{len(paths):03d}.tar"))
        with wds.TarWriter(paths[-1]) as sink:
            for sample in samples[start:start + per_shard]:
                sink.write(sample)
    return paths
