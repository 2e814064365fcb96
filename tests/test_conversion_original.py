"""Checkpoints of the original X-CLIP code (.pth): safe reading, config from shapes, round trip, errors, BPE tokenizer,
and the `xclip-hf convert` / `export` commands.

Original-layout state dicts are written (in _helpers_conversion.py) from the format's facts (key names, packed
q/k/v, `x @ proj` projections, heads = width // 64), independently of `xclip_hf.conversion.original`; transformers'
`XCLIPModel` (tests only) is the numerical oracle, fed by a key mapping written in this file.
"""

from __future__ import annotations

import gzip
import json
import os
import pickle
import re
import sys
import textwrap

import numpy as np
import pytest
import regex
import torch

from xclip_hf import XClipConfig, XClipModel
from xclip_hf.cli import main
from xclip_hf.conversion.clip_bpe import build_tokenizer_from_bpe, read_bpe_merges
from xclip_hf.conversion.original import export_original, infer_config, load_original, read_original

from _helpers_conversion import SPECS, original_state_dict, save_original, stride0_checkpoint, tiny_model


def inputs(vocab, frames, image, seed=0, batch=2, texts=3, length=7):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, vocab - 2, (texts, length), generator=g)
    ids[:, -1] = vocab - 1  # end-of-text: the highest id
    mask = torch.ones_like(ids)
    ids[0, 3], ids[0, 4:], mask[0, 4:] = vocab - 1, 0, 0  # a shorter text, padded
    pixels = torch.randn(batch, frames, 3, image, image, generator=g)
    return dict(input_ids=ids, attention_mask=mask, pixel_values=pixels)


# ------------------------------------------------------------------------------------------- round trip, inference
def test_export_layout_and_round_trip_is_identical(tmp_path):
    model = tiny_model()
    path = tmp_path / "exported.pth"
    export_original(model, path)
    raw = torch.load(path, weights_only=True)
    assert set(raw) == {"model", "config"}
    sd, ours = raw["model"], model.state_dict()
    # packed in_proj (q, k, v in that order) and transposed x @ proj matrices, checked from the facts
    for i in range(2):
        layer = f"vision_model.encoder.layers.{i}"
        for theirs, mine in (("attn", "self_attn"), ("message_attn", "cfa")):
            expected = torch.cat([ours[f"{layer}.{mine}.{x}_proj.weight"] for x in "qkv"])
            assert torch.equal(sd[f"visual.transformer.resblocks.{i}.{theirs}.in_proj_weight"], expected)
        assert torch.equal(sd[f"visual.transformer.resblocks.{i}.message_fc.bias"], ours[f"{layer}.message_proj.bias"])
    assert torch.equal(sd["visual.proj"], ours["vision_model.visual_projection.weight"].t())
    assert torch.equal(sd["text_projection"], ours["text_model.text_projection.weight"].t())
    assert torch.equal(sd["prompts_generator.decoder.1.cross_attn.proj.weight"],
                       ours["text_model.prompt_generator.layers.1.cross_attn.out_proj.weight"])
    assert sum(v.numel() for v in sd.values()) == sum(v.numel() for v in ours.values())

    # back again, through the original container with a pickled config object
    back = load_original(save_original(tmp_path / "container.pth", sd, config=_CfgNodeLike(ARCH="ViT-B/32")))
    assert back.config.to_diff_dict() == {**model.config.to_diff_dict(), "architectures": ["XClipModel"],
                                          "logit_scale_init_value": back.config.logit_scale_init_value}
    assert back.config.vision_config.to_dict() == model.config.vision_config.to_dict()
    assert back.config.text_config.to_dict() == model.config.text_config.to_dict()
    restored = back.state_dict()
    assert restored.keys() == ours.keys() and all(torch.equal(restored[k], ours[k]) for k in ours)
    batch = inputs(99, 3, 32)
    with torch.no_grad():
        assert torch.equal(back(**batch).logits_per_video, model(**batch).logits_per_video)


