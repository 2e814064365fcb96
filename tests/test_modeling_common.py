"""transformers' common model checks, tried the way its ModelTesterMixin tries them, on tiny configs: the main input
is forward's first argument, `return_dict=False` tuples equal the dict outputs' `to_tuple()` for every public
method, and eager attention equals SDPA with and without `output_attentions` (inputs built from `main_input_name`,
as the mixin builds them)."""

import inspect

import pytest
import torch

from _helpers_pipeline import LABELS, tiny_tokenizer
from _oracle import text_batch
from xclip_hf import XClipConfig, XClipForVideoClassification, XClipModel, XClipTextModel, XClipVisionModel

FRAMES = 3
MODEL_CLASSES = (XClipVisionModel, XClipTextModel, XClipModel, XClipForVideoClassification)
# inputs the eager/SDPA check adds to the main one (transformers' CLIP tests: `additional_model_inputs`)
ADDITIONAL_MODEL_INPUTS = {XClipModel: ["pixel_values"]}


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


def _config(tokenizer):
    return XClipConfig.from_variant("xclip-tiny", num_frames=FRAMES, vocab_size=len(tokenizer),
                                    id2label=dict(enumerate(LABELS)))


def _build(model_class, tokenizer, attn_implementation="eager"):
    """A seeded tiny `model_class` in eval mode (the classifier with its class texts)."""
    torch.manual_seed(0)
    config = _config(tokenizer)
    if model_class is XClipVisionModel:
        config = config.vision_config
    elif model_class is XClipTextModel:
        config = config.text_config
    model = model_class._from_config(config, attn_implementation=attn_implementation)
    if model_class is XClipForVideoClassification:
        model.set_class_texts(tokenizer)
    return model.eval()


def _inputs_dict(padding_side="right"):
    """Every input any class takes: 4 texts, text 0 with one padded token on `padding_side` (the eager/SDPA check's
    dummy mask); 2 videos of 3 frames."""
    ids, mask = text_batch(4)
    if padding_side == "right":
        ids[0, -2], ids[0, -1], mask[0, -1] = ids[0, -1], 0, 0  # the end-of-text token moves left
    else:
        ids[0, 0], mask[0, 0] = 0, 0
    pixels = torch.randn(2, FRAMES, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    return {"input_ids": ids, "attention_mask": mask, "pixel_values": pixels}


def _prepare_for_class(model, inputs_dict):
    """What the mixin passes: the main input, the class's additional inputs, the mask if forward takes one."""
    parameters = inspect.signature(model.forward).parameters
    names = [model.main_input_name, *ADDITIONAL_MODEL_INPUTS.get(type(model), [])]
    if "attention_mask" in parameters:
        names.append("attention_mask")
    return {name: inputs_dict[name] for name in names}


def _can_output_attn(model) -> bool:
    """The mixin's test: `output_attentions` is a parameter of forward, or a key of its `**kwargs: Unpack[...]`."""
    parameters = inspect.signature(model.forward).parameters
    if "output_attentions" in parameters:
        return True
    kwargs = parameters.get("kwargs")
    try:
        return "output_attentions" in kwargs.annotation.__args__[0].__annotations__
    except AttributeError:
        return False


def _public_calls(model):
    """(name, method, inputs) of every public method that returns a model output (all the inputs it takes)."""
    inputs = _inputs_dict()
    parameters = inspect.signature(model.forward).parameters
    calls = [("forward", model, {k: v for k, v in inputs.items() if k in parameters})]
    if isinstance(model, XClipModel):
        calls.append(("get_text_features", model.get_text_features,
                      {"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"]}))
        calls.append(("get_video_features", model.get_video_features, {"pixel_values": inputs["pixel_values"]}))
    return calls


def _assert_same_nested(got, want, where):
    """Tuple `got` equals the tuple `want` item by item (same lengths and nesting, tensors to 1e-5)."""
    assert isinstance(got, tuple), f"{where}: {type(got).__name__}, not a tuple"
    assert isinstance(want, tuple) and len(got) == len(want), f"{where}: {len(got)} items vs {len(want)}"
    for i, (a, b) in enumerate(zip(got, want)):
        if isinstance(b, tuple):
            _assert_same_nested(a, b, f"{where}[{i}]")
        else:
            assert isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor), f"{where}[{i}]"
            torch.testing.assert_close(a, b, atol=1e-5, rtol=0, msg=f"{where}[{i}]")


# --------------------------------------------------------------------------------------------- main input name
@pytest.mark.parametrize("model_class", MODEL_CLASSES, ids=lambda c: c.__name__)
def test_main_input_name_is_the_first_argument_of_forward(model_class, tokenizer):
    model = _build(model_class, tokenizer)
    first = next(iter(inspect.signature(model.forward).parameters))
    assert model.main_input_name == first, f"{model_class.__name__}: {model.main_input_name!r} vs forward({first}, ...)"


