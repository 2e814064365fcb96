"""Post-training static int8 of an export's video graph, calibrated on real frames read by the package's processor.

    from xclip_hf.deploy import export_onnx
    export_onnx("my-xclip", "my-xclip-int8s", quantize="int8-static", calibration="train_videos/")
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass

import numpy as np

from .common import check_output, quiet
from .manifest import DATA_SUFFIX, MANIFEST_NAME, check_graph_file, file_sha256, read_manifest, \
    record_graph_files, write_manifest

__all__ = ["DEFAULT_CALIBRATION_SIZE", "STATIC_GRAPHS", "Calibration", "calibration_paths", "read_calibration",
           "calibration_digest", "check_calibration_options", "quantize_static_export"]

logger = logging.getLogger(__name__)

DEFAULT_CALIBRATION_SIZE = 32
# the calibrator holds the inputs of every quantised layer for all clips at once (~0.1 GB per clip of B/32-8f)
# the Linear layers (MatMuls with a constant weight), as `--quantize int8`; the attention products of two activations,
# embeddings, layer norms and softmax stay float32
QUANTIZED_OPS = ("MatMul",)
# only the video graph is quantised: its input (frames) is known at export; the text tower runs once per label set
# (cached) and the head on the user's labels, so both stay float32 and run with the video graph on one engine
STATIC_GRAPHS = ("video",)


def check_calibration_options(quantize, calibration, calibration_size) -> None:
    """ValueError naming a calibration option that does not fit `quantize` (only "int8-static" is calibrated)."""
    if quantize == "int8-static" and calibration is None:
        raise ValueError("quantize='int8-static' needs calibration videos: calibration= (CLI: --calibration) a folder "
                         "of videos, a list file (one path per line) or a list of video paths")
    if quantize != "int8-static" and calibration is not None:
        raise ValueError(f"calibration={_shown(calibration)} applies to quantize='int8-static' only (quantize is "
                         f"{quantize!r}): drop it or quantise with int8-static")
    if quantize != "int8-static" and calibration_size is not None:
        raise ValueError(f"calibration_size={calibration_size!r} applies to quantize='int8-static' only")
    if calibration_size is not None and (not isinstance(calibration_size, int) or isinstance(calibration_size, bool)
                                         or calibration_size < 1):
        raise ValueError(f"calibration_size must be an integer >= 1 (videos to calibrate on), got {calibration_size!r}")


def _shown(calibration) -> str:
    text = repr(os.fspath(calibration)) if isinstance(calibration, (str, os.PathLike)) else repr(calibration)
    return text if len(text) <= 120 else text[:117] + "..."


def calibration_paths(calibration) -> list[str]:
    """The candidate videos of `calibration`: a folder (searched recursively), a list file, one video, or a list."""
    from ..corpus.inputs import VIDEO_EXTENSIONS, expand_inputs

    if isinstance(calibration, (str, os.PathLike)):
        entry = os.fspath(calibration)
        if not os.path.exists(entry):
            raise ValueError(f"calibration {entry!r} does not exist: give a folder of videos, a list file (one "
                             "video path per line) or a video")
        if os.path.isfile(entry) and not entry.lower().endswith(VIDEO_EXTENSIONS):
            try:
                return expand_inputs(list_file=entry)
            except ValueError as err:
                raise ValueError(f"calibration list file {entry!r}: {err}") from err
        return expand_inputs([entry])
    if isinstance(calibration, (list, tuple)) and calibration and \
            all(isinstance(p, (str, os.PathLike)) for p in calibration):
        return expand_inputs(list(calibration))
    raise ValueError(f"calibration must be a folder of videos, a list file or a non-empty list of video paths, got "
                     f"{_shown(calibration)}")


def _spread(count: int, size: int) -> list[int]:
    """Indices 0..count-1: `size` of them spread evenly over the list first, then the others as spares in order."""
    first = sorted(set(np.linspace(0, count - 1, num=min(size, count)).round().astype(int).tolist()))
    return first + [i for i in range(count) if i not in set(first)]


@dataclass(frozen=True)
class Calibration:
    """Calibration clips read from `source`: processed clips (1, T, C, H, W) float32, their videos, the size asked."""

    source: object
    clips: list
    paths: list
    asked: int


def read_calibration(calibration, video_processor, num_frames: int, size: int) -> Calibration:
    """Up to `size` processed clips (1, T, C, H, W) of the videos of `calibration`; unreadable videos are skipped.

    Each video is read like the zero-shot pipeline reads it (`VideoWindowStream`, its whole-video view); a video that
    cannot be decoded is logged and replaced by the next one of the list. ValueError when none can be read.
    """
    from ..models.video_windows import VideoWindowStream

    paths = calibration_paths(calibration)
    clips, used, failures = [], [], []
    for index in _spread(len(paths), size):
        if len(clips) == size:
            break
        path = paths[index]
        try:
            with VideoWindowStream(path, video_processor, num_frames=num_frames) as stream:
                _, pixel_values = next(iter(stream))
        except Exception as err:  # a broken file: the next one of the list takes its place
            failures.append(f"{path}: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")
            logger.warning("calibration: skipping %s", failures[-1])
            continue
        clips.append(np.ascontiguousarray(pixel_values[:1].numpy(), dtype=np.float32))
        used.append(path)
    if not clips:
        shown = "; ".join(failures[:3]) + (f"; ... ({len(failures)} in all)" if len(failures) > 3 else "")
        raise ValueError(f"calibration {_shown(calibration)} holds no readable video ({shown})")
    if len(clips) < size:
        logger.warning("calibration: %d readable videos of the %d asked for", len(clips), size)
    return Calibration(calibration, clips, used, size)


def calibration_digest(paths: list[str]) -> str:
    """``"sha256:<hex>"`` of the calibration list: the ordered sha256 of each video file used."""
    text = json.dumps([file_sha256(p) for p in paths], separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


class _ClipReader:
    """The calibration clips as ONNX Runtime's calibrator reads them (`CalibrationDataReader.get_next`)."""

    def __init__(self, clips: list, input_name: str):
        self._clips, self._input_name = iter(clips), input_name

    def get_next(self):
        clip = next(self._clips, None)
        return None if clip is None else {self._input_name: clip}