class _CfgNodeLike(dict):
    """Stands for yacs' CfgNode: a dict subclass with attributes, pickled as an arbitrary object."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.frozen = True


@pytest.mark.parametrize("name", sorted(SPECS))
def test_config_inferred_from_shapes(name, tmp_path):
    s = SPECS[name]
    path = save_original(tmp_path / f"{name}.pth", original_state_dict(s))
    config = read_original(path).config
    v, t = config.vision_config, config.text_config
    assert (v.hidden_size, v.num_hidden_layers, v.num_attention_heads, v.intermediate_size) == (
        s["W"], s["layers"], s["W"] // 64, s["mlp"])
    assert (v.patch_size, v.image_size, v.num_frames, v.num_channels) == (s["patch"], s["image"], s["T"], 3)
    assert (v.mit_hidden_size, v.mit_num_hidden_layers, v.mit_num_attention_heads, v.mit_intermediate_size) == (
        s["P"], s["mit"], s["P"] // 64, s["mit_mlp"])
    assert (t.hidden_size, t.num_hidden_layers, t.num_attention_heads, t.intermediate_size) == (
        s["Wt"], s["text_layers"], s["Wt"] // 64, s["text_mlp"])
    assert (t.max_position_embeddings, t.vocab_size, t.prompt_layers, t.prompt_num_attention_heads) == (
        s["ctx"], s["vocab"], s["prompt"], s["P"] // 64)
    assert config.projection_dim == s["P"] and t.eos_token_id is None
    model = load_original(path)
    assert model.logit_scale.item() == pytest.approx(3.3)


# transformers' XCLIPModel names, from the original ones (the test's own mapping, for the oracle)
_TO_TRANSFORMERS = [
    (r"^visual\.conv1\.", "vision_model.embeddings.patch_embedding."),
    (r"^visual\.class_embedding$", "vision_model.embeddings.class_embedding"),
    (r"^visual\.positional_embedding$", "vision_model.embeddings.position_embedding.weight"),
    (r"^visual\.ln_pre\.", "vision_model.pre_layernorm."),
    (r"^visual\.ln_post\.", "vision_model.post_layernorm."),
    (r"^visual\.transformer\.resblocks\.", "vision_model.encoder.layers."),
    (r"^mit\.positional_embedding$", "mit.position_embedding"),
    (r"^mit\.resblocks\.", "mit.encoder.layers."),
    (r"^prompts_visual_ln\.", "prompts_visual_layernorm."),
    (r"^prompts_visual_proj$", "prompts_visual_projection"),
    (r"^prompts_generator\.norm\.", "prompts_generator.layernorm."),
    (r"^token_embedding\.", "text_model.embeddings.token_embedding."),
    (r"^positional_embedding$", "text_model.embeddings.position_embedding.weight"),
    (r"^transformer\.resblocks\.", "text_model.encoder.layers."),
    (r"^ln_final\.", "text_model.final_layer_norm."),
    (r"\.ln_1\.", ".layer_norm1."), (r"\.ln_2\.", ".layer_norm2."),
    (r"\.mlp\.c_fc\.", ".mlp.fc1."), (r"\.mlp\.c_proj\.", ".mlp.fc2."),
    (r"\.attn\.out_proj\.", ".self_attn.out_proj."),
]


def to_transformers(sd):
    out = {}
    for key, value in sd.items():
        if key in ("visual.proj", "text_projection"):
            out[{"visual.proj": "visual_projection.weight", "text_projection": "text_projection.weight"}[key]] = value.t()
            continue
        new = key
        for pattern, target in _TO_TRANSFORMERS:
            new = re.sub(pattern, target, new)
        packed = re.match(r"(.*)\.(attn|message_attn)\.in_proj_(weight|bias)$", new)
        if packed:
            prefix, attn, param = packed.groups()
            attn = "self_attn" if attn == "attn" else attn
            for x, chunk in zip("qkv", value.chunk(3)):
                out[f"{prefix}.{attn}.{x}_proj.{param}"] = chunk
        else:
            out[new] = value
    return out


@pytest.mark.parametrize("name", ["deep-b", "wide-p16"])
def test_converted_model_matches_transformers_oracle(name, tmp_path):
    from transformers import XCLIPConfig, XCLIPModel

    s = SPECS[name]
    sd = original_state_dict(s, seed=1)
    ours = load_original(save_original(tmp_path / "x.pth", sd))
    oracle = XCLIPModel(XCLIPConfig(
        text_config=dict(vocab_size=s["vocab"], hidden_size=s["Wt"], intermediate_size=s["text_mlp"],
                         num_hidden_layers=s["text_layers"], num_attention_heads=s["Wt"] // 64,
                         max_position_embeddings=s["ctx"]),
        vision_config=dict(image_size=s["image"], patch_size=s["patch"], hidden_size=s["W"], intermediate_size=s["mlp"],
                           num_hidden_layers=s["layers"], num_attention_heads=s["W"] // 64, num_frames=s["T"],
                           mit_hidden_size=s["P"], mit_intermediate_size=s["mit_mlp"], mit_num_hidden_layers=s["mit"],
                           mit_num_attention_heads=s["P"] // 64),
        projection_dim=s["P"], prompt_layers=s["prompt"], prompt_num_attention_heads=s["P"] // 64,
    )).eval()
    missing, unexpected = oracle.load_state_dict(to_transformers(sd), strict=False)
    assert not unexpected and all(k.endswith("position_ids") for k in missing), (missing, unexpected)
    batch = inputs(s["vocab"], s["T"], s["image"], length=min(7, s["ctx"]))
    with torch.no_grad():
        expected = oracle(**batch).logits_per_video
        got = ours(**batch).logits_per_video
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    assert expected.std() > 0.01  # the scores differ between texts: the comparison is not vacuous


def test_module_prefix_and_bare_state_dict(tmp_path):
    sd = original_state_dict(SPECS["tiny-1frame"])
    reference = load_original(save_original(tmp_path / "plain.pth", sd)).state_dict()
    prefixed = {f"module.{k}": v for k, v in sd.items()}
    torch.save(prefixed, tmp_path / "bare_prefixed.pth")
    torch.save(sd, tmp_path / "bare.pth")
    for path in (save_original(tmp_path / "prefixed.pth", prefixed), tmp_path / "bare_prefixed.pth",
                 tmp_path / "bare.pth"):
        ckpt = read_original(path)
        loaded = load_original(ckpt).state_dict()
        assert all(torch.equal(loaded[k], reference[k]) for k in reference), path
        assert ("prefix" in " ".join(ckpt.notes)) == ("prefixed" in str(path))


# ------------------------------------------------------------------------------------------- safety
_MODULE_SOURCE = """
import os
open(os.path.join({marks!r}, "imported"), "w").close()

