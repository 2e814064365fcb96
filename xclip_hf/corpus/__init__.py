"""Corpus tools: embed a collection into a `datasets` dataset (inputs, decode-side loader) and search it."""
