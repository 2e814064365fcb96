"""`pipeline("zero-shot-video-classification")`: the softmax over candidate labels of X-CLIP's video-text logits (Eq. 3, prompts Eq. 10)."""

from __future__ import annotations

import functools
import logging
import sys
import types
from typing import Any

import torch
from transformers.pipelines import PIPELINE_REGISTRY
from transformers.pipelines.base import ChunkPipeline

from ..models.configuration_xclip import check_token_merging_ratio
from ..models.loading import is_exported_model
from ..models.modeling_xclip import average_view_probabilities
from ..models.processing_xclip import check_tokenizer_vocabulary
from ..models.text_features import LabelSet, TextFeatureEncoder, build_label_set
from ..models.video_input import OneVideo, split_videos
from ..models.video_windows import VideoWindowStream
from ..video.sampling import check_decode_mode
from ..video.windows import check_window_lengths, positive_number
from .video_chunks import VideoChunks, build_loader, collate_chunks
from .video_inputs import DEFAULT_URL_TIMEOUT, local_video

logger = logging.getLogger(__name__)

TASK = "zero-shot-video-classification"
CALL_OPTIONS = ("candidate_labels", "hypothesis_template", "top_k", "num_temporal_clips", "num_spatial_crops",
                "num_frames", "chunk_length_s", "stride_length_s", "return_timestamps", "aggregate", "fps", "progress",
                "return_tensors", "decode_mode", "class_descriptions", "calibration", "multi_label")
WINDOW_ONLY = ("stride_length_s", "return_timestamps", "aggregate", "fps", "progress")
AGGREGATES = ("mean", "segments", "frames", "segmentation")
CHUNK_FIELDS = ("label_set", "video_name", "timestamp", "num_chunks", "video_index", "clock")  # passed through the forward

__all__ = ["ZeroShotVideoClassificationPipeline", "build_pipeline", "register_pipeline", "average_view_probabilities"]


def _positive_int(value, name: str, low: int = 1):
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ValueError(f"{name} must be {'a positive integer' if low == 1 else f'an integer >= {low}'}, got {value!r}")
    return value


def _model_inputs(batch: dict) -> dict:
    """A batch of `video_chunks.collate_chunks` -> the forward's inputs; its first error item is raised here, in the
    calling process, with its own type and message."""
    failed = next((item["error"] for item in batch["items"] if item.get("error") is not None), None)
    if failed is not None:
        raise failed
    return {"pixel_values": batch["pixel_values"],
            **{field: [item[field] for item in batch["items"]] for field in CHUNK_FIELDS}}


def _videos_in_order(scored_batches, bar=None):
    """Scored batches -> the scored chunks of one video at a time, in input order (workers finish out of order)."""
    pending: dict[int, list] = {}
    finished: dict[int, list] = {}
    next_index = 0
    for out in scored_batches:
        for b, index in enumerate(out["video_index"]):
            chunk = {"scores": out["scores"][b], **{field: out[field][b] for field in CHUNK_FIELDS}}
            if index not in pending and bar is not None:
                bar.total += chunk["num_chunks"]
                bar.refresh()
            pending.setdefault(index, []).append(chunk)
            if len(pending[index]) == chunk["num_chunks"]:
                finished[index] = pending.pop(index)
            if bar is not None:
                bar.update(1)
        while next_index in finished:
            yield finished.pop(next_index)
            next_index += 1
    if pending or finished:  # pragma: no cover - every video yields all of its chunks or raises
        raise RuntimeError(f"incomplete videos {sorted(pending) + sorted(finished)} after the last batch")


def _ranked(scores: torch.Tensor, label_set: LabelSet, top_k: int | None) -> list[dict]:
    ranked = sorted(zip(scores.reshape(-1).tolist(), label_set.labels), key=lambda pair: -pair[0])
    return [{"score": score, "label": label} for score, label in ranked[:top_k]]