class TrainConfig(dict):
    def __init__(self, **items):
        super().__init__(**items)
        self.frozen = True  # attributes, like yacs' CfgNode: unpickling calls __setstate__ with them

    def __setstate__(self, state):
        open(os.path.join({marks!r}, "instantiated"), "w").close()
        self.__dict__.update(state)

class Payload:
    def __reduce__(self):
        return (os.system, ("touch " + os.path.join({marks!r}, "payload_ran"),))
"""


@pytest.fixture
def hostile_module(tmp_path):
    """A module whose import, class instantiation and payload each leave a marker file; importable while the test
    runs (so a naive unpickler WOULD import it), removed from sys.modules before loading."""
    name = f"xclip_test_hostile_{os.getpid()}"
    marks = tmp_path / "marks"
    marks.mkdir()
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(_MODULE_SOURCE.format(marks=str(marks))))
    sys.path.insert(0, str(tmp_path))
    try:
        module = __import__(name)
        yield module, marks, name
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop(name, None)


def _forget(module_name, marks):
    sys.modules.pop(module_name, None)
    for mark in marks.iterdir():
        mark.unlink()


def test_pickled_config_object_is_never_imported(hostile_module, tmp_path):
    module, marks, name = hostile_module
    config = module.TrainConfig(MODEL=module.TrainConfig(ARCH="ViT-B/32"))
    path = save_original(tmp_path / "with_cfg.pth", original_state_dict(SPECS["tiny-1frame"]), config=config)
    _forget(name, marks)
    with pytest.raises(pickle.UnpicklingError):  # torch's own weights-only loader refuses this file
        torch.load(path, weights_only=True)

    ckpt = read_original(path)
    model = load_original(ckpt)
    assert isinstance(model, XClipModel)
    assert not list(marks.iterdir()) and name not in sys.modules  # neither imported nor instantiated
    assert any(f"{name}.TrainConfig in ['config']" in note for note in ckpt.notes), ckpt.notes
    assert main(["info", path, "--json"]) == 0
    assert not list(marks.iterdir()) and name not in sys.modules

    # control: the file does run the module's code when unpickled fully (the explicit opt-in)
    read_original(path, trust_pickle=True)
    assert {m.name for m in marks.iterdir()} == {"imported", "instantiated"}


def test_malicious_model_entry_is_refused(hostile_module, tmp_path):
    module, marks, name = hostile_module
    sd = original_state_dict(SPECS["tiny-1frame"])
    files = {
        "entry.pth": {"model": module.Payload(), "config": {}},
        "inside.pth": {"model": {**sd, "visual.evil": module.Payload()}, "config": {}},
        "bare.pth": {**sd, "evil": module.Payload()},
    }
    for file, content in files.items():
        torch.save(content, tmp_path / file)
    _forget(name, marks)
    for file in files:
        with pytest.raises(ValueError, match=r"system.*NOT executed") as err:
            read_original(tmp_path / file)
        assert str(tmp_path / file) in str(err.value)
        assert main(["convert", str(tmp_path / file), str(tmp_path / "out"), "--no-progress"]) == 1
    assert not list(marks.iterdir()) and not (tmp_path / "out" / "config.json").exists()

    # control: the payload is real, fully unpickling the file runs it
    torch.load(tmp_path / "entry.pth", weights_only=False)
    assert (marks / "payload_ran").exists()


# ------------------------------------------------------------------------------------------- errors
def test_clear_errors(tmp_path):
    s = SPECS["tiny-1frame"]
    good = save_original(tmp_path / "good.pth", original_state_dict(s))
    data = open(good, "rb").read()
    (tmp_path / "truncated.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated") as err:
        read_original(tmp_path / "truncated.pth")
    assert "truncated.pth" in str(err.value)
    with pytest.raises(FileNotFoundError, match="nothere.pth"):
        read_original(tmp_path / "nothere.pth")

    torch.save(original_state_dict(s, clip_only=True), tmp_path / "clip.pth")
    with pytest.raises(ValueError, match="plain CLIP state dict") as err:
        read_original(tmp_path / "clip.pth")
    assert "mit.*" in str(err.value) and "from_clip" in str(err.value)

    sd = original_state_dict(s)
    del sd["prompts_generator.alpha"], sd["mit.resblocks.0.ln_1.weight"]
    sd["visual.extra_head.weight"] = torch.zeros(2)
    with pytest.raises(ValueError) as err:
        read_original(save_original(tmp_path / "holes.pth", sd))
    message = str(err.value)
    assert "2 missing keys" in message and "prompts_generator.alpha" in message and "mit.resblocks.0.ln_1.weight" in message
    assert "1 unexpected keys: visual.extra_head.weight" in message and "holes.pth" in message

    sd = original_state_dict(s)
    sd["visual.transformer.resblocks.0.message_fc.weight"] = torch.zeros(64, 32)
    with pytest.raises(ValueError, match=r"wrong shapes: visual\.transformer\.resblocks\.0\.message_fc\.weight \(64, 32\)"):
        read_original(save_original(tmp_path / "shape.pth", sd))

    sd = original_state_dict(s)
    del sd["visual.proj"]
    with pytest.raises(ValueError, match="missing keys visual.proj"):
        read_original(save_original(tmp_path / "noproj.pth", sd))

    torch.save({"vision_model.embeddings.class_embedding": torch.zeros(4)}, tmp_path / "hf.pth")
    with pytest.raises(ValueError, match="Hugging Face-style keys"):
        read_original(tmp_path / "hf.pth")
    torch.save({"state_dict": {}, "epoch": 1}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="no 'model' entry.*'state_dict'"):
        read_original(tmp_path / "other.pth")


# ------------------------------------------------------------------------------------------- bounded files
def test_views_declaring_more_than_the_file_stores_are_refused(tmp_path):
    from xclip_hf.conversion.safe_load import CheckpointSizeError, load_checkpoint

    s = SPECS["tiny-1frame"]
    sd = original_state_dict(s)
    sd["token_embedding.weight"] = sd["visual.proj"] = torch.randn(64, 64)  # tied: one storage declared twice
    assert read_original(save_original(tmp_path / "tied.pth", sd)).config.projection_dim == 64

    sd = original_state_dict(s)
    sd["visual.proj"] = torch.zeros(()).expand(64, 64)  # 16 KB declared over 4 bytes: within the slack
    read_original(save_original(tmp_path / "small_view.pth", sd))
    sd["extra"] = torch.zeros(()).expand(1024, 1024)  # 4 MB declared over 4 bytes
    with pytest.raises(CheckpointSizeError) as err:
        load_checkpoint(save_original(tmp_path / "view.pth", sd))
    message = str(err.value)
    assert "view.pth" in message and "stride-0" in message and "(1024, 1024)" in message and "stores only" in message

    big = stride0_checkpoint(tmp_path / "stride0.pth")
    assert os.path.getsize(big) < 2e6
    with pytest.raises(CheckpointSizeError, match=r"stride0\.pth.*13,956,602,881 elements \(52\.0 GB\).*stores only"):
        read_original(big)


def test_shapes_larger_than_their_storage_are_refused(tmp_path):
    """A hand-made zip-format file whose tensor needs 4e10 bytes over a 16-byte storage record."""
    import collections
    import io
    import zipfile

    class Storage:
        pass

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):  # torch.save's storage record: (tag, type, key, location, elements)
            return ("storage", torch.FloatStorage, "0", "cpu", 4) if isinstance(obj, Storage) else None

    class Tensor:
        def __reduce__(self):
            return (torch._utils._rebuild_tensor_v2,
                    (Storage(), 0, (100000, 100000), (100000, 1), False, collections.OrderedDict()))

    buffer = io.BytesIO()
    Pickler(buffer, protocol=2).dump({"model": {"visual.proj": Tensor()}})
    path = tmp_path / "oversized.pth"
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in (("data.pkl", buffer.getvalue()), ("data/0", bytes(16)), ("version", b"3\n"),
                           ("byteorder", b"little")):
            archive.writestr(f"archive/{name}", data)
    with pytest.raises(ValueError, match=r"oversized\.pth: refusing the file: it declares a tensor larger than"):
        read_original(path)


def test_a_model_that_does_not_fit_in_memory_is_refused_before_it_is_built(tmp_path, monkeypatch, capsys):
    from xclip_hf.conversion import safe_load

    pth = save_original(tmp_path / "m.pth", original_state_dict(SPECS["tiny-1frame"]))
    ckpt = read_original(pth)
    assert ckpt.parameters == sum(p.numel() for p in load_original(ckpt).parameters())
    monkeypatch.setattr(safe_load, "available_memory", lambda: 100_000)
    with monkeypatch.context() as patch:  # (reading the file builds a model on the meta device, nothing more)
        patch.setattr(XClipModel, "__init__", lambda *a, **k: pytest.fail("the model was built"))
        expected = rf"m\.pth: building the model \({ckpt.parameters:,} float32 parameters\) needs .* only 97\.7 KB"
        with pytest.raises(safe_load.CheckpointSizeError, match=expected):
            load_original(ckpt)
    assert main(["convert", pth, str(tmp_path / "out"), "--no-progress"]) == 1
    assert "m.pth: building the model" in capsys.readouterr().err
    assert not (tmp_path / "out" / "model.safetensors").exists()


REFUSAL_SCRIPT = """
import resource, sys, time
from xclip_hf.conversion.safe_load import available_memory
resource.setrlimit(resource.RLIMIT_AS, (6 << 30, resource.RLIM_INFINITY))  # even a regression cannot take the machine
assert available_memory() <= 6 << 30
from xclip_hf.cli import main
assert main(["info", "xclip-tiny"]) == 0  # imports done before the timing
for argv in (["info", sys.argv[1]], ["convert", sys.argv[1], sys.argv[2], "--no-progress"]):
    start = time.perf_counter()
    status = main(argv)
    print(argv[0], status, round(time.perf_counter() - start, 3), flush=True)
