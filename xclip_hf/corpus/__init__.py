"""Corpus tools: embed a collection into a `datasets` dataset (inputs, window rows read through `pipelines.video_chunks`) and search it."""