class ZeroShotVideoClassificationPipeline(ChunkPipeline):
    """Zero-shot video classification with X-CLIP: which of the `candidate_labels` describes each video?

    ```python
    >>> import xclip_hf  # registers the task
    >>> from transformers import pipeline
    >>> classifier = pipeline("zero-shot-video-classification", model="microsoft/xclip-base-patch32")
    >>> classifier("cooking.mp4", candidate_labels=["cooking", "dancing", "surfing"])
    [{'score': 0.97, 'label': 'cooking'}, {'score': 0.02, 'label': 'dancing'}, {'score': 0.01, 'label': 'surfing'}]
    ```

    Init arguments beyond transformers' `Pipeline` ones: `processor` (an `XClipProcessor`; default: the model's),
    `runtime` ("onnxruntime" or "openvino" for an `export-onnx` folder; default: the export's own), `label_cache_size`
    (label-embedding LRU entries, 0 disables; default 4), `url_timeout` (seconds for a whole http(s) download;
    default 60), `compile` (`torch.compile` the video forward; default False), `token_merging_ratio` (merge that
    fraction of each frame's patch tokens per layer, `models/token_merging.py`; default: the model config's, 0 = off;
    torch models only). Call options given at init are the defaults of every call.
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
                 url_timeout: float = DEFAULT_URL_TIMEOUT, compile: bool = False, runtime: str | None = None,
                 token_merging_ratio: float | None = None, **kwargs):
        if token_merging_ratio is not None:
            check_token_merging_ratio(token_merging_ratio)
        model, processor = _model_and_processor(model, processor, tokenizer, video_processor,
                                                kwargs.get("dtype") or kwargs.get("torch_dtype"), runtime)
        if token_merging_ratio is not None and is_exported_model(model):
            raise ValueError("token_merging_ratio applies to torch models: an exported model's video graph has the "
                             "ratio of the config it was exported with (vision_config.token_merging_ratio)")
        # the video forward's own arguments: the ratio given here replaces the config's for every call
        self._video_kwargs = {} if token_merging_ratio is None else {"token_merging_ratio": token_merging_ratio}
        if kwargs.get("device") is None and is_exported_model(model):
            kwargs["device"] = -1  # the model's own device (the CPU), not transformers' default accelerator
        check_tokenizer_vocabulary(processor.tokenizer, getattr(model, "name_or_path", "") or "the processor",
                                   vocab_size=model.config.text_config.vocab_size)
        self._call_defaults = {name: kwargs[name] for name in CALL_OPTIONS if kwargs.get(name) is not None}
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
            videos: a path, an http(s) URL, a 4-D array/tensor of frames, a (T, H, W) grayscale array/tensor, a list
                of frames (one video), or a list of any of these or a 5-D array (a batch); a generator or dataset of
                videos is streamed. An empty list returns `[]` after checking the options.
            candidate_labels (`list[str]`): the labels, non-empty and distinct; softmax is taken over them.
            hypothesis_template (`str` or `list[str]`, defaults to `"{}"`): how a label becomes a text; the paper uses
                the bare label. A list is a prompt ensemble: each label's text features are averaged over the
                templates (CLIP's recipe, models/prompt_ensembles.py) before the prompt generator.
            class_descriptions (`dict` or JSON path): class name -> list of phrasings that replace the label, each
                with every template, ensembled like templates (every candidate label must be listed).
            top_k (`int`, optional): keep only the `top_k` best labels (per window with `return_timestamps`; refused
                with `aggregate="segments"`/`"frames"`/`"segmentation"`, whose segments carry one label each).
            num_temporal_clips / num_spatial_crops (`int`, default 1): multi-view inference; the per-view softmax
                scores are averaged (the paper's 4x3 views: `num_temporal_clips=4, num_spatial_crops=3`).
            batch_size (`int`, default 1): chunks (temporal views, or windows) per model forward.
            num_workers (`int`, default 0): DataLoader worker processes that read videos while the model runs.
            num_frames (`int`, optional): frames per clip or window (default: the model's); another count resamples
                the MIT's temporal position embedding (Eq. 6), an extrapolation of the trained model.
            chunk_length_s (`float`, optional): classify windows of this many seconds instead of the whole video.
            stride_length_s (`float`, optional): hop between window starts in seconds (default: `chunk_length_s`,
                no overlap; must not exceed it).
            return_timestamps (`bool`): with windows, one entry per window
                `{"timestamp": (start_s, end_s), "labels": [{"score", "label"}, ...]}` (`top_k` applies per window).
            aggregate (`"mean"`, `"segments"`, `"frames"` or `"segmentation"`): with windows, `"mean"` (default)
                averages them into one list; the others return segments `{"start_s", "end_s", "label", "score"}`:
                consecutive windows' top labels, per-frame scores, or the segmentation the windows inside segments
                explain best (`pipelines/segments.py`; README, "Untrimmed videos").
            fps (`float`): the clock of frame arrays (required for windows over arrays; refused for a file).
            decode_mode (`"exact"` or `"keyframes"`, default: the video processor's, `"exact"`): `"keyframes"` reads
                the nearest key frame instead of a sampled frame where one lies within half the spacing of the
                sampled frames (approximate, faster on files with frequent key frames; README, "Decoding").
            progress (`bool`, optional): show a progress bar over windows (default: only on a terminal).
            return_tensors (`bool`, default False): per video, the float32 tensor (K,) of every label's score in
                `candidate_labels` order instead of the ranked list (with windows: their mean; refused with `top_k`,
                `return_timestamps` and segment aggregates). `score` stacks them into an (N, K) matrix.
            calibration (path or dict, optional): a file of `xclip-hf calibrate` (fitted for this model, these labels,
                texts, views and frames; another is refused): per video, the open-set answer `{"label": top label
                or "unknown" (empty prediction set), "score", "prediction_set", "threshold", "scores"}`
                (`pipelines/calibration.py`; whole videos only).
            multi_label (`bool`, default False): with `calibration`, per video `{"labels": the labels whose score
                clears their own calibrated threshold (may be empty), "scores": [{"score", "label", "threshold",
                "decision"}, ...]}` instead.

        Returns:
            `[{"score": float, "label": str}, ...]` sorted by decreasing score, or a list of such lists for a batch
            (with windows: see `return_timestamps` / `aggregate`; with `calibration`: one dict per video, above).
        """
        if "candidate_labels" in kwargs:  # passed positionally-by-name through Pipeline internals
            candidate_labels = kwargs.pop("candidate_labels")
        if candidate_labels is None and "label_set" not in self._preprocess_params:
            raise ValueError("zero-shot-video-classification needs `candidate_labels`, e.g. candidate_labels=['running', 'swimming'].")
        if candidate_labels is not None:
            kwargs["candidate_labels"] = candidate_labels
        batch_size = kwargs.get("batch_size") if kwargs.get("batch_size") is not None else self._batch_size
        workers = kwargs.get("num_workers") if kwargs.get("num_workers") is not None else self._num_workers
        _positive_int(1 if batch_size is None else batch_size, "batch_size")
        _positive_int(0 if workers is None else workers, "num_workers", low=0)
        if isinstance(videos, (types.GeneratorType, torch.utils.data.Dataset)):
            return super().__call__(videos, **kwargs)  # streamed: each item is split in preprocess
        if isinstance(videos, (list, tuple)) and len(videos) == 0:
            self._sanitize_parameters(**{k: v for k, v in kwargs.items() if k not in ("batch_size", "num_workers")})
            return []
        items, is_batch = split_videos(videos)
        return super().__call__(items if is_batch else items[0], **kwargs)

    def score(self, videos, candidate_labels=None, **kwargs: Any) -> torch.Tensor:
        """The (N videos, K labels) float32 matrix of the call's scores, unsorted: row i is video i (a single video
        gives one row), column k is `candidate_labels[k]`, each the per-view softmax averaged over the video's views
        (with `chunk_length_s`: also over its windows). The call with `return_tensors=True`, stacked; every other
        call option applies (`top_k`, `return_timestamps` and segment aggregates are refused)."""
        if kwargs.pop("return_tensors", True) is not True:
            raise ValueError("score always returns the score matrix; call the pipeline for ranked labels")
        rows = self(videos, candidate_labels=candidate_labels, return_tensors=True, **kwargs)
        if torch.is_tensor(rows):  # one video
            return rows[None]
        rows = list(rows)  # a list, or the iterator over a generator or dataset
        if rows:
            return torch.stack(rows)
        label_set = self._sanitize_parameters(candidate_labels=candidate_labels)[0]["label_set"]
        return torch.zeros(0, len(label_set.labels))

    def _sanitize_parameters(self, **given):
        unknown = sorted(set(given) - set(CALL_OPTIONS))
        if unknown:
            raise TypeError(f"zero-shot-video-classification got unexpected arguments: {unknown}")
        # call options over the defaults given at init: the returned dicts replace the init ones key by key
        options = {**getattr(self, "_call_defaults", {}), **{k: v for k, v in given.items() if v is not None}}
        preprocess_params = {}
        if "candidate_labels" in options or "hypothesis_template" in options or "class_descriptions" in options:
            preprocess_params["label_set"] = build_label_set(options.get("candidate_labels"),
                                                             options.get("hypothesis_template", "{}"),
                                                             tokenizer=getattr(self, "tokenizer", None),
                                                             descriptions=options.get("class_descriptions"))
        for name in ("num_temporal_clips", "num_spatial_crops", "num_frames"):
            if name in options:
                preprocess_params[name] = _positive_int(options[name], name)
        if "decode_mode" in options:
            preprocess_params["decode_mode"] = check_decode_mode(options["decode_mode"])
        top_k = options.get("top_k")
        if top_k is not None:
            _positive_int(top_k, "top_k")
        mode, forward_params = "video", {}
        if "chunk_length_s" in options:
            mode = self._window_mode(options, top_k)
            chunk, stride = check_window_lengths(options["chunk_length_s"], options.get("stride_length_s"))
            fps = options.get("fps")
            preprocess_params.update(chunk_length_s=chunk, stride_length_s=stride,
                                     fps=None if fps is None else positive_number(fps, "fps", "frames per second"))
            forward_params["progress"] = options.get("progress")
        else:
            given_window = sorted(name for name in WINDOW_ONLY if options.get(name) not in (None, False))
            if given_window:
                raise ValueError(f"zero-shot-video-classification: {', '.join(given_window)} only apply to windows; "
                                 "pass chunk_length_s (window length in seconds) too.")
        return_tensors = options.get("return_tensors", False)
        if not isinstance(return_tensors, bool):
            raise ValueError(f"return_tensors must be True or False, got {return_tensors!r}")
        if return_tensors and (top_k is not None or mode not in ("video", "mean")):
            given = {"top_k": top_k, "return_timestamps": options.get("return_timestamps"),
                     "aggregate": None if mode == "mean" else options.get("aggregate")}
            raise ValueError("return_tensors=True returns every label's score per video (the mean over its views or "
                             "windows): " + ", ".join(f"{k}={v!r}" for k, v in given.items() if v not in (None, False))
                             + " does not apply")
        postprocess_params = {"mode": mode, "top_k": top_k, "return_tensors": return_tensors}
        postprocess_params.update(self._calibration_params(options, preprocess_params, mode, return_tensors))
        return preprocess_params, forward_params, postprocess_params

    def _calibration_params(self, options: dict, preprocess_params: dict, mode: str, return_tensors: bool) -> dict:
        """The postprocess's ``calibration`` / ``multi_label``: the file loaded and checked against this model, the
        call's labels, texts (template(s), descriptions), views and frames (`pipelines/calibration.py`); {} if none."""
        multi_label = options.get("multi_label", False)
        if not isinstance(multi_label, bool):
            raise ValueError(f"multi_label must be True or False, got {multi_label!r}")
        if options.get("calibration") is None:
            if multi_label:
                raise ValueError("multi_label=True needs calibration= (per-label thresholds written by "
                                 "`xclip-hf calibrate`)")
            return {}
        from ..jobs.identity import model_fingerprint
        from .calibration import check_calibration, check_multi_label, check_open_set_labels, load_calibration

        if mode != "video" or return_tensors:
            raise ValueError("calibration= applies to whole-video answers (the scores it was fitted on): not with "
                             "chunk_length_s or return_tensors=True")
        calibration = load_calibration(options["calibration"])
        label_set = preprocess_params.get("label_set")
        if label_set is not None:  # none yet at init without candidate_labels: checked at the call
            scoring = {name: preprocess_params.get(name, 1) for name in ("num_temporal_clips", "num_spatial_crops")}
            scoring["num_frames"] = preprocess_params.get("num_frames") or self.model.config.vision_config.num_frames
            check_calibration(calibration, fingerprint=model_fingerprint(self.model, whole=True), label_set=label_set,
                              scoring=scoring)
        if multi_label:
            check_multi_label(calibration)
        elif label_set is not None:
            check_open_set_labels(label_set.labels)
        return {"calibration": calibration, "multi_label": multi_label}

    @staticmethod
    def _window_mode(options: dict, top_k) -> str:
        """How windows are returned: "windows" (per window), "segments" or "mean"; checks the window options."""
        aggregate, timestamps = options.get("aggregate"), options.get("return_timestamps", False)
        if aggregate is not None and aggregate not in AGGREGATES:
            raise ValueError(f"aggregate must be one of {AGGREGATES} or None, got {aggregate!r}")
        if not isinstance(timestamps, bool):
            raise ValueError(f"return_timestamps must be True or False, got {timestamps!r}")
        if timestamps and aggregate is not None:
            raise ValueError(f"return_timestamps=True returns every window; aggregate={aggregate!r} merges them: pass one")
        if options.get("num_temporal_clips", 1) != 1:
            raise ValueError("num_temporal_clips > 1 does not apply to windows (each window is one temporal clip); "
                             "use a shorter stride_length_s for denser coverage")
        if aggregate in AGGREGATES[1:] and top_k is not None:
            raise ValueError(f"top_k={top_k!r} does not apply to aggregate='segments' (each segment has one label, its "
                             "windows' top label); use return_timestamps=True for the top_k labels of every window")
        return "windows" if timestamps else (aggregate or "mean")

    def preprocess(self, video, label_set: LabelSet | None = None, num_temporal_clips: int = 1,
                   num_spatial_crops: int = 1, num_frames: int | None = None, chunk_length_s=None,
                   stride_length_s=None, fps=None, keep_frames: bool = False, decode_mode=None):
        """One video -> its chunks (a temporal view or a window each, with its spatial crops), streamed;
        ``keep_frames``: each chunk also holds ``"frames"``, its first crop as the model sees it (uint8 (T, h, w, 3),
        resized and cropped, before normalisation) and ``"frame_indices"``."""
        if label_set is None:
            raise ValueError("zero-shot-video-classification needs `candidate_labels`.")
        if not isinstance(video, OneVideo):  # an item of a dataset or generator
            items, is_batch = split_videos(video)
            if is_batch:
                raise ValueError(f"each item of a dataset or generator must be one video, got a batch of {len(items)}")
            video = items[0]
        with local_video(video.data, self.url_timeout) as data:
            local = OneVideo(data, video.name)
            with VideoWindowStream(local, self.video_processor, chunk_length_s=chunk_length_s,
                                   stride_length_s=stride_length_s, fps=fps, num_temporal_clips=num_temporal_clips,
                                   num_spatial_crops=num_spatial_crops, decode_mode=decode_mode,
                                   num_frames=num_frames or self.model.config.vision_config.num_frames) as stream:
                for window, pixel_values, *crops in (stream.iter_crops() if keep_frames else stream):
                    chunk = {"pixel_values": pixel_values[None].to(self.dtype), "label_set": label_set,
                             "video_name": video.name, "timestamp": window.timestamp,
                             "num_chunks": len(stream.windows), "clock": (stream.frame_times, stream.end_s)}
                    if keep_frames:
                        chunk.update(frames=crops[0][0].permute(0, 2, 3, 1).numpy(), frame_indices=window.indices)
                    yield chunk

    def classify_keeping_frames(self, video, candidate_labels, **kwargs) -> tuple[Any, dict]:
        """One video, read once, classified as a call would (same options, no batching or workers): ``(result, seen)``,
        ``seen`` the frames the model saw of its most confident chunk (the highest top score; the first on a tie):
        ``{"timestamp", "frame_indices", "frame_times" (seconds, or None), "frames" (uint8 (T, h, w, 3), resized and
        cropped, before normalisation)}``. Only that chunk's frames are kept, so memory does not grow with windows."""
        preprocess_params, forward_params, postprocess_params = self._sanitize_parameters(
            candidate_labels=candidate_labels, **kwargs)
        bar = _window_bar(forward_params.pop("progress", False))
        items, is_batch = split_videos(video)
        if is_batch:
            raise ValueError(f"classify_keeping_frames takes one video, got a batch of {len(items)}")
        scored, seen, best = [], None, None
        try:
            for chunk in self.preprocess(items[0], keep_frames=True, **preprocess_params):
                frames, indices = chunk.pop("frames"), chunk.pop("frame_indices")
                out = self.forward(_model_inputs(collate_chunks([{**chunk, "video_index": 0}])), **forward_params)
                scored.append({"scores": out["scores"][0], **{field: out[field][0] for field in CHUNK_FIELDS}})
                top = float(scored[-1]["scores"].max())
                if best is None or top > best:
                    times = chunk["clock"][0]
                    best, seen = top, {"timestamp": chunk["timestamp"], "frame_indices": indices, "frames": frames,
                                       "frame_times": None if times is None else times[indices]}
                if bar is not None:
                    bar.total = chunk["num_chunks"]
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
        return self.postprocess(scored, **postprocess_params), seen

    def _forward(self, model_inputs):
        label_set = model_inputs["label_set"][0]
        pixel_values = model_inputs["pixel_values"]  # (B, V, T, C, H, W): B chunks of V views
        num_chunks, num_views = pixel_values.shape[:2]
        text_embeds = self.text_features(label_set)
        # another frame count than the model's: resample the MIT's temporal position embedding (Eq. 6)
        other_length = pixel_values.shape[2] != self.model.config.vision_config.num_frames
        try:
            outputs = self.video_forward(pixel_values=pixel_values.flatten(0, 1), text_embeds=text_embeds,
                                         **({"interpolate_pos_encoding": True} if other_length else {}),
                                         **self._video_kwargs)
        except ValueError as err:  # e.g. a frame count or size the model was not built for
            raise ValueError(f"{', '.join(dict.fromkeys(model_inputs['video_name']))}: {err}") from err
        logits = outputs.logits_per_video.reshape(num_chunks, num_views, len(label_set))
        return {"scores": average_view_probabilities(logits), **{field: model_inputs[field] for field in CHUNK_FIELDS}}

    def postprocess(self, chunks: list[dict], mode: str = "video", top_k: int | None = None,
                    return_tensors: bool = False, calibration=None, multi_label: bool = False):
        """The scored chunks of one video -> its result: the mean over its views or windows (ranked, or with
        ``return_tensors`` the (K,) tensor in label order, or with ``calibration`` the calibrated answer), or per
        window, or segments."""
        label_set = chunks[0]["label_set"]
        if mode in ("video", "mean"):
            mean = torch.stack([chunk["scores"] for chunk in chunks]).mean(0)
            if calibration is not None:
                from .calibration import multi_label_result, open_set_result

                answer = multi_label_result if multi_label else open_set_result
                return answer(mean, label_set.labels, calibration, top_k)
            return mean.reshape(-1) if return_tensors else _ranked(mean, label_set, top_k)
        windows = [{"timestamp": tuple(round(float(t), 6) for t in chunk["timestamp"]),
                    "labels": _ranked(chunk["scores"], label_set, top_k if mode == "windows" else None)}
                   for chunk in chunks]
        if mode == "windows":
            return windows
        from .segments import aggregate_windows  # segments, frames or segmentation (pipelines/segments.py)

        times, end = chunks[0]["clock"]
        return aggregate_windows(windows, mode, end_s=end, frame_times=times, labels=list(label_set.labels))

    def get_iterator(self, inputs, num_workers, batch_size, preprocess_params, forward_params, postprocess_params):
        """As transformers' `ChunkPipeline.get_iterator`, with workers that take whole videos (so any number of
        them is correct) and results regrouped per video in input order."""
        forward_params = dict(forward_params)
        progress = forward_params.pop("progress", False)  # a bar over windows (absent: no windows, no bar)
        chunks = VideoChunks(inputs, functools.partial(self.preprocess, **preprocess_params), keep_going=False)
        loader = build_loader(chunks, batch_size=batch_size, num_workers=num_workers)
        return self._results(loader, forward_params, postprocess_params, progress)

    def _scored(self, loader, forward_params):
        for batch in loader:
            yield self.forward(_model_inputs(batch), **forward_params)

    def _results(self, loader, forward_params, postprocess_params, progress):
        bar = _window_bar(progress)
        try:
            for chunks in _videos_in_order(self._scored(loader, forward_params), bar):
                yield self.postprocess(chunks, **postprocess_params)
        finally:
            if bar is not None:
                bar.close()