def test_main_input_name_as_transformers_xclip():
    """Each class names the main input of its counterpart in transformers (`XCLIPModel`: input_ids)."""
    from transformers import XCLIPModel, XCLIPTextModel, XCLIPVisionModel

    for ours, theirs in ((XClipModel, XCLIPModel), (XClipTextModel, XCLIPTextModel),
                         (XClipVisionModel, XCLIPVisionModel)):
        assert ours.main_input_name == theirs.main_input_name, ours.__name__


def _flatten(output, prefix=""):
    """{path: tensor} of a model output (nested outputs and tuples of tensors included; None left out)."""
    items = output.items() if hasattr(output, "items") else enumerate(output)
    flat = {}
    for key, value in items:
        path = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, torch.Tensor):
            flat[path] = value
        elif value is not None:
            flat.update(_flatten(value, path))
    return flat


# ----------------------------------------------------------------------------------- tuple / dict equivalence
@pytest.mark.parametrize("flags", [{}, {"output_hidden_states": True}, {"output_attentions": True}],
                         ids=["plain", "hidden_states", "attentions"])
@pytest.mark.parametrize("model_class", MODEL_CLASSES, ids=lambda c: c.__name__)
def test_tuple_and_dict_outputs_are_equivalent(model_class, flags, tokenizer):
    model = _build(model_class, tokenizer)
    for name, method, inputs in _public_calls(model):
        with torch.no_grad():
            as_tuple = method(**inputs, return_dict=False, **flags)
            as_dict = method(**inputs, return_dict=True, **flags)
        assert not isinstance(as_dict, tuple), name
        _assert_same_nested(as_tuple, as_dict.to_tuple(), f"{model_class.__name__}.{name}")
        for flag in flags:  # what was asked for is in both
            asked = flag.removeprefix("output_")
            assert any(asked in path.split(".") for path in _flatten(as_dict)), (name, flag)


@pytest.mark.parametrize("model_class", MODEL_CLASSES, ids=lambda c: c.__name__)
def test_config_return_dict_false_gives_tuples(model_class, tokenizer):
    """`config.return_dict=False` (the model's own config, not a tower's) makes every public method return tuples."""
    model = _build(model_class, tokenizer)
    expected = {}
    with torch.no_grad():
        for name, method, inputs in _public_calls(model):
            expected[name] = method(**inputs).to_tuple()
        model.config.return_dict = False
        for name, method, inputs in _public_calls(model):
            _assert_same_nested(method(**inputs), expected[name], f"{model_class.__name__}.{name}")


# ------------------------------------------------------------------------------------------------ eager = SDPA
@pytest.mark.parametrize("model_class", MODEL_CLASSES, ids=lambda c: c.__name__)
def test_eager_matches_sdpa_inference(model_class, tokenizer, tmp_path):
    """Both kernels loaded from one checkpoint (every tower dispatched to the one asked for); the same outputs
    (attention weights aside: SDPA computes none) with and without `output_attentions`, right and left padding;
    inputs: the main one, the class's additional ones and the mask, as the mixin builds them."""
    _build(model_class, tokenizer).save_pretrained(tmp_path)
    models = {attn: model_class.from_pretrained(tmp_path, attn_implementation=attn).eval()
              for attn in ("eager", "sdpa")}
    for attn, model in models.items():
        towers = [m for m in model.modules() if hasattr(m, "config") and hasattr(m.config, "_attn_implementation")]
        assert {m.config._attn_implementation for m in towers} == {attn}, attn
    for output_attentions in (False, True):
        assert not output_attentions or _can_output_attn(models["sdpa"]), (
            f"{model_class.__name__}.forward does not declare output_attentions: the mixin would skip this check")
        takes_mask = "attention_mask" in _prepare_for_class(models["eager"], _inputs_dict())
        for padding_side in ("right", "left") if takes_mask else ("right",):
            inputs = _prepare_for_class(models["eager"], _inputs_dict(padding_side))
            with torch.no_grad():
                eager, sdpa = (_flatten(models[attn](**inputs, output_hidden_states=True,
                                                     output_attentions=output_attentions))
                               for attn in ("eager", "sdpa"))
            where = f"{model_class.__name__} output_attentions={output_attentions} {padding_side} padding"
            if output_attentions:  # eager returns the weights
                assert any(".attentions." in f".{path}" for path in eager), where
            eager, sdpa = ({k: _unpadded(v, inputs) for k, v in out.items() if "attentions" not in k.split(".")}
                           for out in (eager, sdpa))
            assert eager.keys() == sdpa.keys() and any("hidden_states" in k for k in eager), where
            for path in eager:
                torch.testing.assert_close(sdpa[path], eager[path], atol=1e-5, rtol=1e-4, msg=f"{where}: {path}")


def _unpadded(tensor, inputs):
    """Per-token text states with the padded tokens zeroed (the mixin compares the real tokens only: a left-padded
    token masks every key it may see, and the kernels fill such rows differently); other tensors as they are."""
    mask = inputs.get("attention_mask")
    if mask is None or tuple(tensor.shape[:2]) != tuple(mask.shape):
        return tensor
    return tensor * mask.view(*mask.shape, *[1] * (tensor.ndim - 2)).to(tensor.dtype)
