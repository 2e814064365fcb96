"""The few-shot and zero-shot data protocols, re-exported from `xclip_hf.data.few_shot` (shared with evaluation)."""

from ..data.few_shot import check_disjoint_label_sets, sample_k_shot

__all__ = ["sample_k_shot", "check_disjoint_label_sets"]
