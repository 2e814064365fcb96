"""examples/run_video_classification.py end to end on a tiny X-CLIP and a few synthetic videos.

Covers: the loss drops and the checkpoint reloads; resume_from_checkpoint continues the same run; two processes
(torchrun, world size 2) see as many training samples as one process with the same global batch; zero-shot
evaluation on a disjoint label set; few-shot, mixup, frozen branches, gradient checkpointing, multi-view
evaluation, CLIP expansion; the saved classifier in transformers' "video-classification" pipeline.
"""

import importlib.util
import json
import math
import os
import subprocess
import sys

import pytest
import torch

import xclip_hf  # noqa: F401  (registers the Auto classes)
from xclip_hf.data.synthetic import SYNTHETIC_CLASSES, generate_synthetic_dataset
from xclip_hf.data.tokenizer import build_clip_tokenizer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "examples", "run_video_classification.py")
CLASSES = ["moving left", "moving right", "growing", "shrinking"]


def _load_script():
    spec = importlib.util.spec_from_file_location("run_video_classification", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


script = _load_script()


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The tiny model gains nothing from intra-op threads, and on a busy machine they spin: use one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("examples")
    train = generate_synthetic_dataset(root / "data", 4, seed=0, classes=CLASSES, size=32, min_frames=8, max_frames=16, splits=(2, 1, 1))
    unseen = generate_synthetic_dataset(root / "unseen", 3, seed=1, classes=["appearing", "disappearing"], size=32, min_frames=8, max_frames=12)
    build_clip_tokenizer(list(SYNTHETIC_CLASSES), save_directory=root / "tokenizer")
    return {"root": root, "train": train, "unseen": unseen, "tokenizer": str(root / "tokenizer")}


def _args(data, output_dir, *extra, epochs=2, batch=4):
    d = data["train"]
    return [
        "--model_variant", "xclip-tiny", "--tokenizer_name", data["tokenizer"], "--train_file", d.train_file,
        "--labels_file", d.labels_file, "--output_dir", str(output_dir), "--do_train",
        "--per_device_train_batch_size", str(batch), "--num_train_epochs", str(epochs), "--learning_rate", "1e-3",
        "--logging_steps", "1", "--report_to", "none", "--flip_prob", "0", "--color_jitter_prob", "0", "--grayscale_prob", "0",
        "--use_cpu", "--disable_tqdm", "true",
        "--seed", "0", *extra,
    ]


def _losses(trainer):
    return {h["step"]: h["loss"] for h in trainer.state.log_history if "loss" in h}


@pytest.fixture(scope="module")
def trained(data):
    """20 epochs x 2 steps of the tiny model, checkpoints every 20 steps."""
    out = data["root"] / "run"
    trainer = script.main(_args(data, out, "--save_strategy", "steps", "--save_steps", "20", epochs=20))
    return out, trainer


@pytest.mark.slow
def test_loss_drops_and_checkpoint_reloads(trained, data):
    out, trainer = trained
    losses = list(_losses(trainer).values())
    assert len(losses) == 40
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < first - 0.5 and last < math.log(len(CLASSES)) - 0.2, losses  # below chance: it learned

    from transformers import AutoModelForVideoClassification

    pixel_values = torch.randn(2, 8, 3, 32, 32)
    trainer.model.eval()
    with torch.no_grad():
        expected = trainer.model(pixel_values=pixel_values).logits
        for path in (out, out / "checkpoint-40"):
            reloaded = AutoModelForVideoClassification.from_pretrained(path).eval()
            assert reloaded.config.id2label == dict(enumerate(CLASSES))
            torch.testing.assert_close(reloaded(pixel_values=pixel_values).logits, expected)
    results = json.loads((out / "train_results.json").read_text())
    assert results["train_samples_seen"] == 20 * 8 and results["world_size"] == 1


@pytest.mark.slow
def test_resume_from_checkpoint_continues_the_same_run(trained, data, tmp_path):
    out, full = trained
    resumed = script.main(_args(data, tmp_path / "resumed", "--save_strategy", "no",
                                "--resume_from_checkpoint", str(out / "checkpoint-20"), epochs=20))
    assert resumed.state.global_step == 40
    reference, continued = _losses(full), _losses(resumed)
    assert sorted(continued) == list(range(1, 41))  # steps 1-20 restored from the checkpoint's state
    for step in range(21, 41):  # same batches, augmentation draws and optimizer state: the same losses
        assert continued[step] == pytest.approx(reference[step], abs=1e-4), step
    # the train() call of the resumed run averaged only the 20 steps it ran
    train_loss = json.loads((tmp_path / "resumed" / "train_results.json").read_text())["train_loss"]
    assert train_loss == pytest.approx(sum(reference[s] for s in range(21, 41)) / 20, abs=1e-4)


@pytest.mark.slow
@pytest.mark.distributed
def test_two_processes_see_the_same_samples_as_one(data, tmp_path):
    one = script.main(_args(data, tmp_path / "one", "--save_strategy", "no", batch=4))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": REPO}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", SCRIPT,
           *_args(data, tmp_path / "two", "--save_strategy", "no", batch=2)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    two = json.loads((tmp_path / "two" / "train_results.json").read_text())
    assert two["world_size"] == 2
    one_results = json.loads((tmp_path / "one" / "train_results.json").read_text())
    assert two["train_samples_seen"] == one_results["train_samples_seen"] == 2 * 8
    assert json.loads((tmp_path / "two" / "trainer_state.json").read_text())["global_step"] == one.state.global_step


@pytest.mark.slow
def test_zero_shot_evaluation_on_unseen_labels(trained, data, tmp_path):
    out, _ = trained
    unseen = data["unseen"]
    trainer = script.main([
        "--model_name_or_path", str(out), "--validation_file", unseen.test_file, "--eval_labels_file", unseen.labels_file,
        "--labels_file", data["train"].labels_file, "--output_dir", str(tmp_path), "--do_eval", "--report_to", "none", "--use_cpu",
    ])
    metrics = json.loads((tmp_path / "eval_results.json").read_text())
    assert 0.0 <= metrics["eval_top1"] <= 1.0 and metrics["eval_top5"] == 1.0  # 2 classes: both in the top 5
    assert trainer.model.config.id2label == {0: "appearing", 1: "disappearing"}
    with pytest.raises(ValueError, match="disjoint"):
        script.main(["--model_name_or_path", str(out), "--validation_file", data["train"].test_file,
                     "--eval_labels_file", data["train"].labels_file, "--labels_file", data["train"].labels_file,
                     "--output_dir", str(tmp_path / "overlap"), "--do_eval", "--report_to", "none", "--use_cpu"])


@pytest.mark.slow
def test_few_shot_mixup_frozen_branches_and_multiview(trained, data, tmp_path):
    out, _ = trained
    before = {n: p.detach().clone() for n, p in xclip_hf.XClipForVideoClassification.from_pretrained(out).named_parameters()}
    args = _args(data, tmp_path, "--save_strategy", "no", "--do_eval", "--validation_file", data["train"].val_file,
                 "--k_shot", "1", "--mixup", "--freeze_text_encoder", "--freeze_vision_encoder", "--activation_checkpointing",
                 "--num_temporal_clips", "2", "--num_spatial_crops", "3", epochs=2, batch=2)
    args[args.index("--model_variant"):args.index("--model_variant") + 2] = ["--model_name_or_path", str(out)]
    trainer = script.main(args)
    assert json.loads((tmp_path / "train_results.json").read_text())["train_samples_seen"] == 2 * len(CLASSES)  # K=1
    new = trainer.model.new_parameter_names()
    changed = {n for n, p in trainer.model.named_parameters() if not torch.equal(p.detach(), before[n])}
    # the frozen text and image encoders did not move; X-CLIP's new modules (and the logit scale, in neither) did
    assert changed and changed <= new | {"xclip.logit_scale"} and changed & new
    assert math.isfinite(json.loads((tmp_path / "eval_results.json").read_text())["eval_loss"])


@pytest.mark.slow
def test_init_from_clip(data, tmp_path):
    from transformers import CLIPConfig, CLIPModel

    clip_config = CLIPConfig(
        text_config=dict(vocab_size=1024, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4, image_size=32, patch_size=8),
        projection_dim=16,
    )
    CLIPModel(clip_config).save_pretrained(tmp_path / "clip")
    args = _args(data, tmp_path / "out", "--save_strategy", "no", "--max_train_samples", "4", epochs=1)
    args[args.index("--model_variant"):args.index("--model_variant") + 2] = ["--init_from_clip", str(tmp_path / "clip")]
    trainer = script.main(args)
    assert trainer.state.global_step == 1
    assert trainer.model.config.vision_config.num_frames == 8


@pytest.mark.slow
def test_classifier_runs_in_video_classification_pipeline(trained, data):
    from transformers import pipeline

    out, _ = trained
    classifier = pipeline("video-classification", model=str(out))
    video = os.path.join(data["train"].root, open(data["train"].test_file).read().split()[0])
    result = classifier(video, top_k=len(CLASSES))  # num_frames comes from config.num_frames
    assert sorted(r["label"] for r in result) == sorted(CLASSES)
    assert sum(r["score"] for r in result) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.slow
def test_demo_reloads_with_automodel_classifies_and_plots(trained, data, tmp_path):
    """The demo's evaluation half on the trained tiny model: AutoModel + zero-shot pipeline, table, PNG."""
    spec = importlib.util.spec_from_file_location("demo", os.path.join(REPO, "examples", "demo.py"))
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    out, trainer = trained
    lines = open(data["train"].test_file).read().split()
    videos = [os.path.join(data["train"].root, p) for p in lines[0::2]]
    labels = [int(x) for x in lines[1::2]]
    predicted = demo.classify(str(out), videos, CLASSES)
    # the pipeline on the reloaded two-tower model agrees with the trained classifier on the same videos
    from xclip_hf.training import VideoClipTransform

    processor = trainer.processing_class.video_processor
    pixel_values = torch.stack([VideoClipTransform(processor)._eval_views(v) for v in videos])
    trainer.model.eval()
    with torch.no_grad():
        expected = trainer.model(pixel_values=pixel_values).logits.argmax(-1)
    assert predicted.tolist() == expected.tolist()
    matrix = demo.confusion_matrix(torch.tensor(labels).numpy(), predicted, len(CLASSES))
    assert matrix.sum() == len(videos) and all(matrix[l].sum() == labels.count(l) for l in range(len(CLASSES)))
    assert "moving left" in demo.per_class_table({"X-CLIP": matrix}, CLASSES)
    demo.save_figure(str(tmp_path / "demo.png"), {"X-CLIP": str(out)}, {"X-CLIP": matrix}, CLASSES)
    assert (tmp_path / "demo.png").stat().st_size > 10_000


def _load_demo():
    spec = importlib.util.spec_from_file_location("demo", os.path.join(REPO, "examples", "demo.py"))
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    return demo


def test_demo_pair_accuracy_counts_each_pair():
    import numpy as np

    demo = _load_demo()
    names = ["moving left", "moving right", "growing", "shrinking"]
    # rows: true class; 10 videos each. left/right: 9 + 6 right of 20; growing/shrinking: 10 + 0 of 20
    matrix = np.array([[9, 1, 0, 0], [4, 6, 0, 0], [0, 0, 10, 0], [0, 0, 10, 0]])
    assert demo.pair_accuracy(matrix, names) == {"moving left / moving right": 0.75, "growing / shrinking": 0.5}


def test_demo_test_pairs_defeat_an_order_blind_model(tmp_path):
    """The demo's claim: on its held-out pairs (exact reverses) CLIP-Mean gives both videos the same scores."""
    from xclip_hf import XClipConfig, XClipModel
    from xclip_hf.models.video_processing_xclip import XClipVideoProcessor

    data = generate_synthetic_dataset(tmp_path / "d", 4, seed=0, classes=["moving left", "moving right"], size=32,
                                      min_frames=16, max_frames=32, splits=(2, 0, 2), reversed_test_pairs=True)
    rows = [line.split() for line in open(data.test_file).read().splitlines()]
    assert [int(label) for _, label in rows] == [0, 0, 1, 1]
    config = XClipConfig.from_variant("xclip-tiny", num_frames=8, use_cross_frame_attention=False, use_mit=False)
    torch.manual_seed(0)
    model = XClipModel(config).eval()
    processor = XClipVideoProcessor(num_frames=8, size={"shortest_edge": 37}, crop_size={"height": 32, "width": 32})
    pixels = torch.stack([processor(videos=os.path.join(data.root, path), return_tensors="pt")["pixel_values"][0]
                          for path, _ in rows])
    text = torch.randn(2, config.projection_dim)
    with torch.no_grad():
        logits = model(pixel_values=pixels, text_embeds=text).logits_per_video
    # test video i of "moving right" is test video i of "moving left" backwards: same sampled frames, same scores
    torch.testing.assert_close(logits[:2], logits[2:], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(pixels[:2], pixels[2:])  # ... although the clips differ (the frame order)


def test_position_init_flag_passes_through_to_the_model_config(data):
    """--position_init sincos is the model's own `vision_config.position_embedding_init` (saved with it)."""
    from transformers import AutoTokenizer

    from xclip_hf.models.modeling_xclip import sincos_position_init

    tokenizer = AutoTokenizer.from_pretrained(data["tokenizer"])
    args = script.ModelArguments(model_variant="xclip-tiny", num_frames=3, position_init="sincos")
    model = script.build_model(args, CLASSES, tokenizer)
    assert model.config.vision_config.position_embedding_init == "sincos"
    embeddings = model.base_model.vision_model.embeddings
    torch.testing.assert_close(embeddings.position_embedding.weight.detach(), sincos_position_init(embeddings),
                               atol=0, rtol=0)
    default = script.build_model(script.ModelArguments(model_variant="xclip-tiny", num_frames=3), CLASSES, tokenizer)
    assert default.config.vision_config.position_embedding_init == "random"


def test_config_overrides_follow_the_configs_own_rule():
    """--config_overrides routes keys as XClipConfig.from_variant does (one rule: route_overrides)."""
    config = script.config_from_variant("xclip-tiny", 3, {"mit_num_hidden_layers": 2, "vocab_size": 700,
                                                          "projection_dim": 64, "vision_config.mit_hidden_size": 64})
    assert config.vision_config.mit_num_hidden_layers == 2 and config.text_config.vocab_size == 700
    assert config.projection_dim == config.vision_config.projection_dim == 64
    with pytest.raises(ValueError, match=r"--config_overrides: .*vision_config\.hidden_size"):
        script.config_from_variant("xclip-tiny", 3, {"hidden_size": 64})  # both towers have it: name the tower
    with pytest.raises(ValueError, match="--config_overrides: .*no X-CLIP config has this field"):
        script.config_from_variant("xclip-tiny", 3, {"hiden_size": 64})


def test_sincos_position_init_only_from_scratch(tmp_path):
    args = script.ModelArguments(init_from_clip=str(tmp_path), position_init="sincos")
    with pytest.raises(ValueError, match="--position_init"):
        script.build_model(args, CLASSES, tokenizer=None)
