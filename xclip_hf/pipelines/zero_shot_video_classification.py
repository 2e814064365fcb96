"""`pipeline("zero-shot-video-classification")`: score videos against free-form labels with X-CLIP.

X-CLIP (paper Sec. 3.1, Eq. 3) scores a video against K class texts by the cosine similarity between the video
embedding and each text embedding enhanced by the video-specific prompt generator (Sec. 3.3, Eq. 10), scaled by
the learned logit scale. The pipeline returns the softmax of those logits over the candidate labels, sorted.

Speed: the text encoder's output does not depend on the video, so it runs once per distinct (labels, template,
tokenizer, text weights) and is kept in a small LRU cache (see `models/text_features.py`); each batch of videos then runs
`model(pixel_values=..., text_embeds=cached)`, in which the prompt generator still runs per video.
`compile=True` runs that video forward through `torch.compile(model, fullgraph=True)`: 1.34x over eager fp32 was
measured for B/32-8f on an idle CPU (less, or nothing, on a busy one), after a one-off warm-up on the first batch
(2-4 minutes for B/32 on 2 CPU cores, seconds once inductor's cache holds the graph; a new batch shape or label
count compiles again, dynamically after the first change). Worth it for many videos.

Untrimmed videos (`chunk_length_s=`): windows of that many seconds every `stride_length_s`, `num_frames` frames
sampled sparsely in each (see `windows.py`); a file is read in one pass, window by window, and windows go through
the model in batches of `batch_size`. Results per window (`return_timestamps=True`), merged into segments
(`aggregate="segments"`), or averaged over the windows (the default).
"""

from __future__ import annotations

import collections.abc
import logging
import os
import types
from typing import Any

import torch
from torch.utils.data import DataLoader
from transformers import Pipeline
from transformers.pipelines import PIPELINE_REGISTRY
from transformers.pipelines.pt_utils import PipelineDataset, PipelineIterator

from ..models.modeling_xclip import average_view_probabilities
from ..models.processing_xclip import check_tokenizer_vocabulary
from ..models.text_features import LabelSet, TextFeatureEncoder, build_label_set
from .video_inputs import DEFAULT_URL_TIMEOUT, VideoSource, download_video, is_url, normalize_videos

logger = logging.getLogger(__name__)

TASK = "zero-shot-video-classification"
WINDOW_ARGS = ("chunk_length_s", "stride_length_s", "return_timestamps", "aggregate", "fps", "progress")

__all__ = ["ZeroShotVideoClassificationPipeline", "register_pipeline", "average_view_probabilities"]


def _collate_videos(items: list[dict]) -> dict:
    """Batch preprocessed videos: concatenate pixel values, keep the label set of each item in a list."""
    shapes = {tuple(item["pixel_values"].shape[1:]) for item in items}
    if len(shapes) != 1:
        raise ValueError(
            f"Videos in one batch were processed to different shapes {sorted(shapes)}; use batch_size=1 or the same "
            "num_temporal_clips / num_spatial_crops for all videos."
        )
    return {
        "pixel_values": torch.cat([item["pixel_values"] for item in items], dim=0),
        "label_set": [item["label_set"] for item in items],
        "video_name": [item["video_name"] for item in items],
    }


