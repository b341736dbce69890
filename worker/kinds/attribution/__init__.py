"""Attribution jobs on a worker: a chunk's loop, its outputs (files or shards), the finalizer."""
