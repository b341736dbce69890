"""`top_activations` jobs: the Zeiler–Fergus figure of feature maps over a data set.

Phase 0 scans every input (forward passes only) and commits a partial top-k per segment;
when the last one is in, `next_phase` merges them and starts phase 1, one chunk per channel:
the DeconvNet (or other) projections of its top-k units, their patches and the channel's
grid. The finalizer assembles the report. The computing is
`worker.kinds.top_activations.feature_maps`.
"""
