"""Successor checkpoint families (`xclip-hf convert --from NAME`): the registry, and ViFi-CLIP against its own code.

The ViFi-CLIP oracle is tests/fixtures/vificlip/tiny_vificlip.pt: a tiny model built, saved and run by the ViFi-CLIP
code itself (tests/fixtures/vificlip/README.md regenerates it). Other ViFi-CLIP files here are written from the
format's facts (their ViFiCLIP module's prefixes over an OpenAI-layout CLIP, `_helpers_conversion`), independently
of `xclip_hf.conversion`.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
import torch

from xclip_hf import XClipModel
from xclip_hf.cli import main

from _helpers_conversion import SPECS, original_state_dict, save_original

FIXTURE = Path(__file__).parent / "fixtures" / "vificlip" / "tiny_vificlip.pt"


class _CfgNodeLike(dict):
    """Stands for yacs' CfgNode, which their checkpoints pickle under 'config': not a tensor, never unpickled."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.frozen = True


@pytest.fixture(scope="module")
def oracle():
    """Their tiny checkpoint's tensors, the CLIP token embedding, their inputs and logits (fp16 stored, exact)."""
    data = torch.load(FIXTURE, weights_only=True)
    assert data["checkpoint_keys"] == ["config", "epoch", "lr_scheduler", "max_accuracy", "model", "optimizer"]
    return data


def their_files(folder, oracle, state=None):
    """Their checkpoint as their `epoch_saving` writes it (DDP keys, optimizer, config object) + a CLIP file."""
    state = {k: v.float() for k, v in oracle["state_dict"].items()} if state is None else state
    checkpoint = save_original(folder / "ckpt_epoch_0.pth", state,
                               config=_CfgNodeLike(MODEL=_CfgNodeLike(ARCH="ViT-B/16")))
    clip = folder / "clip.pt"
    torch.save({"token_embedding.weight": oracle["clip_token_embedding"].float()}, clip)
    return checkpoint, str(clip)


def their_inputs(oracle):
    ids = oracle["input_ids"]
    return dict(input_ids=ids, attention_mask=(ids > 0).long(), pixel_values=oracle["pixel_values"].float())


# ------------------------------------------------------------------------------------------- ViFi-CLIP vs its code
def test_vificlip_logits_match_their_code(oracle, tmp_path, capsys):
    from xclip_hf.conversion import convert_vificlip_checkpoint

    checkpoint, clip = their_files(tmp_path, oracle)
    result = convert_vificlip_checkpoint(checkpoint, tmp_path / "api", clip=clip, num_frames=3, progress=False)
    v, t = result.config.vision_config, result.config.text_config
    assert (v.use_cross_frame_attention, v.use_mit, t.prompt_layers, v.num_frames) == (False, False, 0, 3)
    assert any("_CfgNodeLike in ['config']" in note for note in result.notes), result.notes  # not unpickled
    assert any("removed the 'module.' prefix" in note for note in result.notes)
    model = XClipModel.from_pretrained(tmp_path / "api").eval()
    assert torch.count_nonzero(model.text_model.prompt_generator.alpha) == 0
    with torch.no_grad():
        logits = model(**their_inputs(oracle)).logits_per_video
    torch.testing.assert_close(logits, oracle["logits"], atol=1e-4, rtol=0)

    # the command line writes the same weights
    assert main(["convert", "--from", "vificlip", checkpoint, str(tmp_path / "cli"), "--clip", clip,
                 "--num-frames", "3", "--no-progress"]) == 0
    assert "converted" in capsys.readouterr().out
    cli = XClipModel.from_pretrained(tmp_path / "cli").state_dict()
    api = model.state_dict()
    assert cli.keys() == api.keys() and all(torch.equal(cli[k], v) for k, v in api.items())


