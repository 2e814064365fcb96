"""Checkpoints of the original X-CLIP code and of its successors (`families`): reading, converting, exporting."""

from __future__ import annotations

from ..utils.lazy import lazy_exports

# public name -> submodule that defines it (imported on first access)
_EXPORTS = {
    **dict.fromkeys(["ConvertedCheckpoint", "convert_original_checkpoint", "original_video_processor"], "convert"),
    **dict.fromkeys(["export_original", "load_original", "read_original"], "original"),
    "build_tokenizer_from_bpe": "clip_bpe",
    **dict.fromkeys(["FAMILIES", "Family", "convert_checkpoint", "register_family"], "families"),
    **dict.fromkeys(["convert_vificlip_checkpoint", "read_vificlip"], "vificlip"),
    **dict.fromkeys(["convert_successor_checkpoint", "read_successor", "load_successor", "interpolate_with_clip"],
                    "openvclip"),
}

__all__ = list(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
