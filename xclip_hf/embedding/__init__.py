"""Pieces of `xclip_hf.embed` (corpus-scale feature extraction): inputs, the decode-side data loader, the shard store.

`inputs` expands files, directories, globs and list files into one list of videos; `loader` decodes and processes
(path, window) items in DataLoader workers; `store` commits rows in atomic shards and merges them into one
`datasets` dataset. `xclip_hf.embed.embed_videos` drives them (model, distribution over processes, progress).
"""