def _window_bar(progress):
    """The bar over windows, or None (``progress`` False: no windows); None shows it only on a terminal."""
    if progress is False:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=0, unit="window", desc="windows", file=sys.stderr, leave=False,
                disable=None if progress is None else not progress)


def _model_and_processor(model, processor, tokenizer, video_processor, dtype, runtime=None):
    """The model and `XClipProcessor` through the one loader; `tokenizer=` / `video_processor=` replace the
    corresponding part of the processor (or, given both, make it). An `ExportedFolder` (an exported folder as
    transformers' `pipeline()` factory hands it on) is loaded here, with `runtime`."""
    from ..models.loading import ExportedFolder, load_model_and_processor
    from ..models.processing_xclip import XClipProcessor

    if isinstance(model, ExportedFolder):
        arguments = model.load_arguments()  # refuses device_map and other torch-only model arguments
        dtype = dtype if dtype is not None else arguments["dtype"]
        model = model.directory
    if processor is None and tokenizer is not None and video_processor is not None:
        processor = XClipProcessor(video_processor=video_processor, tokenizer=tokenizer)
    model, processor = load_model_and_processor(model, processor=processor, need_text=True, dtype=dtype,
                                                runtime=runtime)
    if tokenizer is not None or video_processor is not None:
        processor = XClipProcessor(video_processor=video_processor or processor.video_processor,
                                   tokenizer=tokenizer or processor.tokenizer)
    return model, processor


def register_pipeline():
    """Register "zero-shot-video-classification" with transformers' `PIPELINE_REGISTRY` (called on import)."""
    from ..models.loading import ExportedFolder
    from ..models.modeling_xclip import XClipModel

    PIPELINE_REGISTRY.supported_tasks.pop(TASK, None)  # re-registration (reloads) must not warn
    # the factory tries the classes in order: an exported folder first (it opens nothing; the pipeline loads it with
    # `runtime=`), then the torch model
    PIPELINE_REGISTRY.register_pipeline(TASK, pipeline_class=ZeroShotVideoClassificationPipeline,
                                        pt_model=(ExportedFolder, XClipModel), type="multimodal")


def build_pipeline(model, processor=None, device=None, dtype=None, compile: bool = False,
                   token_merging_ratio: float | None = None):
    """The zero-shot pipeline for a model given as a folder, hub id or object (through the one loader), on `device`
    as given (None: the pipeline's default; the CLI passes the device it resolved)."""
    return ZeroShotVideoClassificationPipeline(model=model, processor=processor, device=device, dtype=dtype,
                                               compile=compile, token_merging_ratio=token_merging_ratio)