def test_vificlip_representation_is_transformers_clip_averaged_over_frames():
    """Our CLIP-Mean with a prompt generator that adds nothing == transformers' CLIP, frame features averaged."""
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(0)
    clip = CLIPModel(CLIPConfig(
        text_config=dict(vocab_size=99, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=16, bos_token_id=97, eos_token_id=98,
                         pad_token_id=0),
        vision_config=dict(hidden_size=64, intermediate_size=80, num_hidden_layers=2, num_attention_heads=2,
                           image_size=16, patch_size=8), projection_dim=32)).eval()
    ours = XClipModel.from_clip(clip, num_frames=3, use_mit=False, use_cross_frame_attention=False, prompt_layers=0,
                                prompt_alpha=0.0).eval()
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1, 97, (4, 9), generator=g)
    ids[:, -1] = 98
    pixels = torch.randn(2, 3, 3, 16, 16, generator=g)
    with torch.no_grad():
        got = ours(input_ids=ids, pixel_values=pixels).logits_per_video
        frames = clip.get_image_features(pixel_values=pixels.flatten(0, 1)).pooler_output.view(2, 3, -1).mean(dim=1)
        texts = clip.get_text_features(input_ids=ids).pooler_output
        frames, texts = frames / frames.norm(dim=-1, keepdim=True), texts / texts.norm(dim=-1, keepdim=True)
        expected = clip.logit_scale.exp() * frames @ texts.t()
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------------------------------- refusals and errors
def test_vificlip_token_embedding_from_a_transformers_clip_folder(oracle, tmp_path, monkeypatch):
    from transformers import CLIPConfig, CLIPModel

    from xclip_hf.conversion import read_vificlip

    table = oracle["clip_token_embedding"].float()
    clip = CLIPModel(CLIPConfig(text_config=dict(vocab_size=table.shape[0], hidden_size=table.shape[1],
                                                 intermediate_size=32, num_hidden_layers=1, num_attention_heads=1,
                                                 max_position_embeddings=16, bos_token_id=62, eos_token_id=63,
                                                 pad_token_id=0),
                                vision_config=dict(hidden_size=32, intermediate_size=32, num_hidden_layers=1,
                                                   num_attention_heads=1, image_size=8, patch_size=4)))
    with torch.no_grad():
        clip.text_model.embeddings.token_embedding.weight.copy_(table)
    clip.save_pretrained(tmp_path / "clip")
    checkpoint, _ = their_files(tmp_path, oracle)
    ckpt = read_vificlip(checkpoint, tmp_path / "clip", num_frames=3)
    assert torch.equal(ckpt.state_dict["token_embedding.weight"], table)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="clip 'no-one/no-such-clip' is neither a file, a directory nor a"):
        read_vificlip(checkpoint, "no-one/no-such-clip")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"clip directory .*empty' has no model\.safetensors"):
        read_vificlip(checkpoint, tmp_path / "empty")


def test_vificlip_refuses_prompt_learning_checkpoints(oracle, tmp_path):
    from xclip_hf.conversion import read_vificlip

    for extra in ({"module.prompt_learner.ctx": torch.randn(16, 64)},
                  {"module.image_encoder.VPT": torch.randn(16, 64),
                   "module.image_encoder.transformer.resblocks.1.VPT_shallow": torch.randn(16, 64)}):
        state = {**{k: v.float() for k, v in oracle["state_dict"].items()}, **extra}
        checkpoint, clip = their_files(tmp_path, oracle, state)
        with pytest.raises(ValueError, match=r"ckpt_epoch_0\.pth.*prompt-learning checkpoint.*cannot represent") as err:
            read_vificlip(checkpoint, clip)
        assert all(key.removeprefix("module.") in str(err.value) for key in extra)


def test_vificlip_errors_name_the_input(oracle, tmp_path):
    from xclip_hf.conversion import convert_vificlip_checkpoint, read_vificlip

    checkpoint, clip = their_files(tmp_path, oracle)
    other = tmp_path / "other_clip.pt"  # CLIPs whose token embedding is not the one the model was trained from
    table = oracle["clip_token_embedding"].float()
    for wrong, why in ((table + 1e-2, "token vectors of its training prompts are not rows"),
                       (table.roll(1, dims=0), "3 training prompts do not start with the start-of-text vector")):
        torch.save({"token_embedding.weight": wrong}, other)
        with pytest.raises(ValueError, match=rf"other_clip\.pt' is not the CLIP .*ckpt_epoch_0\.pth.*{why}"):
            read_vificlip(checkpoint, other)
    torch.save({"visual.proj": torch.zeros(2, 2)}, tmp_path / "no_tokens.pt")
    with pytest.raises(ValueError, match=r"no_tokens\.pt' has no CLIP token embedding"):
        read_vificlip(checkpoint, tmp_path / "no_tokens.pt")
    with pytest.raises(ValueError, match="clip is required"):
        convert_vificlip_checkpoint(checkpoint, tmp_path / "out", clip=None)
    # the X-CLIP reader points at --from vificlip; an X-CLIP checkpoint, a file of other keys
    from xclip_hf.conversion.original import read_original

    with pytest.raises(ValueError, match=r"ckpt_epoch_0\.pth.*is a ViFi-CLIP checkpoint.*--from vificlip"):
        read_original(checkpoint)
    xclip = save_original(tmp_path / "xclip.pth", original_state_dict(SPECS["tiny-1frame"]))
    with pytest.raises(ValueError, match=r"xclip\.pth.*original X-CLIP checkpoint.*--from xclip"):
        read_vificlip(xclip, clip)
    state = {k: v.float() for k, v in oracle["state_dict"].items()}
    state["module.head.weight"] = torch.zeros(3)
    with pytest.raises(ValueError, match=r"1 keys are not part of a ViFi-CLIP model: head\.weight"):
        read_vificlip(their_files(tmp_path, oracle, state)[0], clip)
    del state["module.head.weight"], state["module.image_encoder.proj"]
    with pytest.raises(ValueError, match=r"not a ViFi-CLIP state dict.*missing keys image_encoder\.proj"):
        read_vificlip(their_files(tmp_path, oracle, state)[0], clip)
    assert not (tmp_path / "out").exists()


