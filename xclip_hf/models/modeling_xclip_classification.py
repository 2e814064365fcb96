"""The closed-set video classifier of X-CLIP: the class names are the classifier (paper Sec. 3.1, Tab. 7)."""

from typing import Unpack

import torch
from torch import nn
from transformers.modeling_outputs import ImageClassifierOutput
from transformers.utils.generic import TransformersKwargs, can_return_tuple

from .configuration_xclip import XClipConfig
from .fingerprint import weights_key
from .modeling_xclip import XClipModel, XClipPreTrainedModel, check_host_class_indices
from .prompt_ensembles import ensemble_text_features


class XClipForVideoClassification(XClipPreTrainedModel):
    """X-CLIP logits of each video against the prompts of all `config.id2label` class names (Sec. 3.1).

    The tokenized class names are saved with the model, so it runs in transformers' "video-classification" pipeline.
    Loss: cross-entropy for class indices, soft cross-entropy for (B, num_labels) targets (mixup / cutmix).
    """

    config: XClipConfig
    accepts_loss_kwargs = False  # the loss is a per-batch mean: Trainer must not rescale it by num_items_in_batch

    def __init__(self, config: XClipConfig):
        super().__init__(config)
        self.xclip = XClipModel._from_config(config)
        counts = getattr(config, "class_text_counts", None)
        self._allocate_class_buffers(sum(counts) if counts else config.num_labels)
        self._text_cache = None
        self._class_length = None  # (buffer key, tokens of the longest class text): host-side, see class_text_length
        self.post_init()

    from_clip = classmethod(XClipModel.from_clip.__func__)

    def _allocate_class_buffers(self, num_texts: int):
        length = self.config.text_config.max_position_embeddings
        self.register_buffer("class_input_ids", torch.zeros(num_texts, length, dtype=torch.long))
        self.register_buffer("class_attention_mask", torch.zeros(num_texts, length, dtype=torch.long))

    @torch.no_grad()
    def set_class_texts(self, tokenizer, template: str | list[str] = "{}", id2label: dict | None = None,
                        descriptions=None):
        """Tokenize each class's `template.format(name)` into buffers, or its ensemble (template list, descriptions)."""
        if id2label is not None:
            self.config.id2label = {int(k): v for k, v in id2label.items()}
            self.config.label2id = {v: int(k) for k, v in id2label.items()}
        names = [self.config.id2label[i] for i in range(len(self.config.id2label))]
        bad = [n for n in names if not isinstance(n, str) or not n.strip()]
        if bad:
            raise ValueError(f"class names must be non-empty strings; got {bad!r}.")
        length = self.config.text_config.max_position_embeddings
        from .processing_xclip import check_label_tokens
        from .text_features import LabelSet
        from .prompt_ensembles import phrasings_for, templates_of

        templates = templates_of(template)
        label_set = LabelSet(tuple(names), template if isinstance(template, str) else templates,
                             None if descriptions is None else phrasings_for(names, descriptions))
        texts = list(label_set.texts)
        tokens = tokenizer(texts, padding="max_length", truncation=True, max_length=length, return_tensors="pt")
        vocab = self.config.text_config.vocab_size
        if label_set.is_ensemble:  # vocabulary per text; classes clash when all their texts do
            check_label_tokens(texts, tokens["input_ids"], tokens["attention_mask"], vocab, distinct=False)
            rows = [tuple(r[m.bool()].tolist()) for r, m in zip(tokens["input_ids"], tokens["attention_mask"])]
            check_label_tokens(names, label_set.grouped(rows))
            self.config.class_text_counts = list(label_set.counts)  # saved: from_pretrained sizes the buffers by it
        else:
            check_label_tokens(texts, tokens["input_ids"], tokens["attention_mask"], vocab)
        if not label_set.is_ensemble and hasattr(self.config, "class_text_counts"):
            del self.config.class_text_counts
        device = self.class_input_ids.device
        if len(texts) != self.class_input_ids.shape[0]:
            self._allocate_class_buffers(len(texts))
        self.class_input_ids = tokens["input_ids"].to(device)
        self.class_attention_mask = tokens["attention_mask"].to(device)
        mask = self.class_attention_mask  # the length is known here on the host: no device read later
        self._class_length = ((mask.data_ptr(), mask._version, mask.device), int(tokens["attention_mask"].sum(1).max()))
        self._text_cache = None

    def class_text_length(self) -> int:
        """Tokens of the longest class text, read from the buffers once per change of the buffers."""
        mask = self.class_attention_mask
        if torch.compiler.is_compiling():
            return self._class_length[1] if self._class_length is not None else mask.shape[1]
        key = (mask.data_ptr(), mask._version, mask.device)
        if self._class_length is None or self._class_length[0] != key:
            length = int(mask.sum(dim=1).max()) if mask.numel() else 0
            if length == 0:
                raise ValueError("No class texts: call set_class_texts(tokenizer) with config.id2label set first.")
            self._class_length = (key, length)
        return self._class_length[1]

    def class_text_features(self) -> torch.Tensor:
        """(num_labels, P) unprompted class-text features; cached while the text encoder is frozen or in eval."""
        counts = getattr(self.config, "class_text_counts", None)
        if counts:
            return ensemble_text_features(self._class_text_features(), counts)
        return self._class_text_features()

    def _class_text_features(self) -> torch.Tensor:
        """(num_texts, P) unprompted features of the class-text buffers, one row per text."""
        length = self.class_text_length()
        ids, mask = self.class_input_ids[:, :length], self.class_attention_mask[:, :length]
        evaluating = not torch.is_grad_enabled() and not self.xclip.text_model.training
        if not (self.text_encoder_frozen or evaluating):
            return self.xclip.get_text_features(ids, attention_mask=mask, return_dict=True).pooler_output
        if torch.compiler.is_compiling():  # no Python-side cache inside a graph
            with torch.no_grad():
                return self.xclip.get_text_features(ids, attention_mask=mask, return_dict=True).pooler_output
        weights, keepalive = weights_key(self.xclip.text_model)
        key = (ids.untyped_storage().data_ptr(), ids._version, ids.device, tuple(ids.shape), weights)
        if self._text_cache is None or self._text_cache[0] != key:
            with torch.no_grad():
                features = self.xclip.get_text_features(ids, attention_mask=mask, return_dict=True).pooler_output
            self._text_cache = (key, (keepalive, ids.untyped_storage()), features)
        return self._text_cache[2].clone()  # a copy: editing it cannot change later results

    @can_return_tuple
    def forward(self, pixel_values=None, labels=None, **kwargs: Unpack[TransformersKwargs]) -> ImageClassifierOutput:
        """`hidden_states` / `attentions` (on request, or set in the config) are the video encoder's."""
        if pixel_values is None:
            raise ValueError("XClipForVideoClassification needs pixel_values (batch, frames, 3, height, width).")
        out = self.xclip(pixel_values=pixel_values, text_embeds=self.class_text_features(), return_dict=True, **kwargs)
        logits = out.logits_per_video
        loss = None if labels is None else self.classification_loss(logits, labels)
        vision = out.vision_model_output
        return ImageClassifierOutput(loss=loss, logits=logits, hidden_states=vision.hidden_states,
                                     attentions=vision.attentions)

    def classification_loss(self, logits, labels):
        """Cross-entropy for class indices (B,), soft cross-entropy for targets (B, C) (mixup / cutmix)."""
        num_labels = logits.shape[-1]
        if labels.is_floating_point():
            if labels.shape != logits.shape:
                raise ValueError(f"soft labels must have shape {tuple(logits.shape)}; got {tuple(labels.shape)}.")
            return -(labels * nn.functional.log_softmax(logits, dim=-1)).sum(-1).mean()
        labels = labels.view(-1)
        if labels.shape[0] != logits.shape[0]:
            raise ValueError(f"labels must be {logits.shape[0]} class indices in [0, {num_labels}); "
                             f"got shape {tuple(labels.shape)}.")
        check_host_class_indices(labels, num_labels, "labels", "class indices")
        return nn.functional.cross_entropy(logits, labels)
