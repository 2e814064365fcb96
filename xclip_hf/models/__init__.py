"""The X-CLIP model family in transformers' conventions: configs and the variant table, the models and their
outputs, the closed-set classifier, the video processor and processor, the checkpoint-format hook with
transformers' published layout, and the one loader (source -> model + processor) every entry point uses."""
