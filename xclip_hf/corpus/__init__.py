"""Corpus tools: embed a collection into a `datasets` dataset (inputs, decode-side loader) and search it.

`inputs` expands files, directories, globs and list files into one list of videos; `loader` makes each video's
(path, window) rows, decoded and processed in DataLoader workers (`pipelines.video_chunks`); `embed.embed_videos`
drives them as a resumable job (`xclip_hf.jobs`: the shard store, the model fingerprint, the output lock);
`search.search_videos` ranks the rows for a text query (with the model the fingerprint names).
"""