def test_vificlip_file_declaring_more_than_it_stores_is_refused(oracle, tmp_path):
    from xclip_hf.conversion import read_vificlip
    from xclip_hf.conversion.safe_load import CheckpointSizeError

    state = {k: v.float() for k, v in oracle["state_dict"].items()}
    state["module.image_encoder.transformer.resblocks.0.mlp.c_fc.weight"] = torch.zeros(()).expand(1 << 20, 64)
    checkpoint, clip = their_files(tmp_path, oracle, state)
    with pytest.raises(CheckpointSizeError, match=r"ckpt_epoch_0\.pth.*stores only"):
        read_vificlip(checkpoint, clip)


# ------------------------------------------------------------------------------------------- classifier, template
def _vificlip_from_facts(vocab: int, classes: int = 2, seed: int = 0):
    """A ViFi-CLIP state dict (their prefixes over OpenAI-layout CLIP weights) and the CLIP token embedding."""
    spec = dict(SPECS["tiny-1frame"], vocab=vocab, ctx=77)
    clip = original_state_dict(spec, seed=seed, clip_only=True)
    table = clip.pop("token_embedding.weight")
    state = {("module.image_encoder." + k[len("visual."):] if k.startswith("visual.") else
              k if k == "logit_scale" else "module.text_encoder." + k): v for k, v in clip.items()}
    ids = torch.randint(0, vocab - 2, (classes, 77), generator=torch.Generator().manual_seed(seed))
    ids[:, 0], ids[:, 9], ids[:, 10:] = vocab - 2, vocab - 1, 0  # <|startoftext|> ... <|endoftext|>, padding
    state["module.prompt_learner.complete_text_embeddings"] = table[ids]
    return state, table


def test_vificlip_classifier_uses_their_template_by_default(tmp_path, capsys):
    from transformers import AutoModelForVideoClassification

    from xclip_hf.conversion.clip_bpe import build_tokenizer_from_bpe

    merges = [("p", "h"), ("ph", "o"), ("t", "o</w>"), ("a", "r")]
    bpe = tmp_path / "bpe.txt.gz"
    with gzip.open(bpe, "wt", encoding="utf-8") as f:
        f.write('"bpe_simple_vocab_test.txt#version: 0.2\n' + "\n".join(f"{a} {b}" for a, b in merges) + "\n")
    state, table = _vificlip_from_facts(512 + len(merges) + 2)
    checkpoint = save_original(tmp_path / "vifi.pth", state)
    torch.save({"token_embedding.weight": table}, tmp_path / "clip.pt")
    (tmp_path / "labels.csv").write_text("id,name\n0,archery\n1,air drumming\n")
    assert main(["convert", "--from", "vificlip", checkpoint, str(tmp_path / "out"), "--clip",
                 str(tmp_path / "clip.pt"), "--bpe", str(bpe), "--labels", str(tmp_path / "labels.csv"),
                 "--no-progress"]) == 0
    assert "processor samples 32 frames" in capsys.readouterr().err
    classifier = AutoModelForVideoClassification.from_pretrained(tmp_path / "out" / "classifier")
    tokenizer = build_tokenizer_from_bpe(bpe, tmp_path / "tok")
    expected = tokenizer(["a photo of a archery.", "a photo of a air drumming."], padding="max_length",
                         max_length=77, return_tensors="pt")["input_ids"]
    assert torch.equal(classifier.class_input_ids, expected)
    assert classifier.config.id2label == {0: "archery", 1: "air drumming"}