def _quantize_graph(src: str, dst: str, clips: list, input_name: str) -> None:
    """Static QDQ quantisation of one ONNX graph's Linear layers (`quantize_static`, min-max calibration) to `dst`."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    quantize_static(src, dst, _ClipReader(clips, input_name), quant_format=QuantFormat.QDQ,
                    op_types_to_quantize=list(QUANTIZED_OPS), per_channel=True, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
                    use_external_data_format=os.path.exists(src + DATA_SUFFIX),
                    extra_options={"MatMulConstBOnly": True, "WeightSymmetric": True, "ActivationSymmetric": False})


def quantize_static_export(source_dir, output_dir, calibration, *, calibration_size: int | None = None) -> str:
    """A static int8 copy of the float32 export `source_dir` in `output_dir`: its video graph calibrated on videos.

    `calibration`: a folder of videos, a list file, a list of paths (read with the export's processor), or the
    `Calibration` that `read_calibration` returned.
    """
    from ..models.processing_xclip import XClipProcessor

    source_dir = os.fspath(source_dir)
    size = DEFAULT_CALIBRATION_SIZE if calibration_size is None else calibration_size
    check_calibration_options("int8-static", calibration, size)
    manifest = read_manifest(source_dir)
    if manifest.get("precision") != "float32":
        raise ValueError(f"{source_dir!r} holds {manifest.get('precision')} graphs; quantise a float32 export")
    output_dir = check_output(output_dir)
    for name in manifest["graphs"]:
        check_graph_file(source_dir, manifest, name)
    if not isinstance(calibration, Calibration):
        video_processor = XClipProcessor.from_pretrained(source_dir).video_processor
        calibration = read_calibration(calibration, video_processor, manifest["num_frames"], size)
    clips, used = calibration.clips, calibration.paths
    if clips[0].shape[1:] != (manifest["num_frames"], manifest["num_channels"], manifest["image_size"],
                              manifest["image_size"]):
        raise ValueError(f"calibration clips of shape {clips[0].shape[1:]}; the video graph of {source_dir!r} takes "
                         f"({manifest['num_frames']}, {manifest['num_channels']}, {manifest['image_size']}, "
                         f"{manifest['image_size']}): read them with the export's processor")
    os.makedirs(output_dir, exist_ok=True)
    static = {manifest["graphs"][name]["file"] for name in STATIC_GRAPHS}
    for name in os.listdir(source_dir):
        if name != MANIFEST_NAME and name not in static and name.removesuffix(DATA_SUFFIX) not in static:
            shutil.copy2(os.path.join(source_dir, name), os.path.join(output_dir, name))
    for name in STATIC_GRAPHS:
        entry = manifest["graphs"][name]
        with quiet():
            _quantize_graph(os.path.join(source_dir, entry["file"]), os.path.join(output_dir, entry["file"]), clips,
                            entry["inputs"][0])
    quantization = {
        "method": "onnxruntime.quantization.quantize_static (QDQ, min-max calibration)", "scheme": "static",
        "graphs": {name: "int8" if name in STATIC_GRAPHS else "float32" for name in manifest["graphs"]},
        "weights": "int8 symmetric, per output channel", "activations": "uint8 asymmetric, calibrated ranges",
        "op_types": list(QUANTIZED_OPS),
        "calibration": {"size": len(used), "asked": calibration.asked, "videos_sha256": calibration_digest(used),
                        "num_frames": manifest["num_frames"]},
    }
    manifest = dict(manifest, precision="int8", quantization=quantization,
                    graphs=record_graph_files(output_dir, manifest["graphs"]))
    write_manifest(output_dir, manifest)
    return output_dir
