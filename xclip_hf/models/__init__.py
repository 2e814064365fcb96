"""The X-CLIP model family in transformers' conventions: configs, models, processors, formats and the one loader."""