print("maxrss_kb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


@pytest.mark.slow
def test_stride0_file_is_refused_by_info_and_convert_fast_with_bounded_memory(tmp_path):
    """The issue's acceptance: `info` and `convert` refuse the stride-0 file at once; peak RSS stays that of the
    interpreter with torch (measured in a fresh process)."""
    import subprocess

    big = stride0_checkpoint(tmp_path / "stride0.pth")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", ""), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", REFUSAL_SCRIPT, big, str(tmp_path / "out")], capture_output=True,
                          text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = dict(line.split(" ", 1) for line in proc.stdout.splitlines())
    for command in ("info", "convert"):
        status, seconds = rows[command].split()
        assert status == "1" and float(seconds) < 5, rows  # measured 0.1-0.3 s; the old convert built 58 GB
    assert int(rows["maxrss_kb"]) < 1_500_000, rows  # the interpreter with torch: ~0.35 GB
    assert proc.stderr.count("stride0.pth: refusing the file") == 2 and "52.0 GB" in proc.stderr
    assert not os.path.exists(tmp_path / "out" / "model.safetensors")


def test_export_refuses_models_the_original_code_cannot_run(tmp_path):
    config = XClipConfig.from_variant("xclip-tiny", num_frames=3)  # 4 heads of width 8: not width // 64
    with pytest.raises(ValueError, match="vision has 4 heads, the original code would use 32 // 64 = 0"):
        export_original(XClipModel(config), tmp_path / "x.pth")
    assert not (tmp_path / "x.pth").exists()


