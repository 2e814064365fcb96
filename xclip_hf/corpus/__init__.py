"""Corpus tools: embed a collection into a `datasets` dataset (inputs, decode-side loader, shard store) and search it.

`inputs` expands files, directories, globs and list files into one list of videos; `loader` decodes and processes
(path, window) items in DataLoader workers; `store` commits rows in atomic shards and merges them into one dataset;
`identity` fingerprints the model a job's rows come from; `lock` keeps one writer per output; `embed.embed_videos`
drives them; `search.search_videos` ranks the rows for a text query (with the model the fingerprint names).
"""