class ZeroShotVideoClassificationPipeline(Pipeline):
    """Zero-shot video classification with X-CLIP: which of the `candidate_labels` describes each video?

    ```python
    >>> import xclip_hf  # registers the task
    >>> from transformers import pipeline
    >>> classifier = pipeline("zero-shot-video-classification", model="microsoft/xclip-base-patch32")
    >>> classifier("cooking.mp4", candidate_labels=["cooking", "dancing", "surfing"])
    [{'score': 0.97, 'label': 'cooking'}, {'score': 0.02, 'label': 'dancing'}, {'score': 0.01, 'label': 'surfing'}]
    ```

    Init arguments beyond transformers' `Pipeline` ones: `processor` (an `XClipProcessor`; loaded from the model's
    directory when omitted), `label_cache_size` (entries of the label-embedding LRU cache, 0 disables it; default 4),
    `url_timeout` (seconds for downloading http(s) videos; default 10), `compile` (`torch.compile` the video
    forward, see the module docstring for its warm-up cost; default False).
    """

    # One component, one loader: the pipeline needs an XClipProcessor and builds it itself in __init__
    # (`XClipProcessor.from_pretrained(model directory)`, which reads every checkpoint layout xclip_hf knows), so
    # transformers' generic component loading, which would pick classes from the directory's own files, is off.
    _load_processor = False
    _load_image_processor = False
    _load_video_processor = False
    _load_feature_extractor = False
    _load_tokenizer = False

    def __init__(self, model, processor=None, tokenizer=None, video_processor=None, label_cache_size: int = 4,
                 url_timeout: float = DEFAULT_URL_TIMEOUT, compile: bool = False, **kwargs):
        model, processor = _model_and_processor(model, processor, tokenizer, video_processor,
                                                kwargs.get("dtype") or kwargs.get("torch_dtype"))
        check_tokenizer_vocabulary(processor.tokenizer, getattr(model, "name_or_path", "") or "the processor",
                                   vocab_size=model.config.text_config.vocab_size)
        super().__init__(model=model, processor=processor, tokenizer=processor.tokenizer,
                         video_processor=processor.video_processor, **kwargs)
        self.text_encoder = TextFeatureEncoder(self.model, processor, label_cache_size)
        self.url_timeout = float(url_timeout)
        # the video forward: compiled on request (shares the model's weights; the text encoder stays eager)
        self.video_forward = torch.compile(self.model, fullgraph=True) if compile else self.model

    # ------------------------------------------------------------------ public helpers
    def clear_label_cache(self):
        """Forget every cached label embedding (needed only after writes through `param.data`, see models/text_features.py)."""
        self.label_cache.clear()

    @property
    def label_cache(self):
        """The label-embedding LRU cache (`LabelEmbeddingCache`) of this pipeline's text encoder."""
        return self.text_encoder.cache

    @property
    def text_encoder_calls(self) -> int:
        """How many label sets were encoded (cache misses), for monitoring."""
        return self.text_encoder.calls

    def text_features(self, label_set: LabelSet) -> torch.Tensor:
        """Projected, unprompted text features (K, D) of a label set: from the cache, or one text-encoder run."""
        return self.text_encoder.features(label_set)

    # ------------------------------------------------------------------ Pipeline API
    def __call__(self, videos, candidate_labels=None, **kwargs: Any):
        """Classify `videos` against `candidate_labels`.

        Args:
            videos: a path, an http(s) URL, a 4-D array/tensor of frames, a list of frames (one video), or a list of
                any of these (a batch).
            candidate_labels (`list[str]`): the labels; softmax is taken over them. Must be non-empty strings without
                duplicates (duplicates raise a ValueError).
            hypothesis_template (`str`, defaults to `"{}"`): how a label becomes a text; the paper uses the bare label.
            top_k (`int`, optional): keep only the `top_k` best labels.
            num_temporal_clips / num_spatial_crops (`int`, default 1): multi-view inference; the per-view softmax
                scores are averaged (the paper's 4x3 views: `num_temporal_clips=4, num_spatial_crops=3`).
            batch_size (`int`): videos (or windows) per model forward.
            num_frames (`int`, optional): frames sampled per clip or window (default: the model's `num_frames`);
                another count resamples the MIT's temporal position embedding (an extrapolation of the trained
                model, see `XClipMultiFrameIntegrationTransformer.temporal_position_encoding`).
            chunk_length_s (`float`, optional): classify windows of this many seconds instead of the whole video.
            stride_length_s (`float`, optional): hop between window starts in seconds (default: `chunk_length_s`,
                no overlap; must not exceed it).
            return_timestamps (`bool`): with windows, one entry per window
                `{"timestamp": (start_s, end_s), "labels": [{"score", "label"}, ...]}` (`top_k` applies per window).
            aggregate (`"mean"`, `"segments"` or `"frames"`): with windows, `"segments"` merges consecutive windows
                with the same top label into `{"start_s", "end_s", "label", "score"}`; `"frames"` makes such segments
                from per-frame scores averaged over every covering window, with a minimum duration of 0.625 windows
                (`pipelines/segments.py`); `"mean"` (the default without `return_timestamps`) averages the windows'
                scores into one ranked list.
            fps (`float`): frame rate of a frame array (arrays have no clock; required for windows over arrays).
            progress (`bool`, optional): show a progress bar over windows (default: only on a terminal).

        Returns:
            `[{"score": float, "label": str}, ...]` sorted by decreasing score, or a list of such lists for a list input
            (with windows: see `return_timestamps` / `aggregate`).
        """
        if "candidate_labels" in kwargs:  # passed positionally-by-name through Pipeline internals
            candidate_labels = kwargs.pop("candidate_labels")
        if candidate_labels is None and "label_set" not in self._preprocess_params:
            raise ValueError("zero-shot-video-classification needs `candidate_labels`, e.g. candidate_labels=['running', 'swimming'].")
        if candidate_labels is not None:
            kwargs["candidate_labels"] = candidate_labels
        window_options = {name: kwargs.pop(name) for name in WINDOW_ARGS if name in kwargs}
        if window_options.get("chunk_length_s") is not None:
            from .windowed import classify_windows

            return classify_windows(self, videos, window_options, **kwargs)
        given = sorted(name for name, value in window_options.items() if value not in (None, False))
        if given:
            raise ValueError(f"zero-shot-video-classification: {', '.join(given)} only apply to windows; pass "
                             "chunk_length_s (window length in seconds) too.")
        if isinstance(videos, types.GeneratorType) or isinstance(videos, torch.utils.data.Dataset):
            return super().__call__(videos, **kwargs)  # streamed: each item is normalized in preprocess
        sources, is_batch = normalize_videos(videos)
        if is_batch and not sources:
            self._sanitize_parameters(**kwargs)  # still validate the labels
            return []
        outputs = super().__call__(sources if is_batch else sources[0], **kwargs)
        return outputs

    def _sanitize_parameters(self, candidate_labels=None, hypothesis_template=None, top_k=None,
                             num_temporal_clips=None, num_spatial_crops=None, num_frames=None, **unused):
        if unused:
            raise TypeError(f"zero-shot-video-classification got unexpected arguments: {sorted(unused)}")
        preprocess_params, postprocess_params = {}, {}
        if candidate_labels is not None or hypothesis_template is not None:
            init_set = getattr(self, "_preprocess_params", {}).get("label_set")  # labels/template given at init
            if candidate_labels is None and init_set is not None:
                candidate_labels = init_set.labels
            if hypothesis_template is None:
                hypothesis_template = init_set.template if init_set is not None else "{}"
            preprocess_params["label_set"] = build_label_set(candidate_labels, hypothesis_template,
                                                             tokenizer=getattr(self, "tokenizer", None))
        for name, value in (("num_temporal_clips", num_temporal_clips), ("num_spatial_crops", num_spatial_crops),
                            ("num_frames", num_frames)):
            if value is not None:
                if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                    raise ValueError(f"{name} must be a positive integer, got {value!r}")
                preprocess_params[name] = value
        if top_k is not None:
            if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
                raise ValueError(f"top_k must be a positive integer or None, got {top_k!r}")
            postprocess_params["top_k"] = top_k
        return preprocess_params, {}, postprocess_params

    def preprocess(self, video: VideoSource, label_set: LabelSet | None = None, num_temporal_clips: int = 1,
                   num_spatial_crops: int = 1, num_frames: int | None = None):
        if label_set is None:
            raise ValueError("zero-shot-video-classification needs `candidate_labels`.")
        if not isinstance(video, VideoSource):  # e.g. items of a dataset or generator
            video = normalize_videos(video)[0][0]
        pixel_values = self._process_video(video, num_temporal_clips, num_spatial_crops, num_frames)
        return {"pixel_values": pixel_values.to(self.dtype), "label_set": label_set, "video_name": video.name}

    def _forward(self, model_inputs):
        label_sets = model_inputs["label_set"]
        batched = isinstance(label_sets, list)
        label_set = label_sets[0] if batched else label_sets
        pixel_values = model_inputs["pixel_values"]
        if pixel_values.ndim == 5:  # (B, T, C, H, W): one view per video
            pixel_values = pixel_values.unsqueeze(1)
        num_videos, num_views = pixel_values.shape[:2]
        text_embeds = self.text_features(label_set)
        # another frame count than the model's: resample the MIT's temporal position embedding (Eq. 6)
        other_length = pixel_values.shape[2] != self.model.config.vision_config.num_frames
        try:
            outputs = self.video_forward(pixel_values=pixel_values.flatten(0, 1), text_embeds=text_embeds,
                                         **({"interpolate_pos_encoding": True} if other_length else {}))
        except ValueError as err:  # e.g. a frame count or size the model was not built for
            names = model_inputs["video_name"]
            raise ValueError(f"video {', '.join(names) if batched else names}: {err}") from err
        logits = outputs.logits_per_video.reshape(num_videos, num_views, len(label_set))
        return {"scores": average_view_probabilities(logits), "label_set": label_sets}

    def postprocess(self, model_outputs, top_k: int | None = None):
        label_set = model_outputs["label_set"]
        if isinstance(label_set, list):
            label_set = label_set[0]
        scores = model_outputs["scores"].reshape(-1).tolist()
        ranked = sorted(zip(scores, label_set.labels), key=lambda pair: -pair[0])
        if top_k is not None:
            ranked = ranked[:top_k]
        return [{"score": score, "label": label} for score, label in ranked]

    def get_iterator(self, inputs, num_workers, batch_size, preprocess_params, forward_params, postprocess_params):
        """As transformers' `Pipeline.get_iterator`, with a collate function that stacks videos and keeps label sets."""
        if batch_size == 1:
            return super().get_iterator(inputs, num_workers, batch_size, preprocess_params, forward_params, postprocess_params)
        if isinstance(inputs, collections.abc.Sized):
            dataset = PipelineDataset(inputs, self.preprocess, preprocess_params)
        else:  # a generator: preprocess lazily, one process
            dataset, num_workers = PipelineIterator(inputs, self.preprocess, preprocess_params), 0
        loader = DataLoader(dataset, num_workers=num_workers, batch_size=batch_size, collate_fn=_collate_videos)
        model_iterator = PipelineIterator(loader, self.forward, forward_params, loader_batch_size=batch_size)
        return PipelineIterator(model_iterator, self.postprocess, postprocess_params)

    # ------------------------------------------------------------------ internals
    @torch.no_grad()
    def _process_video(self, video: VideoSource, num_temporal_clips: int, num_spatial_crops: int,
                       num_frames: int | None = None) -> torch.Tensor:
        """Decode (for paths/URLs), sample, resize, crop and normalize one video -> (1, [V,] T, C, H, W)."""
        temp_path = None
        data = video.data
        try:
            if is_url(data):
                temp_path = data = download_video(data, timeout=self.url_timeout)
            options = {"num_temporal_clips": num_temporal_clips, "num_spatial_crops": num_spatial_crops,
                       "num_frames": num_frames or self.model.config.vision_config.num_frames}
            try:
                out = self.video_processor([data], return_tensors="pt", **options)
            except (FileNotFoundError, ConnectionError):
                raise
            except Exception as err:
                kind = "read or process" if isinstance(data, str) else "process"
                raise ValueError(f"Could not {kind} video {video.name}: {type(err).__name__}: {err}") from err
        finally:
            if temp_path is not None and os.path.exists(temp_path):
                os.unlink(temp_path)
        pixel_values = out["pixel_values"]
        if pixel_values.ndim == 5 and (num_temporal_clips > 1 or num_spatial_crops > 1):
            raise RuntimeError(f"the video processor returned one view for {video.name} where several were asked for")
        return pixel_values


def _model_and_processor(model, processor, tokenizer, video_processor, dtype):
    """The model and `XClipProcessor` through the one loader; `tokenizer=` / `video_processor=` replace the
    corresponding part of the processor (or, given both, make it)."""
    from ..models.loading import load_model_and_processor
    from ..models.processing_xclip import XClipProcessor

    if processor is None and tokenizer is not None and video_processor is not None:
        processor = XClipProcessor(video_processor=video_processor, tokenizer=tokenizer)
    model, processor = load_model_and_processor(model, processor=processor, need_text=True, dtype=dtype)
    if tokenizer is not None or video_processor is not None:
        processor = XClipProcessor(video_processor=video_processor or processor.video_processor,
                                   tokenizer=tokenizer or processor.tokenizer)
    return model, processor


def register_pipeline():
    """Register "zero-shot-video-classification" with transformers' `PIPELINE_REGISTRY` (called on import)."""
    from ..models.modeling_xclip import XClipModel

    PIPELINE_REGISTRY.supported_tasks.pop(TASK, None)  # re-registration (reloads) must not warn
    PIPELINE_REGISTRY.register_pipeline(TASK, pipeline_class=ZeroShotVideoClassificationPipeline, pt_model=XClipModel,
                                        type="multimodal")