# ------------------------------------------------------------------------------------------- CLIP BPE tokenizer
CORPUS = """
the quick brown fox jumps over the lazy dog while people are playing guitar and dancing ballet in the park
someone is riding a bike along the river, another person is cooking pasta; children swimming in a pool
a video of people doing things outdoors and indoors: running, jumping, walking, climbing, throwing, catching
archery, bowling, boxing, surfing, skiing, skateboarding, snowboarding, juggling, knitting, painting, singing
gymnastics trampolining wrestling fencing rowing sailing kayaking paragliding skydiving weightlifting
marathon hurdles javelin discus pole vault badminton volleyball basketball handball lacrosse cricket
café naïve façade résumé über straße 東京 日本語 emoji 🙂 numbers 2022 1984 42 it's don't we're they've i'm you'll he'd
""".split("\n")
SENTENCES = ["a video of people playing guitar", "Riding   a BIKE!!", "it's cooking-pasta time (2022)",
             "naïve café über 東京 🙂", "snowboarding & skateboarding... don't stop", "xylophone quartz zebra",
             "they've you'll he'd we're i'm", "   leading and trailing   "]


def _byte_encoder() -> dict[int, str]:
    """GPT-2/CLIP byte -> symbol map: printable Latin-1 bytes as themselves, the rest shifted past 255."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    order, shift = list(printable), 0
    symbols = [chr(b) for b in printable]
    for b in range(256):
        if b not in printable:
            order.append(b)
            symbols.append(chr(256 + shift))
            shift += 1
    return dict(zip(order, symbols))


_SPLIT = regex.compile(r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
                       regex.IGNORECASE)


def _words(text):
    encoder = _byte_encoder()
    text = re.sub(r"\s+", " ", text).strip().lower()
    return ["".join(encoder[b] for b in token.encode("utf-8")) for token in _SPLIT.findall(text)]


def _learn_merges(texts, count):
    """Plain BPE training (most frequent adjacent pair, ties broken by the pair itself)."""
    words = {}
    for text in texts:
        for w in _words(text):
            key = tuple(w[:-1]) + (w[-1] + "</w>",)
            words[key] = words.get(key, 0) + 1
    merges = []
    while len(merges) < count:
        pairs = {}
        for word, n in words.items():
            for pair in zip(word, word[1:]):
                pairs[pair] = pairs.get(pair, 0) + n
        if not pairs:
            break
        best = max(pairs, key=lambda p: (pairs[p], p))
        merges.append(best)
        words = {_merge(word, best): n for word, n in words.items()}
    return merges


def _merge(word, pair):
    out, i = [], 0
    while i < len(word):
        if i < len(word) - 1 and (word[i], word[i + 1]) == pair:
            out.append(word[i] + word[i + 1])
            i += 2
        else:
            out.append(word[i])
            i += 1
    return tuple(out)


def reference_clip_tokenize(text, merges):
    """CLIP's BPE, written here: byte symbols, lowest-rank merge first, CLIP's id order, start/end tokens."""
    symbols = list(_byte_encoder().values())
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges] + ["<|startoftext|>", "<|endoftext|>"]
    ids = {token: i for i, token in enumerate(vocab)}
    ranks = {m: i for i, m in enumerate(merges)}
    out = [ids["<|startoftext|>"]]
    for w in _words(text):
        word = tuple(w[:-1]) + (w[-1] + "</w>",)
        while len(word) > 1:
            pair = min(zip(word, word[1:]), key=lambda p: ranks.get(p, float("inf")))
            if pair not in ranks:
                break
            word = _merge(word, pair)
        out.extend(ids[piece] for piece in word)
    return out + [ids["<|endoftext|>"]]


@pytest.fixture(scope="module")
def bpe_file(tmp_path_factory):
    merges = _learn_merges(CORPUS * 3, 400)
    assert len(merges) >= 300
    path = tmp_path_factory.mktemp("bpe") / "bpe_simple_vocab_test.txt.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write('"bpe_simple_vocab_test.txt#version: 0.2\n' + "\n".join(f"{a} {b}" for a, b in merges) + "\n")
    return path, merges


def test_bpe_file_tokenizer_matches_an_independent_clip_bpe(bpe_file, tmp_path):
    path, merges = bpe_file
    assert read_bpe_merges(path) == merges
    tokenizer = build_tokenizer_from_bpe(path, tmp_path / "tok")
    assert len(tokenizer) == 512 + len(merges) + 2
    vocab = json.loads((tmp_path / "tok" / "vocab.json").read_text(encoding="utf-8"))
    assert vocab["<|endoftext|>"] == len(vocab) - 1 and vocab["<|startoftext|>"] == len(vocab) - 2
    assert vocab["!"] == 0 and vocab["!</w>"] == 256 and vocab["".join(merges[0])] == 512
    for sentence in SENTENCES:
        assert tokenizer(sentence)["input_ids"] == reference_clip_tokenize(sentence, merges), sentence
    # CLIP keeps only the first merges: the rest of the file is ignored
    short = build_tokenizer_from_bpe(path, tmp_path / "short", max_merges=100)
    assert len(short) == 512 + 100 + 2
    for sentence in SENTENCES[:3]:
        assert short(sentence)["input_ids"] == reference_clip_tokenize(sentence, merges[:100])


def test_bpe_file_errors(tmp_path):
    bad = tmp_path / "bad.txt.gz"
    with gzip.open(bad, "wt", encoding="utf-8") as f:
        f.write("header\nt h\nth e</w>\nnot a merge\n")
    with pytest.raises(ValueError, match="line 4: expected 'left right'"):
        read_bpe_merges(bad)
    with pytest.raises(FileNotFoundError, match="missing.gz"):
        read_bpe_merges(tmp_path / "missing.gz")


# ------------------------------------------------------------------------------------------- the CLI
def test_cli_convert_end_to_end(bpe_file, tmp_path, hostile_module, capsys):
    from transformers import AutoModel, AutoModelForVideoClassification, pipeline

    import xclip_hf  # noqa: F401  (registers the Auto classes and the pipeline)
    from xclip_hf.data.video_writer import write_video

    module, marks, name = hostile_module
    bpe, merges = bpe_file
    model = tiny_model(seed=3, vocab=512 + len(merges) + 2)
    state = export_original(model, tmp_path / "exported.pth")
    pth = save_original(tmp_path / "trained.pth", state, config=module.TrainConfig(ARCH="ViT-B/32"))
    _forget(name, marks)
    labels = tmp_path / "labels.csv"
    labels.write_text("id,name\n0,playing guitar\n1,riding a bike\n2,cooking pasta\n")
    out = tmp_path / "converted"

    assert main(["convert", pth, str(out), "--bpe", str(bpe), "--num-frames", "5", "--no-progress"]) == 1  # the file does not match: a runtime failure
    assert "trained with 3 frames" in capsys.readouterr().err
    assert main(["convert", pth, str(out), "--bpe", str(bpe), "--labels", str(labels), "--num-frames", "3",
                 "--no-progress"]) == 0
    printed = capsys.readouterr()
    assert "TrainConfig" in printed.err and "3 classes" in printed.out
    assert not list(marks.iterdir())

    loaded = AutoModel.from_pretrained(out)
    assert type(loaded) is XClipModel
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in model.state_dict().items())
    processor = json.loads((out / "processor_config.json").read_text()) if (out / "processor_config.json").exists() \
        else None
    video_config = json.loads((out / "video_preprocessor_config.json").read_text()) \
        if (out / "video_preprocessor_config.json").exists() else processor["video_processor"]
    np.testing.assert_allclose(video_config["image_mean"], [123.675 / 255, 116.28 / 255, 103.53 / 255])
    np.testing.assert_allclose(video_config["image_std"], [58.395 / 255, 57.12 / 255, 57.375 / 255])
    assert video_config["crop_size"] == {"height": 32, "width": 32} and video_config["size"] == {"shortest_edge": 37}

    video = write_video(str(tmp_path / "clip.mp4"),
                        np.random.default_rng(0).integers(0, 255, (12, 40, 48, 3), dtype=np.uint8))
    zero_shot = pipeline("zero-shot-video-classification", model=str(out), device="cpu")
    result = zero_shot(video, candidate_labels=["playing guitar", "riding a bike", "cooking pasta"])
    assert sorted(r["label"] for r in result) == ["cooking pasta", "playing guitar", "riding a bike"]
    assert sum(r["score"] for r in result) == pytest.approx(1.0, abs=1e-5)

    classifier_dir = out / "classifier"
    assert type(AutoModelForVideoClassification.from_pretrained(classifier_dir)).__name__ == "XClipForVideoClassification"
    closed = pipeline("video-classification", model=str(classifier_dir))(video, top_k=3)
    assert sorted(r["label"] for r in closed) == ["cooking pasta", "playing guitar", "riding a bike"]
    # the closed-set classifier agrees with the zero-shot pipeline on the same class names
    assert {r["label"]: round(r["score"], 4) for r in closed} == {r["label"]: round(r["score"], 4) for r in result}

    assert main(["info", pth]) == 0
    info = capsys.readouterr().out
    assert "inferred vision" in info and "2 layers, width 128, 2 heads" in info and "3 x 32px" in info

    back = tmp_path / "back.pth"
    assert main(["export", str(out), str(back)]) == 0
    exported = torch.load(back, weights_only=True)["model"]
    assert exported.keys() == state.keys() and all(torch.equal(exported[k], state[k]) for k in state)


def test_cli_convert_argument_errors(tmp_path, capsys):
    assert main(["convert", str(tmp_path / "none.pth"), str(tmp_path / "o")]) == 1
    assert "none.pth" in capsys.readouterr().err
    pth = save_original(tmp_path / "m.pth", original_state_dict(SPECS["tiny-1frame"]))
    (tmp_path / "l.csv").write_text("id,name\n0,a\n")
    assert main(["convert", pth, str(tmp_path / "o"), "--labels", str(tmp_path / "l.csv")]) == 2
    assert "--labels needs --bpe" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------- the Python API
def _folder_files(folder):
    """Relative path -> contents of every file under `folder` (JSON parsed; weights as state dicts elsewhere)."""
    files = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.suffix != ".safetensors":
            text = path.read_text(encoding="utf-8")
            files[str(path.relative_to(folder))] = json.loads(text) if path.suffix == ".json" else text
    return files


def test_python_api_writes_what_the_cli_writes(bpe_file, tmp_path, capsys):
    from transformers import AutoModel, AutoModelForVideoClassification

    from xclip_hf import convert_original_checkpoint

    bpe, merges = bpe_file
    state = export_original(tiny_model(seed=5, vocab=512 + len(merges) + 2), tmp_path / "exported.pth")
    pth = save_original(tmp_path / "trained.pth", state)
    labels = tmp_path / "labels.csv"
    labels.write_text("id,name\n0,playing guitar\n1,riding a bike\n")
    assert main(["convert", pth, str(tmp_path / "cli"), "--bpe", str(bpe), "--labels", str(labels), "--template",
                 "a video of {}", "--no-progress"]) == 0
    capsys.readouterr()
    result = convert_original_checkpoint(pth, tmp_path / "api", bpe=bpe, labels=labels, template="a video of {}",
                                         progress=False)
    names = convert_original_checkpoint(pth, tmp_path / "names", bpe=bpe, labels=["playing guitar", "riding a bike"],
                                        template="a video of {}", progress=False)

    assert os.fspath(result) == str(tmp_path / "api") and result.has_tokenizer
    assert result.classifier_dir == str(tmp_path / "api" / "classifier")
    assert result.class_names == ("playing guitar", "riding a bike") and result.config.vision_config.num_frames == 3
    cli_files = _folder_files(tmp_path / "cli")
    assert "video_preprocessor_config.json" in cli_files or "processor_config.json" in cli_files
    assert _folder_files(tmp_path / "api") == cli_files == _folder_files(tmp_path / "names")
    for load, sub in ((AutoModel.from_pretrained, ""), (AutoModelForVideoClassification.from_pretrained, "classifier")):
        expected = load(tmp_path / "cli" / sub).state_dict()
        for folder in ("api", "names"):
            got = load(tmp_path / folder / sub).state_dict()
            assert got.keys() == expected.keys() and all(torch.equal(got[k], expected[k]) for k in expected), folder


def test_python_api_without_bpe_writes_the_video_processor_only(tmp_path, capsys):
    from xclip_hf.conversion import convert_original_checkpoint

    pth = save_original(tmp_path / "m.pth", original_state_dict(SPECS["tiny-1frame"]))
    result = convert_original_checkpoint(pth, tmp_path / "out", progress=False)
    assert not result.has_tokenizer and result.classifier_dir is None and result.class_names == ()
    assert not (tmp_path / "out" / "vocab.json").exists()
    assert type(XClipModel.from_pretrained(tmp_path / "out")) is XClipModel
    written = json.loads((tmp_path / "out" / "video_preprocessor_config.json").read_text())
    np.testing.assert_allclose(written["image_mean"], [123.675 / 255, 116.28 / 255, 103.53 / 255])
    np.testing.assert_allclose(written["image_std"], [58.395 / 255, 57.12 / 255, 57.375 / 255])
    assert written["crop_size"] == {"height": 12, "width": 12} and written["size"] == {"shortest_edge": 14}
    assert written["num_frames"] == 1
    assert capsys.readouterr().out == ""  # the API prints nothing on stdout


def test_python_api_errors_name_the_input(tmp_path):
    from xclip_hf.conversion import convert_original_checkpoint

    pth = save_original(tmp_path / "m.pth", original_state_dict(SPECS["tiny-1frame"]))
    out = tmp_path / "out"
    (tmp_path / "l.csv").write_text("id,name\n0,a\n")
    (tmp_path / "notes.txt").write_text("not a folder")
    with pytest.raises(FileNotFoundError, match="checkpoint file .*none.pth"):
        convert_original_checkpoint(tmp_path / "none.pth", out)
    with pytest.raises(ValueError, match=r"labels=.*l\.csv.* needs bpe"):
        convert_original_checkpoint(pth, out, labels=tmp_path / "l.csv")
    with pytest.raises(FileNotFoundError, match="bpe file .*missing.gz"):
        convert_original_checkpoint(pth, out, bpe=tmp_path / "missing.gz")
    with pytest.raises(ValueError, match="template 'no placeholder' has no"):
        convert_original_checkpoint(pth, out, bpe=tmp_path / "missing.gz", labels=["a"], template="no placeholder")
    with pytest.raises(ValueError, match="num_frames must be a positive integer, got 0"):
        convert_original_checkpoint(pth, out, num_frames=0)
    with pytest.raises(NotADirectoryError, match="notes.txt"):
        convert_original_checkpoint(pth, tmp_path / "notes.txt")
    assert not out.exists()  # refused before anything was written
    with pytest.raises(ValueError, match=r"m\.pth was trained with 1 frames per clip .*not num_frames=8"):
        convert_original_checkpoint(pth, out, num_frames=8, progress=False)
    assert not out.exists()


def test_restricted_unpickler_never_alters_the_allowed_globals():
    """A pickle that tries to set state on an allowed function (its __defaults__) is refused, torch left unchanged."""
    import io

    from xclip_hf.conversion.safe_load import _restricted_pickle_module

    before = torch._utils._rebuild_tensor_v2.__defaults__
    # PROTO 2; GLOBAL torch._utils._rebuild_tensor_v2; state (None, {"__defaults__": (1,)}); BUILD; STOP
    raw = (b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\nN}X\x0c\x00\x00\x00__defaults__K\x01\x85s\x86b.")
    seen = set()
    with pytest.raises(pickle.UnpicklingError, match="sets the state of"):
        _restricted_pickle_module(seen).load(io.BytesIO(raw))
    assert torch._utils._rebuild_tensor_v2.__defaults__ == before
    # a call of an unknown global yields an inert stand-in, whose state may be set (and is dropped)
    called = b"\x80\x02cos\nsystem\n)R}X\x01\x00\x00\x00aK\x01sb."  # os.system() then BUILD {"a": 1}
    assert repr(_restricted_pickle_module(seen).load(io.BytesIO(called))) == "<not unpickled: os.system>"
    assert seen == {"os.system"}
