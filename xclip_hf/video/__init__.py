"""Video input: decoding (one reader), frame sampling, window plans."""