# ------------------------------------------------------------------------------------------- the registry
def test_families_registry_and_cli_choices(tmp_path, capsys):
    from xclip_hf.conversion import FAMILIES, convert_checkpoint
    from xclip_hf.conversion.families import Family, get_family, register_family

    assert {"xclip", "vificlip"} <= set(FAMILIES)
    assert get_family("xclip").load().__name__ == "convert_original_checkpoint"
    assert get_family("vificlip").load().__name__ == "convert_vificlip_checkpoint"
    with pytest.raises(ValueError, match=r"unknown checkpoint family 'nope'; known: .*vificlip.*xclip"):
        get_family("nope")
    pth = save_original(tmp_path / "m.pth", original_state_dict(SPECS["tiny-1frame"]))
    with pytest.raises(ValueError, match="'xclip' takes no option clip"):
        convert_checkpoint("xclip", pth, tmp_path / "o", clip="x")
    result = convert_checkpoint("xclip", pth, tmp_path / "o", progress=False)  # the default template "{}"
    assert result.config.vision_config.use_mit

    calls = []
    family = Family("toy", "convert:convert_original_checkpoint", "a test family", "toy {}")
    try:
        register_family(family)
        with pytest.raises(ValueError, match="'toy' is already registered"):
            register_family(Family("toy", "vificlip:convert_vificlip_checkpoint", "another"))
        import xclip_hf.conversion.convert as convert_module

        original = convert_module.convert_original_checkpoint
        convert_module.convert_original_checkpoint = lambda *a, **k: calls.append((a, k))
        try:
            convert_checkpoint("toy", "in.pth", "out", bpe=None)
        finally:
            convert_module.convert_original_checkpoint = original
    finally:
        FAMILIES.pop("toy", None)
    assert calls == [(("in.pth", "out"), {"template": "toy {}", "bpe": None})]

    # the command line: --from vificlip needs --clip; --clip is not for X-CLIP; unknown families are refused
    assert main(["convert", "--from", "vificlip", pth, str(tmp_path / "v")]) == 2
    assert "--from vificlip needs --clip" in capsys.readouterr().err
    assert main(["convert", pth, str(tmp_path / "v"), "--clip", "openai/clip-vit-base-patch16"]) == 2
    assert "--clip is not used by --from xclip" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["convert", "--from", "nope", pth, str(tmp_path / "v")])
    assert "invalid choice: 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "v").exists()


# ------------------------------------------------------------------------------------------- ViFi-CLIP model cards
CARDS = Path(__file__).resolve().parents[1] / "model_cards" / "vificlip"


def _card_generator():
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("xclip_vificlip_cards_generate", CARDS / "generate.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


def test_vificlip_model_cards_describe_what_the_conversion_writes():
    import re

    import yaml
    from huggingface_hub import ModelCard

    from xclip_hf import count_flops
    from xclip_hf.conversion.vificlip import vificlip_config

    gen = _card_generator()
    assert {p.stem for p in CARDS.glob("*.md")} - {"README"} == set(gen.RELEASES)
    gflops = {}
    for name, release in gen.RELEASES.items():
        text = (CARDS / f"{name}.md").read_text(encoding="utf-8")
        meta = yaml.safe_load(re.match(r"\A---\n(.*?)\n---\n", text, re.S).group(1))
        assert meta["base_model"] == "openai/clip-vit-base-patch16" and {"vifi-clip", "xclip_hf"} <= set(meta["tags"])
        results = ModelCard.load(CARDS / f"{name}.md").data.eval_results
        assert [r.metric_value for r in results] == [f.value for f in release.figures]
        assert all(0 < r.metric_value < 100 for r in results)
        assert re.search(rf"^\| Frames per view \| {release.frames} \|$", text, re.M)
        gflops[name] = float(re.search(r"^\| GFLOPs per view, `xclip_hf.count_flops` \| ([\d.]+) \|$", text, re.M)[1])
        assert gen.render_card(name, gflops[name]) == text, f"regenerate with model_cards/vificlip/generate.py: {name}"
    assert gen.render_index(gflops) == (CARDS / "README.md").read_text(encoding="utf-8")

    # the cards' configuration is the one the conversion infers from a ViT-B/16 ViFi-CLIP's shapes
    spec = dict(W=768, layers=12, patch=16, image=224, T=1, P=512, Wt=512, text_layers=12, ctx=77, vocab=49408,
                mlp=3072, text_mlp=2048, mit=0, prompt=0, mit_mlp=0)
    shapes = original_state_dict(spec, clip_only=True, tensor=lambda *shape: torch.empty(*shape, device="meta"))
    for frames in (16, 32):
        release = next(r for r in gen.RELEASES.values() if r.frames == frames)
        converted, card = vificlip_config(shapes, "B/16", frames), gen.release_config(release)
        for ours, theirs in ((converted.vision_config, card.vision_config), (converted.text_config, card.text_config)):
            assert ours.to_diff_dict() == theirs.to_diff_dict()
        assert count_flops(converted) / 1e9 == pytest.approx(gflops[release.name], abs=0.05)
    k400 = gen.RELEASES["vificlip-b16-k400"]  # their README's figure (how they count is not stated): within 2%
    assert gflops[k400.name] == pytest.approx(k400.readme_gflops, rel=0.02)
