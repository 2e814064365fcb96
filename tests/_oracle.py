"""Independent oracle: transformers' own XCLIPModel (tests only; xclip_hf never imports it)."""

import torch
from transformers import XCLIPConfig, XCLIPModel

VOCAB = 99


def tiny_oracle_config(num_frames=3, **overrides):
    """A tiny transformers XCLIPConfig (the published format, model_type "xclip")."""
    return XCLIPConfig(
        text_config=dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=77),
        vision_config=dict(image_size=32, patch_size=8, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                           num_attention_heads=4, num_frames=num_frames, mit_hidden_size=16, mit_intermediate_size=20,
                           mit_num_attention_heads=2),
        projection_dim=16, prompt_num_attention_heads=2, prompt_layers=2, **overrides,
    )


def save_oracle(path, num_frames=3, seed=0):
    """Seeded random transformers XCLIPModel saved with save_pretrained (= the format of microsoft/xclip-*)."""
    torch.manual_seed(seed)
    model = XCLIPModel(tiny_oracle_config(num_frames)).eval()
    # the published prompt alpha and logit scale are trained values: move them off their init to test the mapping
    with torch.no_grad():
        model.prompts_generator.alpha.uniform_(0.05, 0.5)
        model.logit_scale.fill_(3.1)
    model.save_pretrained(path)
    return model


def text_batch(num_texts, length=9, pad_from=None, seed=1):
    """Token ids whose end-of-text token (VOCAB-1, the highest id) closes each text; optional padding."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, VOCAB - 2, (num_texts, length), generator=g)
    mask = torch.ones_like(ids)
    ids[:, -1] = VOCAB - 1
    if pad_from is not None and num_texts > 1:
        ids[0, pad_from] = VOCAB - 1  # text 0 ends early, then padding
        ids[0, pad_from + 1:] = 0
        mask[0, pad_from + 1:] = 0
    return ids, mask
