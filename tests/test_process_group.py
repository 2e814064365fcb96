"""A process group that xclip_hf starts or joins ends before interpreter shutdown, whoever the caller is (a user's
script under torchrun that never ends it, a Trainer), and ending it is harmless where none runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A user's script: an exit probe registered FIRST runs LAST (atexit is last-in first-out), after every hook that
# xclip_hf registered, and records whether the process group was still up then. The script never ends it itself.
USER_SCRIPT = """
import atexit, json, os, sys

def probe():
    import torch.distributed as dist
    with open(os.path.join(sys.argv[2], "rank%s.json" % os.environ["RANK"]), "w") as f:
        json.dump({"initialized_at_exit": dist.is_initialized(), "world": world}, f)

atexit.register(probe)
world = None
if sys.argv[1] == "job":
    from xclip_hf.jobs import job_state
    world = job_state().num_processes
else:  # a Trainer whose arguments started the group
    import torch
    from transformers import TrainingArguments
    from xclip_hf.training import XClipTrainer
    args = TrainingArguments(output_dir=os.path.join(sys.argv[2], "out"), use_cpu=True, report_to=[])
    XClipTrainer(model=torch.nn.Linear(2, 2), args=args)
    world = args.world_size
"""


def _env():
    return dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1",
                PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))


@pytest.mark.distributed
@pytest.mark.parametrize("starter", ["job", "trainer"])
def test_process_group_ends_before_interpreter_exit_under_torchrun(starter, tmp_path):
    script = tmp_path / "user.py"
    script.write_text(textwrap.dedent(USER_SCRIPT))
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          str(script), starter, str(tmp_path)], capture_output=True, text=True, env=_env(),
                         timeout=240)
    assert run.returncode == 0, run.stderr[-3000:]
    for rank in (0, 1):
        seen = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert seen == {"initialized_at_exit": False, "world": 2}, (rank, seen)


def test_ending_is_harmless_without_a_group_and_twice():
    """In a process that never started a group: both calls, twice, exit 0, and torch is not imported for them."""
    code = textwrap.dedent("""
        import sys
        from xclip_hf.jobs import end_process_group, end_process_group_at_exit
        end_process_group(); end_process_group()
        end_process_group_at_exit(); end_process_group_at_exit()
        assert "torch" not in sys.modules, "torch imported"
        print("fine")
    """)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=60)
    assert run.returncode == 0 and run.stdout.strip() == "fine", run.stderr[-2000:]


def test_ending_twice_after_a_group_is_harmless(tmp_path):
    """One process, a one-member gloo group: ended by the user, then again at exit, exit 0."""
    code = textwrap.dedent(f"""
        import torch.distributed as dist
        from xclip_hf.jobs import end_process_group, end_process_group_at_exit
        dist.init_process_group("gloo", init_method="file://{tmp_path / 'store'}", rank=0, world_size=1)
        end_process_group_at_exit()
        end_process_group()
        assert not dist.is_initialized()
        end_process_group()
        print("fine")
    """)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=60)
    assert run.returncode == 0 and run.stdout.strip() == "fine", run.stderr[-2000:]
