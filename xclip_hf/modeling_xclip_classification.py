"""The closed-set video classifier of X-CLIP: the class names are the classifier (paper Sec. 3.1, Tab. 7)."""

import torch
from torch import nn
from transformers.modeling_outputs import ImageClassifierOutput

from .configuration_xclip import XClipConfig
from .modeling_xclip import XClipModel, XClipPreTrainedModel, weights_fingerprint


class XClipForVideoClassification(XClipPreTrainedModel):
    """X-CLIP logits of each video against the prompts of all `config.id2label` class names (Sec. 3.1).

    The class names are tokenized once (`set_class_texts`) into persistent buffers, so a saved classifier reloads
    with its classes and runs in transformers' "video-classification" pipeline from `pixel_values` alone. Loss:
    cross-entropy with `config.label_smoothing` for class indices, soft cross-entropy for (B, num_labels) targets
    (mixup / cutmix). After `freeze_text_encoder()` the class-text features are computed once and cached (the
    paper's Tab. 7 memory saving); while the text encoder trains they are recomputed every step.
    """

    config: XClipConfig
    accepts_loss_kwargs = False  # the loss is a per-batch mean: Trainer must not rescale it by num_items_in_batch

    def __init__(self, config: XClipConfig):
        super().__init__(config)
        self.xclip = XClipModel._from_config(config)
        self._allocate_class_buffers(config.num_labels)
        self._text_cache = None
        self.post_init()

    from_clip = classmethod(XClipModel.from_clip.__func__)

    def _allocate_class_buffers(self, num_labels: int):
        length = self.config.text_config.max_position_embeddings
        self.register_buffer("class_input_ids", torch.zeros(num_labels, length, dtype=torch.long))
        self.register_buffer("class_attention_mask", torch.zeros(num_labels, length, dtype=torch.long))

    @torch.no_grad()
    def set_class_texts(self, tokenizer, template: str = "{}", id2label: dict | None = None):
        """Tokenize `template.format(name)` for every class of `id2label` (default `config.id2label`) into buffers."""
        if id2label is not None:
            self.config.id2label = {int(k): v for k, v in id2label.items()}
            self.config.label2id = {v: int(k) for k, v in id2label.items()}
        names = [self.config.id2label[i] for i in range(len(self.config.id2label))]
        bad = [n for n in names if not isinstance(n, str) or not n.strip()]
        if bad:
            raise ValueError(f"class names must be non-empty strings; got {bad!r}.")
        length = self.config.text_config.max_position_embeddings
        tokens = tokenizer([template.format(n) for n in names], padding="max_length", truncation=True,
                           max_length=length, return_tensors="pt")
        device = self.class_input_ids.device
        if len(names) != self.class_input_ids.shape[0]:
            self._allocate_class_buffers(len(names))
        self.class_input_ids = tokens["input_ids"].to(device)
        self.class_attention_mask = tokens["attention_mask"].to(device)
        self._text_cache = None

    def freeze_text_encoder(self, freeze: bool = True):
        """Freeze (or unfreeze) the text encoder and its projection; the prompt generator stays trainable."""
        text = self.xclip.text_model
        for name, param in text.named_parameters():
            if not name.startswith("prompt_generator."):
                param.requires_grad_(not freeze)
        self._text_cache = None

    @property
    def text_encoder_frozen(self) -> bool:
        text = self.xclip.text_model
        return not any(p.requires_grad for n, p in text.named_parameters() if not n.startswith("prompt_generator."))

    def class_text_features(self) -> torch.Tensor:
        """(num_labels, P) un-prompted class-text features; cached while the text encoder is frozen."""
        if not self.class_attention_mask.any():
            raise ValueError("No class texts: call set_class_texts(tokenizer) with config.id2label set first.")
        length = int(self.class_attention_mask.sum(dim=1).max())
        ids, mask = self.class_input_ids[:, :length], self.class_attention_mask[:, :length]
        if not self.text_encoder_frozen:
            return self.xclip.get_text_features(ids, attention_mask=mask).pooler_output
        key = (ids.data_ptr(), ids._version, ids.device, weights_fingerprint(self.xclip.text_model))
        if self._text_cache is None or self._text_cache[0] != key:
            with torch.no_grad():
                self._text_cache = (key, self.xclip.get_text_features(ids, attention_mask=mask).pooler_output)
        return self._text_cache[1]

    def forward(self, pixel_values=None, labels=None, output_hidden_states=None, output_attentions=None,
                return_dict=None, **kwargs):
        if pixel_values is None:
            raise ValueError("XClipForVideoClassification needs pixel_values (batch, frames, 3, height, width).")
        out = self.xclip(pixel_values=pixel_values, text_embeds=self.class_text_features(),
                         output_hidden_states=output_hidden_states, output_attentions=output_attentions)
        logits = out.logits_per_video
        loss = None if labels is None else self.classification_loss(logits, labels)
        vision = out.vision_model_output
        result = ImageClassifierOutput(loss=loss, logits=logits, hidden_states=vision.hidden_states,
                                       attentions=vision.attentions)
        return result if return_dict is not False else result.to_tuple()

    def classification_loss(self, logits, labels):
        """Cross-entropy with label smoothing for class indices (B,), soft cross-entropy for targets (B, C)."""
        num_labels = logits.shape[-1]
        if labels.is_floating_point():
            if labels.shape != logits.shape:
                raise ValueError(f"soft labels must have shape {tuple(logits.shape)}; got {tuple(labels.shape)}.")
            return -(labels * nn.functional.log_softmax(logits, dim=-1)).sum(-1).mean()
        labels = labels.view(-1)
        if labels.shape[0] != logits.shape[0] or labels.min() < 0 or labels.max() >= num_labels:
            raise ValueError(f"labels must be {logits.shape[0]} class indices in [0, {num_labels}); "
                             f"got {labels.tolist()}.")
        return nn.functional.cross_entropy(logits, labels, label_smoothing=float(self.config.label_smoothing))
