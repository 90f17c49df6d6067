"""Data-free compression in memory that grows with the largest tensor, not with the model.

`source` reads one tensor at a time (safetensors, sharded Hugging Face checkpoints, mmap'd `.pth`);
global pruning's κ split streams too (`methods/prune/streaming.py`, two histogram passes); `dense_out`
writes the decoded tensors in the input's layout; `pool` compresses tensors in parallel with deterministic
bytes; `pipeline.compress_stream` puts them together (the `.bin` is written by `format.stream`).
"""
